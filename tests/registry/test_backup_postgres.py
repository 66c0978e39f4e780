"""Backups of a chain's PostgreSQL registry: pg_dump of ciphertext, restores that erase again
(issue 15 item 2; G-REG-4 real erasure, G-SEC-2 encryption at rest).

Every test runs on a real database in the session's throw-away cluster (TLS,
SCRAM, owner and least-privilege app roles), set up the way an operator does
(tests/registry/chain.py), with real photos and real ONNX inference.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import cast

import numpy as np
import pytest

from kernel.errors import RegistryError, SealedFileError
from kernel.evidence import EvidenceNotFoundError
from kernel.sealed import EVIDENCE, Sealer
from kernel.watchlist_index import IndexIntegrityError, WatchlistIndex
from models.engine import FaceEngine
from registry.accounts import users
from registry.audit.trail import Action
from registry.backup import archive as backup
from registry.backup import key_rotation
from registry.backup.archive import PG_DUMP_MEMBER, BackupError
from registry.clock import add_years, utc_now
from registry.context import OwnerLogin, pending_custody
from registry.domain import EntryState
from registry.keys.master import MasterKey, new_master_key
from registry.retention.expiry import prune_audit_trail
from registry.storage.postgres.base import FieldSealer, PgConnection
from registry.storage.postgres.cluster import Database, ThrowawayCluster
from registry.storage.postgres.dump import (
    DumpError,
    OwnerAccess,
    client_bindir,
    restore_registry_rows,
)
from registry.storage.postgres.opened import PostgresStorage, opens_canary, replace_canary
from registry.storage.postgres.rekey import EVIDENCE_TABLE, ROW_KEYS, reseal_database
from registry.storage.postgres.schema import PERSONAL_COLUMNS
from registry.watchlist import entries as watchlist
from tests.registries import BIDEN, OBAMA, OBAMA2, T0, Registry
from tests.registry.chain import chain_registry, owner_login

LATER = T0 + timedelta(hours=1)
NAME = "Suzuki Ichiro (backup test)"
REASON = "stop-use request upheld after review"


@dataclass
class Chain:
    reg: Registry
    database: Database
    owner: OwnerLogin


def _chain(cluster: ThrowawayCluster, folder: Path, engine: FaceEngine,
           face_data: Path) -> Chain:
    folder.mkdir()
    reg, database = chain_registry(cluster, folder, engine, face_data)
    return Chain(reg, database, owner_login(database, folder / "secrets"))


@pytest.fixture
def chain(pg_cluster: ThrowawayCluster, tmp_path: Path, engine_default: FaceEngine,
          face_data: Path) -> Iterator[Chain]:
    made = _chain(pg_cluster, tmp_path / "a", engine_default, face_data)
    yield made
    with contextlib.suppress(Exception):
        made.reg.ctx.close()


def test_pg_restore_keeps_an_erased_subject_erased(chain: Chain) -> None:
    """G-REG-4: a restore of a pg_dump re-applies every erasure recorded since, from the audit
    trail the restore leaves as it is: index, entry, templates and evidence stay gone."""
    reg = chain.reg
    kept = reg.register(OBAMA)
    erased = reg.register(BIDEN, display_name=NAME)
    erased_images = [r.image_id for r in reg.ctx.repo.evidence(erased)]
    assert erased_images and erased in reg.matches(BIDEN) and kept in reg.matches(OBAMA2)
    admin = reg.user("admin")

    path = backup.create_backup(reg.ctx, actor=admin, now=T0, owner=chain.owner)
    assert path.parent == reg.ctx.paths.backups and path.stat().st_mode & 0o077 == 0
    watchlist.erase(reg.ctx, actor=reg.user("mgr2"), entry_id=erased, reason=REASON, now=LATER)
    version_before_restore = reg.index().version

    result = backup.restore_backup(reg.ctx, actor=admin, path=path, now=LATER,
                                   owner=chain.owner)

    assert result.erasures_reapplied == 1 and result.entries == 2
    entry = reg.ctx.repo.entry(erased)
    assert entry is not None and entry.state is EntryState.ERASED
    assert entry.display_name == "" and entry.features == ""
    assert reg.ctx.repo.templates(erased) == [] and reg.ctx.repo.evidence(erased) == []
    for image_id in erased_images:
        with pytest.raises(EvidenceNotFoundError):
            reg.ctx.evidence.get(image_id)
    assert reg.index().version > version_before_restore
    assert reg.matches(BIDEN) == {}
    still = reg.ctx.repo.entry(kept)
    assert still is not None and still.state is EntryState.ACTIVE
    assert kept in reg.matches(OBAMA2)
    assert reg.ctx.evidence.get(reg.ctx.repo.evidence(kept)[0].image_id).size > 0
    actions = [r.action for r in reg.ctx.repo.audit_rows()]
    assert actions[actions.index("backup"):] == ["backup", "erase", "erasure_reapplied",
                                                 "restore"]
    assert reg.ctx.audit.verify().ok
    # The registry still works after the restore: a new registration, then a second restore.
    again = reg.register(OBAMA2)
    assert again in reg.matches(OBAMA)


def _script(dump: bytes, folder: Path) -> bytes:
    """The dump as the SQL text pg_restore makes of it (bytea as hex, as COPY writes it)."""
    archive = folder / "look.pgdump"
    archive.write_bytes(dump)
    return subprocess.run([str(client_bindir() / "pg_restore"), "--file=-", str(archive)],
                          capture_output=True, check=True).stdout


def test_the_dump_holds_ciphertext_only(chain: Chain, tmp_path: Path) -> None:
    """G-SEC-2: a pg_dump of the chain database holds no personal value in the clear (names,
    reasons, template bytes, evidence PNGs): checked in the SQL it restores as (decompressed,
    bytea as hex) and in its bytes; the backup file as a whole is sealed too."""
    reg = chain.reg
    entry_id = reg.register(OBAMA, display_name=NAME, features="tall, red cap")
    watchlist.erase(reg.ctx, actor=reg.user("mgr2"), entry_id=reg.register(BIDEN),
                    reason=REASON, now=LATER)
    vector = reg.ctx.repo.templates(entry_id)[0].vector
    assert len(vector) >= 512 and np.frombuffer(vector, dtype=np.float32).any()

    path = backup.create_backup(reg.ctx, actor=reg.user("admin"), now=LATER, owner=chain.owner)
    with backup.unpacked_backup(reg.ctx.master_key, path, tmp_path / "unpacked") as unpacked:
        dump = unpacked.files[PG_DUMP_MEMBER].read_bytes()
    script = _script(dump, tmp_path)

    # The check reads real content: what is not personal is there in the clear.
    assert entry_id.encode() in script and b"mgr2" in script and b"COPY registry.entries" in script
    clear = [NAME.encode(), b"tall, red cap", REASON.encode(), b"police damage report checked",
             vector[:16], vector[-16:], b"\x89PNG\r\n\x1a\n"]
    for value in clear:
        for form in (value, value.hex().encode()):
            assert form not in dump and form not in script, value[:16]
    sealed = path.read_bytes()
    assert b"PGDMP" not in sealed and entry_id.encode() not in sealed and b"mgr2" not in sealed


def test_a_backup_under_another_key_is_refused(chain: Chain, pg_cluster: ThrowawayCluster,
                                               tmp_path: Path, engine_default: FaceEngine,
                                               face_data: Path) -> None:
    """G-SEC-2: another chain's backup (another master key) does not open; nothing changes."""
    reg = chain.reg
    path = backup.create_backup(reg.ctx, actor=reg.user("admin"), now=T0, owner=chain.owner)
    other = _chain(pg_cluster, tmp_path / "b", engine_default, face_data)
    try:
        entry_id = other.reg.register(OBAMA)
        with pytest.raises(BackupError, match="key"):
            backup.restore_backup(other.reg.ctx, actor=other.reg.user("admin"), path=path,
                                  now=LATER, owner=other.owner)
        assert [e.entry_id for e in other.reg.ctx.repo.entries()] == [entry_id]
    finally:
        other.reg.ctx.close()


