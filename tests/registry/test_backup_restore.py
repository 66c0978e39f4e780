"""Backups and key rotation (G-REG-4 real erasure, G-SEC-2 encryption at rest, G-BRE-3).

A restore must never bring an erased person back: the audit trail, which is
not in the backup, re-applies every later erasure before the registry is used.
Backups have their own, short retention. A rotated key leaves the old key
useless against every live file.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from datetime import timedelta
from pathlib import Path

import pytest
import sqlcipher3

from kernel.durable import write_private_file
from kernel.errors import PermissionDeniedError
from kernel.evidence import EvidenceIntegrityError, EvidenceStore
from kernel.sealed import (
    BACKUP,
    CHUNK_BYTES,
    NONCE_PREFIX_BYTES,
    SALT_BYTES,
    STREAM_VERSION,
    TAG_BYTES,
    Sealer,
)
from kernel.watchlist_index import IndexIntegrityError, WatchlistIndex
from registry.backup import archive as backup
from registry.backup import key_rotation
from registry.backup.archive import BackupError
from registry.backup.check import check_registry
from registry.clock import utc_now
from registry.domain import EntryState
from registry.keys.master import sqlcipher_pragma_value
from registry.watchlist import entries as watchlist
from tests.registries import BIDEN, OBAMA, OBAMA2, T0, Registry


def _opens(path: str, key: bytes) -> bool:
    connection = sqlcipher3.connect(path)
    try:
        connection.execute(f"PRAGMA key = {sqlcipher_pragma_value(key)}")
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlcipher3.DatabaseError:
        return False
    finally:
        connection.close()
    return True


def test_restore_keeps_an_erased_subject_erased(registry: Registry) -> None:
    """G-REG-4: erasure reaches backups: a restore re-applies it from the audit trail."""
    kept = registry.register(OBAMA)
    erased = registry.register(BIDEN)
    erased_images = [r.image_id for r in registry.ctx.repo.evidence(erased)]
    assert erased in registry.matches(BIDEN) and kept in registry.matches(OBAMA2)
    admin = registry.user("admin")
    later = T0 + timedelta(hours=1)

    with pytest.raises(PermissionDeniedError):
        backup.create_backup(registry.ctx, actor=registry.user("mgr1"), now=T0)
    path = backup.create_backup(registry.ctx, actor=admin, now=T0)
    watchlist.erase(registry.ctx, actor=registry.user("mgr2"), entry_id=erased,
                    reason="stop-use request upheld", now=later)
    version_before_restore = registry.index().version

    result = backup.restore_backup(registry.ctx, actor=admin, path=path, now=later)

    assert result.erasures_reapplied == 1
    entry = registry.ctx.repo.entry(erased)
    assert entry is not None and entry.state is EntryState.ERASED
    assert entry.display_name == "" and entry.features == ""
    assert registry.ctx.repo.templates(erased) == []
    assert registry.ctx.repo.evidence(erased) == []
    for image_id in erased_images:
        assert not (registry.ctx.paths.evidence / f"{image_id}.bin").exists()
    index = registry.index()
    assert index.version > version_before_restore
    assert all(h.entry_id != erased for h in registry.hits(BIDEN))
    assert registry.matches(BIDEN) == {}

    still = registry.ctx.repo.entry(kept)
    assert still is not None and still.state is EntryState.ACTIVE
    assert kept in registry.matches(OBAMA2)
    assert registry.ctx.evidence.get(registry.ctx.repo.evidence(kept)[0].image_id).size > 0

    actions = [r.action for r in registry.ctx.repo.audit_rows()]
    tail = actions[actions.index("backup"):]
    assert tail == ["backup", "erase", "erasure_reapplied", "restore"]
    assert registry.ctx.audit.verify().ok
    # ... and it still holds after opening again from the files alone.
    ctx = registry.reopen()
    assert ctx.audit.verify().ok
    reopened = ctx.repo.entry(erased)
    assert reopened is not None and reopened.state is EntryState.ERASED


def test_altered_backup_is_refused(registry: Registry) -> None:
    """G-SEC-2: a backup is authenticated; one flipped byte and it is refused, nothing restored."""
    entry_id = registry.register(OBAMA)
    path = backup.create_backup(registry.ctx, actor=registry.user("admin"), now=T0)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    database = registry.ctx.paths.database.read_bytes()
    audit_count = len(list(registry.ctx.repo.audit_rows()))

    with pytest.raises(BackupError, match="altered"):
        backup.restore_backup(registry.ctx, actor=registry.user("admin"), path=path,
                              now=T0 + timedelta(hours=1))

    assert registry.ctx.paths.database.read_bytes() == database
    assert len(list(registry.ctx.repo.audit_rows())) == audit_count
    assert entry_id in registry.matches(OBAMA2)


def test_a_backup_cut_between_two_chunks_is_refused(registry: Registry) -> None:
    """Issue 15: a backup is a chunked sealed stream (no 2 GiB limit, flat memory). A copy
    that stopped exactly between two chunks still authenticates chunk by chunk, but its
    last chunk is not sealed as final: restore and `registry check` refuse it, and nothing
    is put in place (G-SEC-2)."""
    ctx = registry.ctx
    entry_id = registry.register(OBAMA)
    png = ctx.evidence.get_bytes(ctx.repo.evidence(entry_id)[0].image_id)
    for _ in range(-(-2 * CHUNK_BYTES // len(png))):  # more than two chunks of evidence
        ctx.evidence.put_png(png)
    path = backup.create_backup(ctx, actor=registry.user("admin"), now=T0)
    blob = path.read_bytes()
    assert blob.startswith(BACKUP.magic) and blob[len(BACKUP.magic)] == STREAM_VERSION
    first_chunk_at = len(BACKUP.magic) + 1 + 2 + 4 + SALT_BYTES + NONCE_PREFIX_BYTES
    whole_chunks = (len(blob) - first_chunk_at) // (CHUNK_BYTES + TAG_BYTES)
    assert whole_chunks >= 2
    assert check_registry(ctx, also=()).ok
    path.write_bytes(blob[:first_chunk_at + whole_chunks * (CHUNK_BYTES + TAG_BYTES)])
    database = ctx.paths.database.read_bytes()
    audit_count = len(list(ctx.repo.audit_rows()))

    with pytest.raises(BackupError, match=f"truncated: it ends after chunk {whole_chunks - 1}"):
        backup.restore_backup(ctx, actor=registry.user("admin"), path=path,
                              now=T0 + timedelta(hours=1))

    assert ctx.paths.database.read_bytes() == database
    assert len(list(ctx.repo.audit_rows())) == audit_count
    assert [p.name for p in ctx.paths.backups.iterdir()] == [path.name]  # no scratch left
    report = check_registry(ctx, also=())
    assert [d.path for d in report.damaged] == [path]
    assert "truncated" in report.damaged[0].problem


def _as_one_message(registry: Registry, path: Path, scratch: Path) -> None:
    """Rewrite a backup as releases before issue 15 wrote it: the same tar, built in memory
    and sealed as one AES-GCM message (sealed-file version 1)."""
    key = registry.ctx.master_key
    with backup.unpacked_backup(key, path, scratch) as unpacked:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            data = json.dumps(unpacked.manifest, sort_keys=True).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
            for name, file in sorted(unpacked.files.items()):
                archive.add(str(file), arcname=name, recursive=False)
    write_private_file(path, Sealer(BACKUP, key.derive("backup")).seal(buffer.getvalue()))


def test_a_backup_written_as_one_message_still_restores(registry: Registry,
                                                        tmp_path: Path) -> None:
    """Backups kept from before the chunked format (issue 15) restore as before, and the
    erasures since are re-applied (G-REG-4)."""
    kept = registry.register(OBAMA)
    erased = registry.register(BIDEN)
    admin = registry.user("admin")
    path = backup.create_backup(registry.ctx, actor=admin, now=T0)
    _as_one_message(registry, path, tmp_path / "scratch")
    assert path.read_bytes()[len(BACKUP.magic)] == 1
    assert check_registry(registry.ctx, also=()).ok
    later = T0 + timedelta(hours=1)
    watchlist.erase(registry.ctx, actor=registry.user("mgr2"), entry_id=erased,
                    reason="stop-use request upheld", now=later)

    result = backup.restore_backup(registry.ctx, actor=admin, path=path, now=later)

    assert result.erasures_reapplied == 1 and result.entries == 2
    entry = registry.ctx.repo.entry(erased)
    assert entry is not None and entry.state is EntryState.ERASED
    assert kept in registry.matches(OBAMA2) and registry.matches(BIDEN) == {}
    assert registry.ctx.audit.verify().ok
    # The scratch copy the restore unpacked into lives only as long as the restore.
    assert [p.name for p in registry.ctx.paths.backups.iterdir()] == [path.name]


def test_old_backups_are_wiped_on_their_own_schedule(registry: Registry) -> None:
    """G-REG-4: backups are deleted when backup_retention_days ends (erasure reaches them too)."""
    days = registry.settings.registry.backup_retention_days
    admin = registry.user("admin")
    registry.register(OBAMA)
    now = utc_now()
    recent = backup.create_backup(registry.ctx, actor=admin, now=now)
    old = backup.create_backup(registry.ctx, actor=admin, now=now - timedelta(days=days + 1))
    stale = (now - timedelta(days=days + 1)).timestamp()
    os.utime(old, (stale, stale))  # as if written that long ago
    assert old.exists() and recent.exists() and old != recent

    removed = backup.prune_backups(registry.ctx, actor="admin", now=now)

    assert removed == [old.name]
    assert not old.exists() and recent.exists()
    assert sorted(registry.ctx.paths.backups.iterdir()) == [recent]
    last = list(registry.ctx.repo.audit_rows())[-1]
    assert last.action == "backup_deleted" and old.name in last.details
    assert backup.prune_backups(registry.ctx, actor="admin", now=now) == []
    # Taking a backup prunes too: the schedule runs without anyone remembering it.
    older = backup.create_backup(registry.ctx, actor=admin, now=now - timedelta(days=days + 2))
    os.utime(older, (stale, stale))
    newest = backup.create_backup(registry.ctx, actor=admin, now=now + timedelta(seconds=1))
    assert not older.exists() and recent.exists() and newest.exists()
    assert registry.ctx.audit.verify().ok


def test_key_rotation_locks_out_the_old_key(registry: Registry) -> None:
    """G-SEC-2/G-BRE-3: after a suspected leak, the old key opens no live file."""
    entry_id = registry.register(OBAMA)
    admin = registry.user("admin")
    paths = registry.ctx.paths
    old_key = registry.ctx.master_key
    old_backup = backup.create_backup(registry.ctx, actor=admin, now=T0)
    image_id = registry.ctx.repo.evidence(entry_id)[0].image_id
    assert _opens(str(paths.database), old_key.derive("database"))

    fresh_backup = key_rotation.rotate_key(registry.ctx, actor=admin,
                                           now=T0 + timedelta(minutes=5))

    new_key = registry.ctx.master_key
    assert not _opens(str(paths.database), old_key.derive("database"))
    assert not _opens(str(paths.audit_database), old_key.derive("audit"))
    assert _opens(str(paths.database), new_key.derive("database"))
    assert not paths.key_file.with_name(paths.key_file.name + ".next").exists()
    with pytest.raises(IndexIntegrityError):
        WatchlistIndex.load(paths.index, key=old_key.derive("index"))
    with pytest.raises(EvidenceIntegrityError):
        EvidenceStore(paths.evidence, old_key.derive("evidence")).get(image_id)
    # Backups readable with the old key are gone; a fresh one under the new key exists.
    assert old_backup != fresh_backup and not old_backup.exists()
    assert sorted(paths.backups.glob("*.backup")) == [fresh_backup]
    assert backup.check_backup(registry.ctx.master_key, fresh_backup)["store_id"]

    ctx = registry.reopen()
    assert ctx.audit.verify().ok
    entry = ctx.repo.entry(entry_id)
    assert entry is not None and entry.state is EntryState.ACTIVE
    assert entry_id in registry.matches(OBAMA2)
    assert ctx.evidence.get(image_id).size > 0
    actions = [r.action for r in ctx.repo.audit_rows()]
    assert actions[-2:] == ["key_rotate", "backup"]
