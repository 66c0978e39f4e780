"""An edge box's reads never wait for a writer's turn (issue 15: 2,000 boxes, one registry).

Found by the load benchmark (`benchmarks/chain.py --only load`): each API
worker served every request on one registry connection, one at a time, and
an alert held that turn ~25 ms (its snapshot decoded and encoded again,
sealed, written, audited). A burst of 50 alerts held it for seconds and the
polls of 2,000 boxes queued behind it: poll p99 51-86 s. Now the token check,
the index-version poll and the delta are read on a second, read-only
connection (`registry.api.gate.RegistryGate.reading`), the delta is built
once per worker and published version (`registry.api.deltas`), and an
alert's image work runs before its turn is taken.

Each test holds the registry's turn the way a long write does
(`RegistryGate.holding`, in the app's own event loop) and shows what is
answered meanwhile; the holder lets go by itself after `HOLD_S`, so a
request that waited for it is seen as having waited (not as a hung test).
A disabled box is refused by the first request after the disable commits,
also while the turn is held: the reader has no cache to go stale (bound: 0).
"""

from __future__ import annotations

import base64
import contextlib
import re
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import anyio
import anyio.to_thread
import cv2
import pytest
from fastapi.testclient import TestClient

from kernel.watchlist_index import open_delta
from mamoru.wiring import api_host
from registry.accounts import devices
from registry.alerts import queue
from registry.api import deltas
from registry.api.app import create_app
from registry.api.gate import RegistryGate
from registry.context import RegistryContext
from registry.domain import BoxStatus
from registry.storage.postgres.opened import PostgresStorage
from registry.watchlist import entries as watchlist
from tests.registries import BIDEN, OBAMA, OBAMA2, T0, Registry

VERSION = "/api/v1/edge/index/version"
DELTA = "/api/v1/edge/index/delta"
ALERTS = "/api/v1/edge/alerts"
HOLD_S = 20.0  # the holder's own limit: far beyond any answer that did not wait for it




@dataclass
class Api:
    reg: Registry
    client: TestClient
    token: str
    entry_id: str

    @property
    def gate(self) -> RegistryGate:
        gate = self.client.app.state.registry  # type: ignore[attr-defined]
        assert isinstance(gate, RegistryGate)
        return gate

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @contextlib.contextmanager
    def turn_held(self) -> Iterator[threading.Event]:
        """The registry's turn held in the app's event loop until the block ends (or HOLD_S);
        yields an event that is set while it is still held."""
        held, done = threading.Event(), threading.Event()

        async def hold() -> None:
            async with self.gate.holding():
                held.set()
                with anyio.move_on_after(HOLD_S):
                    while not done.is_set():
                        await anyio.sleep(0.01)
                held.clear()

        portal = self.client.portal
        assert portal is not None
        future = portal.start_task_soon(hold)
        assert held.wait(10), "the turn was never taken"
        try:
            yield held
        finally:
            done.set()
            future.result(30)


@pytest.fixture
def api(each_backend_registry: Registry) -> Iterator[Api]:
    reg = each_backend_registry
    entry_id = reg.register(OBAMA)
    token = devices.add_device(reg.ctx, admin=reg.user("admin"), name="box-1", now=T0)
    with TestClient(create_app(api_host(reg.settings, engine=reg.engine))) as client:
        yield Api(reg, client, token, entry_id)


def test_a_poll_is_answered_while_another_request_holds_the_registry(api: Api) -> None:
    with api.turn_held() as held:
        response = api.client.get(VERSION, headers=api.auth())
        answered_while_held = held.is_set()
    assert response.status_code == 200
    assert response.json()["version"] == api.reg.ctx.repo.watchlist_version()
    assert answered_while_held, "the poll waited for the registry's turn"


def test_a_delta_is_answered_while_another_request_holds_the_registry(api: Api) -> None:
    since = api.reg.ctx.repo.watchlist_version()
    api.reg.register(BIDEN)
    with api.turn_held() as held:
        response = api.client.get(DELTA, params={"since": since}, headers=api.auth())
        answered_while_held = held.is_set()
    assert response.status_code == 200, response.text
    delta = open_delta(response.content, key=api.reg.ctx.index_key(), name="box-1")
    assert delta.version == api.reg.ctx.repo.watchlist_version()
    assert answered_while_held, "the delta waited for the registry's turn"