def test_backup_and_restore_need_the_owner_role(chain: Chain) -> None:
    """Without the owner's login both refuse in one line, before anything is written."""
    reg = chain.reg
    with pytest.raises(RegistryError, match="--pg-owner"):
        backup.create_backup(reg.ctx, actor=reg.user("admin"), now=T0)
    assert not list(reg.ctx.paths.backups.glob("*.backup"))
    path = backup.create_backup(reg.ctx, actor=reg.user("admin"), now=T0, owner=chain.owner)
    with pytest.raises(RegistryError, match="--pg-owner"):
        backup.restore_backup(reg.ctx, actor=reg.user("admin"), path=path, now=LATER)


def test_a_backup_older_than_the_pruned_trail_is_refused(chain: Chain, tmp_path: Path) -> None:
    """G-REG-4: a copy kept away past the audit prune cannot be restored: the erasures since
    its snapshot can no longer be re-applied (as on SQLCipher)."""
    reg = chain.reg
    path = backup.create_backup(reg.ctx, actor=reg.user("admin"), now=T0, owner=chain.owner)
    kept_away = tmp_path / path.name
    shutil.copy2(path, kept_away)
    path.unlink()
    with reg.ctx.writing():  # a record after the snapshot, so the prune can pass it
        users.record_training(reg.ctx.repo, reg.ctx.audit, admin=reg.user("admin"),
                              username="staff", now=T0)
    with reg.ctx.writing():  # the trail's first record (init) is written on the real clock
        assert prune_audit_trail(reg.ctx, now=add_years(utc_now(), 10)) > 0
    before = len(list(reg.ctx.repo.audit_rows()))
    with pytest.raises(BackupError, match="can no longer be re-applied"):
        backup.restore_backup(reg.ctx, actor=reg.user("admin"), path=kept_away, now=LATER,
                              owner=chain.owner)
    assert len(list(reg.ctx.repo.audit_rows())) == before
    assert not any(r.action == Action.RESTORE.value for r in reg.ctx.repo.audit_rows())


