"""The registry's flows end to end on both back-ends (issue 15, item 5; G-REG-2, G-REG-4).

Each flow runs once on the SQLCipher files of one box and once on a chain's
PostgreSQL database (a throw-away cluster: TLS, SCRAM, least-privilege app
role), with real photos and real ONNX inference, through the same use cases
and the same API app a box and a tablet talk to. The PostgreSQL registry is
configured, initialised and opened the way an operator does it
(tests/registry/chain.py): `registry.storage = "postgres"`, password files,
`init_registry` as the owner, `open_registry_from(settings)` in the API.

Timings of each flow are printed (`TIMING <backend> <flow> <ms>`; run with -s).
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from kernel.errors import (
    NotInitialisedError,
    RegistryError,
    StorageUnavailableError,
    WrongKeyError,
)
from kernel.evidence import EvidenceImages, EvidenceStore
from mamoru.wiring import api_host, index_spec, open_registry_from, registry_paths
from registry.accounts import devices
from registry.alerts.queue import list_alerts
from registry.api.app import create_app
from registry.breach import incident as breach
from registry.clock import add_years
from registry.context import OwnerLogin, init_registry, open_registry
from registry.domain import AlertStatus, Containment, EntryState, Ground
from registry.keys.master import new_master_key
from registry.retention.expiry import run_expiry
from registry.storage.postgres.cluster import ThrowawayCluster
from registry.storage.postgres.evidence import PostgresEvidence
from registry.storage.postgres.schema import MIGRATIONS, migrate
from registry.watchlist import approval
from registry.watchlist import entries as watchlist
from tests.registries import BIDEN, OBAMA, OBAMA2, T0, Registry
from tests.registry.chain import chain_settings, owner_login, password_file
from tests.registry.people import BASE_URL, Clock, log_in, png_bytes, web_settings

ALERTS = "/api/v1/edge/alerts"
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def timing(reg: Registry, flow: str, started: float) -> None:
    elapsed_ms = (time.perf_counter() - started) * 1000
    print(f"\nTIMING {reg.ctx.backend:9} {flow:24} {elapsed_ms:8.1f} ms")  # noqa: T201 (-s)




# --- registration: propose, approve by another, published, erased everywhere -------------


def test_registration_publishes_the_template_and_erasure_removes_it(
        each_backend_registry: Registry) -> None:
    reg = each_backend_registry
    started = time.perf_counter()
    proposal = reg.propose(OBAMA, proposer="staff", display_name="万引き 男性 40代")
    assert reg.matches(OBAMA2) == {}  # G-REG-2: a proposal is not on the watchlist yet
    with pytest.raises(RegistryError):  # the proposer cannot approve it (two-person rule)
        approval.approve(reg.ctx, actor=reg.user("staff"), entry_id=proposal.entry_id,
                         reason="mine", now=T0)
    approval.approve(reg.ctx, actor=reg.user("mgr1"), entry_id=proposal.entry_id,
                     reason="police damage report checked", now=T0)
    timing(reg, "propose+approve", started)
    entry_id = proposal.entry_id
    assert set(reg.matches(OBAMA2)) == {entry_id}
    assert reg.matches(BIDEN) == {}
    images = {r.image_id for r in reg.ctx.repo.evidence(entry_id)}
    assert images and images <= reg.ctx.evidence.ids()

    started = time.perf_counter()
    watchlist.erase(reg.ctx, actor=reg.user("mgr2"), entry_id=entry_id,
                    reason="the person's erasure request", now=T0)
    timing(reg, "erase", started)
    assert reg.matches(OBAMA2) == {}  # gone from the published index
    assert not images & reg.ctx.evidence.ids()  # and its evidence with it (G-REG-4)
    entry = reg.ctx.repo.entry(entry_id)
    assert entry is not None and entry.state is EntryState.ERASED
    assert reg.ctx.audit.verify().ok


def test_the_expiry_job_expires_an_entry_on_its_day(each_backend_registry: Registry) -> None:
    reg = each_backend_registry
    entry_id = reg.register(OBAMA)
    assert run_expiry(reg.ctx, now=add_years(T0, 3) - DAY).expired == ()
    started = time.perf_counter()
    result = run_expiry(reg.ctx, now=add_years(T0, 3) + DAY)
    timing(reg, "expiry job", started)
    assert result.expired == (entry_id,)
    assert reg.matches(OBAMA2) == {}
    assert not {r.image_id for r in reg.ctx.repo.evidence(entry_id)} & reg.ctx.evidence.ids()
    assert reg.ctx.audit.verify().ok


# --- a box's alert through the API, judged on the tablet through the API ------------------


def test_a_box_alert_reaches_the_tablet_and_is_confirmed(each_backend_registry: Registry) -> None:
    reg = each_backend_registry
    entry_id = reg.register(OBAMA)
    token = devices.add_device(reg.ctx, admin=reg.user("admin"), name="box-1", now=T0)
    clock = Clock()
    app = api_host(web_settings(reg.settings), engine=reg.engine, clock=clock)
    with TestClient(create_app(app), base_url=BASE_URL) as client:
        body = {"alert_id": uuid.uuid4().hex, "camera": "entrance-1",
                "detected_at": "2026-01-20T09:15:02.250000+09:00", "score": 0.71,
                "threshold": 0.363, "entry_id": entry_id,
                "index_version": reg.ctx.repo.watchlist_version(),
                "snapshot_png_b64": base64.b64encode(png_bytes(reg.image(OBAMA2))).decode()}
        started = time.perf_counter()
        answer = client.post(ALERTS, json=body, headers={"Authorization": f"Bearer {token}"})
        timing(reg, "alert intake (API)", started)
        assert answer.status_code == 201, answer.text
        again = client.post(ALERTS, json=body, headers={"Authorization": f"Bearer {token}"})
        assert again.status_code == 200 and again.json()["created"] is False

        started = time.perf_counter()
        staff = log_in(client, "staff")
        timing(reg, "tablet login (API)", started)
        listed = staff.get("/api/v1/alerts")
        assert listed.status_code == 200, listed.text
        assert str(body["alert_id"]) in listed.text
        snapshot = staff.get(f"/api/v1/alerts/{body['alert_id']}/snapshot")
        if snapshot.status_code == 200:  # the snapshot route serves the decrypted PNG
            decoded = cv2.imdecode(np.frombuffer(snapshot.content, np.uint8), cv2.IMREAD_COLOR)
            assert decoded is not None and np.array_equal(decoded, reg.image(OBAMA2))
        started = time.perf_counter()
        confirmed = staff.post(f"/api/v1/alerts/{body['alert_id']}/confirm",
                               json={"reason": "it is him"})
        timing(reg, "tablet confirm (API)", started)
        assert confirmed.status_code == 200, confirmed.text
    with open_registry_from(reg.settings) as other:  # what another API worker sees
        alerts = list_alerts(other, AlertStatus.CONFIRMED)
    assert [a.alert_id for a in alerts] == [body["alert_id"]]
    actions = [r.action for r in reg.ctx.repo.audit_rows()]
    assert "alert_received" in actions and "alert_confirmed" in actions
    assert reg.ctx.audit.verify().ok


# --- a breach incident: opened, contained, triaged; the stop-use rights it gives -----------


def test_a_breach_incident_gives_stop_use_rights_seen_on_the_entry_and_the_pages(
        each_backend_registry: Registry) -> None:
    """G-BRE-1..4 on both back-ends: the record, a step, the rule-7 triage, and the
    stop-use right (APPI 35(5)) on the entry's view, the watchlist page and the desk."""
    reg = each_backend_registry
    entry_id = reg.register(OBAMA)
    manager = reg.user("mgr1")
    started = time.perf_counter()
    incident_id = breach.open_incident(
        reg.ctx, actor=manager, discovered_at=T0, discovered_by="店長 佐藤",
        how="バックアップ用USBメモリの紛失", summary="顔画像を含む可能性", now=T0 + HOUR)
    assert breach.contain_stop_edge(reg.ctx, actor=manager, incident_id=incident_id,
                                    now=T0 + 2 * HOUR, stop=lambda: "stopped") == "stopped"
    triaged = breach.triage(reg.ctx, actor=manager, incident_id=incident_id[:12],  # a prefix
                            grounds=[Ground.SENSITIVE], reason="犯罪歴を推知させる記録",
                            now=T0 + 3 * HOUR)
    timing(reg, "breach open+triage", started)
    assert triaged.reportable
    incident = breach.get_incident(reg.ctx, incident_id)
    assert [i.incident_id for i in breach.list_incidents(reg.ctx)] == [incident_id]
    assert (incident.discovered_by, incident.affected, incident.counts.entries) == (
        "店長 佐藤", (entry_id,), 1)
    assert [a.kind for a in incident.actions] == [Containment.STOP_EDGE]
    assert incident.triage == triaged
    assert breach.stop_use_rights(reg.ctx) == {entry_id: [incident_id]}

    app = api_host(web_settings(reg.settings), engine=reg.engine, clock=Clock())
    with TestClient(create_app(app), base_url=BASE_URL) as client:
        responder = log_in(client, "mgr1")
        view = responder.get(f"/api/v1/watchlist/{entry_id}")
        assert view.status_code == 200, view.text
        assert view.json()["stop_use_rights"] == [incident_id]
        page = log_in(client, "staff").get("/watchlist")
        assert page.status_code == 200, page.text[:500]
        assert f'data-incident="{incident_id}"' in page.text
        incidents = responder.get("/incidents")
        assert incidents.status_code == 200 and incident_id in incidents.text
        desk = responder.get("/requests")
        assert desk.status_code == 200 and f'id="stop-use-{entry_id}-{incident_id}"' in desk.text
    assert reg.ctx.audit.verify().ok


