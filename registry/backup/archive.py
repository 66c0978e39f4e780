"""Encrypted backups that cannot bring an erased person back (G-REG-4).

A backup is one file: a tar of a consistent database snapshot (SQLite online
backup API, still SQLCipher-encrypted), the encrypted evidence files and the
published index, sealed again under the backup key (`kernel.sealed`, kind
BACKUP; no context, so a backup may be renamed or moved to other media). Backups
have their own, short retention and are deleted (overwritten) when it ends.

On a chain's PostgreSQL registry (issue 15) the snapshot is `pg_dump -Fc` of
the database as its owner role instead (`registry.storage.postgres.dump`):
only ciphertext for every personal column and evidence image, sealed again
as a whole the same way, kept and pruned in the same folder.

The audit trail is never restored: it lives in its own database (on
PostgreSQL, its own append-only schema, left as it is by a restore), so it
still holds every erasure, withdrawal, rejection and expiry that happened
after the snapshot. `restore_backup` replays them all on both back-ends
(`replay_since_snapshot`) before the registry is used again, so a restore
never resurrects anyone.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlcipher3

from kernel.durable import make_private_dir, wipe_file, write_private_file
from kernel.errors import RegistryError, SealedFileError
from kernel.evidence import SUFFIX as EVIDENCE_SUFFIX
from kernel.sealed import BACKUP, Sealer
from kernel.watchlist_index import read_index_version
from registry.accounts.devices import reapply_device_disables
from registry.accounts.users import require_role
from registry.audit.trail import ERASING_ACTIONS, Action
from registry.clock import from_text, to_text
from registry.context import OwnerLogin, RegistryContext, RegistryPaths
from registry.domain import EntryState, Role, User
from registry.keys.master import MasterKey, sqlcipher_pragma_value
from registry.watchlist.entries import close_entry

if TYPE_CHECKING:
    from registry.storage.postgres.dump import OwnerAccess

SUFFIX = ".backup"
PG_DUMP_MEMBER = "registry.pgdump"
_FINAL_STATE = {
    Action.REJECT.value: EntryState.REJECTED,
    Action.WITHDRAW.value: EntryState.WITHDRAWN,
    Action.EXPIRE.value: EntryState.EXPIRED,
    Action.ERASE.value: EntryState.ERASED,
}


class BackupError(RegistryError):
    """A backup file is unreadable, altered, or made with another key."""


@dataclass(frozen=True)
class RestoreResult:
    taken_at: datetime
    entries: int
    erasures_reapplied: int


def _snapshot_database(ctx: RegistryContext, target: Path) -> None:
    """Copy the live database page by page while holding the write lock."""
    destination = sqlcipher3.connect(str(target))
    try:
        destination.execute("PRAGMA cipher_log_level = NONE")
        pragma_value = sqlcipher_pragma_value(ctx.master_key.derive("database"))
        destination.execute(f"PRAGMA key = {pragma_value}")
        ctx.sqlcipher_connection().backup(destination, name="main")
    finally:
        destination.close()


def _tar(files: dict[str, Path], manifest: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        data = json.dumps(manifest, sort_keys=True).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
        for name, path in sorted(files.items()):
            archive.add(str(path), arcname=name, recursive=False)
    return buffer.getvalue()


def create_backup(ctx: RegistryContext, *, actor: User, now: datetime,
                  owner: OwnerLogin | None = None) -> Path:
    """Write an encrypted snapshot, record it in the audit trail, prune expired backups.

    `owner`: on PostgreSQL, the database's owner role, which runs `pg_dump`.
    """
    require_role(actor, Role.ADMIN)
    access = _owner_access(ctx, owner, "`mamoru backup`")
    make_private_dir(ctx.paths.backups)
    with ctx.writing(), tempfile.TemporaryDirectory(dir=ctx.paths.backups) as scratch:
        if access is None:
            files, manifest = _sqlcipher_snapshot(ctx, Path(scratch), now)
        else:
            files, manifest = _postgres_snapshot(ctx, access, Path(scratch), now)
        try:
            sealed = _sealer(ctx.master_key).seal(_tar(files, manifest))
        finally:
            if access is not None:
                wipe_file(files[PG_DUMP_MEMBER])
    target = ctx.paths.backups / f"mamoru-{now.strftime('%Y%m%dT%H%M%S%fZ')}{SUFFIX}"
    write_private_file(target, sealed)
    # Its age is counted on the registry's clock, like every other lifetime (G-RET-1).
    os.utime(target, (now.timestamp(), now.timestamp()))
    try:
        with ctx.writing(), ctx.repo.unit_of_work():
            ctx.audit.record(actor=actor.username, action=Action.BACKUP, at=now,
                             details={"file": target.name,
                                      "evidence_files": sum(n.startswith("evidence/")
                                                            for n in files),
                                      "sha256": hashlib.sha256(sealed).hexdigest(),
                                      "snapshot_audit_seq": manifest["audit_seq"]})
    except BaseException:
        wipe_file(target)  # a backup the audit trail does not list must not exist (G-REG-4)
        raise
    prune_backups(ctx, actor=actor.username, now=now)
    return target


def _sqlcipher_snapshot(ctx: RegistryContext, scratch: Path,
                        now: datetime) -> tuple[dict[str, Path], dict[str, Any]]:
    """The database page by page, the evidence files and the index. Under the write lock."""
    snapshot = scratch / "registry.db"
    _snapshot_database(ctx, snapshot)
    files = {"registry.db": snapshot}
    folder = ctx.evidence_folder()
    files.update({f"evidence/{folder.path(i).name}": folder.path(i)
                  for i in sorted(folder.ids())})
    if ctx.paths.index.is_file():
        files["index/watchlist.idx"] = ctx.paths.index
    last = ctx.repo.last_audit()
    manifest = {"format": 1, "taken_at": to_text(now), "audit_seq": last[0] if last else 0,
                "watchlist_version": ctx.repo.watchlist_version(),
                "store_id": ctx.policy.store_id}
    return files, manifest


def _postgres_snapshot(ctx: RegistryContext, access: OwnerAccess, scratch: Path,
                       now: datetime) -> tuple[dict[str, Path], dict[str, Any]]:
    """`pg_dump` of the chain database (evidence included: it is in the database)."""
    from registry.storage.postgres.dump import dump_database

    target = scratch / PG_DUMP_MEMBER
    seen = dump_database(access, target)
    manifest = {"format": 1, "backend": "postgres", "taken_at": to_text(now),
                "audit_seq": seen.audit_seq, "watchlist_version": seen.watchlist_version,
                "schema_version": seen.schema_version, "store_id": ctx.policy.store_id}
    return {PG_DUMP_MEMBER: target}, manifest


def require_owner(ctx: RegistryContext, owner: OwnerLogin | None, what: str) -> None:
    """Refuse, before anything changes, a PostgreSQL backup step without the owner's login."""
    _owner_access(ctx, owner, what)


