"""Stores as a first-class dimension (issue 15, item 1; G-SEC-1, G-SEC-2).

A chain is one operator with many stores: the watchlist, approvals, retention,
requests and erasure are chain-wide, but what a store's boxes see stays with
that store's people. G-SEC-1 (access only for the persons who need it, by
role): store staff and managers see and judge only their own store's alerts,
snapshots, precision figure and boxes; the chain office (a user of no store)
sees every store's, with a filter. Another store's alert answers 404, exactly
as one that does not exist. G-SEC-2: a box's token decides which store its
alerts are filed under; the box cannot choose. Real SQLCipher files, real
faces, real ONNX inference; the end-to-end flow also on PostgreSQL.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kernel.errors import ConflictError, NotFoundError, PermissionDeniedError
from mamoru.wiring import api_host
from registry.accounts import devices, users
from registry.accounts.stores import add_store
from registry.alerts.queue import (
    alert_snapshot_png,
    alert_view,
    alert_views,
    confirm_alert,
    dismiss_alert,
    precision,
)
from registry.api.app import create_app
from registry.domain import AlertStatus, Role, Store, User
from registry.keys.master import new_master_key
from registry.oversight.report import audit_records, verify_trail
from registry.storage import migrations
from registry.storage.database import open_registry_database
from registry.storage.sqlcipher_repository import SqlCipherRepository
from tests.registries import OBAMA, OBAMA2, PASSWORD, T0, Registry
from tests.registry.people import BASE_URL, Clock, box_alert, log_in, png_bytes, web_settings

GINZA, UMEDA = "ginza", "umeda"
NAMES = {GINZA: "銀座店", UMEDA: "梅田店"}
DAY = timedelta(days=1)


def _stores(reg: Registry) -> None:
    """Two stores, a trained staff member in each, a box in each."""
    admin = reg.user("admin")
    ctx = reg.ctx
    with ctx.writing():
        for store_id, name in NAMES.items():
            add_store(ctx.repo, ctx.audit, admin=admin, store_id=store_id, name=name, now=T0)
            for role in (Role.STAFF, Role.MANAGER):
                username = f"{store_id}-{role.value}"
                users.add_user(ctx.repo, ctx.audit, actor="admin", username=username, role=role,
                               password=PASSWORD, now=T0, store_id=store_id)
                users.record_training(ctx.repo, ctx.audit, admin=admin, username=username,
                                      now=T0)


def _box(reg: Registry, store_id: str | None) -> str:
    name = f"box-{store_id or 'default'}"
    return devices.add_device(reg.ctx, admin=reg.user("admin"), name=name, now=T0,
                              store_id=store_id)


def _alert(reg: Registry, box: str, entry_id: str) -> str:
    return box_alert(reg, box, entry_id, score=0.7)


def _ids(reg: Registry, actor: User, store: str | None = None) -> set[str]:
    return {v.alert.alert_id for v in alert_views(reg.ctx, actor=actor, store=store)}


@pytest.fixture
def two_stores(registry: Registry) -> Iterator[tuple[Registry, str, str]]:
    """Ginza's and Umeda's boxes each sent one alert of the same registered person."""
    _stores(registry)
    entry_id = registry.register(OBAMA)
    _box(registry, GINZA)
    _box(registry, UMEDA)
    yield registry, _alert(registry, "box-ginza", entry_id), _alert(registry, "box-umeda",
                                                                    entry_id)


def test_a_boxs_alert_lands_in_the_boxs_store(two_stores: tuple[Registry, str, str]) -> None:
    reg, ginza_alert, umeda_alert = two_stores
    by_id = {a.alert_id: a.store_id for a in reg.ctx.repo.alerts()}
    assert by_id == {ginza_alert: GINZA, umeda_alert: UMEDA}
    received = [json.loads(r.details) for r in reg.ctx.repo.audit_rows()
                if r.action == "alert_received"]
    assert {(d["alert_id"], d["store_id"]) for d in received} == {
        (ginza_alert, GINZA), (umeda_alert, UMEDA)}


def test_two_stores_staff_never_see_each_others_alerts(
        two_stores: tuple[Registry, str, str]) -> None:
    """G-SEC-1: a store's people see their own store's alerts; another's is a 404."""
    reg, ginza_alert, umeda_alert = two_stores
    ginza, umeda = reg.user("ginza-staff"), reg.user("umeda-staff")
    assert _ids(reg, ginza) == {ginza_alert}
    assert _ids(reg, umeda) == {umeda_alert}
    assert _ids(reg, ginza, store=GINZA) == {ginza_alert}
    with pytest.raises(NotFoundError):  # asking for another store shows nothing of it
        alert_views(reg.ctx, actor=ginza, store=UMEDA)
    for look in (alert_view, alert_snapshot_png):
        with pytest.raises(NotFoundError, match=f"no alert {umeda_alert}"):
            look(reg.ctx, actor=ginza, alert_id=umeda_alert)
    with pytest.raises(NotFoundError, match=f"no alert {umeda_alert}"):
        confirm_alert(reg.ctx, actor=ginza, alert_id=umeda_alert, now=T0)
    with pytest.raises(NotFoundError, match=f"no alert {umeda_alert}"):
        dismiss_alert(reg.ctx, actor=reg.user("ginza-manager"), alert_id=umeda_alert,
                      reason="not him", now=T0)
    assert reg.ctx.repo.alert(umeda_alert).status is AlertStatus.OPEN  # untouched
    assert alert_snapshot_png(reg.ctx, actor=umeda, alert_id=umeda_alert).startswith(b"\x89PNG")


