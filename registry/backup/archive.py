"""Encrypted backups that cannot bring an erased person back (G-REG-4).

A backup is one file: a tar of a consistent database snapshot (SQLite online
backup API, still SQLCipher-encrypted), the encrypted evidence files and the
published index, sealed again under the backup key (`kernel.sealed`, kind
BACKUP; no context, so a backup may be renamed or moved to other media). Backups
have their own, short retention and are deleted (overwritten) when it ends.

The tar is written and read as a chunked sealed stream (`Sealer.stream_writer`,
1 MiB chunks, issue 15): the snapshot, the evidence files and the dump pass
through in pieces, so neither memory nor AES-GCM's 2 GiB limit of one message
bounds a backup's size. A restore unpacks into a scratch folder next to the
backups and puts nothing in place before the stream's final chunk has
authenticated. Backups written as one message by earlier releases still
restore (`Sealer.stream_reader` reads every layout).

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

import contextlib
import hashlib
import io
import json
import os
import shutil
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import sqlcipher3

from kernel.durable import make_private_dir, private_file_writer, wipe_file
from kernel.errors import RegistryError, SealedFileError
from kernel.evidence import SUFFIX as EVIDENCE_SUFFIX
from kernel.sealed import BACKUP, Sealer
from kernel.watchlist_index import read_index_version
from registry.accounts.devices import reapply_device_disables
from registry.accounts.users import require_role
from registry.audit.trail import ERASING_ACTIONS, Action
from registry.backup.scratch import scratch_folder, sweep_scratch
from registry.clock import from_text, to_text
from registry.context import OwnerLogin, RegistryContext, RegistryPaths
from registry.domain import EntryState, Role, User
from registry.keys.master import MasterKey, sqlcipher_pragma_value
from registry.watchlist.entries import close_entry

if TYPE_CHECKING:
    from registry.storage.postgres.dump import OwnerAccess

SUFFIX = ".backup"
PG_DUMP_MEMBER = "registry.pgdump"
MANIFEST_MEMBER = "manifest.json"
_MAX_MANIFEST_BYTES = 1 << 16
_COPY_BYTES = 1 << 20
_TOP_MEMBERS = frozenset({MANIFEST_MEMBER, "registry.db", PG_DUMP_MEMBER})
_FOLDERS = frozenset({"evidence", "index"})
_FINAL_STATE = {
    Action.REJECT.value: EntryState.REJECTED,
    Action.WITHDRAW.value: EntryState.WITHDRAWN,
    Action.EXPIRE.value: EntryState.EXPIRED,
    Action.ERASE.value: EntryState.ERASED,
}


class BackupError(RegistryError):
    """A backup file is unreadable, altered, or made with another key."""


@dataclass(frozen=True)
class UnpackedBackup:
    """A backup's manifest and its files, unpacked into a scratch folder (`unpacked_backup`)."""

    manifest: dict[str, Any]
    files: dict[str, Path]  # member name ("registry.db", "evidence/<id>.bin", ...) -> file


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


def _write_archive(key: MasterKey, target: Path, files: dict[str, Path],
                   manifest: dict[str, Any]) -> None:
    """The manifest and `files` as a tar, sealed as a stream into `target` (atomic, 0600).

    Streamed end to end: tar's stream mode reads each file in pieces and the
    sealer holds at most one chunk, so memory stays flat whatever the size.
    """
    with private_file_writer(target) as handle, \
            _sealer(key).stream_writer(handle) as sealed, \
            tarfile.open(fileobj=sealed, mode="w|") as archive:
        data = json.dumps(manifest, sort_keys=True).encode()
        info = tarfile.TarInfo(MANIFEST_MEMBER)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
        for name, path in sorted(files.items()):
            archive.add(str(path), arcname=name, recursive=False)


