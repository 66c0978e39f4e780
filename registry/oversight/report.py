"""What auditors read: the audit trail's report, its verification, its records (no faces).

The trail holds pseudonymous entry ids, counts and hashes, never an image
or a template, so these are the views an auditor (G-SHR-4: an outside body
that verifies what was registered, shared and erased) may use; admins and
managers may too. Images are served by other functions that refuse auditors.

The trail is the chain's, one for every store (issue 15, item 1): it names
every store's boxes, alerts and decisions, so only the chain office's
auditors, admins and managers (users of no store) read it; a store's people
see their own store's alerts on the tablet instead (G-SEC-1).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from kernel.errors import PermissionDeniedError, RuleViolationError
from registry.accounts.users import require_role
from registry.audit.trail import Action, ChainReport
from registry.clock import utc_now
from registry.context import RegistryContext
from registry.domain import Role, User
from registry.requests import desk as requests
from registry.watchlist import reviews

OVERSIGHT_ROLES = (Role.AUDITOR, Role.ADMIN, Role.MANAGER)
MAX_RECORDS = 1000


def require_overseer(actor: User) -> None:
    """An auditor, admin or manager of the chain office: the trail spans every store."""
    require_role(actor, *OVERSIGHT_ROLES)
    if actor.store_id is not None:
        raise PermissionDeniedError(
            f"{actor.username} works in store {actor.store_id}; the audit trail covers every "
            "store and is read by the chain office's auditors, admins and managers")


def _check_period(start: datetime, end: datetime) -> None:
    if end <= start:
        raise RuleViolationError("the period's end must be after its start")


def audit_report(ctx: RegistryContext, *, actor: User, start: datetime,
                 end: datetime, now: datetime | None = None) -> dict[str, Any]:
    """Counts per kind of change in [start, end); requests per kind answered in time or late
    (G-DSR-1..4), searches by outcome, reviews kept / withdrawn and overdue now (G-REV-1)."""
    require_overseer(actor)
    _check_period(start, end)
    report = ctx.audit.report(start, end)
    rows = ctx.audit.rows_between(start, end)
    actions = [r.action for r in rows]
    report["requests"] = requests.report_counts(rows)
    report["request_searches"] = requests.search_counts(rows)
    now = now or utc_now()
    report["requests_overdue_now"] = requests.overdue_count(ctx, now)
    report["reviews"] = {"kept": actions.count(Action.REVIEW_KEPT.value),
                         "withdrawn": actions.count(Action.REVIEW_WITHDRAWN.value),
                         "overdue_now": reviews.overdue_count(ctx, now)}
    return report


def verify_trail(ctx: RegistryContext, *, actor: User) -> ChainReport:
    """Walk the whole hash chain; the first record that does not verify, if any."""
    require_overseer(actor)
    return ctx.audit.verify()


def audit_records(ctx: RegistryContext, *, actor: User, start: datetime, end: datetime,
                  limit: int = MAX_RECORDS) -> list[dict[str, Any]]:
    """The records in [start, end), newest first, at most `limit`."""
    require_overseer(actor)
    _check_period(start, end)
    rows = ctx.audit.rows_between(start, end)
    return [
        {"seq": r.seq, "at": r.at, "actor": r.actor, "action": r.action,
         "entry_id": r.entry_id, "details": json.loads(r.details), "hash": r.hash}
        for r in reversed(rows[-max(1, min(limit, MAX_RECORDS)):])
    ]
