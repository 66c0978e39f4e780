"""The request and complaint desk (G-DSR-1..4, G-SHR-4 反論の機会).

A manager opens a request after checking the requester's identity (G-DSR-4:
how, and by whom, is recorded; the document itself is not), searches the
watchlist with a photo the person brings, and answers it: a disclosure
document, a correction, a suspension everywhere (stop-use, objection), an
erasure, a reply to a complaint, or a refusal on a recorded legal ground.

Contact and summary: the registry database is SQLCipher (AES-256, the page
store under the master key), the same protection as an entry's name. A second
seal under a key derived from the same master key would not keep them from
anyone who can open the database (that person holds the master key), and it
would be one more thing key rotation must re-encrypt. What matters is where
they are *read*: only `request show` for a manager prints them; they never go
into the audit trail, a list, a bundle, a log or an exception. Their lifetime
(issue 10): while the request is open, then `registry.request_record_days` after
it was answered or refused; the nightly `mamoru expire` blanks them and the
answer text (`wipe_closed_records`), keeping kind, dates and outcome.

The photo: decoded in memory, searched through the same engine and threshold
the edge boxes match with, against every template the registry holds (own and
imported, proposed or active, suspended or not), then dropped. Only the outcome
and the entry ids are audited (never a score of a stranger, never the image).

A request about an imported entry is forwarded to its origin store in the next
bundle (`registry.joint_use.forwarding`); the origin records and answers it, and its
answer returns in the origin's next bundle. Both desks track it until then.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from kernel.errors import ConflictError, NotFoundError, RuleViolationError
from models.engine import FaceEngine
from registry.accounts.users import require_role
from registry.audit.trail import Action
from registry.clock import to_text
from registry.context import RegistryContext
from registry.domain import (
    REFUSAL_GROUNDS,
    DataRequest,
    IdentityMethod,
    OffenceCategory,
    RefusalGround,
    RequestKind,
    RequestStatus,
    Role,
    User,
)
from registry.repository import AuditRow, RequestRepository
from registry.watchlist.entries import correct, erase
from registry.watchlist.objections import record_objection
from registry.watchlist.reasons import required_reason

Image = npt.NDArray[np.uint8]
MAX_CONTACT = 500
MAX_SUMMARY = 2000


def store(ctx: RegistryContext) -> RequestRepository:
    """The desk's storage on the registry's current connection (a restore rebinds it)."""
    return ctx.repo.requests


def _manager(actor: User) -> None:
    require_role(actor, Role.MANAGER, trained=True)


def _get(ctx: RegistryContext, request_id: str) -> DataRequest:
    found = store(ctx).get(request_id.strip().lower())
    if found is None:
        raise NotFoundError(f"no request {request_id}")
    return found


def resolve(ctx: RegistryContext, prefix: str) -> str:
    """A unique prefix (6+ characters) of a request id, as for entries."""
    prefix = prefix.strip().lower()
    if len(prefix) < 6:
        raise RuleViolationError("give at least 6 characters of the request id")
    matches = [r.request_id for r in store(ctx).all() if r.request_id.startswith(prefix)]
    if not matches:
        raise NotFoundError(f"no request id starts with {prefix}")
    if len(matches) > 1:
        raise RuleViolationError(f"{prefix} matches {len(matches)} requests; give more")
    return matches[0]


def _open(request: DataRequest) -> DataRequest:
    if request.status.is_closed:
        raise ConflictError(f"request {request.request_id} is already {request.status.value}")
    return request


# --- opening, assigning -------------------------------------------------------------------


def open_request(ctx: RegistryContext, *, actor: User, kind: RequestKind,
                 identity_method: IdentityMethod, contact: str, now: datetime,
                 by_agent: bool = False, summary: str = "") -> DataRequest:
    """Record a request or complaint once identity was checked (G-DSR-4); due in N days."""
    _manager(actor)
    contact = contact.strip()
    if not contact:
        raise RuleViolationError("give the requester's contact: the answer must reach them")
    if len(contact) > MAX_CONTACT or len(summary) > MAX_SUMMARY:
        raise RuleViolationError(f"contact is at most {MAX_CONTACT} characters and the summary "
                                 f"at most {MAX_SUMMARY}")
    if kind is RequestKind.COMPLAINT and not summary.strip():
        raise RuleViolationError("give the complaint's summary: it is what gets answered")
    request = DataRequest(
        request_id=uuid.uuid4().hex, kind=kind, status=RequestStatus.OPEN, received_at=now,
        due_at=now + timedelta(days=ctx.policy.request_response_days),
        identity_method=identity_method, identity_checked_by=actor.user_id, by_agent=by_agent,
        contact=contact, summary=summary.strip(), opened_by=actor.user_id,
        assigned_to=actor.user_id, entry_id=None, forwarded_to=None, origin_member=None,
        origin_request_id=None, answered_by=None, answered_at=None, answer="",
        refusal_ground=None, answer_reason="")
    with ctx.writing(), ctx.repo.unit_of_work():
        store(ctx).add(request)
        ctx.audit.record(actor=actor.username, action=Action.REQUEST_OPENED, at=now,
                         details={"request_id": request.request_id, "kind": kind.value,
                                  "identity_method": identity_method.value,
                                  "by_agent": by_agent, "due_at": to_text(request.due_at)})
    return request


def assign(ctx: RegistryContext, *, actor: User, request_id: str, assignee: str,
           now: datetime) -> DataRequest:
    """G-DSR-3: every request and complaint has a manager who answers it."""
    _manager(actor)
    person = ctx.repo.user_by_name(assignee)
    if person is None or not person.active:
        raise NotFoundError(f"no active user {assignee}")
    require_role(person, Role.MANAGER, trained=True)
    with ctx.writing(), ctx.repo.unit_of_work():
        request = replace(_open(_get(ctx, request_id)), assigned_to=person.user_id)
        store(ctx).update(request)
        ctx.audit.record(actor=actor.username, action=Action.REQUEST_ASSIGNED, at=now,
                         details={"request_id": request.request_id, "to": person.username})
    return request


# --- finding the person -----------------------------------------------------------------------


@dataclass(frozen=True)
class SearchOutcome:
    request: DataRequest
    found: tuple[str, ...]  # local entry ids at or above the threshold, best first
    faces: int  # faces in the photo (the largest is the requester)

    @property
    def outcome(self) -> str:
        return "no_face" if self.faces == 0 else ("found" if self.found else "not_found")


def _matches(ctx: RegistryContext, engine: FaceEngine, image: Image) -> tuple[int, list[str]]:
    faces = engine.detect(image)
    if not faces:
        return 0, []
    subject = max(faces, key=lambda f: f.size_px)
    probe = engine.embed_faces(image, [subject])[0]
    best: dict[str, float] = {}
    for template in store(ctx).held_templates(ctx.index_spec.pack):
        score = float(np.frombuffer(template.vector, dtype=np.float32) @ probe)
        if score >= engine.threshold:
            best[template.entry_id] = max(score, best.get(template.entry_id, -1.0))
    return len(faces), sorted(best, key=lambda e: -best[e])


def search(ctx: RegistryContext, engine: FaceEngine, *, actor: User, request_id: str,
           image: Image, now: datetime) -> SearchOutcome:
    """Search the watchlist with the requester's photo; audited, and the photo is not kept.

    The best match becomes the request's subject. If it is an entry a member
    shared, the request is forwarded to that member (its origin) in the next bundle.
    """
    _manager(actor)
    request = _open(_get(ctx, request_id))
    if request.origin_member is not None:
        raise ConflictError(f"request {request.request_id} was forwarded by "
                            f"{request.origin_member} and names its entry already")
    faces, found = _matches(ctx, engine, image)
    del image  # the caller's array is the only copy; nothing was written
    subject = found[0] if found else None
    imported = ctx.repo.imported_entry(subject) if subject else None
    with ctx.writing(), ctx.repo.unit_of_work():
        updated = replace(request, entry_id=subject)
        if imported is not None:
            updated = replace(updated, status=RequestStatus.FORWARDED,
                              forwarded_to=imported.origin_member)
        store(ctx).update(updated)
        outcome = SearchOutcome(updated, tuple(found), faces)
        ctx.audit.record(actor=actor.username, action=Action.REQUEST_SEARCHED, at=now,
                         entry_id=subject,
                         details={"request_id": request.request_id, "outcome": outcome.outcome,
                                  "entry_ids": found, "pack": ctx.index_spec.pack,
                                  "threshold": engine.threshold, "photo_kept": False})
        if imported is not None:
            ctx.audit.record(actor=actor.username, action=Action.REQUEST_FORWARDED, at=now,
                             entry_id=subject,
                             details={"request_id": request.request_id,
                                      "to": imported.origin_member,
                                      "origin_entry_id": imported.origin_entry_id})
    return outcome


# --- disclosure -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Disclosure:
    """What is held about the person (G-DSR-1), in Japanese and English; masked images."""

    request_id: str
    entry: dict[str, Any] | None
    incidents: list[dict[str, Any]]
    provisions: list[dict[str, Any]]  # to which member and when (G-SHR-7 provision records)
    alerts: list[dict[str, Any]]
    images: dict[str, bytes]  # file name -> masked PNG

    def to_markdown(self) -> str:
        lines = ["# 保有個人データの開示 / Disclosure of the personal data held", "",
                 f"- 請求番号 / Request: {self.request_id}"]
        if self.entry is None:
            lines += ["", "当店は、お申し出の方に関する個人データを保有していません。",
                      "This store holds no personal data about the requester."]
            return "\n".join(lines) + "\n"
        e = self.entry
        lines += [f"- 登録番号 / Entry: {e['entry_id']}",
                  f"- 状態 / State: {e['state']}",
                  f"- 登録店舗 / Registered at: {e['store_id']}",
                  f"- 氏名 / Name: {e['display_name'] or '-'}",
                  f"- 人物の特徴 / Features: {e['features'] or '-'}",
                  f"- 保存期限 / Erased on: {e['expires_at'] or '-'}",
                  f"- 利用停止中 / Suspended: {'はい / yes' if e['suspended'] else 'いいえ / no'}",
                  "", "## 事案 / Incidents", ""]
        for i in self.incidents:
            lines.append(f"- {i['occurred_at']} {i['category']} @ {i['store_id']}: "
                         f"{i['damage'] or '-'} ({i['confirmation_kind']})")
        lines += ["", "## 画像（本人以外の顔はマスク済み） / Images (every other face masked)", ""]
        lines += [f"- {name}" for name in sorted(self.images)] or ["- なし / none"]
        lines += ["", "## 提供先（共同利用） / Provided to (joint use)", ""]
        lines += [f"- {p['at']} → {p['to']} ({p['what']})" for p in self.provisions] or [
            "- 提供なし / not provided to anyone"]
        lines += ["", "## 検知記録 / Alerts", ""]
        lines += [f"- {a['detected_at']} {a['camera']} ({a['status']})" for a in self.alerts] or [
            "- なし / none"]
        return "\n".join(lines) + "\n"


def _provisions(ctx: RegistryContext, entry_id: str) -> list[dict[str, Any]]:
    """From the JOINT_USE_PROVIDED records: each bundle that carried this entry, to whom, when."""
    found = []
    for row in ctx.repo.audit_rows():
        if row.action != Action.JOINT_USE_PROVIDED.value:
            continue
        details = json.loads(row.details)
        for what in ("entries", "corrections", "tombstones"):
            if entry_id in details.get(what, ()):
                found.append({"to": details["to"], "at": row.at, "what": what,
                              "sequence": details["sequence"]})
    return found


def disclosure(ctx: RegistryContext, *, actor: User, request_id: str) -> Disclosure:
    """The document for a disclosure request: what is held, masked images, to whom provided."""
    _manager(actor)
    request = _get(ctx, request_id)
    if request.kind is not RequestKind.DISCLOSURE:
        raise RuleViolationError(f"request {request.request_id} is a {request.kind.value} "
                                 "request, not a disclosure request")
    entry = ctx.repo.entry(request.entry_id) if request.entry_id else None
    if entry is None or entry.state.is_final:
        return Disclosure(request.request_id, None, [], [], [], {})
    incidents = [{"category": i.category.value, "occurred_at": to_text(i.occurred_at),
                  "store_id": i.store_id, "confirmation_kind": i.confirmation_kind.value,
                  "damage": i.damage, "description": i.description}
                 for i in ctx.repo.incidents(entry.entry_id)]
    images = {f"evidence-{n + 1}.png": ctx.evidence.get_bytes(r.image_id)
              for n, r in enumerate(ctx.repo.evidence(entry.entry_id))}
    alerts = [{"detected_at": to_text(a.detected_at), "camera": a.camera,
               "status": a.status.value}
              for a in ctx.repo.alerts() if a.entry_id == entry.entry_id]
    return Disclosure(
        request.request_id,
        {"entry_id": entry.entry_id, "state": entry.state.value, "store_id": entry.store_id,
         "display_name": entry.display_name, "features": entry.features,
         "expires_at": to_text(entry.expires_at) if entry.expires_at else None,
         "suspended": entry.entry_id in ctx.repo.suspended_entries()},
        incidents, _provisions(ctx, entry.entry_id), alerts, images)


# --- answering --------------------------------------------------------------------------


def _held(ctx: RegistryContext, request: DataRequest) -> bool:
    entry = ctx.repo.entry(request.entry_id) if request.entry_id else None
    return entry is not None and not entry.state.is_final


def _act(ctx: RegistryContext, actor: User, request: DataRequest, reason: str, now: datetime,
         features: str | None) -> str:
    """Carry out what the request asks on its entry; the answer's one-word summary.

    Each action takes the registry's write lock itself and writes its own audit record.
    """
    kind, entry_id = request.kind, request.entry_id
    if kind is RequestKind.COMPLAINT:
        return "replied"
    if entry_id is None or not _held(ctx, request):
        return "not_held"
    why = f"request {request.request_id} ({kind.value}): {reason}"
    if kind is RequestKind.DISCLOSURE:
        return "disclosed"
    if kind is RequestKind.CORRECTION:
        if not features:
            raise RuleViolationError("a correction answer gives the corrected features")
        correct(ctx, actor=actor, entry_id=entry_id, reason=why, now=now, features=features)
        return "corrected"
    if kind is RequestKind.ERASURE:
        erase(ctx, actor=actor, entry_id=entry_id, reason=why, now=now)
        return "erased"
    if entry_id not in ctx.repo.suspended_entries():  # stop-use, objection
        record_objection(ctx, actor=actor, entry_id=entry_id, reason=why, now=now)
    return "suspended"


def answer(ctx: RegistryContext, *, actor: User, request_id: str, reason: str, now: datetime,
           features: str | None = None) -> DataRequest:
    """Do what the request asks (G-DSR-1..3) and record the answer; forwarded ones wait.

    disclosure: the document is `disclosure(...)`; correction: `features` replace the
    recorded ones; stop-use and objection: the entry is suspended here and at every
    member (the objection path); erasure: erased here and, by tombstone, everywhere;
    complaint: the reply is the reason. Not found: answered "not held".
    """
    _manager(actor)
    reason = required_reason(reason, what="answer")
    request = _open(_get(ctx, request_id))
    if request.status is RequestStatus.FORWARDED:
        raise ConflictError(f"request {request.request_id} was forwarded to "
                            f"{request.forwarded_to}, the entry's origin: it answers it")
    done = _act(ctx, actor, request, reason, now, features)
    return _close(ctx, actor, request, RequestStatus.ANSWERED, done, None, reason, now)


# G-DSR-1: the grounds of APPI 33(2) that rest on harm (to anyone's life, body, property or
# rights, or serious hindrance to the business). A nuisance act does not make them apply.
HARM_GROUNDS = frozenset({RefusalGround.HARM_TO_PERSON_OR_OTHERS,
                          RefusalGround.SERIOUS_BUSINESS_HINDRANCE})
MIN_HARM_JUSTIFICATION = 40


class NuisanceExceptionError(RuleViolationError):
    """G-DSR-1: a harm ground was claimed for a nuisance-act entry without saying why."""


def nuisance_only(ctx: RegistryContext, request: DataRequest) -> bool:
    """The request's entry is held for nuisance acts alone (no other offence category).

    An entry with a theft or assault incident besides may rest the harm ground on those;
    one held only for 迷惑行為 may not rest it on the registration itself (G-DSR-1).
    """
    if request.entry_id is None or not _held(ctx, request):
        return False
    categories = {i.category for i in ctx.repo.incidents(request.entry_id)}
    return categories == {OffenceCategory.NUISANCE}


def _harm_justification(ctx: RegistryContext, request: DataRequest, ground: RefusalGround,
                        justification: str) -> str:
    """The case-specific justification a harm refusal of a nuisance-only entry needs, or ''.

    Chosen over refusing outright: the law's exception can apply to anyone (e.g. a
    requester who threatened a named employee), but never because of the category.
    The manager states, in their own words and apart from the reason, the concrete
    harm disclosure would cause in this case; it is kept with the answer (and wiped
    with it, issue 10), and the audit trail records that it was given.
    """
    if (request.kind is not RequestKind.DISCLOSURE or ground not in HARM_GROUNDS
            or not nuisance_only(ctx, request)):
        return ""
    text = justification.strip()
    if len(text) < MIN_HARM_JUSTIFICATION:
        raise NuisanceExceptionError(
            f"the entry is held for nuisance acts only, which do not by themselves qualify for "
            f"{ground.value} (G-DSR-1): state the concrete harm disclosure would cause in this "
            f"case ({MIN_HARM_JUSTIFICATION}+ characters), or answer the request")
    return text


def refuse(ctx: RegistryContext, *, actor: User, request_id: str, ground: RefusalGround,
           reason: str, now: datetime, harm_justification: str = "") -> DataRequest:
    """Refuse only on a ground the law gives for this kind, with the reason (G-DSR-4).

    Refusing disclosure on a harm ground for an entry held for nuisance acts only
    needs `harm_justification` as well (G-DSR-1, `_harm_justification`).
    """
    _manager(actor)
    reason = required_reason(reason, what="refusal")
    request = _open(_get(ctx, request_id))
    if request.status is RequestStatus.FORWARDED:
        raise ConflictError(f"request {request.request_id} was forwarded to "
                            f"{request.forwarded_to}, the entry's origin: it answers it")
    allowed = REFUSAL_GROUNDS[request.kind]
    if ground not in allowed:
        names = ", ".join(sorted(g.value for g in allowed)) or "none: it is always answered"
        raise RuleViolationError(f"a {request.kind.value} request cannot be refused on "
                                 f"{ground.value}; grounds: {names}")
    justified = _harm_justification(ctx, request, ground, harm_justification)
    if justified:
        reason = f"{reason}\n[G-DSR-1 harm justification, nuisance-only entry] {justified}"
    return _close(ctx, actor, request, RequestStatus.REFUSED, "refused", ground, reason, now,
                  nuisance_justified=bool(justified))


def _close(ctx: RegistryContext, actor: User, request: DataRequest, status: RequestStatus,
           done: str, ground: RefusalGround | None, reason: str, now: datetime,
           nuisance_justified: bool = False) -> DataRequest:
    closed = replace(request, status=status, answer=done, refusal_ground=ground,
                     answer_reason=reason, answered_by=actor.user_id, answered_at=now)
    action = Action.REQUEST_ANSWERED if status is RequestStatus.ANSWERED else \
        Action.REQUEST_REFUSED
    details = closing_details(closed)
    if nuisance_justified:
        details["nuisance_harm_justified"] = True  # that it was given, never its text
    with ctx.writing(), ctx.repo.unit_of_work():
        store(ctx).update(closed)
        ctx.audit.record(actor=actor.username, action=action, at=now, entry_id=request.entry_id,
                         details=details)
    return closed


def closing_details(request: DataRequest) -> dict[str, Any]:
    assert request.answered_at is not None
    return {"request_id": request.request_id, "kind": request.kind.value,
            "answer": request.answer,
            "refusal_ground": request.refusal_ground.value if request.refusal_ground else None,
            "in_time": request.answered_at <= request.due_at,
            "from_member": request.origin_member}


# --- reading ----------------------------------------------------------------------------------


def list_requests(ctx: RegistryContext, *, actor: User, now: datetime,
                  overdue_only: bool = False) -> list[DataRequest]:
    require_role(actor, Role.MANAGER, Role.ADMIN)
    return store(ctx).overdue(now) if overdue_only else store(ctx).all()


def overdue_count(ctx: RegistryContext, now: datetime) -> int:
    return len(store(ctx).overdue(now))


def show(ctx: RegistryContext, *, actor: User, request_id: str) -> DataRequest:
    """One request in full, contact included: managers only."""
    _manager(actor)
    return _get(ctx, request_id)


def summary_row(ctx: RegistryContext, request: DataRequest, now: datetime) -> dict[str, Any]:
    """A request without its contact or summary, for lists, pages and JSON."""
    return {
        "request_id": request.request_id, "kind": request.kind.value,
        "status": request.status.value, "received_at": to_text(request.received_at),
        "due_at": to_text(request.due_at), "overdue": request.overdue(now),
        "identity_method": request.identity_method.value, "by_agent": request.by_agent,
        "assigned_to": ctx.repo.username_of(request.assigned_to)
        if request.assigned_to else None,
        "entry_id": request.entry_id, "forwarded_to": request.forwarded_to,
        "from_member": request.origin_member, "answer": request.answer or None,
        "refusal_ground": request.refusal_ground.value if request.refusal_ground else None,
        "answered_at": to_text(request.answered_at) if request.answered_at else None,
    }


# --- joint use: acknowledgements (wire conversion: registry.joint_use.forwarding) -----------


def acknowledged(ctx: RegistryContext, member: str, requests: Sequence[str],
                 answers: Sequence[str]) -> None:
    """`member`'s receipt confirmed these forwards and answers; stop re-sending them."""
    store(ctx).mark_forward_acked(member, requests)
    store(ctx).mark_answer_acked(member, answers)


