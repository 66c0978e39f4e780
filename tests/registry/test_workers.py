"""Several API workers against one registry (issue 15, item 3; G-SEC-2).

A real `mamoru serve --workers 2` on a real socket: requests without
keep-alive land on either worker, and still the rate limit is the limit
summed over both (not twice it), a login lockout earned on one worker
refuses on the other, and HTTPS is spoken with our TLS context by every
worker. The counters themselves (`registry.rate_limits`) are
checked on the SQLite file and on PostgreSQL, two "workers" being two stores.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest

from registry.rate_limits import (
    WINDOW_S,
    Hit,
    MemoryRateLimitStore,
    RateLimitStoreError,
    SharedRateLimitStore,
    SqliteFileCounters,
    WindowCounters,
    retry_after,
)
from registry.storage.postgres.base import prepare_session
from registry.storage.postgres.cluster import Database, ThrowawayCluster
from registry.storage.postgres.rate_limits import PostgresWindowCounters
from registry.storage.postgres.schema import migrate
from tests.registries import PASSWORD, Registry
from tests.registry.test_serve_tls import _free_port, _handshake

SESSION = "/api/v1/session"


@contextmanager
def served(registry: Registry, *args: str, env: dict[str, str] | None = None,
           **web: int) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`mamoru serve --workers 2 ARGS` on the test's registry, with some `web` settings
    (and `env`: more settings, e.g. the chain database's)."""
    port = _free_port()
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "MAMORU_DATA_DIR": str(registry.data_dir),
           **(env or {}),
           **{f"MAMORU_WEB__{name.upper()}": str(value) for name, value in web.items()}}
    server = subprocess.Popen(
        [sys.executable, "-m", "mamoru", "serve", "--workers", "2", "--port", str(port), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield server, port
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=60)
        assert server.returncode in (0, -15), output
        assert "Traceback" not in output and PASSWORD not in output, output
        assert output.count("Started server process") == 2, output


def wait_until_up(server: subprocess.Popen[str], client: httpx.Client) -> int:
    """Polls until both workers answer; the number of requests that reached the app."""
    reached = 0
    deadline = time.monotonic() + 120
    while True:
        try:
            client.get("/api/v1/notice")
            reached += 1
            if reached >= 6:  # several fresh connections answered: both workers are up
                return reached
        except httpx.TransportError:
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.3)


def no_keep_alive(base_url: str, **kwargs: object) -> httpx.Client:
    """Every request on a new connection, so the kernel hands it to either worker."""
    return httpx.Client(base_url=base_url, timeout=30, headers={"Connection": "close"},
                        limits=httpx.Limits(max_keepalive_connections=0), **kwargs)  # type: ignore[arg-type]


@pytest.mark.server
def test_two_workers_share_one_rate_limit_and_one_login_lockout(registry: Registry) -> None:
    """G-SEC-2: the limits hold per client address, not per worker process."""
    with served(registry, "--insecure-http", rate_limit_per_minute=30,
                login_rate_limit_per_minute=12, lockout_failures=5) as (server, port):
        with no_keep_alive(f"http://127.0.0.1:{port}") as client:
            reached = wait_until_up(server, client)
            # The lockout: 5 failures spread over both workers lock the name on both.
            wrong = {"username": "mgr1", "password": "not the password"}
            assert [client.post(SESSION, json=wrong).status_code for _ in range(5)] == [401] * 5
            right = client.post(SESSION, json={"username": "mgr1", "password": PASSWORD})
            assert right.status_code == 401, right.text  # locked, whichever worker answers
            # The login limit (12 a minute) counts across workers too: 6 used, 6 left.
            logins = [client.post(SESSION, json=wrong).status_code for _ in range(10)]
            assert logins == [401] * 6 + [429] * 4, logins
            # Every other request: 30 a minute from this address, summed over both workers.
            statuses = [client.get(SESSION).status_code for _ in range(40)]
    admitted = reached + statuses.count(401)
    assert admitted == 30, (reached, statuses)
    assert statuses[-(40 - statuses.count(401)):] == [429] * (40 - statuses.count(401))
    locks = [r for r in registry.reopen().repo.audit_rows() if r.action == "login_locked"]
    assert len(locks) == 1, locks  # one lock, recorded once, though two workers counted


