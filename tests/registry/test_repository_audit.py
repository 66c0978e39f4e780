"""`AuditRepository` behaves the same on every back-end (issue 15), under the real `AuditTrail`.

Each test runs on the real SQLCipher repository (the attached `audit.db`) and on
`PostgresAudit` over an application-role connection to a freshly migrated
database (`backend` fixture). The trail appends, verifies its hash chain and
prunes through the protocol only, so the same `AuditTrail` code is proved on
both (REQUIREMENTS "what follows" 3, G-RET-1, G-SHR-7).

PostgreSQL only: several API workers append at once, and two of them must never
both follow the same head (a forked chain); `test_two_workers_append_one_chain`
appends 2 x 50 records from two threads on two connections and verifies the
chain. Free texts (G-RET-1) are sealed to their row there.
"""

from __future__ import annotations

import secrets
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kernel.errors import ConflictError, SealedIntegrityError
from registry.audit.trail import GENESIS, Action, AuditTrail, record_hash, text_sha256
from registry.clock import to_text
from registry.keys.master import new_master_key
from registry.repository import AuditRepository, AuditStore
from registry.storage.postgres.audit import PostgresAudit
from registry.storage.postgres.base import FieldSealer, PostgresUnitOfWork, prepare_session
from registry.storage.postgres.schema import migrate
from tests.registry.backends import Backend
from tests.registry.test_repository_contract import _mismatches

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
REASON = "山田花子さんが棚から商品を取った"


def _postgres_only(backend: Backend) -> None:
    if backend.name != "postgres":
        pytest.skip("PostgreSQL only")


def _open(backend: Backend) -> Any:
    return backend.open(PostgresAudit)


def _trail(backend: Backend, repo: Any) -> AuditTrail:
    return AuditTrail(repo, backend.tmp_path / f"audit-{secrets.token_hex(4)}.head")


def _record(trail: AuditTrail, repo: Any, at: datetime, action: Action = Action.LOGIN,
            **details: Any) -> int:
    with repo.unit_of_work():
        return trail.record(actor="tanaka", action=action, at=at, details=details)


def test_empty_trail(backend: Backend) -> None:
    repo = _open(backend)
    assert repo.last_audit() is None
    assert repo.audit_anchor() is None
    assert repo.last_audit_details(Action.LOGIN.value) is None
    assert list(repo.audit_rows()) == []
    report = _trail(backend, repo).verify()
    assert report.ok and report.records == 0


def test_append_audit_and_read_back(backend: Backend) -> None:
    repo = _open(backend)
    at = to_text(T0)
    first = record_hash(GENESIS, 1, at, "sato", "approve", "e1", '{"n":1}')
    second = record_hash(first, 2, at, "system", "expire", None, "{}")
    with repo.unit_of_work():
        assert repo.append_audit(at, "sato", "approve", "e1", '{"n":1}', GENESIS, first) == 1
        assert repo.append_audit(at, "system", "expire", None, "{}", first, second) == 2
    assert repo.last_audit() == (2, second)
    rows = list(repo.audit_rows())
    assert [(r.seq, r.at, r.actor, r.action, r.entry_id, r.details, r.prev_hash, r.hash)
            for r in rows] == [(1, at, "sato", "approve", "e1", '{"n":1}', GENESIS, first),
                               (2, at, "system", "expire", None, "{}", first, second)]
    assert [r.seq for r in repo.audit_rows(1)] == [2]
    assert list(repo.audit_rows(2)) == []
    assert (repo.audit_hash(1), repo.audit_hash(2)) == (first, second)
    assert repo.audit_hash(3) is None and repo.audit_hash(0) is None


def test_trail_records_in_order_and_verifies(backend: Backend) -> None:
    repo = _open(backend)
    trail = _trail(backend, repo)
    seqs = [_record(trail, repo, T0 + i * DAY, Action.LOGIN, n=i) for i in range(5)]
    _record(trail, repo, T0 + 5 * DAY, Action.BACKUP, file="b1")
    assert seqs == [1, 2, 3, 4, 5]
    rows = list(repo.audit_rows())
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    assert repo.last_audit() == (6, rows[-1].hash)
    assert repo.last_audit_details(Action.LOGIN.value) == '{"n": 4}'
    assert repo.last_audit_details(Action.BACKUP.value) == '{"file": "b1"}'
    trail.anchor_head()
    report = trail.verify()
    assert report.ok and report.records == 6
    assert trail.report(T0, T0 + 3 * DAY)["records"] == 3


