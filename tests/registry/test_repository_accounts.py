"""Staff, web sessions, the login lockout and edge devices on every back-end (issue 15).

`UserRepository`, `SessionRepository` and `DeviceRepository` through their
methods only: the same assertions hold on SQLCipher's real encrypted files
(proving they describe today's behaviour) and on PostgreSQL's stores composed
over the application role's connection to a freshly migrated database.
G-SEC-1 (named staff with roles and training), G-SEC-2 (sessions and device
tokens held as hashes only, the lockout keyed by a hash of the typed name).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
import sqlcipher3

from kernel.errors import ConflictError, NotFoundError
from registry.clock import TimestampError
from registry.domain import BoxStatus, Device, LoginFailures, Role, Store, User, WebSession
from registry.repository import DeviceRepository, SessionRepository, UserRepository
from registry.storage.postgres.devices import PostgresDevices
from registry.storage.postgres.stores import PostgresStores
from registry.storage.postgres.users import PostgresSessions, PostgresUsers
from tests.registry.backends import Backend
from tests.registry.test_repository_contract import _mismatches

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
JST = datetime(2026, 4, 1, 18, 0, tzinfo=ZoneInfo("Asia/Tokyo"))  # an offset other than UTC
# A duplicate key or a missing reference: each back-end's own integrity error, as SQLCipher's
# stores let it through (the services check for duplicates before writing).
INTEGRITY = (sqlcipher3.IntegrityError, psycopg.IntegrityError)
STORES = (PostgresStores, PostgresUsers, PostgresSessions, PostgresDevices)
STORE = "ginza"  # boxes stand in a store (issue 15, item 1)


def _open(backend: Backend) -> Any:
    """The stores of this file over a fresh database, with one store, `STORE`."""
    repo = backend.open(*STORES)
    repo.add_store(Store(STORE, "Ginza"), T0)
    return repo


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _session(user_id: int, name: str, *, last_seen: datetime = T0,
             expires: datetime = T0 + timedelta(hours=12)) -> WebSession:
    return WebSession(session_id=_hash(name), user_id=user_id, created_at=T0,
                      last_seen_at=last_seen, csrf_token="c" * 43, expires_at=expires)


def test_each_postgres_store_implements_its_protocol_on_its_own() -> None:
    """The contract's signature check (names, kinds, defaults, annotations) per store."""
    for protocol, store in ((UserRepository, PostgresUsers),
                            (SessionRepository, PostgresSessions),
                            (DeviceRepository, PostgresDevices)):
        assert issubclass(store, protocol)
        assert _mismatches(protocol, store) == []


# --- users (G-SEC-1) -----------------------------------------------------------------


def test_a_user_is_found_by_name_and_by_id(backend: Backend) -> None:
    repo = _open(backend)
    added = repo.add_user("tanaka", Role.MANAGER, "argon2$tanaka", T0)
    assert added.user_id > 0
    assert added == User(added.user_id, "tanaka", Role.MANAGER, None, True)
    assert repo.user_by_name("tanaka") == added
    assert repo.user_by_id(added.user_id) == added
    assert repo.password_hash_of("tanaka") == "argon2$tanaka"
    assert repo.username_of(added.user_id) == "tanaka"
    assert repo.user_by_name("sato") is None
    assert repo.user_by_id(added.user_id + 1) is None
    assert repo.password_hash_of("sato") is None
    with pytest.raises(NotFoundError, match=f"no user with id {added.user_id + 1}"):
        repo.username_of(added.user_id + 1)


def test_users_are_listed_by_name_in_byte_order(backend: Backend) -> None:
    """SQLite compares text byte by byte: '-' < '_' < letters, whatever the server's locale."""
    repo = _open(backend)
    for name, role in (("sato", Role.STAFF), ("ab_c", Role.ADMIN), ("abd", Role.AUDITOR),
                       ("ab-e", Role.MANAGER)):
        repo.add_user(name, role, f"hash-{name}", T0)
    listed = repo.users()
    assert [(u.username, u.role) for u in listed] == [
        ("ab-e", Role.MANAGER), ("ab_c", Role.ADMIN), ("abd", Role.AUDITOR), ("sato", Role.STAFF)]
    assert len({u.user_id for u in listed}) == 4
    assert backend.open(*STORES).users() == []  # a fresh repository has no users