# --- lifetime of the desk's personal data (issue 10) ------------------------------------------

RECORD_WIPER = "expiry-job"


def records_due_for_wiping(ctx: RegistryContext, now: datetime) -> list[str]:
    """Closed requests older than `registry.request_record_days` still holding personal text."""
    cutoff = now - timedelta(days=ctx.policy.request_record_days)
    return store(ctx).closed_with_personal_text(cutoff)


def wipe_closed_records(ctx: RegistryContext, *, now: datetime,
                        actor: str = RECORD_WIPER) -> list[str]:
    """Blank the contact, summary and answer text of requests closed long enough ago.

    What stays (kind, dates, identity method, outcome, refusal ground) is what the
    auditor's counts and the overdue list read; the person's address, what they
    wrote and what was written back to them go. One transaction, one audit record
    with the ids and how many (never the text); a second run finds nothing.
    Open requests keep their contact however old: the answer must still reach them.
    """
    with ctx.writing(), ctx.repo.unit_of_work():
        due = records_due_for_wiping(ctx, now)
        if due:
            store(ctx).wipe_personal_text(due)
            ctx.audit.record(actor=actor, action=Action.REQUEST_RECORDS_WIPED, at=now,
                             details={"request_ids": due, "count": len(due),
                                      "after_days": ctx.policy.request_record_days})
    return due