# --- key rotation (G-SEC-2, G-BRE-3) ---------------------------------------------------------


def _sealed_values(conn: PgConnection) -> list[tuple[str, str, str, bytes]]:
    """Every non-NULL personal value with its table, column and row key (as the stores seal)."""
    found = []
    for qualified, columns in PERSONAL_COLUMNS.items():
        table = qualified.removeprefix("registry.")
        key = "image_id" if table == EVIDENCE_TABLE else ROW_KEYS[table]
        for column in columns:
            for row_key, blob in conn.execute(
                    f"SELECT {key}, {column} FROM {qualified} WHERE {column} IS NOT NULL"):
                found.append((table, column, str(row_key), bytes(blob)))
    return found


def _opens_under(key: MasterKey, table: str, column: str, row: str, blob: bytes) -> bool:
    try:
        if table == EVIDENCE_TABLE:
            Sealer(EVIDENCE, key.derive("evidence")).open(blob, name="x", context=row.encode())
        else:
            FieldSealer(key.derive("database-fields")).open(table, column, row, blob)
    except SealedFileError:
        return False
    return True


def test_every_personal_table_has_a_row_key() -> None:
    """A new personal column's table must say how its rows are keyed, or rotation misses it."""
    tables = {name.removeprefix("registry.") for name in PERSONAL_COLUMNS}
    assert tables - {EVIDENCE_TABLE} == set(ROW_KEYS)


def test_key_rotation_reseals_every_value_under_the_new_key(chain: Chain) -> None:
    """G-SEC-2/G-BRE-3: after a rotation the old key opens no personal value, no evidence image
    and not the key canary; the registry reopens from the key file and works on."""
    reg = chain.reg
    admin = reg.user("admin")
    entry_id = reg.register(OBAMA, display_name=NAME)
    watchlist.erase(reg.ctx, actor=reg.user("mgr2"), entry_id=reg.register(BIDEN),
                    reason=REASON, now=LATER)
    old_key = reg.ctx.master_key
    old_backup = backup.create_backup(reg.ctx, actor=admin, now=LATER, owner=chain.owner)
    image_id = reg.ctx.repo.evidence(entry_id)[0].image_id
    conn = cast(PostgresStorage, reg.ctx.storage).connection
    before = _sealed_values(conn)
    tables = {t for t, *_ in before}
    assert {"entries", "templates", "incidents", "audit_texts", EVIDENCE_TABLE} <= tables
    assert all(_opens_under(old_key, *value) for value in before)

    fresh = key_rotation.rotate_key(reg.ctx, actor=admin, now=LATER + timedelta(minutes=5),
                                    owner=chain.owner)

    new_key = reg.ctx.master_key
    after = _sealed_values(conn)
    assert len(after) == len(before)
    assert not any(_opens_under(old_key, *value) for value in after)
    assert all(_opens_under(new_key, *value) for value in after)
    assert not opens_canary(conn, old_key) and opens_canary(conn, new_key)
    assert not old_backup.exists() and sorted(reg.ctx.paths.backups.glob("*.backup")) == [fresh]
    with pytest.raises(IndexIntegrityError):
        WatchlistIndex.load(reg.ctx.paths.index, key=old_key.derive("index"))

    ctx = reg.reopen()
    assert ctx.audit.verify().ok
    entry = ctx.repo.entry(entry_id)
    assert entry is not None and entry.display_name == NAME
    assert entry_id in reg.matches(OBAMA2)
    assert ctx.evidence.get(image_id).size > 0
    assert [r.action for r in ctx.repo.audit_rows()][-2:] == ["key_rotate", "backup"]
    # The fresh backup, under the new key, restores.
    result = backup.restore_backup(ctx, actor=reg.user("admin"), path=fresh,
                                   now=LATER + timedelta(minutes=10), owner=chain.owner)
    assert result.entries == 2 and entry_id in reg.matches(OBAMA2)