def _owner_access(ctx: RegistryContext, owner: OwnerLogin | None,
                  what: str) -> OwnerAccess | None:
    """None on SQLCipher; on PostgreSQL the owner role that runs the tools (required)."""
    if ctx.backend == "sqlcipher":
        return None
    if owner is None or ctx.policy.postgres is None:
        raise RegistryError(f"{what} on the PostgreSQL registry needs the database's owner "
                            "role (pg_dump/pg_restore): give --pg-owner and "
                            "--pg-owner-password-file; nothing was changed")
    from registry.storage.postgres.dump import OwnerAccess

    return OwnerAccess(ctx.policy.postgres, owner.user, owner.password_file)


def _sealer(key: MasterKey) -> Sealer:
    return Sealer(BACKUP, key.derive("backup"))


def _open_sealed(key: MasterKey, path: Path) -> bytes:
    try:
        return _sealer(key).read(path)
    except SealedFileError as exc:
        raise BackupError(str(exc)) from None


def prune_backups(ctx: RegistryContext, *, actor: str, now: datetime) -> list[str]:
    """Delete backups older than the backup retention (their own schedule, G-REG-4)."""
    limit = now - timedelta(days=ctx.policy.backup_retention_days)
    removed = []
    for path in sorted(ctx.paths.backups.glob(f"mamoru-*{SUFFIX}")):
        if datetime.fromtimestamp(path.stat().st_mtime, tz=now.tzinfo) < limit:
            wipe_file(path)
            removed.append(path.name)
    if removed:
        with ctx.writing(), ctx.repo.unit_of_work():
            ctx.audit.record(actor=actor, action=Action.BACKUP_DELETED, at=now,
                             details={"files": removed,
                                      "retention_days": ctx.policy.backup_retention_days})
    return removed