@pytest.mark.server
def test_every_worker_speaks_https_with_our_tls_context(registry: Registry) -> None:
    """The TLS context factory reaches spawned workers: pinned certificate, no CBC suites."""
    with served(registry) as (server, port):
        tls_dir = registry.data_dir / "tls"
        deadline = time.monotonic() + 60
        while not (tls_dir / "cert.pem").is_file():
            assert server.poll() is None and time.monotonic() < deadline, "no certificate made"
            time.sleep(0.1)
        trust = ssl.create_default_context(cafile=str(tls_dir / "cert.pem"))
        with no_keep_alive(f"https://127.0.0.1:{port}", verify=trust) as client:
            wait_until_up(server, client)
            for _ in range(6):  # fresh handshakes, with either worker
                assert client.get(SESSION).status_code == 401
                assert "GCM" in _handshake(port, tls_dir / "cert.pem", ciphers="ECDHE+AESGCM")
                with pytest.raises(ssl.SSLError):
                    _handshake(port, tls_dir / "cert.pem", ciphers="ECDHE-ECDSA-AES128-SHA")


# A worker's start-up (imports, its face engine) on a busy box, before it can answer the
# supervisor's ping: longer than uvicorn's default health-check timeout of 5 s.
SLOW_START = """import sys, time
if "--multiprocessing-fork" in sys.argv:  # a worker spawned by uvicorn's supervisor
    time.sleep(8)
"""


@pytest.mark.server
def test_workers_slow_to_start_are_not_killed_as_hung(registry: Registry, tmp_path: Path) -> None:
    """Found by the suite on two xdist workers on a loaded 2-core machine: uvicorn killed each
    worker still starting after 5 s as hung and started another ("Child process died"), so the
    server never came up while the load lasted (mamoru/commands/serve.py, WORKER_HEALTHCHECK_S)."""
    slow = tmp_path / "slow-start"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(SLOW_START, encoding="utf-8")
    path = os.pathsep.join(filter(None, (str(slow), os.environ.get("PYTHONPATH"))))
    with served(registry, "--insecure-http", env={"PYTHONPATH": path}) as (server, port):
        with no_keep_alive(f"http://127.0.0.1:{port}") as client:
            wait_until_up(server, client)  # and `served` checks: each worker started once


