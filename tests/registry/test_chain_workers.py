"""Several API workers and several hosts against a chain's PostgreSQL database (issue 15, item 3).

The same checks as tests/registry/test_workers.py, on the registry configured
the way a chain's operator does (`registry.storage = "postgres"`,
tests/registry/chain.py), through the settings alone: a real `mamoru serve
--workers 2` counts its rate limit in the database (summed over both workers,
the counts visible in `registry.rate_limit_hits`), and a box's status report
received by one worker is on the tablet page every worker serves. The
scheduled jobs take their lock in the database: a second host (its own data
folder, sharing only the database and the master key) finds the expiry job
held, says so and exits 0 (G-REG-4: an entry is expired by one run).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from models.engine import FaceEngine
from registry.accounts.devices import add_device
from registry.clock import add_years
from registry.domain import EntryState
from registry.jobs import JOB_EXPIRY, job_key
from registry.storage.postgres.cluster import ThrowawayCluster
from tests.registries import OBAMA, PASSWORD, T0, Registry
from tests.registry.chain import chain_registry
from tests.registry.test_workers import SESSION, no_keep_alive, served, wait_until_up

REPO = Path(__file__).resolve().parents[2]
STATUS = "/api/v1/edge/status"


def chain_env(reg: Registry) -> dict[str, str]:
    """The chain database's settings as a unit's environment: paths of files, nothing secret."""
    pg = reg.settings.registry.postgres
    assert pg is not None
    return {"MAMORU_REGISTRY__STORAGE": "postgres", "MAMORU_REGISTRY__POSTGRES__HOST": pg.host,
            "MAMORU_REGISTRY__POSTGRES__PORT": str(pg.port),
            "MAMORU_REGISTRY__POSTGRES__DBNAME": pg.dbname,
            "MAMORU_REGISTRY__POSTGRES__USER": pg.user,
            "MAMORU_REGISTRY__POSTGRES__PASSWORD_FILE": str(pg.password_file),
            "MAMORU_REGISTRY__POSTGRES__CA_FILE": str(pg.ca_file)}


@pytest.fixture
def chain(pg_cluster: ThrowawayCluster, tmp_path: Path, engine_default: FaceEngine,
          face_data: Path) -> Registry:
    reg, _ = chain_registry(pg_cluster, tmp_path, engine_default, face_data)
    return reg


def _box_state(page: str, device: str) -> str | None:
    found = re.search(rf'id="box-{re.escape(device)}" data-box-state="(\w+)"', page)
    return found.group(1) if found else None


@pytest.mark.server
def test_two_workers_on_postgres_share_the_rate_limit_and_the_box_board(
        chain: Registry) -> None:
    """G-SEC-2: the limit is per client over both workers; a box's report is on every
    worker's tablet page (before: in the memory of the one worker that received it)."""
    token = add_device(chain.ctx, admin=chain.user("admin"), name="door-box", now=T0)
    chain.ctx.close()
    with served(chain, "--insecure-http", env=chain_env(chain), rate_limit_per_minute=40,
                login_rate_limit_per_minute=30) as (server, port):
        with no_keep_alive(f"http://127.0.0.1:{port}") as client:
            reached = wait_until_up(server, client)
            login = client.post(SESSION, json={"username": "staff", "password": PASSWORD})
            assert login.status_code == 200, login.text
            cookies = dict(login.cookies)
            client.cookies.clear()
            for name, value in cookies.items():  # sent over plain HTTP on loopback too
                client.cookies.set(name, value)
            report = {"index_version": 3, "index_state": "stale", "outbox_pending": 2,
                      "cameras_live": 1, "cameras_total": 2}
            sent = client.post(STATUS, json=report, headers={"Authorization": f"Bearer {token}"})
            assert sent.status_code == 204, sent.text
            states = []
            for _ in range(8):  # fresh connections: either worker serves the page
                page = client.get("/alerts")
                assert page.status_code == 200, page.text
                states.append(_box_state(page.text, "door-box"))
            assert states == ["stale"] * 8
            used = reached + 1 + 8  # the polls, the report, the pages (a login: its own)
            statuses = [client.get(SESSION).status_code for _ in range(40)]
    assert statuses.count(200) == 40 - used, (used, statuses)  # the session, while allowed
    assert statuses[40 - used:] == [429] * used
    counted = chain.reopen().storage.connection.execute(  # type: ignore[attr-defined]
        "SELECT sum(count) FROM registry.rate_limit_hits WHERE bucket LIKE 'all|%'").fetchone()
    assert counted is not None and counted[0] == 40  # in the database, not in each worker
    (status,) = chain.ctx.repo.box_statuses()
    assert (status.device, status.index_state, status.outbox_pending) == ("door-box", "stale", 2)