def create_backup(ctx: RegistryContext, *, actor: User, now: datetime,
                  owner: OwnerLogin | None = None) -> Path:
    """Write an encrypted snapshot, record it in the audit trail, prune expired backups.

    `owner`: on PostgreSQL, the database's owner role, which runs `pg_dump`.
    """
    require_role(actor, Role.ADMIN)
    access = _owner_access(ctx, owner, "`mamoru backup`")
    make_private_dir(ctx.paths.backups)
    target = ctx.paths.backups / f"mamoru-{now.strftime('%Y%m%dT%H%M%S%fZ')}{SUFFIX}"
    with ctx.writing():
        # What a killed backup or restore left goes before this one makes its own (G-REG-4).
        swept = sweep_scratch(ctx.paths.backups)
        with scratch_folder(ctx.paths.backups, "backup") as scratch:
            if access is None:
                files, manifest = _sqlcipher_snapshot(ctx, scratch, now)
            else:
                files, manifest = _postgres_snapshot(ctx, access, scratch, now)
            _write_archive(ctx.master_key, target, files, manifest)
    with target.open("rb") as written:
        sha256 = hashlib.file_digest(written, "sha256").hexdigest()
    # Its age is counted on the registry's clock, like every other lifetime (G-RET-1).
    os.utime(target, (now.timestamp(), now.timestamp()))
    try:
        with ctx.writing(), ctx.repo.unit_of_work():
            ctx.audit.record(actor=actor.username, action=Action.BACKUP, at=now,
                             details={"file": target.name,
                                      "evidence_files": sum(n.startswith("evidence/")
                                                            for n in files),
                                      "sha256": sha256,
                                      "snapshot_audit_seq": manifest["audit_seq"],
                                      "scratch_folders_swept": len(swept)})
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


MemberSink = Callable[[str, IO[bytes]], None]
"""Takes one member of a backup (its name, its content to read) as the stream passes it."""


def _read_archive(key: MasterKey, path: Path, take: MemberSink) -> dict[str, Any]:
    """Walk a backup's tar as it is decrypted; its manifest once the whole file authenticated.

    Each member goes to `take` as it passes, before the end of the file is
    authenticated: `take` keeps it aside (a scratch folder) or drops it,
    never uses it before this returns.
    """
    manifest: dict[str, Any] | None = None
    names: set[str] = set()
    try:
        with path.open("rb") as source, \
                _sealer(key).stream_reader(source, name=str(path)) as plain, \
                tarfile.open(fileobj=plain, mode="r|") as archive:
            for member in archive:
                content = _member_content(archive, member, path)
                if member.name == MANIFEST_MEMBER:
                    manifest = _parse_manifest(content.read(_MAX_MANIFEST_BYTES + 1), path)
                else:
                    take(member.name, content)
                names.add(member.name)
    except SealedFileError as exc:
        raise BackupError(str(exc)) from None
    except tarfile.TarError as exc:
        raise BackupError(f"{path} is not a readable mamoru backup ({exc})") from None
    if manifest is None or manifest.get("format") != 1 \
            or _snapshot_member(manifest) not in names:
        raise BackupError(f"{path} is not a complete mamoru backup")
    return manifest


def _member_content(archive: tarfile.TarFile, member: tarfile.TarInfo,
                    path: Path) -> IO[bytes]:
    """A member's content, once its name is one a backup holds (no path leaves the scratch)."""
    folder, _, rest = member.name.partition("/")
    expected = (member.name in _TOP_MEMBERS if not rest else
                folder in _FOLDERS and "/" not in rest and rest not in {"", ".", ".."})
    content = archive.extractfile(member) if member.isfile() and expected else None
    if content is None:
        raise BackupError(f"{path} holds an unexpected member {member.name!r}")
    return content


def _parse_manifest(data: bytes, path: Path) -> dict[str, Any]:
    try:
        if len(data) > _MAX_MANIFEST_BYTES:
            raise ValueError("too large")
        manifest = json.loads(data)
        if not isinstance(manifest, dict):
            raise ValueError("not an object")
    except ValueError:
        raise BackupError(f"{path} holds an unreadable manifest") from None
    return manifest


def check_backup(key: MasterKey, path: Path) -> dict[str, Any]:
    """Decrypt and authenticate a whole backup, keeping nothing; its manifest."""
    def drop(_: str, content: IO[bytes]) -> None:
        while content.read(_COPY_BYTES):
            pass

    return _read_archive(key, path, drop)


