"""Requests about shared entries travel between desks (G-SHR-4, G-DSR-1..3).

A request this store's desk opened about an imported entry goes to the entry's
origin store in the next bundle; the origin's desk records it and its answer
comes back in the origin's next bundle. This module converts between the
desk's records (`registry.requests.desk`) and the bundle's allow-listed wire
types; `registry.joint_use.sync` calls it while exporting and inside an
import's transaction. The desk itself knows nothing of bundles.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from registry.audit.trail import Action
from registry.clock import to_text
from registry.context import RegistryContext
from registry.domain import (
    DataRequest,
    IdentityMethod,
    RefusalGround,
    RequestKind,
    RequestStatus,
)
from registry.joint_use.bundle import ForwardedRequest, RequestAnswer
from registry.requests import desk


def forwards_for(ctx: RegistryContext, member: str) -> list[ForwardedRequest]:
    """Requests about `member`'s entries it has not acknowledged: they go in its next bundle."""
    wire = []
    for request in desk.store(ctx).forwards_to_send(member):
        imported = ctx.repo.imported_entry(request.entry_id) if request.entry_id else None
        if imported is None:
            continue
        wire.append(ForwardedRequest(
            request_id=request.request_id, kind=request.kind.value,
            origin_entry_id=imported.origin_entry_id, received_at=request.received_at,
            due_at=request.due_at, identity_method=request.identity_method.value))
    return wire


def answers_for(ctx: RegistryContext, member: str) -> list[RequestAnswer]:
    """Answers to requests `member` forwarded here, not acknowledged yet."""
    return [RequestAnswer(request_id=r.origin_request_id or "", outcome=r.status.value,
                          answer=r.answer,
                          refusal_ground=r.refusal_ground.value if r.refusal_ground else None,
                          answered_at=r.answered_at or r.received_at)
            for r in desk.store(ctx).answers_to_send(member)]


def receive_forwarded(ctx: RegistryContext, sender: str, items: Sequence[ForwardedRequest],
                      actor: str, now: datetime) -> list[str]:
    """Record requests a member forwarded about our entries; inside the import's transaction."""
    applied = []
    records = desk.store(ctx)
    for item in items:
        applied.append(item.request_id)
        if records.by_origin(sender, item.request_id) is not None:
            continue  # a re-sent bundle's content
        entry = ctx.repo.entry(item.origin_entry_id)
        ours = entry is not None and ctx.repo.imported_entry(entry.entry_id) is None
        request = DataRequest(
            request_id=uuid.uuid4().hex, kind=RequestKind(item.kind), status=RequestStatus.OPEN,
            received_at=item.received_at, due_at=item.due_at,
            identity_method=IdentityMethod(item.identity_method), identity_checked_by=None,
            by_agent=False, contact="", summary="", opened_by=None, assigned_to=None,
            entry_id=item.origin_entry_id if ours else None, forwarded_to=None,
            origin_member=sender, origin_request_id=item.request_id, answered_by=None,
            answered_at=None, answer="", refusal_ground=None, answer_reason="")
        records.add(request)
        ctx.audit.record(actor=actor, action=Action.REQUEST_RECEIVED, at=now,
                         entry_id=request.entry_id,
                         details={"request_id": request.request_id, "kind": item.kind,
                                  "from": sender, "origin_request_id": item.request_id,
                                  "due_at": to_text(item.due_at)})
    return applied


def receive_answers(ctx: RegistryContext, sender: str, items: Sequence[RequestAnswer],
                    actor: str, now: datetime) -> list[str]:
    """Close requests we forwarded to `sender` with its answer; inside the import's transaction."""
    applied = []
    records = desk.store(ctx)
    for item in items:
        applied.append(item.request_id)
        request = records.get(item.request_id)
        if request is None or request.forwarded_to != sender or request.status.is_closed:
            continue
        closed = replace(request, status=RequestStatus(item.outcome), answer=item.answer,
                         refusal_ground=RefusalGround(item.refusal_ground)
                         if item.refusal_ground else None,
                         answer_reason=f"answered by {sender}", answered_at=item.answered_at)
        records.update(closed)
        ctx.audit.record(actor=actor, action=Action.REQUEST_ANSWER_RECEIVED, at=now,
                         entry_id=request.entry_id,
                         details={**desk.closing_details(closed), "by_member": sender})
    return applied
