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

import numpy as np
import pytest

from kernel.errors import RegistryError
from kernel.evidence import EvidenceNotFoundError
from models.engine import FaceEngine
from registry.accounts import users
from registry.audit.trail import Action
from registry.backup import archive as backup
from registry.backup.archive import PG_DUMP_MEMBER, BackupError
from registry.clock import add_years, utc_now
from registry.context import OwnerLogin
from registry.domain import EntryState
from registry.retention.expiry import prune_audit_trail
from registry.storage.postgres.cluster import Database, ThrowawayCluster
from registry.storage.postgres.dump import client_bindir
from registry.watchlist import entries as watchlist
from tests.registry.chain import chain_registry, owner_login
from tests.registry.conftest import BIDEN, OBAMA, OBAMA2, T0, Registry

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
    reasons, template bytes, evidence PNGs), neither in its bytes nor in the SQL it restores
    as; the backup file as a whole is sealed too."""
    reg = chain.reg
    entry_id = reg.register(OBAMA, display_name=NAME, features="tall, red cap")
    watchlist.erase(reg.ctx, actor=reg.user("mgr2"), entry_id=reg.register(BIDEN),
                    reason=REASON, now=LATER)
    vector = reg.ctx.repo.templates(entry_id)[0].vector
    assert len(vector) >= 512 and np.frombuffer(vector, dtype=np.float32).any()

    path = backup.create_backup(reg.ctx, actor=reg.user("admin"), now=LATER, owner=chain.owner)
    _, members = backup.read_backup(reg.ctx, path)
    dump = members[PG_DUMP_MEMBER]
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