def test_a_users_password_training_role_and_activity_change_alone(backend: Backend) -> None:
    repo = _open(backend)
    user = repo.add_user("tanaka", Role.STAFF, "old", T0)
    other = repo.add_user("sato", Role.STAFF, "other", T0)
    repo.set_password_hash(user.user_id, "new")
    repo.set_trained(user.user_id, JST)
    repo.set_role(user.user_id, Role.MANAGER)
    repo.set_active(user.user_id, False)
    changed = repo.user_by_id(user.user_id)
    assert changed == User(user.user_id, "tanaka", Role.MANAGER, JST, False)
    assert changed.trained_at.tzinfo == UTC  # the same instant, read back in UTC
    assert repo.password_hash_of("tanaka") == "new"
    repo.set_active(user.user_id, True)
    assert repo.user_by_name("tanaka").active is True
    assert repo.user_by_id(other.user_id) == other
    assert repo.password_hash_of("sato") == "other"


def test_changing_an_unknown_user_changes_nothing(backend: Backend) -> None:
    repo = _open(backend)
    user = repo.add_user("tanaka", Role.STAFF, "hash", T0)
    missing = user.user_id + 100
    repo.set_password_hash(missing, "x")
    repo.set_trained(missing, T0)
    repo.set_role(missing, Role.ADMIN)
    repo.set_active(missing, False)
    assert repo.users() == [user]
    assert repo.user_by_id(missing) is None


def test_a_user_name_is_taken_once(backend: Backend) -> None:
    repo = _open(backend)
    first = repo.add_user("tanaka", Role.STAFF, "first", T0)
    with pytest.raises(INTEGRITY):
        repo.add_user("tanaka", Role.ADMIN, "second", T0)
    assert repo.users() == [first]
    assert repo.password_hash_of("tanaka") == "first"


def test_a_time_without_offset_or_out_of_range_is_refused(backend: Backend) -> None:
    """registry.clock's range (2000..2199 UTC) and offsets hold on every back-end alike."""
    repo = _open(backend)
    with pytest.raises(TimestampError, match="offset"):
        repo.add_user("tanaka", Role.STAFF, "hash", datetime(2026, 4, 1, 9, 0))
    user = repo.add_user("sato", Role.STAFF, "hash", T0)
    with pytest.raises(TimestampError, match="outside"):
        repo.set_trained(user.user_id, datetime(2300, 1, 1, tzinfo=UTC))
    with pytest.raises(TimestampError, match="outside"):
        repo.record_login_failure(_hash("sato"), datetime(1999, 12, 31, tzinfo=UTC))
    assert repo.users() == [user]
    assert repo.login_failures(_hash("sato")) is None


# --- web sessions (G-SEC-2) ----------------------------------------------------------


def test_a_web_session_is_read_back_and_touched(backend: Backend) -> None:
    repo = _open(backend)
    user = repo.add_user("tanaka", Role.STAFF, "hash", T0)
    session = _session(user.user_id, "token-1", expires=JST + timedelta(hours=8))
    repo.add_web_session(session)
    assert repo.web_session(session.session_id) == session
    assert repo.web_session(_hash("token-2")) is None
    repo.touch_web_session(session.session_id, T0 + timedelta(minutes=5))
    assert repo.web_session(session.session_id) == replace(
        session, last_seen_at=T0 + timedelta(minutes=5))
    repo.touch_web_session(_hash("token-2"), T0)  # an unknown session: nothing happens
    assert repo.web_session(_hash("token-2")) is None


def test_a_session_id_is_used_once_and_needs_a_user(backend: Backend) -> None:
    repo = _open(backend)
    user = repo.add_user("tanaka", Role.STAFF, "hash", T0)
    repo.add_web_session(_session(user.user_id, "token-1"))
    with pytest.raises(INTEGRITY):
        repo.add_web_session(_session(user.user_id, "token-1", last_seen=T0 + timedelta(1)))
    with pytest.raises(INTEGRITY):
        repo.add_web_session(_session(user.user_id + 1, "token-2"))
    assert repo.web_session(_hash("token-1")) == _session(user.user_id, "token-1")
    assert repo.web_session(_hash("token-2")) is None


