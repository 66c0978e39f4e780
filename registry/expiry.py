"""The nightly expiry job (G-REG-4): erase every entry whose retention has ended.

It also ends the desk's personal data (issue 10): a closed request's contact,
summary and answer text are wiped `registry.request_record_days` after it was
answered (`registry.requests.wipe_closed_records`).

Each entry is closed in its own transaction, so the job can be killed at any
moment: re-run, it finds the entries it had not reached yet and finishes
them, sweeps encrypted images a kill left unreferenced and republishes the
index. Running it twice in a row changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from registry import requests
from registry.audit import Action
from registry.clock import to_text
from registry.context import RegistryContext
from registry.domain import EntryState
from registry.watchlist import close_entry

EXPIRY_ACTOR = "expiry-job"


@dataclass(frozen=True)
class ExpiryResult:
    due: tuple[str, ...]
    expired: tuple[str, ...]
    orphans_swept: int
    dry_run: bool
    requests_wiped: tuple[str, ...] = ()  # closed requests whose contact/summary were wiped


def run_expiry(ctx: RegistryContext, *, now: datetime, dry_run: bool = False,
               on_progress: Callable[[str], None] | None = None) -> ExpiryResult:
    """Expire everything due at `now`; with `dry_run` only report what would go."""
    due = ctx.repo.due_for_expiry(now)
    if dry_run:
        return ExpiryResult(tuple(e.entry_id for e in due), (), 0, dry_run=True,
                            requests_wiped=tuple(requests.records_due_for_wiping(ctx, now)))
    expired: list[str] = []
    with ctx.writing():
        swept = ctx.sweep_orphan_evidence()
        for entry in due:
            expires = to_text(entry.expires_at) if entry.expires_at else "?"
            close_entry(
                ctx, entry, state=EntryState.EXPIRED, action=Action.EXPIRE, actor=EXPIRY_ACTOR,
                reason=f"retention of {ctx.policy.retention_years} years ended at {expires}",
                now=now, publish=False,
            )
            expired.append(entry.entry_id)
            if on_progress:
                on_progress(entry.entry_id)
        ctx.publish_index_if_stale()
    wiped = requests.wipe_closed_records(ctx, now=now, actor=EXPIRY_ACTOR)  # takes the lock
    return ExpiryResult(tuple(e.entry_id for e in due), tuple(expired), swept, dry_run=False,
                        requests_wiped=tuple(wiped))
