"""見直しの機会 (G-REV-1, guideline ch. 2 §2): each active entry is looked at again.

An entry comes up for review `registry.review_interval_days` after its
approval or its last review, whatever its expiry date: a person may have
changed (rehabilitation), and the store must ask itself whether keeping the
entry is still needed. A manager other than the proposer records keep (with
the reason) or withdraw (the entry is withdrawn like any wrong entry,
G-REG-3, and the tombstone reaches every member). Entries a member shared are
reviewed at their origin, not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kernel.errors import ConflictError, NotFoundError, SelfApprovalError
from registry.accounts.users import require_role
from registry.audit.trail import Action
from registry.clock import to_text
from registry.context import RegistryContext
from registry.domain import Entry, EntryReview, EntryState, ReviewDecision, Role, User
from registry.repository import ReviewRepository
from registry.watchlist.entries import withdraw
from registry.watchlist.reasons import required_reason


class SelfReviewError(SelfApprovalError):
    """G-REV-1: the proposer of an entry does not review it; another manager does."""


@dataclass(frozen=True)
class ReviewDue:
    entry: Entry
    due_at: datetime
    last_reviewed_at: datetime | None

    def overdue(self, now: datetime) -> bool:
        return self.due_at < now

    def to_dict(self, now: datetime) -> dict[str, Any]:
        return {"entry_id": self.entry.entry_id, "due_at": to_text(self.due_at),
                "last_reviewed_at": to_text(self.last_reviewed_at)
                if self.last_reviewed_at else None,
                "overdue": self.overdue(now)}


def _store(ctx: RegistryContext) -> ReviewRepository:
    return ctx.repo


def schedule(ctx: RegistryContext) -> list[ReviewDue]:
    """Every own active entry and when its review is due, soonest first."""
    interval = timedelta(days=ctx.policy.review_interval_days)
    last = _store(ctx).last_reviews()
    imported = ctx.repo.imported_entry_ids()
    rows = []
    for entry in ctx.repo.entries([EntryState.ACTIVE]):
        if entry.entry_id in imported:
            continue
        since = max(d for d in (entry.decided_at or entry.proposed_at,
                                last.get(entry.entry_id)) if d is not None)
        rows.append(ReviewDue(entry, since + interval, last.get(entry.entry_id)))
    return sorted(rows, key=lambda r: r.due_at)


def due_reviews(ctx: RegistryContext, *, actor: User, now: datetime,
                overdue_only: bool = True) -> list[ReviewDue]:
    require_role(actor, Role.MANAGER, Role.ADMIN, Role.AUDITOR)
    return [r for r in schedule(ctx) if r.overdue(now) or not overdue_only]


def overdue_count(ctx: RegistryContext, now: datetime) -> int:
    return sum(1 for r in schedule(ctx) if r.overdue(now))


def review(ctx: RegistryContext, *, actor: User, entry_id: str, decision: ReviewDecision,
           reason: str, now: datetime) -> EntryReview:
    """Record keep (the reason says why it is still needed) or withdraw the entry."""
    require_role(actor, Role.MANAGER, trained=True)
    reason = required_reason(reason, what="review")
    entry = ctx.repo.entry(entry_id)
    if entry is None:
        raise NotFoundError(f"no entry {entry_id}")
    if ctx.repo.imported_entry(entry_id) is not None:
        raise ConflictError(f"entry {entry_id} was shared by a member; it is reviewed there")
    if entry.state is not EntryState.ACTIVE:
        raise ConflictError(f"entry {entry_id} is {entry.state.value}; only active entries "
                            "are reviewed")
    if entry.proposed_by == actor.user_id:
        raise SelfReviewError(f"{actor.username} proposed entry {entry_id}; a different "
                              "manager reviews it (G-REV-1)")
    if decision is ReviewDecision.WITHDRAW:
        withdraw(ctx, actor=actor, entry_id=entry_id, reason=f"review: {reason}", now=now)
    record = EntryReview(entry_id, decision, reason, actor.user_id, now)
    action = Action.REVIEW_KEPT if decision is ReviewDecision.KEEP else Action.REVIEW_WITHDRAWN
    with ctx.writing(), ctx.repo.unit_of_work():
        _store(ctx).add_review(record)
        ctx.audit.record(actor=actor.username, action=action, at=now, entry_id=entry_id,
                         details={"reason": reason})
    return record