@pytest.mark.parametrize("committed", [False, True], ids=["crash-before", "crash-after-commit"])
def test_an_interrupted_rotation_is_finished_at_the_next_open(chain: Chain,
                                                              committed: bool) -> None:
    """G-SEC-2: a rotation killed before or after its transaction committed (the new key still
    pending, not promoted) is finished by the next open; nothing is left under the old key."""
    reg = chain.reg
    entry_id = reg.register(OBAMA, display_name=NAME)
    paths = reg.ctx.paths
    old_key = reg.ctx.master_key
    new_key = new_master_key()
    pending_custody(paths).store(new_key, replace=True)
    conn = cast(PostgresStorage, reg.ctx.storage).connection
    if committed:
        moved = reseal_database(conn, old_key, new_key, replace_canary)
        assert moved.moved > 0 and moved.already_new == 0

    ctx = reg.reopen()

    assert ctx.master_key.derive("index") == new_key.derive("index")
    assert paths.custody.load().derive("index") == new_key.derive("index")
    conn = cast(PostgresStorage, ctx.storage).connection
    assert all(_opens_under(new_key, *value) for value in _sealed_values(conn))
    assert opens_canary(conn, new_key)
    entry = ctx.repo.entry(entry_id)
    assert entry is not None and entry.display_name == NAME and entry_id in reg.matches(OBAMA2)
    last = list(ctx.repo.audit_rows())[-1]
    assert last.action == "key_rotate" and '"resumed_after_interruption": true' in last.details


def test_rotation_without_the_owner_is_refused_before_any_key_is_written(chain: Chain) -> None:
    reg = chain.reg
    with pytest.raises(RegistryError, match="--pg-owner"):
        key_rotation.rotate_key(reg.ctx, actor=reg.user("admin"), now=LATER)
    pending = reg.ctx.paths.custody.pending()
    assert pending is None or not pending.exists()


def test_a_restore_that_fails_midway_changes_nothing(chain: Chain, tmp_path: Path) -> None:
    """A dump cut short (a truncated copy): pg_restore fails mid-stream, psql gets no COMMIT,
    and the registry keeps every row it had; the error names the tool, not the password."""
    reg = chain.reg
    entry_id = reg.register(OBAMA)
    path = backup.create_backup(reg.ctx, actor=reg.user("admin"), now=T0, owner=chain.owner)
    with backup.unpacked_backup(reg.ctx.master_key, path, tmp_path / "unpacked") as unpacked:
        dump = unpacked.files[PG_DUMP_MEMBER].read_bytes()
    cut = tmp_path / "cut.pgdump"
    cut.write_bytes(dump[: len(dump) * 3 // 4])
    settings = reg.ctx.policy.postgres
    assert settings is not None
    access = OwnerAccess(settings, chain.owner.user, chain.owner.password_file)
    reg.register(BIDEN)
    before = sorted(e.entry_id for e in reg.ctx.repo.entries())

    with pytest.raises(DumpError, match="nothing was restored") as failed:
        restore_registry_rows(access, cut, tmp_path)

    assert chain.database.owner_password not in str(failed.value)
    assert sorted(e.entry_id for e in reg.ctx.repo.entries()) == before
    assert entry_id in before and len(before) == 2
    assert len(reg.ctx.evidence.ids()) == 2