# --- the auditor's counts ----------------------------------------------------------------------


def report_counts(rows: Sequence[AuditRow]) -> dict[str, dict[str, int]]:
    """Per kind: opened, received from members, answered in time / late, refused (no names)."""
    per: dict[str, Counter[str]] = {k.value: Counter() for k in RequestKind}
    for row in rows:
        if row.action == Action.REQUEST_OPENED.value:
            per[json.loads(row.details)["kind"]]["opened"] += 1
        elif row.action == Action.REQUEST_RECEIVED.value:
            per[json.loads(row.details)["kind"]]["received_from_members"] += 1
        elif row.action in (Action.REQUEST_ANSWERED.value, Action.REQUEST_REFUSED.value,
                            Action.REQUEST_ANSWER_RECEIVED.value):
            details = json.loads(row.details)
            closed = "refused" if details["answer"] == "refused" else "answered"
            timing = "in_time" if details["in_time"] else "late"
            per[details["kind"]][f"{closed}_{timing}"] += 1
    keys = ("opened", "received_from_members", "answered_in_time", "answered_late",
            "refused_in_time", "refused_late")
    return {kind: {k: c.get(k, 0) for k in keys} for kind, c in per.items()}


def search_counts(rows: Sequence[AuditRow]) -> dict[str, int]:
    outcomes: Counter[str] = Counter(json.loads(r.details)["outcome"] for r in rows
                                     if r.action == Action.REQUEST_SEARCHED.value)
    return {k: outcomes.get(k, 0) for k in ("found", "not_found", "no_face")}

