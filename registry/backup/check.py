"""The full check of every file of the registry: `mamoru registry check`.

Commands read only the pages and files they need, so damage in a page or a
file nobody touched goes unnoticed until the day it is needed (an erasure, a
restore, an audit). This reads everything, writes nothing, and names each
damaged file with what to do about it:

- registry.db and audit.db: SQLCipher's HMAC of every page
  (`cipher_integrity_check`), then SQLite's `integrity_check` of the b-trees;
- every evidence file: decrypted and authenticated (AES-GCM), and every image
  the database refers to must exist;
- the published index: decrypted, authenticated and parsed;
- every backup: decrypted and authenticated chunk by chunk to its final
  chunk, its archive walked (a backup that does not open is no backup);
- scratch folders a killed backup or restore left in `backups/` (a copy of
  the database): named, never touched (the nightly job wipes them);
- whatever the packages above the core keep under the master key (the
  joint-use key file), through the checks the caller passes in (`also`).

It lives with the backups because every damage it reports ends in the same
advice: what to put back from which backup, or which backup to take anew.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kernel.errors import StoreDamagedError
from kernel.evidence import EvidenceError, EvidenceNotFoundError
from kernel.watchlist_index import WatchlistIndex, WatchlistIndexError
from registry.backup.archive import SUFFIX as BACKUP_SUFFIX
from registry.backup.archive import BackupError, check_backup
from registry.backup.scratch import leftover_scratch
from registry.context import RegistryContext
from registry.storage import damage
from registry.storage.database import schema_problems


@dataclass
class CheckReport:
    """What was read, every damaged file, every leftover scratch folder (none if all is well)."""

    checked: list[str] = field(default_factory=list)
    damaged: list[StoreDamagedError] = field(default_factory=list)
    leftover: list[Path] = field(default_factory=list)  # scratch a killed backup/restore left

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.leftover


FileCheck = Callable[[RegistryContext, CheckReport], None]
"""Reads one more kind of file and adds what it read (and any damage) to the report."""


def check_registry(ctx: RegistryContext, *, also: Sequence[FileCheck]) -> CheckReport:
    """Read every page and every file; never writes. `also`: the files of the packages above
    the core (given by the CLI, so this check imports none of them)."""
    report = CheckReport()
    _check_databases(ctx, report)
    _check_evidence(ctx, report)
    _check_index(ctx, report)
    _check_backups(ctx, report)
    report.leftover.extend(leftover_scratch(ctx.paths.backups))
    for check in also:
        check(ctx, report)
    return report


def _check_databases(ctx: RegistryContext, report: CheckReport) -> None:
    for schema, path, damaged in (("main", ctx.paths.database, damage.database_damaged),
                                  ("audit", ctx.paths.audit_database, damage.audit_damaged)):
        problems = schema_problems(ctx.sqlcipher_connection(), schema)
        report.checked.append(path.name)
        if problems:
            more = f"; {len(problems) - 3} more" if len(problems) > 3 else ""
            shown = "; ".join(problems[:3]) + more
            report.damaged.append(damaged(path, shown))


def _check_evidence(ctx: RegistryContext, report: CheckReport) -> None:
    present = ctx.evidence.ids()
    try:
        referenced = ctx.repo.all_evidence_ids()
    except StoreDamagedError:
        referenced = set()  # registry.db is already reported
    for image_id in sorted(present | referenced):
        path = ctx.evidence_folder().path(image_id)
        try:
            ctx.evidence.get_bytes(image_id)
        except EvidenceNotFoundError:
            report.damaged.append(damage.evidence_damaged(path, "missing, but the database "
                                                                "refers to it"))
        except EvidenceError as exc:
            report.damaged.append(damage.evidence_damaged(path, str(exc)))
    report.checked.append(f"{len(present)} evidence file(s)")


def _check_index(ctx: RegistryContext, report: CheckReport) -> None:
    path = ctx.paths.index
    if not path.is_file():
        return
    try:
        WatchlistIndex.load(path, key=ctx.index_key(), expected_pack=ctx.index_spec.pack)
    except WatchlistIndexError as exc:
        report.damaged.append(damage.index_damaged(path, str(exc)))
    report.checked.append("index")


def _check_backups(ctx: RegistryContext, report: CheckReport) -> None:
    backups = sorted(ctx.paths.backups.glob(f"mamoru-*{BACKUP_SUFFIX}")) \
        if ctx.paths.backups.is_dir() else []
    for path in backups:
        try:
            check_backup(ctx.master_key, path)
        except BackupError as exc:
            report.damaged.append(StoreDamagedError(
                path, str(exc), "it cannot be restored: delete it and take a new backup with "
                                "`mamoru backup --as <admin>`"))
    report.checked.append(f"{len(backups)} backup(s)")