def test_free_text_is_kept_apart_with_its_entry(backend: Backend) -> None:
    """G-RET-1: the record holds the reason's SHA-256; the text is kept per entry."""
    repo = _open(backend)
    trail = _trail(backend, repo)
    with repo.unit_of_work():
        trail.record(actor="sato", action=Action.REJECT, at=T0, entry_id="e1",
                     details={"reason": REASON})
    digest = text_sha256(REASON)
    row = next(iter(repo.audit_rows()))
    assert REASON not in row.details and digest in row.details
    assert repo.audit_text("e1", digest) == REASON
    assert repo.audit_text("e2", digest) is None
    assert repo.audit_text("e1", "0" * 64) is None
    with repo.unit_of_work():
        repo.add_audit_text("e1", digest, "a second text under the same digest is ignored")
        repo.add_audit_text("e2", digest, REASON)
    assert repo.audit_text("e1", digest) == REASON
    assert repo.audit_text("e2", digest) == REASON


def test_prune_anchors_and_the_chain_still_verifies(backend: Backend) -> None:
    repo = _open(backend)
    trail = _trail(backend, repo)
    for i in range(6):
        _record(trail, repo, T0 + i * DAY, n=i)
    before = T0 + 3 * DAY + timedelta(hours=1)
    rows = list(repo.audit_rows())
    kept = trail.prune(before=before, now=T0 + 400 * DAY, actor="system",
                       keep=lambda row: row.seq == 3, details={"years": 1})
    assert kept == 2  # records 1 and 2; record 3 is kept, so nothing after it goes
    assert repo.audit_anchor() == (2, rows[1].hash)
    assert [r.seq for r in repo.audit_rows()] == [3, 4, 5, 6, 7]
    assert repo.last_audit_details(Action.AUDIT_PRUNED.value) is not None
    report = trail.verify()
    assert report.ok and report.records == 5
    assert trail.prune(before=before, now=T0 + 400 * DAY, actor="system",
                       keep=lambda row: row.seq == 3, details={}) == 0
    # Without the keep, records 3 and 4 go (5 is younger); the anchor moves on.
    assert trail.prune(before=before, now=T0 + 401 * DAY, actor="system",
                       keep=lambda row: False, details={}) == 2
    assert repo.audit_anchor() == (4, rows[3].hash)
    assert _record(trail, repo, T0 + 402 * DAY) == 9
    report = trail.verify()
    assert report.ok and report.records == 5


def test_prune_of_every_record_but_the_newest_continues_from_the_anchor(backend: Backend
                                                                       ) -> None:
    repo = _open(backend)
    trail = _trail(backend, repo)
    for i in range(3):
        _record(trail, repo, T0 + i * DAY)
    assert trail.prune(before=T0 + 100 * DAY, now=T0 + 100 * DAY, actor="system",
                       keep=lambda row: False, details={}) == 2
    assert [r.seq for r in repo.audit_rows()] == [3, 4]
    assert trail.verify().ok


def test_prune_audit_anchors_then_deletes_through_the_anchor(backend: Backend) -> None:
    repo = _open(backend)
    trail = _trail(backend, repo)
    for i in range(3):
        _record(trail, repo, T0 + i * DAY)
    first, second, _ = list(repo.audit_rows())
    with repo.unit_of_work():
        repo.prune_audit(2, second.hash, second.at, to_text(T0 + DAY), 2)
    assert repo.audit_anchor() == (2, second.hash)
    assert [r.seq for r in repo.audit_rows()] == [3]
    assert first.seq == 1


def test_prune_audit_refuses_an_anchor_that_is_no_record(backend: Backend) -> None:
    """PostgreSQL's `audit.prune` checks what SQLCipher's store leaves to the trail."""
    _postgres_only(backend)
    repo = _open(backend)
    trail = _trail(backend, repo)
    for i in range(3):
        _record(trail, repo, T0 + i * DAY)
    first = next(iter(repo.audit_rows()))
    for wrong in ((1, first.hash, first.at, 2),  # one record up to 1, not 2
                  (1, "f" * 64, first.at, 1),  # not its hash
                  (9, first.hash, first.at, 1)):  # no such record
        with pytest.raises(psycopg.errors.RaiseException, match="audit.prune"), \
                repo.unit_of_work():
            repo.prune_audit(wrong[0], wrong[1], wrong[2], to_text(T0), wrong[3])
    assert repo.audit_anchor() is None
    assert [r.seq for r in repo.audit_rows()] == [1, 2, 3]


def test_unit_of_work_rolls_back_records_texts_and_prunes(backend: Backend) -> None:
    repo = _open(backend)
    trail = _trail(backend, repo)
    _record(trail, repo, T0)
    _record(trail, repo, T0 + DAY)
    head = repo.last_audit()
    with pytest.raises(RuntimeError), repo.unit_of_work():
        trail.record(actor="sato", action=Action.REJECT, at=T0 + 2 * DAY, entry_id="e1",
                     details={"reason": REASON})
        first = next(iter(repo.audit_rows()))
        repo.prune_audit(1, first.hash, first.at, to_text(T0), 1)
        raise RuntimeError("the use case failed")
    assert repo.last_audit() == head
    assert repo.audit_anchor() is None
    assert repo.audit_text("e1", text_sha256(REASON)) is None
    assert [r.seq for r in repo.audit_rows()] == [1, 2]
    assert _record(trail, repo, T0 + 3 * DAY) == 3
    assert trail.verify().ok