def test_the_chain_office_sees_every_store_and_filters_by_store(
        two_stores: tuple[Registry, str, str]) -> None:
    reg, ginza_alert, umeda_alert = two_stores
    office = reg.user("mgr1")  # a user of no store: the chain office
    assert office.store_id is None
    assert _ids(reg, office) == {ginza_alert, umeda_alert}
    assert _ids(reg, office, store=UMEDA) == {umeda_alert}
    with pytest.raises(NotFoundError, match="no store kobe"):
        alert_views(reg.ctx, actor=office, store="kobe")
    confirm_alert(reg.ctx, actor=office, alert_id=umeda_alert, now=T0)
    [judged] = [json.loads(r.details) for r in reg.ctx.repo.audit_rows()
                if r.action == "alert_confirmed"]
    assert judged["store_id"] == UMEDA and judged["alert_id"] == umeda_alert


def test_precision_is_per_store(two_stores: tuple[Registry, str, str]) -> None:
    reg, ginza_alert, umeda_alert = two_stores
    confirm_alert(reg.ctx, actor=reg.user("ginza-staff"), alert_id=ginza_alert, now=T0)
    dismiss_alert(reg.ctx, actor=reg.user("umeda-staff"), alert_id=umeda_alert,
                  reason="a different person", now=T0)
    ginza = precision(reg.ctx, actor=reg.user("ginza-staff"))
    assert (ginza.store.scope, ginza.store.precision) == (GINZA, 1.0)
    assert [d.scope for d in ginza.by_device] == ["box-ginza"]
    umeda = precision(reg.ctx, actor=reg.user("umeda-manager"), store=UMEDA)
    assert (umeda.store.scope, umeda.store.precision) == (UMEDA, 0.0)
    chain = precision(reg.ctx, actor=reg.user("mgr1"))
    assert (chain.store.confirmed, chain.store.dismissed) == (1, 1)
    assert precision(reg.ctx, actor=reg.user("mgr1"), store=GINZA).store.dismissed == 0
    with pytest.raises(NotFoundError):
        precision(reg.ctx, actor=reg.user("ginza-staff"), store=UMEDA)


def test_watchlist_approval_stays_chain_wide(registry: Registry) -> None:
    """A store manager approves a chain office proposal as today (two different people)."""
    _stores(registry)
    entry_id = registry.register(OBAMA, proposer="staff", approver="ginza-manager")
    entry = registry.ctx.repo.entry(entry_id)
    assert entry is not None and entry.state.value == "active"