def read_backup(ctx: RegistryContext, path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Decrypt a backup in memory: its manifest and its files."""
    return read_backup_with_key(ctx.master_key, path)


def read_backup_with_key(key: MasterKey, path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """`read_backup` for a registry that cannot be opened (its database is damaged)."""
    payload = _open_sealed(key, path)
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r") as archive:
        members = {}
        for member in archive.getmembers():
            if not member.isfile() or member.name.startswith("/") or ".." in member.name:
                raise BackupError(f"{path} holds an unexpected member {member.name!r}")
            handle = archive.extractfile(member)
            assert handle is not None
            members[member.name] = handle.read()
    manifest = json.loads(members.pop("manifest.json"))
    if manifest.get("format") != 1 or _snapshot_member(manifest) not in members:
        raise BackupError(f"{path} is not a complete mamoru backup")
    return manifest, members


def backup_backend(manifest: dict[str, Any]) -> str:
    """The back-end a backup was taken on: "sqlcipher" (older manifests name none) or "postgres"."""
    return str(manifest.get("backend", "sqlcipher"))


def _snapshot_member(manifest: dict[str, Any]) -> str:
    return PG_DUMP_MEMBER if backup_backend(manifest) == "postgres" else "registry.db"


def put_back_damaged_database(paths: RegistryPaths, key: MasterKey, backup: Path) -> None:
    """Replace a `registry.db` that cannot be opened by the backup's, so an admin can log in.

    Only the first step of a restore: the caller then runs `restore_backup`
    as usual, which re-applies every erasure the (intact) audit trail
    recorded since the snapshot (G-REG-4). The damaged file is wiped: it
    is ciphertext nobody can open, and nothing may outlive its use.
    """
    _, members = read_backup_with_key(key, backup)
    aside = paths.database.with_name("registry.db.damaged")
    if paths.database.exists():
        os.replace(paths.database, aside)
    write_private_file(paths.database, members["registry.db"])
    wipe_file(aside)


def restore_files(ctx: RegistryContext, members: dict[str, bytes]) -> None:
    """Put the snapshot's database and evidence in place. Caller holds the write lock."""
    partial = ctx.paths.database.with_name("registry.db.restoring")
    write_private_file(partial, members["registry.db"])
    os.replace(partial, ctx.paths.database)
    wanted = {name.removeprefix("evidence/").removesuffix(EVIDENCE_SUFFIX): data
              for name, data in members.items() if name.startswith("evidence/")}
    for image_id in ctx.evidence.ids() - set(wanted):
        ctx.evidence.delete(image_id)
    make_private_dir(ctx.paths.evidence)
    for image_id, data in wanted.items():
        write_private_file(ctx.evidence_folder().path(image_id), data)  # still sealed to its id


def refuse_if_erasures_were_pruned(ctx: RegistryContext, manifest: dict[str, Any],
                                   path: Path) -> None:
    """A restore needs every audit record written after its snapshot; refuse if any was pruned.

    The audit prune keeps the records any backup on disk still needs and
    backups are deleted long before the audit retention ends, so this only
    fires for a backup copied away and brought back: without the erasures
    since then it would bring erased people back (G-REG-4).
    """
    anchor = ctx.repo.audit_anchor()
    if anchor is not None and int(manifest["audit_seq"]) < anchor[0]:
        raise BackupError(
            f"{path.name} was taken at audit record {manifest['audit_seq']}, before the audit "
            f"records pruned up to {anchor[0]}: the erasures since then can no longer be "
            "re-applied, so it is not restored"
        )


def backup_needs_from(ctx: RegistryContext) -> int | None:
    """The first audit seq a backup still on disk needs for its restore; None if none is kept."""
    present = {p.name for p in ctx.paths.backups.glob(f"mamoru-*{SUFFIX}")}
    needed: int | None = None
    if not present:
        return None
    for row in ctx.repo.audit_rows():
        if row.action != Action.BACKUP.value:
            continue
        details = json.loads(row.details)
        if details.get("file") in present:
            first = int(details.get("snapshot_audit_seq", row.seq - 1)) + 1
            needed = first if needed is None else min(needed, first)
    return needed


def reapply_erasures(ctx: RegistryContext, *, now: datetime) -> int:
    """Close again every entry the audit trail says was closed; returns how many."""
    count = 0
    for row in list(ctx.repo.audit_rows()):
        if row.action not in {a.value for a in ERASING_ACTIONS} or row.entry_id is None:
            continue
        entry = ctx.repo.entry(row.entry_id)
        if entry is None or entry.state.is_final:
            continue
        close_entry(ctx, entry, state=_FINAL_STATE[row.action], action=Action.ERASURE_REAPPLIED,
                    actor="restore", reason=f"re-applied {row.action} of audit record {row.seq}",
                    now=now, details={"original_seq": row.seq, "original_action": row.action,
                                      "original_at": row.at},
                    publish=False)
        count += 1
    return count


def replay_since_snapshot(ctx: RegistryContext, *, actor: User, path: Path,
                          manifest: dict[str, Any], index_version: int, now: datetime) -> int:
    """What follows putting a snapshot back, on both back-ends; returns erasures re-applied.

    Every erasure, withdrawal, rejection and expiry the audit trail recorded
    is applied again, device disables too, every web session ends, and the
    index is republished under a version above any box's. Caller holds the
    write lock.
    """
    reapplied = reapply_erasures(ctx, now=now)
    with ctx.repo.unit_of_work():
        # A box disabled after the snapshot must not get its token back.
        devices_disabled = reapply_device_disables(ctx)
        # Sessions in the snapshot may have been logged out since: everyone logs in again.
        sessions_ended = ctx.repo.delete_all_web_sessions()
        ctx.repo.raise_watchlist_version(index_version + 1)
        ctx.audit.record(actor=actor.username, action=Action.RESTORE, at=now,
                         details={"file": path.name, "taken_at": manifest["taken_at"],
                                  "snapshot_audit_seq": manifest["audit_seq"],
                                  "erasures_reapplied": reapplied,
                                  "device_disables_reapplied": devices_disabled,
                                  "web_sessions_ended": sessions_ended})
    ctx.sweep_orphan_evidence()
    ctx.publish_index_if_stale()
    return reapplied


def restore_backup(
    ctx: RegistryContext, *, actor: User, path: Path, now: datetime,
    owner: OwnerLogin | None = None,
) -> RestoreResult:
    """Bring a backup back, then re-apply every later erasure before anyone can use it.

    `owner`: on PostgreSQL, the database's owner role, which runs `pg_restore`.
    """
    require_role(actor, Role.ADMIN)
    access = _owner_access(ctx, owner, "restoring a mamoru backup")
    manifest, members = read_backup(ctx, path)
    if backup_backend(manifest) != ctx.backend:
        raise BackupError(f"{path.name} is a backup of a {backup_backend(manifest)} registry; "
                          f"this registry is on {ctx.backend}: nothing was restored")
    refuse_if_erasures_were_pruned(ctx, manifest, path)
    index_version = read_index_version(ctx.paths.index) or 0
    with ctx.writing():
        if access is None:
            ctx.reconnect(lambda: restore_files(ctx, members))
        else:
            _restore_postgres(access, manifest, members[PG_DUMP_MEMBER], ctx.paths.backups,
                              path)
        reapplied = replay_since_snapshot(ctx, actor=actor, path=path, manifest=manifest,
                                          index_version=index_version, now=now)
    return RestoreResult(from_text(manifest["taken_at"]), len(ctx.repo.entries()), reapplied)


def _restore_postgres(access: OwnerAccess, manifest: dict[str, Any], dump: bytes,
                      folder: Path, path: Path) -> None:
    """`pg_restore` the dump's registry rows; the audit schema stays the live one."""
    from registry.storage.postgres.dump import restore_registry_rows
    from registry.storage.postgres.schema import MIGRATIONS

    if manifest.get("schema_version") != len(MIGRATIONS):
        raise BackupError(f"{path.name} was taken at schema version "
                          f"{manifest.get('schema_version')}, this registry is at "
                          f"{len(MIGRATIONS)}: nothing was restored")
    make_private_dir(folder)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        target = Path(scratch) / PG_DUMP_MEMBER
        write_private_file(target, dump)
        try:
            restore_registry_rows(access, target, Path(scratch))
        finally:
            wipe_file(target)
