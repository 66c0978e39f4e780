"""Joint use's storage on both back-ends (issue 15): scheme, outbound, inbound, emergencies.

Every method of `SchemeRepository`, `OutboundRepository`, `InboundRepository`
and `EmergencyShareRepository` is driven through the protocol only, on the
real SQLCipher repository and on the PostgreSQL stores over the application
role (`backend` fixture), so the same assertions describe both. The tests
named `*_postgres` check what only the server database has: the sealed
fields (G-SEC-2, G-SHR-6) and the per-member sequences kept straight when two
API workers write at the same moment (on SQLCipher one file lock serialises
every writer, so the race cannot happen there).

Seeding the users and entries the joint-use rows refer to is the one place
that writes SQL on PostgreSQL: those stores are another group's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
import sqlcipher3

from kernel.errors import ConflictError, SealedIntegrityError
from registry.clock import TimestampError
from registry.domain import (
    EmergencyCheck,
    EmergencyShare,
    Entry,
    EntryState,
    ErasureConfirmation,
    HeldCopy,
    ImportedEntry,
    InboundState,
    Role,
    SentBundle,
    SentItem,
)
from registry.keys.master import new_master_key
from registry.repository import (
    EmergencyShareRepository,
    InboundRepository,
    OutboundRepository,
    SchemeRepository,
)
from registry.storage.postgres.base import FieldSealer, PostgresUnitOfWork, prepare_session
from registry.storage.postgres.joint_use import (
    PostgresEmergencyShares,
    PostgresInbound,
    PostgresOutbound,
    PostgresSchemes,
)
from registry.storage.postgres.schema import migrate
from tests.registries import T0
from tests.registry.backends import Backend
from tests.registry.test_repository_contract import _mismatches

STORES = (PostgresSchemes, PostgresOutbound, PostgresInbound, PostgresEmergencyShares)
# A constraint the database enforces (a duplicate key, a blank sealed text) fails with the
# back-end's own integrity error, as it always did on SQLCipher.
INTEGRITY = (sqlcipher3.IntegrityError, psycopg.IntegrityError)
SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64
# A signed document is bytes, not text: NUL, invalid UTF-8, trailing spaces and CR LF must
# come back exactly or the signature no longer verifies (G-SHR-1).
SIGNED = b'{"scheme": 1}\x00\xff\xfe  \r\n\xc3'


def _open(backend: Backend) -> Any:
    return backend.open(*STORES)


def _seed_user(repo: Any, backend: Backend, name: str) -> int:
    """A staff member the rows can name (the users' store belongs to another group)."""
    if backend.name == "sqlcipher":
        return int(repo.add_user(name, Role.MANAGER, "!", T0).user_id)
    row = repo.connection.execute(
        "INSERT INTO users (username, password_hash, created_at) VALUES (%s, '!', %s) "
        "RETURNING user_id", (name, T0)).fetchone()
    return int(row[0])


def _seed_entry(repo: Any, backend: Backend, entry_id: str, proposer: int) -> str:
    """An active watchlist entry the joint-use rows can refer to."""
    if backend.name == "sqlcipher":
        repo.add_entry(Entry(entry_id, EntryState.ACTIVE, "store-1", "{}", "someone",
                             proposer, T0, None, None, "", T0 + timedelta(days=365), 1,
                             None, ""))
        return entry_id
    repo.connection.execute(
        "INSERT INTO entries (entry_id, state, store_id, features, display_name, proposed_by, "
        "proposed_at, decision_reason, closed_reason) "
        "VALUES (%s, 'active', 'store-1', '\\x00', '\\x00', %s, %s, '\\x00', '\\x00')",
        (entry_id, proposer, T0))
    return entry_id


@pytest.fixture
def seeded(backend: Backend) -> tuple[Any, int, list[str]]:
    """A repository with one user and three entries."""
    repo = _open(backend)
    user = _seed_user(repo, backend, "hanako")
    entries = [_seed_entry(repo, backend, f"e{n}", user) for n in range(3)]
    return repo, user, entries


@pytest.mark.parametrize(("protocol", "store"), [
    (SchemeRepository, PostgresSchemes), (OutboundRepository, PostgresOutbound),
    (InboundRepository, PostgresInbound), (EmergencyShareRepository, PostgresEmergencyShares),
], ids=lambda v: v.__name__)
def test_each_postgres_store_implements_its_protocol_exactly(protocol: type, store: type) -> None:
    """The contract test's check (issue 14.3) for these stores: same names, kinds, defaults
    and annotations as the protocol declares."""
    assert issubclass(store, protocol)
    assert _mismatches(protocol, store) == []


# --- SchemeRepository (G-SHR-1, G-SHR-4) ---------------------------------------------------


def test_adopted_schemes_keep_their_order_and_their_bytes(backend: Backend) -> None:
    repo = _open(backend)
    assert repo.adopted_schemes() == []
    assert repo.current_scheme_sha256() is None
    first, second = T0 + timedelta(microseconds=123456), T0 + timedelta(days=1)
    # Adopted out of time order: the newest adoption is the one in force, not the latest time.
    repo.add_adopted_scheme(SHA_B, second, SIGNED)
    repo.add_adopted_scheme(SHA_A, first, b"{}")
    assert repo.adopted_schemes() == [(SHA_B, second, SIGNED), (SHA_A, first, b"{}")]
    assert repo.current_scheme_sha256() == SHA_A
    assert all(at.utcoffset() == timedelta(0) for _, at, _ in repo.adopted_schemes())


def test_a_time_without_offset_is_refused_on_both(backend: Backend) -> None:
    repo = _open(backend)
    with pytest.raises(TimestampError):
        repo.add_adopted_scheme(SHA_A, datetime(2026, 1, 1, 9, 0), b"{}")  # noqa: DTZ001
    assert repo.adopted_schemes() == []


# --- OutboundRepository (G-SHR-7, G-SHR-4, G-REG-4) ----------------------------------------


def _bundle(member: str, sha: str, sequence: int, at: datetime,
            *items: SentItem) -> SentBundle:
    return SentBundle(member, sha, sequence, at, items)


def test_sent_bundles_per_member_in_time_then_sequence_order(
        seeded: tuple[Any, int, list[str]]) -> None:
    repo, _, (e0, e1, e2) = seeded
    # Items come back in the order written, not sorted by id or kind.
    one = _bundle("shop-b", SHA_A, 1, T0, SentItem(e2, "tombstone", 3),
                  SentItem(e0, "entry", 1), SentItem(e1, "suspend", 2))
    two = _bundle("shop-b", SHA_B, 2, T0, SentItem(e0, "correction", 2))
    later = _bundle("shop-b", SHA_C, 3, T0 + timedelta(hours=1))
    other = _bundle("shop-c", SHA_A, 1, T0 + timedelta(minutes=5), SentItem(e1, "entry", 1))
    for bundle in (later, two, other, one):
        repo.add_sent_bundle(bundle)
    assert repo.sent_bundles("shop-b") == [one, two, later]
    assert repo.sent_bundles("shop-c") == [other]
    assert repo.sent_bundles("shop-z") == []


def test_the_same_bundle_twice_is_refused(seeded: tuple[Any, int, list[str]]) -> None:
    repo, _, (e0, _e1, _e2) = seeded
    repo.add_sent_bundle(_bundle("shop-b", SHA_A, 1, T0, SentItem(e0, "entry", 1)))
    with pytest.raises(INTEGRITY):
        repo.add_sent_bundle(_bundle("shop-b", SHA_A, 2, T0))
    assert [b.sequence for b in repo.sent_bundles("shop-b")] == [1]


def test_acknowledging_drops_the_bundles_it_covers(seeded: tuple[Any, int, list[str]]) -> None:
    repo, _, (e0, e1, _e2) = seeded
    assert repo.last_acked_sequence("shop-b") == 0
    for n, sha in enumerate((SHA_A, SHA_B, SHA_C), start=1):
        repo.add_sent_bundle(_bundle("shop-b", sha, n, T0 + timedelta(minutes=n),
                                     SentItem(e0, "entry", n), SentItem(e1, "entry", n)))
    repo.add_sent_bundle(_bundle("shop-c", SHA_A, 1, T0, SentItem(e0, "entry", 1)))
    repo.acknowledge_bundle("shop-b", 2, T0 + timedelta(hours=1))
    assert repo.last_acked_sequence("shop-b") == 2
    assert [(b.sequence, len(b.items)) for b in repo.sent_bundles("shop-b")] == [(3, 2)]
    assert [b.sequence for b in repo.sent_bundles("shop-c")] == [1]  # another member's
    assert repo.last_acked_sequence("shop-c") == 0
    repo.acknowledge_bundle("shop-b", 3, T0 + timedelta(hours=2))
    assert repo.last_acked_sequence("shop-b") == 3
    assert repo.sent_bundles("shop-b") == []


def test_held_copies_are_replaced_per_member_and_entry(
        seeded: tuple[Any, int, list[str]]) -> None:
    repo, _, (e0, e1, _e2) = seeded
    assert repo.held_copies("shop-b") == {}
    repo.set_held_copy(HeldCopy("shop-b", e0, 1, False, False))
    repo.set_held_copy(HeldCopy("shop-b", e1, 1, True, False))
    repo.set_held_copy(HeldCopy("shop-c", e0, 1, False, False))
    repo.set_held_copy(HeldCopy("shop-b", e0, 4, True, True))
    assert repo.held_copies("shop-b") == {e0: HeldCopy("shop-b", e0, 4, True, True),
                                          e1: HeldCopy("shop-b", e1, 1, True, False)}
    assert repo.held_copies("shop-c") == {e0: HeldCopy("shop-c", e0, 1, False, False)}


def test_the_first_erasure_confirmation_per_member_stays(
        seeded: tuple[Any, int, list[str]]) -> None:
    repo, _, (e0, e1, _e2) = seeded
    assert repo.erasure_confirmations(e0) == []
    at = T0 + timedelta(days=2, microseconds=7)
    shop_c = ErasureConfirmation(e0, "shop-c", 4, at, at + timedelta(hours=1))
    shop_b = ErasureConfirmation(e0, "shop-b", 2, at, at + timedelta(hours=2))
    repo.add_erasure_confirmation(shop_c)
    repo.add_erasure_confirmation(shop_b)
    repo.add_erasure_confirmation(replace(shop_b, sequence=9, recorded_at=at))  # a replay
    repo.add_erasure_confirmation(ErasureConfirmation(e1, "shop-b", 3, at, at))
    assert repo.erasure_confirmations(e0) == [shop_b, shop_c]  # by member


# --- InboundRepository (G-SHR-1, G-SHR-2) ---------------------------------------------------


def _imported(entry_id: str, origin_entry: str, revision: int = 1) -> ImportedEntry:
    return ImportedEntry(entry_id, "shop-b", origin_entry, revision, T0 + timedelta(days=300),
                         T0 + timedelta(minutes=1), T0 + timedelta(minutes=1))


def test_imported_entries_round_trip_and_update(seeded: tuple[Any, int, list[str]]) -> None:
    repo, _, (e0, e1, _e2) = seeded
    assert repo.imported_entry(e0) is None
    assert repo.imported_by_origin("shop-b", "o-1") is None
    assert repo.imported_entry_ids() == set()
    first = _imported(e0, "o-1")
    repo.add_imported_entry(first)
    repo.add_imported_entry(_imported(e1, "o-2"))
    assert repo.imported_entry(e0) == first
    assert repo.imported_by_origin("shop-b", "o-1") == first
    assert repo.imported_by_origin("shop-c", "o-1") is None
    assert repo.imported_entry_ids() == {e0, e1}
    # A correction changes the revision, the expiry and the update time, nothing else.
    corrected = replace(first, origin_member="shop-x", origin_entry_id="o-x", origin_revision=2,
                        origin_expires_at=T0 + timedelta(days=400),
                        imported_at=T0 + timedelta(days=9), updated_at=T0 + timedelta(days=1))
    repo.update_imported_entry(corrected)
    assert repo.imported_entry(e0) == replace(first, origin_revision=2,
                                              origin_expires_at=T0 + timedelta(days=400),
                                              updated_at=T0 + timedelta(days=1))
    repo.update_imported_entry(_imported("nowhere", "o-9"))  # no such import: nothing
    assert repo.imported_entry_ids() == {e0, e1}


def test_a_superseded_import_frees_its_origin(seeded: tuple[Any, int, list[str]]) -> None:
    repo, _, (e0, e1, e2) = seeded
    repo.add_imported_entry(_imported(e0, "o-1"))
    with pytest.raises(INTEGRITY):  # one live copy per origin entry
        repo.add_imported_entry(_imported(e1, "o-1"))
    with pytest.raises(INTEGRITY):  # one import per local entry
        repo.add_imported_entry(_imported(e0, "o-5"))
    repo.supersede_imported_entry(e0)
    repo.supersede_imported_entry("nowhere")
    assert repo.imported_by_origin("shop-b", "o-1") is None
    assert repo.imported_entry(e0) == _imported(e0, "o-1")  # still known by its local id
    repo.add_imported_entry(_imported(e2, "o-1", revision=3))
    assert repo.imported_by_origin("shop-b", "o-1") == _imported(e2, "o-1", revision=3)
    assert repo.imported_entry_ids() == {e0, e2}


def test_the_intake_user_is_created_once(seeded: tuple[Any, int, list[str]]) -> None:
    repo, user, _ = seeded
    intake = repo.joint_use_intake_user(T0)
    assert intake != user
    assert repo.joint_use_intake_user(T0 + timedelta(days=1)) == intake
    with repo.unit_of_work():
        assert repo.joint_use_intake_user(T0 + timedelta(days=2)) == intake


def test_inbound_state_per_member(backend: Backend) -> None:
    repo = _open(backend)
    assert repo.inbound_state("shop-b") is None
    assert repo.inbound_states() == []
    shop_c = InboundState("shop-c", 1, SHA_A, T0, SIGNED)
    shop_b = InboundState("shop-b", 1, SHA_B, T0 + timedelta(microseconds=1), b"receipt 1")
    repo.set_inbound_state(shop_c)
    repo.set_inbound_state(shop_b)
    assert repo.inbound_state("shop-c") == shop_c  # the signed receipt, byte for byte
    assert repo.inbound_states() == [shop_b, shop_c]
    applied = InboundState("shop-b", 2, SHA_C, T0 + timedelta(hours=1), b"receipt 2")
    repo.set_inbound_state(applied)
    assert repo.inbound_states() == [applied, shop_c]


# --- EmergencyShareRepository (G-SHR-6) -----------------------------------------------------


def _share(entry_id: str, user: int, share_id: str = "s-1") -> EmergencyShare:
    return EmergencyShare(share_id, entry_id, "Osaka Prefectural Police, Naniwa station",
                          user, T0, "open", None)


def _check(user: int, at: datetime, share_id: str = "s-1") -> EmergencyCheck:
    return EmergencyCheck(share_id, user, Role.MANAGER, f"danger seen by {user}",
                          "no other way to protect the staff", "one entry, one station", at)


def test_an_emergency_share_and_its_state(seeded: tuple[Any, int, list[str]]) -> None:
    repo, user, (e0, _e1, _e2) = seeded
    assert repo.emergency_share("s-1") is None
    share = _share(e0, user)
    repo.add_emergency_share(share)
    assert repo.emergency_share("s-1") == share
    provided = T0 + timedelta(hours=2, microseconds=5)
    repo.set_emergency_share_state("s-1", "provided", provided)
    assert repo.emergency_share("s-1") == replace(share, state="provided", provided_at=provided)
    repo.set_emergency_share_state("s-1", "cancelled", None)
    assert repo.emergency_share("s-1") == replace(share, state="cancelled")
    repo.set_emergency_share_state("s-9", "provided", provided)  # unknown: nothing
    assert repo.emergency_share("s-9") is None
    with pytest.raises(INTEGRITY):
        repo.add_emergency_share(share)
    with pytest.raises(INTEGRITY):  # a recipient must be named (the schema's CHECK)
        repo.add_emergency_share(replace(share, share_id="s-2", recipient="  "))
    assert repo.emergency_share("s-2") is None


def test_emergency_checks_in_time_order(backend: Backend,
                                        seeded: tuple[Any, int, list[str]]) -> None:
    repo, user, (e0, _e1, _e2) = seeded
    second_user = _seed_user(repo, backend, "taro")
    repo.add_emergency_share(_share(e0, user))
    assert repo.emergency_checks("s-1") == []
    late, early = _check(user, T0 + timedelta(minutes=9)), _check(second_user, T0)
    repo.add_emergency_check(late)
    repo.add_emergency_check(replace(early, role=Role.ADMIN))
    assert repo.emergency_checks("s-1") == [replace(early, role=Role.ADMIN), late]
    assert repo.emergency_checks("s-9") == []
    with pytest.raises(INTEGRITY):  # one check per person
        repo.add_emergency_check(replace(late, checked_at=T0 + timedelta(hours=1)))
    with pytest.raises(INTEGRITY):  # each requirement needs its reason
        repo.add_emergency_check(replace(late, user_id=second_user + 1000, necessity=" \n"))
    assert len(repo.emergency_checks("s-1")) == 2


# --- one transaction for the whole aggregate -----------------------------------------------


def test_a_failed_unit_of_work_leaves_no_joint_use_row(
        seeded: tuple[Any, int, list[str]]) -> None:
    repo, user, (e0, e1, _e2) = seeded
    with pytest.raises(RuntimeError, match="boom"), repo.unit_of_work():
        repo.add_adopted_scheme(SHA_A, T0, SIGNED)
        repo.add_sent_bundle(_bundle("shop-b", SHA_A, 1, T0, SentItem(e0, "entry", 1)))
        repo.acknowledge_bundle("shop-c", 4, T0)
        repo.set_held_copy(HeldCopy("shop-b", e0, 1, False, False))
        repo.add_erasure_confirmation(ErasureConfirmation(e0, "shop-b", 1, T0, T0))
        repo.add_imported_entry(_imported(e1, "o-1"))
        repo.set_inbound_state(InboundState("shop-b", 1, SHA_B, T0, SIGNED))
        repo.add_emergency_share(_share(e0, user))
        repo.add_emergency_check(_check(user, T0))
        raise RuntimeError("boom")
    assert repo.adopted_schemes() == []
    assert repo.sent_bundles("shop-b") == []
    assert repo.last_acked_sequence("shop-c") == 0
    assert repo.held_copies("shop-b") == {}
    assert repo.erasure_confirmations(e0) == []
    assert repo.imported_entry_ids() == set()
    assert repo.inbound_states() == []
    assert repo.emergency_share("s-1") is None
    assert repo.emergency_checks("s-1") == []


# --- PostgreSQL only: sealed fields (G-SEC-2, G-SHR-6) -------------------------------------


def _postgres_only(backend: Backend) -> None:
    if backend.name != "postgres":
        pytest.skip("the server database's own guarantee; SQLCipher encrypts the whole file")


def test_recipient_and_reasons_are_sealed_to_their_row_postgres(
        backend: Backend, seeded: tuple[Any, int, list[str]]) -> None:
    _postgres_only(backend)
    repo, user, (e0, e1, _e2) = seeded
    db = repo.connection
    repo.add_emergency_share(_share(e0, user, "s-1"))
    repo.add_emergency_share(replace(_share(e1, user, "s-2"), recipient="Kyoto station"))
    repo.add_emergency_check(_check(user, T0, "s-1"))
    repo.add_emergency_check(replace(_check(user, T0, "s-2"), necessity="another reason"))
    raw = {r[0]: bytes(r[1]) for r in db.execute(
        "SELECT share_id, recipient FROM emergency_shares").fetchall()}
    assert b"Osaka" not in raw["s-1"] and b"Kyoto" not in raw["s-2"]
    reasons = db.execute("SELECT present_danger, necessity, proportionality "
                         "FROM emergency_share_checks WHERE share_id = 's-1'").fetchone()
    for clear, blob in zip((b"danger seen", b"no other way", b"one station"), reasons,
                           strict=True):
        assert clear not in bytes(blob)
    # Someone with write access moves one share's recipient onto another: refused, not shown.
    db.execute("UPDATE emergency_shares SET recipient = %s WHERE share_id = 's-2'",
               (raw["s-1"],))
    with pytest.raises(SealedIntegrityError):
        repo.emergency_share("s-2")
    # ... or one person's reason onto another person's check of the same share ...
    other = _seed_user(repo, backend, "taro")
    repo.add_emergency_check(_check(other, T0 + timedelta(minutes=1), "s-2"))
    db.execute("UPDATE emergency_share_checks SET necessity = (SELECT necessity FROM "
               "emergency_share_checks WHERE share_id = 's-2' AND user_id = %s) "
               "WHERE share_id = 's-2' AND user_id = %s", (user, other))
    with pytest.raises(SealedIntegrityError):
        repo.emergency_checks("s-2")
    # ... or one reason into another column of the same check.
    db.execute("UPDATE emergency_share_checks SET necessity = present_danger "
               "WHERE share_id = 's-1'")
    with pytest.raises(SealedIntegrityError):
        repo.emergency_checks("s-1")
    # Signed documents are stored as they are, byte for byte (NOT_PERSONAL_BYTEA).
    repo.add_adopted_scheme(SHA_A, T0, SIGNED)
    repo.set_inbound_state(InboundState("shop-b", 1, SHA_B, T0, SIGNED))
    assert bytes(db.execute("SELECT content FROM joint_use_schemes").fetchone()[0]) == SIGNED
    assert bytes(db.execute("SELECT receipt FROM joint_use_inbound").fetchone()[0]) == SIGNED


def test_the_intake_user_can_never_log_in_postgres(
        backend: Backend, seeded: tuple[Any, int, list[str]]) -> None:
    _postgres_only(backend)
    repo, _, _ = seeded
    intake = repo.joint_use_intake_user(T0)
    row = repo.connection.execute(
        "SELECT u.username, u.password_hash, u.active, u.store_id, r.role, r.store_id "
        "FROM users u JOIN user_roles r USING (user_id) WHERE user_id = %s",
        (intake,)).fetchall()
    assert row == [("joint-use:intake", "!", False, None, "staff", None)]


# --- PostgreSQL only: two API workers at once -----------------------------------------------


@pytest.fixture
def workers(backend: Backend) -> Iterator[tuple[Any, Any]]:
    """Two application-role connections to one freshly migrated database: two API workers."""
    _postgres_only(backend)
    database = backend.cluster().create_database("w" + str(time.monotonic_ns()))
    with database.connect_owner() as owner:
        migrate(owner, app_role=database.app)
    fields = FieldSealer(new_master_key().derive("database-fields"))
    composed = type("TwoWorkers", (PostgresUnitOfWork, *STORES), {})
    repos = []
    for _ in range(2):
        connection = prepare_session(database.connect_app())
        backend.stack.callback(connection.close)
        repos.append(composed(connection, fields))
    user = _seed_user(repos[0], backend, "hanako")
    _seed_entry(repos[0], backend, "e0", user)
    yield repos[0], repos[1]


def _race(first: Any, second: Any, write_first: Callable[[Any], None],
          write_second: Callable[[Any], object]) -> object:
    """`first` writes inside an open transaction; `second` writes the same thing meanwhile
    (and waits on `first`'s row lock); `first` commits; what `second` got comes back."""
    outcome: list[object] = []

    def later() -> None:
        try:
            with second.unit_of_work():
                outcome.append(write_second(second))
        except Exception as exc:  # noqa: BLE001 - handed back to the test thread
            outcome.append(exc)

    with first.unit_of_work():
        write_first(first)
        thread = threading.Thread(target=later)
        thread.start()
        deadline = time.monotonic() + 10
        while not first.connection.execute(  # the second worker waits on our lock
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()").fetchone()[0]:
            assert time.monotonic() < deadline, "the second worker never waited"
            time.sleep(0.02)
    thread.join(10)
    assert not thread.is_alive()
    return outcome[0]


def test_two_workers_cannot_both_send_bundle_n_postgres(workers: tuple[Any, Any]) -> None:
    first, second = workers
    got = _race(first, second,
                lambda r: r.add_sent_bundle(_bundle("shop-b", SHA_A, 1, T0,
                                                    SentItem("e0", "entry", 1))),
                lambda r: r.add_sent_bundle(_bundle("shop-b", SHA_B, 1, T0,
                                                    SentItem("e0", "entry", 1))))
    assert isinstance(got, ConflictError)
    assert [(b.bundle_sha256, b.sequence) for b in first.sent_bundles("shop-b")] == [(SHA_A, 1)]


def test_two_workers_cannot_both_apply_bundle_n_postgres(workers: tuple[Any, Any]) -> None:
    first, second = workers
    mine = InboundState("shop-b", 1, SHA_A, T0, b"receipt A")
    got = _race(first, second, lambda r: r.set_inbound_state(mine),
                lambda r: r.set_inbound_state(replace(mine, bundle_sha256=SHA_B,
                                                      receipt=b"receipt B")))
    assert isinstance(got, ConflictError)
    assert first.inbound_states() == [mine]


def test_the_acknowledged_sequence_never_moves_back_postgres(workers: tuple[Any, Any]) -> None:
    first, second = workers
    for n, sha in ((1, SHA_A), (2, SHA_B)):
        first.add_sent_bundle(_bundle("shop-b", sha, n, T0))
    got = _race(first, second, lambda r: r.acknowledge_bundle("shop-b", 2, T0),
                lambda r: r.acknowledge_bundle("shop-b", 1, T0))
    assert isinstance(got, ConflictError)
    assert first.last_acked_sequence("shop-b") == 2
    assert first.sent_bundles("shop-b") == []


def test_two_workers_share_one_intake_user_postgres(workers: tuple[Any, Any]) -> None:
    first, second = workers
    created: list[int] = []
    got = _race(first, second, lambda r: created.append(r.joint_use_intake_user(T0)),
                lambda r: r.joint_use_intake_user(T0))
    assert got == created[0]