def test_the_trail_spans_every_store_and_is_read_by_the_chain_office(
        two_stores: tuple[Registry, str, str]) -> None:
    """G-SEC-1: the trail names every store's boxes and alerts; a store's manager does not
    read it, the chain office's auditor reads all of it."""
    reg, ginza_alert, umeda_alert = two_stores
    with pytest.raises(PermissionDeniedError, match="works in store ginza"):
        verify_trail(reg.ctx, actor=reg.user("ginza-manager"))
    with pytest.raises(PermissionDeniedError):
        audit_records(reg.ctx, actor=reg.user("umeda-manager"), start=T0 - DAY, end=T0 + DAY)
    assert verify_trail(reg.ctx, actor=reg.user("auditor")).ok
    records = audit_records(reg.ctx, actor=reg.user("auditor"), start=T0 - DAY, end=T0 + DAY)
    received = {r["details"]["alert_id"] for r in records if r["action"] == "alert_received"}
    assert received == {ginza_alert, umeda_alert}


def test_stores_users_and_boxes_are_checked_when_added(registry: Registry) -> None:
    _stores(registry)
    ctx, admin = registry.ctx, registry.user("admin")
    with pytest.raises(ConflictError):
        add_store(ctx.repo, ctx.audit, admin=admin, store_id=GINZA, name="again", now=T0)
    with pytest.raises(PermissionDeniedError):
        add_store(ctx.repo, ctx.audit, admin=registry.user("mgr1"), store_id="kobe",
                  name="Kobe", now=T0)
    with pytest.raises(NotFoundError, match="no store kobe"):
        users.add_user(ctx.repo, ctx.audit, actor="admin", username="kobe-staff",
                       role=Role.STAFF, password=PASSWORD, now=T0, store_id="kobe")
    with pytest.raises(NotFoundError, match="no store kobe"):
        _box(registry, "kobe")
    _box(registry, None)  # omitted: the installation's own store (registry.store_id)
    default = registry.ctx.policy.store_id
    box = ctx.repo.device_by_name("box-default")
    assert box is not None and box.store_id == default
    assert ctx.repo.store(default) is not None
    assert {s.store_id for s in ctx.repo.stores()} == {GINZA, UMEDA, default}


# --- a registry from before stores (SQLCipher migration step 12) ----------------------------


def test_a_registry_from_before_stores_has_everything_in_its_default_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A single-store registry keeps working exactly as before: its boxes and alerts are
    the installation's store's (`registry.store_id`), its users the chain office's."""
    key, db, audit = new_master_key(), tmp_path / "registry.db", tmp_path / "audit.db"
    steps = migrations.REGISTRY_MIGRATIONS
    with monkeypatch.context() as before_stores:
        before_stores.setattr(migrations, "REGISTRY_MIGRATIONS", steps[:11])
        old = open_registry_database(db, audit, [key], create=True).connection
    for sql, row in (
        ("INSERT INTO users (username, role, password_hash, created_at) VALUES (?,?,?,?)",
         ("sato", "manager", "hash", "2026-01-01T00:00:00.000000Z")),
        ("INSERT INTO entries (entry_id, state, store_id, proposed_by, proposed_at) "
         "VALUES (?,?,?,?,?)", ("e" * 32, "active", "store-042", 1,
                                "2026-01-01T00:00:00.000000Z")),
        ("INSERT INTO devices (name, token_sha256, created_at) VALUES (?,?,?)",
         ("box-1", hashlib.sha256(b"t").hexdigest(), "2026-01-01T00:00:00.000000Z")),
        ("INSERT INTO alerts (alert_id, device, camera, detected_at, received_at, score, "
         "threshold, entry_id, index_version) VALUES (?,?,?,?,?,?,?,?,?)",
         ("a" * 32, "box-1", "cam", "2026-01-02T00:00:00.000000Z",
          "2026-01-02T00:00:00.000000Z", 0.7, 0.4, "e" * 32, 1)),
    ):
        old.execute(sql, row)
    old.close()

    opened = open_registry_database(db, audit, [key], default_store="store-042")
    with contextlib.closing(opened.connection):
        repo = SqlCipherRepository(opened.connection)
        assert repo.stores() == [Store("store-042", "store-042")]
        [box] = repo.devices()
        assert box.store_id == "store-042"
        assert [a.store_id for a in repo.alerts()] == ["store-042"]
        assert [a.alert_id for a in repo.alerts(store_id="store-042")] == ["a" * 32]
        assert repo.alert_counts("store-042") == [("box-1", AlertStatus.OPEN, 1)]
        sato = repo.user_by_name("sato")
        assert sato is not None and sato.store_id is None and sato.role is Role.MANAGER