# --- PostgreSQL start-up: one clear line for each thing an operator gets wrong ------------




def _open(reg: Registry, **postgres: object) -> None:
    settings = reg.settings
    if postgres:
        assert settings.registry.postgres is not None
        pg = settings.registry.postgres.model_copy(update=postgres)
        settings = settings.model_copy(update={"registry": settings.registry.model_copy(
            update={"postgres": pg})})
    open_registry(registry_paths(settings), settings.registry, index_spec(settings)).close()


def _audit_count(reg: Registry) -> int:
    return sum(1 for _ in reg.ctx.repo.audit_rows())


def test_the_registry_opens_from_settings_and_a_wrong_master_key_is_refused_at_open(
        chain: Registry) -> None:
    _open(chain)  # the right key opens it
    before = _audit_count(chain)
    registry_paths(chain.settings).custody.store(new_master_key(), replace=True)
    with pytest.raises(WrongKeyError, match="key canary") as refused:
        _open(chain)
    assert "\n" not in str(refused.value)
    assert _audit_count(chain) == before  # nothing was written under the other key


def test_a_wrong_password_is_one_line_without_the_password(chain: Registry,
                                                          tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.pw"
    wrong.write_text("not-the-password-xyz\n")
    wrong.chmod(0o600)
    with pytest.raises(StorageUnavailableError, match="password was refused") as refused:
        _open(chain, password_file=wrong)
    assert "not-the-password-xyz" not in str(refused.value) and "\n" not in str(refused.value)
    wrong.chmod(0o644)
    with pytest.raises(StorageUnavailableError, match="readable by others"):
        _open(chain, password_file=wrong)


def test_an_untrusted_certificate_and_an_unreachable_server_are_refused(
        chain: Registry, tmp_path: Path, pg_cluster: ThrowawayCluster) -> None:
    other_ca = tmp_path / "other-ca.pem"
    with ThrowawayCluster() as other:  # a certificate from another CA
        other_ca.write_bytes(other.ca_file.read_bytes())
    with pytest.raises(StorageUnavailableError, match="certificate is not trusted"):
        _open(chain, ca_file=other_ca)
    with pytest.raises(StorageUnavailableError, match="unreachable"):
        _open(chain, host="no-such-host.invalid")
    with pytest.raises(StorageUnavailableError, match="unreachable"):
        _open(chain, port=_closed_port(), connect_timeout_s=2)


def _closed_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_schema_older_or_newer_than_the_code_is_refused(
        pg_cluster: ThrowawayCluster, tmp_path: Path) -> None:
    database = pg_cluster.create_database(f"old_{uuid.uuid4().hex[:8]}")
    settings = chain_settings(database, tmp_path / "data", tmp_path / "secrets")
    paths = registry_paths(settings)
    settings.data_dir.mkdir(mode=0o700)
    paths.custody.store(new_master_key())
    with pytest.raises(NotInitialisedError, match="no mamoru registry in PostgreSQL"):
        open_registry(paths, settings.registry, index_spec(settings))
    with database.connect_owner() as owner:  # a database migrated by an older mamoru
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("registry.storage.postgres.schema.MIGRATIONS", MIGRATIONS[:-1])
            migrate(owner, app_role=database.app)
    with pytest.raises(RegistryError, match="older than this mamoru"):
        open_registry(paths, settings.registry, index_spec(settings))
    # `registry init` as the owner migrates it (and records the key canary)
    init_registry(paths, settings.registry, index_spec(settings),
                  owner=owner_login(database, tmp_path / "secrets")).close()
    open_registry(paths, settings.registry, index_spec(settings)).close()
    with database.connect_owner() as owner:
        owner.execute("INSERT INTO registry.schema_migrations (version) VALUES (%s)",
                      (len(MIGRATIONS) + 1,))
        owner.commit()
    with pytest.raises(RegistryError, match="newer than this mamoru"):
        open_registry(paths, settings.registry, index_spec(settings))


def test_init_refuses_an_existing_registry(chain: Registry, tmp_path: Path) -> None:
    assert chain.settings.registry.postgres is not None
    owner = OwnerLogin(f"{chain.settings.registry.postgres.dbname}_owner",
                       tmp_path / "secrets" / "owner.pw")
    before = _audit_count(chain)
    with pytest.raises(RegistryError, match="already exists"):
        init_registry(registry_paths(chain.settings), chain.settings.registry,
                      index_spec(chain.settings), owner=owner)
    assert _audit_count(chain) == before


# --- several API hosts on one database ----------------------------------------------------


def test_writers_on_two_hosts_take_turns(chain: Registry) -> None:
    """`writing()` is a database lock: a second host waits, as a second process on one box."""
    other = open_registry_from(chain.settings)  # another API host's context
    entered = threading.Event()
    order: list[str] = []

    def second_host() -> None:
        with other.writing():
            order.append("second")
        entered.set()

    try:
        with chain.ctx.writing():
            worker = threading.Thread(target=second_host)
            worker.start()
            assert not entered.wait(0.5)  # blocked while the first host writes
            order.append("first")
        assert entered.wait(10)
        worker.join()
    finally:
        other.close()
    assert order == ["first", "second"]


def test_the_audit_head_is_anchored_in_the_database_and_a_cut_is_caught(
        chain: Registry, pg_cluster: ThrowawayCluster) -> None:
    """On PostgreSQL the head anchor is shared by every host (no per-host audit.head file)."""
    chain.register(OBAMA)
    last = list(chain.ctx.repo.audit_rows())[-1]
    assert chain.ctx.storage.anchors.read_head() == (last.seq, last.hash)
    assert not (chain.data_dir / "audit.head").exists()
    assert chain.ctx.audit.verify().ok
    # The owner cannot cut the trail (triggers, test_postgres_cluster.py); a superuser who
    # switches the triggers off can, and the head anchor catches the cut.
    assert chain.settings.registry.postgres is not None
    with pg_cluster.connect_superuser(chain.settings.registry.postgres.dbname) as su:
        su.execute("SET session_replication_role = replica")
        su.execute("DELETE FROM audit.records WHERE seq = %s", (last.seq,))
    report = chain.ctx.audit.verify()
    assert not report.ok and report.problem is not None
    assert "deleted" in report.problem.reason


# --- evidence: database vs files (issue 15 asks for the measurement) ----------------------


def _png_of_about(size: int) -> bytes:
    """A PNG of about `size` bytes (noise does not compress), decodable."""
    rng = np.random.default_rng(7)
    side = int((size / 3) ** 0.5)
    ok, encoded = cv2.imencode(".png", rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
    assert ok
    return encoded.tobytes()


def _time_store(store: EvidenceImages, png: bytes, rounds: int) -> tuple[float, float]:
    ids = []
    started = time.perf_counter()
    for _ in range(rounds):
        ids.append(store.put_png(png).image_id)
    put_s = time.perf_counter() - started
    started = time.perf_counter()
    for image_id in ids:
        assert store.get_bytes(image_id) == png
    get_s = time.perf_counter() - started
    return put_s, get_s


def test_evidence_in_the_database_against_files(chain: Registry, tmp_path: Path) -> None:
    png = _png_of_about(100_000)
    assert 90_000 < len(png) < 110_000
    key = new_master_key().derive("evidence")
    rounds = 200
    files = _time_store(EvidenceStore(tmp_path / "evidence-files", key), png, rounds)
    assert chain.settings.registry.postgres is not None
    storage = chain.ctx.storage
    database = _time_store(PostgresEvidence(storage.connection, key), png,  # type: ignore[attr-defined]
                           rounds)
    for name, (put_s, get_s) in (("files", files), ("postgres", database)):
        print(f"\nEVIDENCE {name:8} {rounds} x {len(png)} B: "  # noqa: T201 (shown with -s)
              f"put {put_s * 1000 / rounds:.2f} ms, get {get_s * 1000 / rounds:.2f} ms each")
    # what PostgreSQL holds is ciphertext: the PNG signature is nowhere in the table
    row = storage.connection.execute(  # type: ignore[attr-defined]
        "SELECT png FROM evidence_images LIMIT 1").fetchone()
    assert row is not None and b"\x89PNG" not in bytes(row[0])


# --- `mamoru registry init` on PostgreSQL, as an operator runs it -------------------------


@pytest.mark.cli
def test_registry_init_on_postgres_from_the_command_line(
        pg_cluster: ThrowawayCluster, tmp_path: Path) -> None:
    from tests.registry.test_cli_registry import assert_one_line_error, mamoru

    database = pg_cluster.create_database(f"cli_{uuid.uuid4().hex[:8]}")
    secrets_dir = tmp_path / "secrets"
    settings = chain_settings(database, tmp_path / "data", secrets_dir)
    pg = settings.registry.postgres
    assert pg is not None
    env = {"MAMORU_REGISTRY__STORAGE": "postgres", "MAMORU_REGISTRY__POSTGRES__HOST": pg.host,
           "MAMORU_REGISTRY__POSTGRES__PORT": str(pg.port),
           "MAMORU_REGISTRY__POSTGRES__DBNAME": pg.dbname,
           "MAMORU_REGISTRY__POSTGRES__USER": pg.user,
           "MAMORU_REGISTRY__POSTGRES__PASSWORD_FILE": str(pg.password_file),
           "MAMORU_REGISTRY__POSTGRES__CA_FILE": str(pg.ca_file),
           "MAMORU_NEW_PASSWORD": "a long new password"}
    owner = owner_login(database, secrets_dir)
    made = mamoru(settings.data_dir, "registry", "init", "--admin", "boss", "--pg-owner",
                  owner.user, "--pg-owner-password-file", str(owner.password_file), **env)
    assert made.returncode == 0, made.stderr
    assert f"registry created in PostgreSQL 127.0.0.1:{pg.port}/{pg.dbname}" in made.stdout
    assert not (settings.data_dir / "registry.db").exists()  # nothing of it in local files
    with open_registry_from(settings) as ctx:
        assert ctx.backend == "postgres" and ctx.repo.user_by_name("boss") is not None
    again = mamoru(settings.data_dir, "registry", "init", "--pg-owner", owner.user,
                   "--pg-owner-password-file", str(owner.password_file), **env)
    assert_one_line_error(again, "already exists")
    wrong = password_file(tmp_path / "wrong", "owner.pw", "not-the-owner-password")
    refused = mamoru(settings.data_dir, "registry", "init", "--pg-owner", owner.user,
                     "--pg-owner-password-file", str(wrong), **env)
    assert_one_line_error(refused, "password was refused")
    assert "not-the-owner-password" not in refused.stderr