@pytest.mark.cli
def test_workers_is_validated(registry: Registry) -> None:
    env = {**os.environ, "MAMORU_DATA_DIR": str(registry.data_dir)}
    for bad in ("0", "65"):
        done = subprocess.run([sys.executable, "-m", "mamoru", "serve", "--workers", bad],
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "--workers" in done.stderr and "Traceback" not in (
            done.stderr)


# --- the shared counters -----------------------------------------------------------------

class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def admitted(stores: list[SharedRateLimitStore], key: str, limit: int, tries: int) -> int:
    """Requests admitted when `tries` requests alternate over the stores (the workers)."""
    return sum(stores[i % len(stores)].admit_blocking(key, limit) is None for i in range(tries))


def test_two_stores_over_one_file_admit_the_limit_once(tmp_path: Path) -> None:
    clock = Clock(1_000 * WINDOW_S + 30.0)
    stores = [SharedRateLimitStore(lambda: SqliteFileCounters(tmp_path / "rl.db"), clock=clock)
              for _ in range(2)]
    assert admitted(stores, "all|10.0.0.1", 5, 12) == 5
    assert admitted(stores, "all|10.0.0.2", 5, 3) == 3  # per address
    assert oct((tmp_path / "rl.db").stat().st_mode & 0o777) == "0o600"
    # The control: two per-process stores let twice the limit through.
    memory = [MemoryRateLimitStore(), MemoryRateLimitStore()]
    assert sum(memory[i % 2].admit_now("all|10.0.0.1", 5) is None for i in range(12)) == 10
    for store in stores:
        store.close()


def test_the_previous_minute_weighs_in_so_a_boundary_is_no_burst(tmp_path: Path) -> None:
    start = 2_000 * WINDOW_S
    clock = Clock(start + 59.0)
    store = SharedRateLimitStore(lambda: SqliteFileCounters(tmp_path / "rl.db"), clock=clock)
    assert admitted([store], "k", 10, 10) == 10
    clock.now = start + WINDOW_S + 1.0  # a new minute, but 59/60 of the last one still counts
    assert store.admit_blocking("k", 10) == 5  # 6 s in, 9 of the 10 still count
    clock.now = start + WINDOW_S + 30.0  # half of it counts: 5 more
    assert admitted([store], "k", 10, 8) == 5
    clock.now = start + 3 * WINDOW_S  # two minutes on: nothing counts, old rows pruned
    assert admitted([store], "k", 10, 12) == 10
    store.close()


def test_retry_after_is_when_the_estimate_lets_one_more_in() -> None:
    assert retry_after(Hit(False, 0, 10), 10, elapsed=1.0) == 5  # 6 s in, 9 of 10 carried
    assert retry_after(Hit(False, 10, 0), 10, elapsed=20.0) == 46  # 40 s, then 10% of next
    assert retry_after(Hit(False, 1, 1), 1, elapsed=59.9) >= 1


class Broken:
    def hit(self, key: str, window: int, carried_weight: float, limit: int) -> Hit:
        raise RateLimitStoreError("database unreachable")

    def prune(self, before: int) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_failing_shared_store_falls_back_to_this_workers_limits() -> None:
    def broken() -> WindowCounters:
        return Broken()

    store = SharedRateLimitStore(broken)

    async def ask() -> list[int | None]:
        return [await store.admit("all|10.0.0.1", 3) for _ in range(4)]

    answers = asyncio.run(ask())
    assert answers[:3] == [None] * 3 and answers[3] is not None and answers[3] >= 1
    store.close()


@pytest.fixture
def chain(pg_cluster: ThrowawayCluster) -> Database:
    database = pg_cluster.create_database(f"rl{os.getpid()}{time.monotonic_ns() % 10**6}")
    with database.connect_owner() as owner:
        migrate(owner, app_role=database.app)
    return database


def test_postgres_counters_hold_across_connections_under_concurrency(chain: Database) -> None:
    """Two workers (two connections) hammering from 8 threads: exactly the limit admitted."""
    clock = Clock(3_000 * WINDOW_S + 10.0)
    stores = [SharedRateLimitStore(
        lambda: PostgresWindowCounters(lambda: prepare_session(chain.connect_app())),
        clock=clock) for _ in range(2)]
    results: list[bool] = []
    lock = threading.Lock()

    def hammer(store: SharedRateLimitStore) -> None:
        for _ in range(25):
            ok = store.admit_blocking("login|10.0.0.9", 40) is None
            with lock:
                results.append(ok)

    threads = [threading.Thread(target=hammer, args=(stores[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 200 and results.count(True) == 40
    # 10 s into the next minute 50/60 of those 40 still count: 6 more, not 40.
    clock.now += WINDOW_S
    assert admitted(stores, "login|10.0.0.9", 40, 20) == 6
    with chain.connect_app() as conn:
        rows = conn.execute("SELECT count FROM registry.rate_limit_hits ORDER BY window_start"
                            ).fetchall()
        assert rows == [(40,), (6,)]
        assert conn.execute("SELECT relpersistence FROM pg_class "
                            "WHERE oid = 'registry.rate_limit_hits'::regclass").fetchone() == (
            "u",)
    for store in stores:
        store.close()


def test_postgres_store_refuses_nothing_it_cannot_count(chain: Database) -> None:
    """A connection that cannot be opened is a RateLimitStoreError (the fallback takes over)."""
    def unreachable() -> psycopg.Connection[tuple[object, ...]]:
        raise psycopg.OperationalError("connection refused")

    with pytest.raises(RateLimitStoreError):
        PostgresWindowCounters(unreachable)
