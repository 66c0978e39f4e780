"""Alerts and staff's decisions on them on every back-end (issue 15).

`AlertRepository` through its methods only, on SQLCipher's real encrypted
files and on PostgreSQL's stores over the application role's connection to a
freshly migrated database. A match is a lead: staff confirm or dismiss it,
and the decision's reason is personal text that PostgreSQL only ever holds
sealed (G-SEC-2). Snapshots are files of the evidence store; the alert keeps
their id only, which goes once the entry is no longer active (G-RET-1,
G-REG-4).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import sqlcipher3

from kernel.errors import ConflictError, SealedIntegrityError
from registry.clock import TimestampError
from registry.domain import Alert, AlertStatus, Entry, EntryState, Role, Store
from registry.repository import AlertRepository
from registry.storage.postgres.alerts import PostgresAlerts
from registry.storage.postgres.devices import PostgresDevices
from registry.storage.postgres.stores import PostgresStores
from registry.storage.postgres.users import PostgresUsers
from tests.registry.backends import Backend
from tests.registry.test_repository_contract import _mismatches

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
INTEGRITY = (sqlcipher3.IntegrityError, psycopg.IntegrityError)
REASON = "常連客の田中様と判明、誤検知"  # free text naming a person: personal data
STORES = {"ginza": "Ginza", "umeda": "Umeda"}  # issue 15, item 1: two stores of one chain
BOXES = {"entrance": "ginza", "exit": "ginza", "umeda-door": "umeda"}


def test_the_postgres_store_implements_its_protocol_on_its_own() -> None:
    assert issubclass(PostgresAlerts, AlertRepository)
    assert _mismatches(AlertRepository, PostgresAlerts) == []


class World:
    """A repository with what alerts refer to: a manager, two boxes and watchlist entries."""

    def __init__(self, backend: Backend) -> None:
        self.repo: Any = backend.open(PostgresStores, PostgresUsers, PostgresDevices,
                                      PostgresAlerts)
        self.manager = self.repo.add_user("sato", Role.MANAGER, "hash", T0)
        for store, name in STORES.items():
            self.repo.add_store(Store(store, name), T0)
        for box, store in BOXES.items():
            self.repo.add_device(box, hashlib.sha256(box.encode()).hexdigest(), T0, store)

    def entry(self, entry_id: str, state: EntryState = EntryState.ACTIVE) -> str:
        """An entry in `state`. PostgreSQL's entries store is another group's (h15-pgentries):
        until it is composed here, its row is written directly, its sealed columns left as
        placeholders the alert store never reads."""
        if hasattr(self.repo, "add_entry"):
            self.repo.add_entry(Entry(
                entry_id=entry_id, state=state, store_id="main", features="{}",
                display_name="", proposed_by=self.manager.user_id, proposed_at=T0,
                decided_by=None, decided_at=None, decision_reason="", expires_at=None,
                revision=1, closed_at=None, closed_reason=""))
        else:
            self.repo.connection.execute(
                "INSERT INTO entries (entry_id, state, store_id, features, display_name, "
                "proposed_by, proposed_at, decision_reason, closed_reason) "
                "VALUES (%s, %s, 'main', '', '', %s, %s, '', '')",
                (entry_id, state.value, self.manager.user_id, T0))
        return entry_id


def _alert(alert_id: str, entry_id: str, *, device: str = "entrance",
           received: datetime = T0, snapshot: str | None = "snap") -> Alert:
    return Alert(
        alert_id=alert_id, device=device, camera="cam-1",
        detected_at=received - timedelta(seconds=2), received_at=received, score=0.6180339887,
        threshold=0.42, entry_id=entry_id, index_version=7,
        snapshot_image_id=None if snapshot is None else f"{snapshot}-{alert_id}",
        status=AlertStatus.OPEN, decided_by=None, decided_at=None, decision_reason="",
        store_id=BOXES.get(device, "ginza"),
    )


def _decided(alert: Alert, status: AlertStatus, by: int, reason: str = REASON) -> Alert:
    return replace(alert, status=status, decided_by=by, decided_at=T0 + timedelta(hours=1),
                   decision_reason=reason)


def test_an_alert_is_read_back_as_it_was_written(backend: Backend) -> None:
    world = World(backend)
    alert = _alert("a1", world.entry("e1"))
    world.repo.add_alert(alert)
    read = world.repo.alert("a1")
    assert read == alert
    assert read.received_at.tzinfo == UTC and isinstance(read.score, float)
    assert world.repo.alert("a2") is None


def test_alerts_are_listed_by_reception_then_id_and_by_status(backend: Backend) -> None:
    world = World(backend)
    entry = world.entry("e1")
    later, earlier = T0 + timedelta(minutes=1), T0
    alerts = [_alert("b", entry, received=later), _alert("c", entry, received=earlier),
              _alert("a-2", entry, received=later), _alert("a_1", entry, received=later)]
    for alert in alerts:
        world.repo.add_alert(alert)
    assert [a.alert_id for a in world.repo.alerts()] == ["c", "a-2", "a_1", "b"]
    world.repo.decide_alert(_decided(alerts[0], AlertStatus.CONFIRMED, world.manager.user_id))
    assert [a.alert_id for a in world.repo.alerts(AlertStatus.OPEN)] == ["c", "a-2", "a_1"]
    assert [a.alert_id for a in world.repo.alerts(AlertStatus.CONFIRMED)] == ["b"]
    assert world.repo.alerts(AlertStatus.LAPSED) == []


def test_an_open_alert_is_decided_once(backend: Backend) -> None:
    world = World(backend)
    alert = _alert("a1", world.entry("e1"))
    world.repo.add_alert(alert)
    dismissed = replace(_decided(alert, AlertStatus.DISMISSED, world.manager.user_id),
                        snapshot_image_id=None)
    world.repo.decide_alert(dismissed)
    assert world.repo.alert("a1") == dismissed
    again = _decided(alert, AlertStatus.CONFIRMED, world.manager.user_id, "second opinion")
    with pytest.raises(ConflictError, match="alert a1 was already decided"):
        world.repo.decide_alert(again)
    assert world.repo.alert("a1") == dismissed
    with pytest.raises(ConflictError, match="alert a9 was already decided"):
        world.repo.decide_alert(replace(again, alert_id="a9"))
    assert world.repo.alert("a9") is None


def test_an_unjudged_alert_lapses_without_reason_or_decider(backend: Backend) -> None:
    """G-RET-1: nobody judged it in time; the snapshot goes, the record stays."""
    world = World(backend)
    alert = _alert("a1", world.entry("e1"))
    world.repo.add_alert(alert)
    lapsed = replace(alert, status=AlertStatus.LAPSED, decided_at=T0 + timedelta(days=30),
                     snapshot_image_id=None)
    world.repo.decide_alert(lapsed)
    assert world.repo.alert("a1") == lapsed


def test_stray_snapshots_are_those_of_inactive_entries_and_can_be_cleared(
        backend: Backend) -> None:
    world = World(backend)
    active, erased = world.entry("e-active"), world.entry("e-erased", EntryState.ERASED)
    expired = world.entry("e-expired", EntryState.EXPIRED)
    for alert in (_alert("z", erased), _alert("k", active), _alert("m", expired),
                  _alert("b", erased, snapshot=None), _alert("a", expired)):
        world.repo.add_alert(alert)
    assert world.repo.stray_alert_snapshots() == [("a", "snap-a"), ("m", "snap-m"),
                                                  ("z", "snap-z")]
    world.repo.clear_alert_snapshot("m")
    world.repo.clear_alert_snapshot("k")  # an active entry's snapshot may be cleared too
    world.repo.clear_alert_snapshot("nope")  # unknown: nothing happens
    assert world.repo.stray_alert_snapshots() == [("a", "snap-a"), ("z", "snap-z")]
    assert world.repo.alert("m") == replace(_alert("m", expired), snapshot_image_id=None)
    assert world.repo.alert("k").snapshot_image_id is None


def test_alerts_are_counted_per_device_and_status(backend: Backend) -> None:
    world = World(backend)
    entry = world.entry("e1")
    assert world.repo.alert_counts() == []
    by = world.manager.user_id
    alerts = [_alert(f"x{i}", entry, device="exit") for i in range(3)]
    alerts += [_alert(f"n{i}", entry) for i in range(2)]
    for alert in alerts:
        world.repo.add_alert(alert)
    world.repo.decide_alert(_decided(alerts[0], AlertStatus.DISMISSED, by))
    world.repo.decide_alert(_decided(alerts[1], AlertStatus.CONFIRMED, by))
    world.repo.decide_alert(_decided(alerts[3], AlertStatus.CONFIRMED, by))
    assert world.repo.alert_counts() == [
        ("entrance", AlertStatus.CONFIRMED, 1), ("entrance", AlertStatus.OPEN, 1),
        ("exit", AlertStatus.CONFIRMED, 1), ("exit", AlertStatus.DISMISSED, 1),
        ("exit", AlertStatus.OPEN, 1)]


# --- stores (issue 15, item 1; G-SEC-1: a store's people see their own store's alerts) -------


def test_alerts_are_listed_and_counted_per_store(backend: Backend) -> None:
    world = World(backend)
    entry = world.entry("e1")
    by = world.manager.user_id
    ginza = [_alert("g1", entry), _alert("g2", entry, device="exit",
                                         received=T0 + timedelta(minutes=1))]
    umeda = [_alert("u1", entry, device="umeda-door", received=T0 + timedelta(seconds=30))]
    for alert in (*ginza, *umeda):
        world.repo.add_alert(alert)
    world.repo.decide_alert(_decided(ginza[0], AlertStatus.CONFIRMED, by))
    assert [a.alert_id for a in world.repo.alerts()] == ["g1", "u1", "g2"]
    assert [a.alert_id for a in world.repo.alerts(store_id="ginza")] == ["g1", "g2"]
    assert [(a.alert_id, a.store_id) for a in world.repo.alerts(store_id="umeda")] == [
        ("u1", "umeda")]
    assert [a.alert_id for a in world.repo.alerts(AlertStatus.OPEN, "ginza")] == ["g2"]
    assert world.repo.alerts(AlertStatus.CONFIRMED, "umeda") == []
    assert world.repo.alerts(store_id="no-such-store") == []
    assert world.repo.alert_counts("ginza") == [
        ("entrance", AlertStatus.CONFIRMED, 1), ("exit", AlertStatus.OPEN, 1)]
    assert world.repo.alert_counts("umeda") == [("umeda-door", AlertStatus.OPEN, 1)]
    assert len(world.repo.alert_counts()) == 3


def test_an_alerts_store_must_exist(backend: Backend) -> None:
    world = World(backend)
    entry = world.entry("e1")
    with pytest.raises(INTEGRITY):
        world.repo.add_alert(replace(_alert("a1", entry), store_id="no-such-store"))
    assert world.repo.alerts() == []


def test_an_alert_id_is_used_once_and_needs_its_device_and_entry(backend: Backend) -> None:
    world = World(backend)
    entry = world.entry("e1")
    world.repo.add_alert(_alert("a1", entry))
    with pytest.raises(INTEGRITY):
        world.repo.add_alert(_alert("a1", entry, device="exit"))
    with pytest.raises(INTEGRITY):
        world.repo.add_alert(_alert("a2", entry, device="unknown-box"))
    with pytest.raises(INTEGRITY):
        world.repo.add_alert(_alert("a3", "no-such-entry"))
    with pytest.raises(TimestampError, match="outside"):
        world.repo.add_alert(_alert("a4", entry, received=datetime(2200, 1, 1, tzinfo=UTC)))
    assert [a.alert_id for a in world.repo.alerts()] == ["a1"]
    assert world.repo.alert("a1").device == "entrance"


def test_a_failed_unit_of_work_leaves_no_alert_changed(backend: Backend) -> None:
    world = World(backend)
    entry = world.entry("e1")
    kept = _alert("a1", entry)
    world.repo.add_alert(kept)
    with pytest.raises(RuntimeError), world.repo.unit_of_work():
        world.repo.add_alert(_alert("a2", entry))
        world.repo.decide_alert(_decided(kept, AlertStatus.CONFIRMED, world.manager.user_id))
        world.repo.clear_alert_snapshot("a1")
        assert world.repo.alert("a1").status is AlertStatus.CONFIRMED  # visible inside
        raise RuntimeError("the audit record could not be written")
    assert world.repo.alerts() == [kept]
    assert world.repo.alert_counts() == [("entrance", AlertStatus.OPEN, 1)]


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_the_decision_reason_is_sealed_to_its_alert(backend: Backend) -> None:
    """PostgreSQL holds the reason as ciphertext bound to alerts.decision_reason of that alert:
    not in the clear, and copied onto another alert it fails to open."""
    world = World(backend)
    entry = world.entry("e1")
    first, second = _alert("a1", entry), _alert("a2", entry)
    world.repo.add_alert(first)
    world.repo.add_alert(second)
    world.repo.decide_alert(_decided(first, AlertStatus.DISMISSED, world.manager.user_id))
    db = world.repo.connection
    raw = db.execute("SELECT decision_reason, store_id FROM alerts WHERE alert_id = 'a1'"
                     ).fetchone()
    sealed = bytes(raw[0])
    assert REASON.encode() not in sealed and "田中".encode() not in sealed
    assert len(sealed) > len(REASON.encode())
    assert raw[1] == "ginza"  # the sending device's store
    open_blank = bytes(db.execute("SELECT decision_reason FROM alerts WHERE alert_id = 'a2'"
                                  ).fetchone()[0])
    assert open_blank != b""  # even the empty reason of an open alert is sealed
    assert world.repo.alert("a1").decision_reason == REASON
    db.execute("UPDATE alerts SET decision_reason = %s WHERE alert_id = 'a2'", (sealed,))
    with pytest.raises(SealedIntegrityError, match="decision_reason of a2"):
        world.repo.alert("a2")
    with pytest.raises(SealedIntegrityError):
        world.repo.alerts()