def test_sessions_are_deleted_one_by_one_when_stale_or_all_at_once(backend: Backend) -> None:
    """Stale: idle since before `idle_before` (strictly) or at/after its absolute end."""
    repo = _open(backend)
    user = repo.add_user("tanaka", Role.STAFF, "hash", T0)
    idle_before, now = T0 + timedelta(minutes=30), T0 + timedelta(hours=2)
    sessions = {
        "idle": _session(user.user_id, "idle", last_seen=idle_before - timedelta(seconds=1)),
        "edge": _session(user.user_id, "edge", last_seen=idle_before),
        "ended": _session(user.user_id, "ended", last_seen=now, expires=now),
        "live": _session(user.user_id, "live", last_seen=now,
                         expires=now + timedelta(microseconds=1)),
    }
    for session in sessions.values():
        repo.add_web_session(session)
    assert repo.delete_stale_web_sessions(idle_before=idle_before, now=now) == 2
    kept = {name for name, s in sessions.items() if repo.web_session(s.session_id)}
    assert kept == {"edge", "live"}
    assert repo.delete_stale_web_sessions(idle_before=idle_before, now=now) == 0
    repo.delete_web_session(sessions["edge"].session_id)
    repo.delete_web_session(_hash("never"))  # unknown: nothing happens
    assert repo.web_session(sessions["edge"].session_id) is None
    assert repo.web_session(sessions["live"].session_id) == sessions["live"]
    repo.add_web_session(sessions["idle"])
    assert repo.delete_all_web_sessions() == 2
    assert repo.delete_all_web_sessions() == 0
    assert repo.web_session(sessions["live"].session_id) is None


# --- the login lockout (G-SEC-2) -------------------------------------------------------


def test_login_failures_are_counted_locked_and_cleared_per_name(backend: Backend) -> None:
    repo = _open(backend)
    key, other = _hash("tanaka"), _hash("tanak")
    assert repo.login_failures(key) is None
    assert repo.record_login_failure(key, T0) == 1
    assert repo.record_login_failure(key, JST) == 2
    assert repo.record_login_failure(other, T0) == 1
    assert repo.login_failures(key) == LoginFailures(key, 2, JST, None)
    until = T0 + timedelta(minutes=15)
    repo.lock_login(key, until)
    assert repo.login_failures(key) == LoginFailures(key, 2, JST, until)
    assert repo.record_login_failure(key, JST + timedelta(seconds=1)) == 3
    assert repo.login_failures(key) == LoginFailures(key, 3, JST + timedelta(seconds=1), until)
    repo.lock_login(_hash("nobody"), until)  # no failures, no row: nothing to lock
    assert repo.login_failures(_hash("nobody")) is None
    repo.clear_login_failures(key)
    assert repo.login_failures(key) is None
    assert repo.login_failures(other) == LoginFailures(other, 1, T0, None)
    assert repo.record_login_failure(key, T0) == 1  # counting starts again


def test_old_login_failures_are_pruned_unless_still_locked(backend: Backend) -> None:
    repo = _open(backend)
    before, now = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    rows = {"old": T0, "old-locked": T0, "old-lock-over": T0, "edge": before, "new": now}
    for name, at in rows.items():
        repo.record_login_failure(_hash(name), at)
    repo.lock_login(_hash("old-locked"), now + timedelta(microseconds=1))
    repo.lock_login(_hash("old-lock-over"), now)
    assert repo.prune_login_failures(last_failure_before=before, now=now) == 2
    kept = {name for name in rows if repo.login_failures(_hash(name))}
    assert kept == {"old-locked", "edge", "new"}
    assert repo.prune_login_failures(last_failure_before=before, now=now) == 0


# --- stores (issue 15, item 1) --------------------------------------------------------


def test_stores_are_added_once_found_and_listed_by_id(backend: Backend) -> None:
    repo = backend.open(*STORES)
    before = repo.stores()  # SQLCipher holds its installation's own store from migration 12
    for store in (Store("umeda", "梅田店"), Store("a-1", "Airport"), Store("a_2", "Asakusa")):
        repo.add_store(store, T0)
    with pytest.raises(ConflictError, match="umeda"):
        repo.add_store(Store("umeda", "another name"), T0)
    assert repo.store("umeda") == Store("umeda", "梅田店")
    assert repo.store("kobe") is None
    added = [s for s in repo.stores() if s not in before]
    assert [s.store_id for s in added] == ["a-1", "a_2", "umeda"]  # byte order, as SQLite