@contextlib.contextmanager
def unpacked_backup(key: MasterKey, path: Path, folder: Path) -> Iterator[UnpackedBackup]:
    """A backup's files unpacked into a scratch folder under `folder`, wiped and removed after.

    Yields only once the whole backup authenticated. Usable for a registry
    that cannot be opened (its database is damaged): it needs the key only.
    """
    with scratch_folder(folder, "restore") as scratch:
        files: dict[str, Path] = {}

        def keep(name: str, content: IO[bytes]) -> None:
            *folders, file_name = name.split("/")
            target = make_private_dir(Path(scratch, *folders)) / file_name
            with _private_new_file(target) as handle:
                shutil.copyfileobj(content, handle, _COPY_BYTES)
            files[name] = target

        manifest = _read_archive(key, path, keep)
        yield UnpackedBackup(manifest, files)


def _private_new_file(path: Path) -> IO[bytes]:
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


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
    sweep_scratch(paths.backups)  # no registry lock to take: the folders' own locks suffice
    with unpacked_backup(key, backup, paths.backups) as unpacked:
        aside = paths.database.with_name("registry.db.damaged")
        if paths.database.exists():
            os.replace(paths.database, aside)
        _copy_private(unpacked.files["registry.db"], paths.database)
    wipe_file(aside)


def _copy_private(source: Path, target: Path) -> None:
    """Replace `target` by a copy of `source`, in pieces, atomically and durably (0600)."""
    with source.open("rb") as reading, private_file_writer(target) as writing:
        shutil.copyfileobj(reading, writing, _COPY_BYTES)


def restore_files(ctx: RegistryContext, files: dict[str, Path]) -> None:
    """Put the snapshot's database and evidence in place. Caller holds the write lock."""
    _copy_private(files["registry.db"], ctx.paths.database)
    wanted = {name.removeprefix("evidence/").removesuffix(EVIDENCE_SUFFIX): path
              for name, path in files.items() if name.startswith("evidence/")}
    for image_id in ctx.evidence.ids() - set(wanted):
        ctx.evidence.delete(image_id)
    make_private_dir(ctx.paths.evidence)
    for image_id, path in wanted.items():
        _copy_private(path, ctx.evidence_folder().path(image_id))  # still sealed to its id


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
    # One hold of the writer lock from the sweep of what a killed backup or restore left to
    # the end (the lock is not re-entrant on SQLCipher: nothing below takes it again).
    with ctx.writing():
        sweep_scratch(ctx.paths.backups)
        with unpacked_backup(ctx.master_key, path, ctx.paths.backups) as unpacked:
            manifest = unpacked.manifest
            if backup_backend(manifest) != ctx.backend:
                raise BackupError(f"{path.name} is a backup of a {backup_backend(manifest)} "
                                  f"registry; this registry is on {ctx.backend}: nothing was "
                                  "restored")
            refuse_if_erasures_were_pruned(ctx, manifest, path)
            index_version = read_index_version(ctx.paths.index) or 0
            if access is None:
                ctx.reconnect(lambda: restore_files(ctx, unpacked.files))
            else:
                _restore_postgres(access, manifest, unpacked.files[PG_DUMP_MEMBER], path)
            reapplied = replay_since_snapshot(ctx, actor=actor, path=path, manifest=manifest,
                                              index_version=index_version, now=now)
    return RestoreResult(from_text(manifest["taken_at"]), len(ctx.repo.entries()), reapplied)


def _restore_postgres(access: OwnerAccess, manifest: dict[str, Any], dump: Path,
                      path: Path) -> None:
    """`pg_restore` the dump's registry rows; the audit schema stays the live one."""
    from registry.storage.postgres.dump import restore_registry_rows
    from registry.storage.postgres.schema import MIGRATIONS

    if manifest.get("schema_version") != len(MIGRATIONS):
        raise BackupError(f"{path.name} was taken at schema version "
                          f"{manifest.get('schema_version')}, this registry is at "
                          f"{len(MIGRATIONS)}: nothing was restored")
    restore_registry_rows(access, dump, dump.parent)