# --- end to end on a chain's PostgreSQL: two stores, two boxes, two tablets ------------------




def test_each_stores_tablet_sees_only_its_boxes_alerts_on_postgres(chain: Registry) -> None:
    """Issue 15, items 1 and 5: boxes post through the API; each store's staff session lists,
    opens and judges only its own store's alerts; the chain office sees both."""
    reg = chain
    _stores(reg)
    entry_id = reg.register(OBAMA)
    tokens = {store: _box(reg, store) for store in (GINZA, UMEDA)}
    sent: dict[str, str] = {}
    app = api_host(web_settings(reg.settings), engine=reg.engine, clock=Clock())
    with TestClient(create_app(app), base_url=BASE_URL) as client:
        for store, token in tokens.items():
            body: dict[str, Any] = {
                "alert_id": uuid.uuid4().hex, "camera": "entrance-1",
                "detected_at": "2026-01-20T09:15:02+09:00", "score": 0.71, "threshold": 0.363,
                "entry_id": entry_id, "index_version": reg.ctx.repo.watchlist_version(),
                "snapshot_png_b64": base64.b64encode(png_bytes(reg.image(OBAMA2))).decode()}
            answer = client.post("/api/v1/edge/alerts", json=body,
                                 headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 201, answer.text
            sent[store] = body["alert_id"]
        ginza, umeda = log_in(client, "ginza-staff"), log_in(client, "umeda-staff")
        office = log_in(client, "mgr1")
        for person, own, other in ((ginza, GINZA, UMEDA), (umeda, UMEDA, GINZA)):
            listed = person.get("/api/v1/alerts")
            assert listed.status_code == 200, listed.text
            assert [(a["alert_id"], a["store_id"]) for a in listed.json()] == [
                (sent[own], own)]
            page = person.get("/alerts")
            assert page.status_code == 200
            assert sent[own] in page.text and sent[other] not in page.text
            assert NAMES[own] in page.text and NAMES[other] not in page.text  # store's name
            assert person.get(f"/api/v1/alerts/{sent[other]}/snapshot").status_code == 404
            refused = person.post(f"/api/v1/alerts/{sent[other]}/confirm", json={"reason": ""})
            assert refused.status_code == 404, refused.text
            assert person.get(f"/api/v1/alerts?store={other}").status_code == 404
            figure = person.get("/api/v1/alerts/precision")
            assert figure.status_code == 200 and figure.json()["store_id"] == own
        both = office.get("/api/v1/alerts")
        assert {a["alert_id"] for a in both.json()} == set(sent.values())
        only = office.get(f"/api/v1/alerts?store={UMEDA}")
        assert [a["alert_id"] for a in only.json()] == [sent[UMEDA]]
        assert office.get("/api/v1/alerts?store=kobe").status_code == 404
        assert office.get("/api/v1/alerts?store=bad%20id").status_code == 422
        confirmed = ginza.post(f"/api/v1/alerts/{sent[GINZA]}/confirm", json={"reason": ""})
        assert confirmed.status_code == 200, confirmed.text
    assert reg.ctx.audit.verify().ok