def test_a_user_belongs_to_a_store_or_to_the_chain_office(backend: Backend) -> None:
    """G-SEC-1: one role per user, scoped to their store; None is the chain office."""
    repo = _open(backend)
    clerk = repo.add_user("suzuki", Role.STAFF, "hash", T0, STORE)
    office = repo.add_user("tanaka", Role.MANAGER, "hash", T0)
    assert clerk == User(clerk.user_id, "suzuki", Role.STAFF, None, True, STORE)
    assert office.store_id is None and office.chain_wide and not clerk.chain_wide
    assert repo.user_by_name("suzuki") == clerk
    assert repo.user_by_id(office.user_id) == office
    repo.set_role(clerk.user_id, Role.MANAGER)
    assert repo.user_by_id(clerk.user_id) == replace(clerk, role=Role.MANAGER)
    assert [(u.username, u.store_id) for u in repo.users()] == [
        ("suzuki", STORE), ("tanaka", None)]
    with pytest.raises(INTEGRITY):
        repo.add_user("sato", Role.STAFF, "hash", T0, "no-such-store")


def test_devices_stand_in_their_store_and_status_reports_filter_by_it(
        backend: Backend) -> None:
    repo = _open(backend)
    repo.add_store(Store("umeda", "Umeda"), T0)
    ginza_box = repo.add_device("ginza-door", _hash("g"), T0, STORE)
    umeda_box = repo.add_device("umeda-door", _hash("u"), T0, "umeda")
    assert (ginza_box.store_id, umeda_box.store_id) == (STORE, "umeda")
    assert repo.device_by_token_hash(_hash("u")) == umeda_box
    assert [(d.name, d.store_id) for d in repo.devices()] == [
        ("ginza-door", STORE), ("umeda-door", "umeda")]
    with pytest.raises(INTEGRITY):
        repo.add_device("kobe-door", _hash("k"), T0, "no-such-store")
    for name in ("ginza-door", "umeda-door"):
        repo.record_box_status(_report(name, T0))
    assert [b.device for b in repo.box_statuses(STORE)] == ["ginza-door"]
    assert [b.device for b in repo.box_statuses("umeda")] == ["umeda-door"]
    assert [b.device for b in repo.box_statuses()] == ["ginza-door", "umeda-door"]
    assert repo.box_statuses("kobe") == []


# --- devices (G-SEC-2) -----------------------------------------------------------------


def test_a_device_is_found_by_name_and_by_token_hash(backend: Backend) -> None:
    repo = _open(backend)
    added = repo.add_device("entrance-box", _hash("token"), JST, STORE)
    assert added.device_id > 0
    assert added == Device(added.device_id, "entrance-box", JST, True, STORE)
    assert added.created_at.tzinfo == UTC
    assert repo.device_by_name("entrance-box") == added
    assert repo.device_by_token_hash(_hash("token")) == added
    assert repo.device_by_name("exit-box") is None
    assert repo.device_by_token_hash(_hash("other")) is None


def test_devices_are_listed_by_name_and_switched_on_and_off(backend: Backend) -> None:
    repo = _open(backend)
    assert repo.devices() == []
    for name in ("box_b", "boxa", "box-c"):
        repo.add_device(name, _hash(name), T0, STORE)
    assert [d.name for d in repo.devices()] == ["box-c", "box_b", "boxa"]
    box = repo.device_by_name("box_b")
    repo.set_device_active(box.device_id, False)
    assert repo.device_by_token_hash(_hash("box_b")) == replace(box, active=False)
    assert [d.active for d in repo.devices()] == [True, False, True]
    repo.set_device_active(box.device_id, True)
    assert repo.device_by_name("box_b") == box
    repo.set_device_active(box.device_id + 100, False)  # unknown: nothing happens
    assert all(d.active for d in repo.devices())


def test_device_names_and_token_hashes_are_unique(backend: Backend) -> None:
    repo = _open(backend)
    box = repo.add_device("entrance-box", _hash("token"), T0, STORE)
    with pytest.raises(INTEGRITY):
        repo.add_device("entrance-box", _hash("another"), T0, STORE)
    with pytest.raises(INTEGRITY):
        repo.add_device("exit-box", _hash("token"), T0, STORE)
    assert repo.devices() == [box]


def _report(device: str, at: datetime, **counts: Any) -> BoxStatus:
    values: dict[str, Any] = {"index_version": 7, "index_state": "current",
                              "outbox_pending": 0, "cameras_live": 2, "cameras_total": 2,
                              **counts}
    return BoxStatus(device=device, reported_at=at, **values)


