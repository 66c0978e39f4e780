"""The nightly expiry job (G-REG-4, G-RET-1): every stored copy ends when its lifetime does.

What it ends, in order:
- entries whose retention has ended (`retention_years` after the latest
  incident): erased, a tombstone stays;
- alerts nobody judged within `open_alert_days`: lapsed, the snapshot erased;
- as a safety net, any alert snapshot whose entry is no longer active;
- backups older than `backup_retention_days`, even if no new backup is taken;
- scratch folders a killed backup or restore left in `backups/` (a database
  snapshot or `pg_dump`), wiped;
- audit records older than `audit_retention_years`, never one of an entry
  still on the watchlist nor one a kept backup needs to re-apply erasures;
  the chain is re-based on an anchor so it still verifies;
- the desk's personal data: a closed request's contact, summary and answer
  text, `registry.request_record_days` after it was answered.

Each entry and each alert is closed in its own transaction, so the job can be
killed at any moment: re-run, it finds what it had not reached yet and
finishes it, sweeps encrypted images a kill left unreferenced and republishes
the index. Running it twice in a row changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from registry.alerts.queue import lapse_stale_alerts, stale_open_alerts, sweep_stray_alert_snapshots
from registry.audit.trail import Action
from registry.backup.archive import backup_needs_from, prune_backups
from registry.backup.scratch import sweep_scratch
from registry.clock import add_years, to_text
from registry.context import RegistryContext
from registry.domain import EntryState
from registry.repository import AuditRow
from registry.requests import desk as requests
from registry.watchlist.entries import close_entry

EXPIRY_ACTOR = "expiry-job"


@dataclass(frozen=True)
class ExpiryResult:
    due: tuple[str, ...]
    expired: tuple[str, ...]
    orphans_swept: int
    dry_run: bool
    alerts_due: tuple[str, ...] = ()
    alerts_lapsed: tuple[str, ...] = ()
    stray_snapshots_erased: int = 0
    backups_deleted: tuple[str, ...] = ()
    audit_records_pruned: int = 0
    requests_wiped: tuple[str, ...] = ()  # closed requests whose contact/summary were wiped
    scratch_swept: tuple[str, ...] = ()  # backup/restore scratch folders a killed process left


def run_expiry(ctx: RegistryContext, *, now: datetime, dry_run: bool = False,
               on_progress: Callable[[str], None] | None = None) -> ExpiryResult:
    """Expire everything due at `now`; with `dry_run` only report what would go."""
    due = ctx.repo.due_for_expiry(now)
    alerts_due = tuple(a.alert_id for a in stale_open_alerts(ctx, now=now))
    if dry_run:
        return ExpiryResult(tuple(e.entry_id for e in due), (), 0, dry_run=True,
                            alerts_due=alerts_due,
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
                details={"retention_years": ctx.policy.retention_years, "expires_at": expires},
            )
            expired.append(entry.entry_id)
            if on_progress:
                on_progress(entry.entry_id)
        ctx.publish_index_if_stale()
        lapsed = lapse_stale_alerts(ctx, now=now)
        stray = sweep_stray_alert_snapshots(ctx, now=now)
        scratch = sweep_backup_scratch(ctx, now=now)
    backups = prune_backups(ctx, actor=EXPIRY_ACTOR, now=now)
    with ctx.writing():
        pruned = prune_audit_trail(ctx, now=now)
    wiped = requests.wipe_closed_records(ctx, now=now, actor=EXPIRY_ACTOR)  # takes the lock
    return ExpiryResult(tuple(e.entry_id for e in due), tuple(expired), swept, dry_run=False,
                        alerts_due=alerts_due, alerts_lapsed=tuple(lapsed),
                        stray_snapshots_erased=stray, backups_deleted=tuple(backups),
                        audit_records_pruned=pruned, requests_wiped=tuple(wiped),
                        scratch_swept=tuple(scratch))


def sweep_backup_scratch(ctx: RegistryContext, *, now: datetime) -> list[str]:
    """Wipe the scratch folders a killed backup or restore left; audited. Under the lock.

    A backup or restore sweeps them too before it starts; this ends them even
    when no backup runs again (G-RET-1: every copy has a lifetime).
    """
    swept = sweep_scratch(ctx.paths.backups)
    if swept:
        with ctx.repo.unit_of_work():
            ctx.audit.record(actor=EXPIRY_ACTOR, action=Action.BACKUP_SCRATCH_SWEPT, at=now,
                             details={"folders": swept})
    return swept


def prune_audit_trail(ctx: RegistryContext, *, now: datetime) -> int:
    """Delete audit records past `audit_retention_years`; how many. Call under the lock.

    Kept regardless of age: every record of an entry that is still proposed or
    active (its history must stay provable while it is used), and every record
    a backup still on disk needs, so a restore can re-apply later erasures.
    """
    before = add_years(now, -ctx.policy.audit_retention_years)
    needed_from = backup_needs_from(ctx)

    def keep(row: AuditRow) -> bool:
        if needed_from is not None and row.seq >= needed_from:
            return True
        if row.entry_id is None:
            return False
        entry = ctx.repo.entry(row.entry_id)
        return entry is not None and not entry.state.is_final

    return ctx.audit.prune(before=before, now=now, actor=EXPIRY_ACTOR, keep=keep,
                           details={"audit_retention_years": ctx.policy.audit_retention_years})