def test_audit_rows_can_be_walked_while_writing(backend: Backend) -> None:
    """`prune` walks the rows while its `keep` may read; a walk left half-way is closed."""
    repo = _open(backend)
    trail = _trail(backend, repo)
    for i in range(5):
        _record(trail, repo, T0 + i * DAY)
    rows = repo.audit_rows()
    assert next(rows).seq == 1
    assert repo.last_audit() is not None and repo.audit_text("e", "0" * 64) is None
    assert next(rows).seq == 2
    rows.close()
    assert [r.seq for r in repo.audit_rows(3)] == [4, 5]


# --- PostgreSQL only: sealing and concurrent workers --------------------------------------------

def test_audit_text_is_sealed_to_its_row(backend: Backend) -> None:
    _postgres_only(backend)
    repo = _open(backend)
    digest = text_sha256(REASON)
    repo.add_audit_text("e1", digest, REASON)
    repo.add_audit_text("e2", digest, "another")
    blob = repo.connection.execute(
        "SELECT text FROM audit_texts WHERE entry_id = 'e1'").fetchone()[0]
    assert REASON.encode() not in blob and "山田".encode() not in blob
    repo.connection.execute("UPDATE audit_texts SET text = %s WHERE entry_id = 'e2'", (blob,))
    with pytest.raises(SealedIntegrityError, match="audit_texts.text") as refused:
        repo.audit_text("e2", digest)
    assert REASON not in str(refused.value)
    assert repo.audit_text("e1", digest) == REASON


class _PostgresAuditStore(PostgresUnitOfWork, PostgresAudit):
    """What an API worker's `AuditTrail` writes through on PostgreSQL (an `AuditStore`)."""


def test_postgres_audit_implements_the_audit_store_protocols() -> None:
    """Issue 14.3's contract: same members, same signatures (`_trail_on` is the typed use)."""
    assert _mismatches(AuditRepository, PostgresAudit) == []
    assert _mismatches(AuditStore, _PostgresAuditStore) == []
    assert issubclass(PostgresAudit, AuditRepository)


def _trail_on(store: _PostgresAuditStore, head: Path) -> AuditTrail:
    return AuditTrail(store, head)


def _workers(backend: Backend, count: int) -> list[_PostgresAuditStore]:
    """`count` repositories on their own application-role connections to one database."""
    database = backend.cluster().create_database(f"c{secrets.token_hex(6)}")
    with database.connect_owner() as owner:
        migrate(owner, app_role=database.app)
    fields = FieldSealer(new_master_key().derive("database-fields"))
    repos = []
    for _ in range(count):
        connection = prepare_session(database.connect_app())
        backend.stack.callback(connection.close)
        repos.append(_PostgresAuditStore(connection, fields))
    return repos


def test_two_workers_append_one_chain(backend: Backend) -> None:
    """Two API workers appending at once never both follow the same head (no fork)."""
    _postgres_only(backend)
    repos = _workers(backend, 2)
    per_worker = 50
    start = threading.Barrier(len(repos))
    failures: list[BaseException] = []

    def work(worker: int, repo: _PostgresAuditStore, head: Path) -> None:
        trail = _trail_on(repo, head)
        try:
            start.wait()
            for i in range(per_worker):
                with repo.unit_of_work():
                    trail.record(actor=f"worker{worker}", action=Action.ALERT_RECEIVED,
                                 at=T0 + timedelta(seconds=i), details={"i": i})
        except BaseException as error:  # noqa: BLE001 (reported by the main thread)
            failures.append(error)

    threads = [threading.Thread(target=work, args=(n, repo, backend.tmp_path / f"w{n}.head"))
               for n, repo in enumerate(repos)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    rows = list(repos[0].audit_rows())
    assert [r.seq for r in rows] == list(range(1, 2 * per_worker + 1))
    assert {r.actor for r in rows} == {"worker0", "worker1"}
    report = AuditTrail(repos[1], backend.tmp_path / "check.head").verify()
    assert report.ok and report.records == 2 * per_worker, report.problem


def test_a_record_prepared_on_a_stale_head_is_refused_not_forked(backend: Backend) -> None:
    """Outside a unit of work no lock spans the head read and the append: the append checks."""
    _postgres_only(backend)
    first, second = _workers(backend, 2)
    trail = AuditTrail(second, backend.tmp_path / "second.head")
    _record(trail, second, T0)
    stale = first.last_audit()  # autocommit: read, no lock held
    assert stale is not None
    _record(trail, second, T0 + DAY)
    at = to_text(T0 + 2 * DAY)
    digest = record_hash(stale[1], stale[0] + 1, at, "tanaka", "login", None, "{}")
    with pytest.raises(ConflictError, match="head moved"):
        first.append_audit(at, "tanaka", "login", None, "{}", stale[1], digest)
    assert [r.seq for r in first.audit_rows()] == [1, 2]
    assert trail.verify().ok