def _another_host(chain: Registry, tmp_path: Path) -> Path:
    """A second host's data folder: the same master key, none of the first host's files."""
    folder = tmp_path / "host-b"
    folder.mkdir(mode=0o700)
    key_file = chain.settings.resolved_key_file
    shutil.copy2(key_file, folder / key_file.relative_to(chain.data_dir))
    return folder


def _mamoru(data_dir: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mamoru", *args],
        env={**os.environ, **env, "MAMORU_DATA_DIR": str(data_dir), "PYTHONWARNINGS": "ignore"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)


def _holders(chain: Registry) -> list[int]:
    """Backend pids holding the expiry job's advisory lock, as the database sees it."""
    key = job_key(JOB_EXPIRY)
    rows = chain.reopen().storage.connection.execute(  # type: ignore[attr-defined]
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND ((classid::bigint << 32) | objid::bigint) = %s", (key & 0xFFFFFFFFFFFFFFFF,)
    ).fetchall()
    chain.ctx.close()
    return [int(r[0]) for r in rows]


@pytest.mark.cli
def test_expire_started_on_two_hosts_at_once_runs_once(chain: Registry, tmp_path: Path) -> None:
    """G-REG-4: the lock is in the database: host B (no file of host A's) finds it held."""
    entry = chain.register(OBAMA)
    chain.ctx.close()
    env = chain_env(chain)
    host_b = _another_host(chain, tmp_path)
    due = add_years(T0, 3).date().isoformat()
    # Host A's run, held inside the job (as a long expiry run is) by the same wiring.
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import time; from mamoru.settings import get_settings; "
         "from mamoru.wiring import job_lock; from registry.jobs import JOB_EXPIRY\n"
         "with job_lock(get_settings(), JOB_EXPIRY) as held:\n"
         "    print('held' if held else 'refused', flush=True); time.sleep(600)"],
        env={**os.environ, **env, "MAMORU_DATA_DIR": str(chain.data_dir)},
        stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert len(_holders(chain)) == 1  # an advisory lock in PostgreSQL, not a file
        second = _mamoru(host_b, env, "expire", "--now", f"{due}T12:00:00Z")
        out, err = second.communicate(timeout=300)
        assert second.returncode == 0, err
        assert "already running" in out and "expired" not in out, out
        still = chain.reopen().repo.entry(entry)
        assert still is not None and still.state is EntryState.ACTIVE
        chain.ctx.close()
        holder.send_signal(signal.SIGKILL)  # host A crashes: its session and lock go
        holder.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _holders(chain):
            assert time.monotonic() < deadline, "the crashed holder's lock stayed"
            time.sleep(0.2)
    finally:
        if holder.poll() is None:
            holder.kill()
    # Both hosts' timers at once: one run expires the entry, the other finds nothing to do.
    runs = [_mamoru(folder, env, "expire", "--now", f"{due}T12:00:00Z")
            for folder in (chain.data_dir, host_b)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert sum("expired 1 entry" in out for out, _ in outputs) == 1, outputs
    ctx = chain.reopen()
    gone = ctx.repo.entry(entry)
    assert gone is not None and gone.state is EntryState.EXPIRED
    expiries = [r for r in ctx.repo.audit_rows() if r.action == "expire" and r.entry_id == entry]
    assert len(expiries) == 1, expiries
    ctx.close()