def test_a_boxs_latest_status_report_replaces_the_one_before(backend: Backend) -> None:
    """Issue 15, item 3: the board every API worker reads is in the database, one row a box."""
    repo = _open(backend)
    assert repo.box_statuses() == []
    for name in ("box_b", "box-a"):
        repo.add_device(name, _hash(name), T0, STORE)
    with repo.unit_of_work():
        repo.record_box_status(_report("box_b", JST, index_version=None, index_state="none"))
    repo.record_box_status(_report("box-a", T0, outbox_pending=3, cameras_live=1))
    later = _report("box_b", JST + timedelta(seconds=30), index_version=2**63 - 1,
                    index_state="stale", outbox_pending=10_000_000, cameras_total=1024)
    repo.record_box_status(later)
    statuses = repo.box_statuses()
    assert statuses == [_report("box-a", T0, outbox_pending=3, cameras_live=1), later]
    assert statuses[1].reported_at.tzinfo == UTC and statuses[1].blind


def test_a_status_report_needs_a_registered_device_and_sane_counts(backend: Backend) -> None:
    repo = _open(backend)
    with pytest.raises(INTEGRITY):
        repo.record_box_status(_report("nobody", T0))
    repo.add_device("box-1", _hash("1"), T0, STORE)
    for wrong in ({"index_state": "lost"}, {"outbox_pending": -1}, {"cameras_live": -1}):
        with pytest.raises(INTEGRITY), repo.unit_of_work():
            repo.record_box_status(_report("box-1", T0, **wrong))
    with pytest.raises(TimestampError):
        repo.record_box_status(_report("box-1", T0.replace(tzinfo=None)))
    assert repo.box_statuses() == []


# --- one transaction for all of them -------------------------------------------------


def test_a_failed_unit_of_work_leaves_no_account_changed(backend: Backend) -> None:
    repo = _open(backend)
    user = repo.add_user("tanaka", Role.STAFF, "hash", T0)
    with pytest.raises(RuntimeError), repo.unit_of_work():
        repo.add_user("sato", Role.ADMIN, "hash", T0)
        repo.set_role(user.user_id, Role.ADMIN)
        repo.set_trained(user.user_id, T0)
        repo.add_web_session(_session(user.user_id, "token"))
        repo.record_login_failure(_hash("tanaka"), T0)
        repo.add_device("entrance-box", _hash("token"), T0, STORE)
        with repo.unit_of_work():  # a nested use case joins the outer one
            repo.set_password_hash(user.user_id, "changed")
        assert repo.user_by_name("sato") is not None  # visible inside, not yet committed
        raise RuntimeError("the audit record could not be written")
    assert repo.users() == [user]
    assert repo.password_hash_of("tanaka") == "hash"
    assert repo.web_session(_hash("token")) is None
    assert repo.login_failures(_hash("tanaka")) is None
    assert repo.devices() == []
    with repo.unit_of_work():
        repo.set_role(user.user_id, Role.ADMIN)
        repo.add_device("entrance-box", _hash("token"), T0, STORE)
    assert repo.user_by_id(user.user_id).role is Role.ADMIN
    assert [d.name for d in repo.devices()] == ["entrance-box"]


# --- how the protocols map onto the chain schema (PostgreSQL only) --------------------


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_users_one_role_is_the_row_of_its_store_and_devices_stand_in_theirs(
        backend: Backend) -> None:
    """The documented mapping: `users.role` -> the `user_roles` row of the user's store (NULL:
    chain-wide); a device's store is the one it was added in (issue 15, item 1)."""
    repo = _open(backend)
    user = repo.add_user("tanaka", Role.STAFF, "hash", T0)
    clerk = repo.add_user("suzuki", Role.STAFF, "hash", T0, STORE)
    repo.set_role(user.user_id, Role.MANAGER)
    repo.set_role(clerk.user_id, Role.MANAGER)
    db = repo.connection
    assert db.execute("SELECT user_id, store_id, role FROM user_roles ORDER BY user_id"
                      ).fetchall() == [(user.user_id, None, "manager"),
                                       (clerk.user_id, STORE, "manager")]
    assert db.execute("SELECT store_id FROM users ORDER BY user_id").fetchall() == [
        (None,), (STORE,)]
    repo.add_device("box-1", _hash("1"), T0, STORE)
    assert db.execute("SELECT DISTINCT store_id FROM devices").fetchall() == [(STORE,)]