def test_a_disabled_box_is_refused_at_once_even_while_the_registry_is_held(api: Api) -> None:
    assert api.client.get(VERSION, headers=api.auth()).status_code == 200
    devices.disable_device(api.reg.ctx, admin=api.reg.user("admin"), name="box-1", now=T0)
    with api.turn_held() as held:
        refused = api.client.get(VERSION, headers=api.auth())
        answered_while_held = held.is_set()
    assert refused.status_code == 401
    assert answered_while_held


def test_a_crowd_asking_for_one_delta_costs_one_build_until_the_next_publish(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    builds: list[int] = []
    real = deltas.build_delta

    def counted(*args: Any, **kwargs: Any) -> Any:
        builds.append(kwargs["since"])
        return real(*args, **kwargs)

    monkeypatch.setattr(deltas, "build_delta", counted)
    since = api.reg.ctx.repo.watchlist_version()
    api.reg.register(BIDEN)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(
            lambda _: api.client.get(DELTA, params={"since": since}, headers=api.auth()),
            range(40)))
    assert {a.status_code for a in answers} == {200}
    assert builds == [since]
    key = api.reg.ctx.index_key()
    first = open_delta(answers[0].content, key=key, name="box")
    watchlist.erase(api.reg.ctx, actor=api.reg.user("mgr1"), entry_id=api.entry_id,
                    reason="本人からの削除請求", now=T0)
    after = api.client.get(DELTA, params={"since": since}, headers=api.auth())
    newer = open_delta(after.content, key=key, name="box")
    assert builds == [since, since]  # the publish emptied the cache
    assert newer.version == api.reg.ctx.repo.watchlist_version() > first.version
    assert api.entry_id in newer.removed_entries()


def test_the_edge_reads_connection_refuses_to_write(api: Api) -> None:
    portal = api.client.portal
    assert portal is not None
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the two databases' own errors
        portal.call(api.gate.read, lambda ctx: ctx.repo.bump_watchlist_version())
    message = str(caught.value).lower()
    assert "readonly" in message or "read-only" in message, message
    assert api.reg.ctx.repo.watchlist_version() == api.client.get(
        VERSION, headers=api.auth()).json()["version"]


def test_an_alert_s_snapshot_is_decoded_before_the_registry_is_taken(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    decoded = threading.Event()
    real = queue.read_snapshot

    def observed(snapshot_b64: str) -> bytes:
        kept = real(snapshot_b64)
        decoded.set()
        return kept

    monkeypatch.setattr(queue, "read_snapshot", observed)
    ok, png = cv2.imencode(".png", api.reg.image(OBAMA2))
    assert ok
    body = {"alert_id": "a" * 32, "camera": "entrance-1",
            "detected_at": "2026-01-20T09:15:02.250000+09:00", "score": 0.71,
            "threshold": 0.363, "entry_id": api.entry_id,
            "index_version": api.reg.ctx.repo.watchlist_version(),
            "snapshot_png_b64": base64.b64encode(png.tobytes()).decode("ascii")}
    with api.turn_held() as held, ThreadPoolExecutor(1) as pool:
        sent = pool.submit(api.client.post, ALERTS, json=body, headers=api.auth())
        assert decoded.wait(HOLD_S / 2), "the snapshot was not decoded while the turn was held"
        decoded_while_held = held.is_set()
    assert sent.result(30).status_code == 201
    assert decoded_while_held
    assert [a.alert_id for a in queue.list_alerts(api.reg.ctx)] == ["a" * 32]


def test_a_poll_takes_at_most_two_pooled_threads(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The token check and the header read; the app's small dependencies (gate, host, clock)
    run in the event loop: a thread hop each was paid by every box request."""
    hops: list[str] = []
    real = anyio.to_thread.run_sync

    async def counted(func: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(func, "__name__", repr(func)))
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    assert api.client.get(VERSION, headers=api.auth()).status_code == 200
    assert len(hops) <= 2, hops


STATUS = "/api/v1/edge/status"
REPORT = {"index_version": 3, "index_state": "current", "outbox_pending": 0,
          "cameras_live": 2, "cameras_total": 2}


def test_a_status_report_is_stored_while_another_request_holds_the_registry(api: Api) -> None:
    """~67 reports a second from 2,000 boxes waited behind every alert of a burst for the
    registry's turn (status p99 1.7 s); they have a connection and turn of their own."""
    with api.turn_held() as held:
        response = api.client.post(STATUS, json=REPORT, headers=api.auth())
        answered_while_held = held.is_set()
    assert response.status_code == 204, response.text
    assert answered_while_held, "the status report waited for the registry's turn"
    [stored] = api.reg.ctx.repo.box_statuses()
    assert (stored.device, stored.index_version, stored.cameras_live) == ("box-1", 3, 2)


@contextlib.contextmanager
def statements(ctx: RegistryContext) -> Iterator[list[str]]:
    """Every statement `ctx`'s connection sends meanwhile: SQLCipher's trace callback,
    libpq's protocol trace on PostgreSQL (one Query or Sync per round trip)."""
    seen: list[str] = []
    storage = ctx.storage
    if isinstance(storage, PostgresStorage):
        with tempfile.TemporaryFile("w+") as trace:
            storage.connection.pgconn.trace(trace.fileno())
            try:
                yield seen
            finally:
                storage.connection.pgconn.untrace()
                trace.seek(0)
                seen.extend(line for line in trace.read().splitlines()
                            if re.search(r"\tF\t\d+\t(Query|Sync)\b", line))
        return
    connection = ctx.sqlcipher_connection()
    connection.set_trace_callback(seen.append)
    try:
        yield seen
    finally:
        connection.set_trace_callback(None)


def test_a_repeated_status_report_is_one_statement_and_keeps_the_box_from_silence(
        api: Api) -> None:
    """A report that repeats the stored one but for its time: one statement, no read first
    and no transaction around it (three round trips on PostgreSQL before); the box counts
    as silent exactly SILENT_AFTER after its newest report, as before."""
    ctx = api.reg.ctx
    first = BoxStatus(device="box-1", reported_at=T0, **REPORT)
    devices.report_box_status(ctx, first)
    later = T0 + timedelta(seconds=30)
    with statements(ctx) as sent:
        devices.report_box_status(ctx, replace(first, reported_at=later))
    assert len(sent) == 1, sent
    assert ctx.repo.box_statuses() == [replace(first, reported_at=later)]
    assert devices.boxes_needing_attention(ctx.repo, later + devices.SILENT_AFTER) == []
    [(status, why)] = devices.boxes_needing_attention(
        ctx.repo, later + devices.SILENT_AFTER + timedelta(seconds=1))
    assert (status.device, why) == ("box-1", "silent")


def test_an_alert_on_postgresql_takes_fifteen_round_trips(chain: Registry) -> None:
    """Issue 15 load: 26 round trips per alert before (a savepoint around the evidence
    insert, seven statements for the audit append, a cursor to check the head anchor);
    now the writer lock, the two checks, the evidence, the unit of work with the alert and
    the audit append (`audit.locked_head`, `audit.append`), the head anchor, the unlock."""
    entry_id = chain.register(OBAMA)
    devices.add_device(chain.ctx, admin=chain.user("admin"), name="box-1", now=T0)
    device = chain.ctx.repo.device_by_name("box-1")
    assert device is not None
    ok, png = cv2.imencode(".png", chain.image(OBAMA2))
    assert ok
    snapshot_b64 = base64.b64encode(png.tobytes()).decode("ascii")
    for n in range(3):  # the last one after psycopg prepared its statements
        payload = queue.AlertIn(
            alert_id=f"{n:032x}", camera="entrance-1", detected_at=T0, score=0.71,
            threshold=0.363, entry_id=entry_id, index_version=1,
            snapshot_png_b64=snapshot_b64)
        snapshot = queue.ReceivedSnapshot.of(snapshot_b64)
        with statements(chain.ctx) as sent:
            assert queue.receive_alert(chain.ctx, device=device, payload=payload, now=T0,
                                       snapshot=snapshot) == (payload.alert_id, True)
    assert len(sent) == 15, f"{len(sent)} round trips:\n" + "\n".join(sent)
    report = chain.ctx.audit.verify()
    assert report.ok and report.records >= 3, report.problem
