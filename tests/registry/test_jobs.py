"""The expiry job and the joint-use sync run once per registry (issue 15, item 3; G-REG-4).

Two hosts' timers start the same job at once: the second start finds the
job's lock held, says "already running" and exits 0 (the timer's job is
being done), and a holder that crashes leaves no lock behind. On one host
the lock is a file next to the database; on the chain's PostgreSQL database
an advisory lock on the job's own connection.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from registry.domain import EntryState
from registry.jobs import (
    JOB_EXPIRY,
    JOB_JOINT_USE_SYNC,
    FileJobLock,
    PostgresJobLock,
    exclusive_job,
    job_key,
    job_lock_file,
)
from registry.storage.postgres.cluster import Database, ThrowawayCluster
from tests.registries import OBAMA, Registry


def test_a_second_file_lock_is_refused_until_the_first_is_released(tmp_path: Path) -> None:
    path = tmp_path / ".job-expiry.lock"
    first, second = FileJobLock(path), FileJobLock(path)
    assert first.try_acquire()
    assert not second.try_acquire()
    first.release()
    with exclusive_job(second) as held:
        assert held
        with exclusive_job(FileJobLock(path)) as again:
            assert not again
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_crashed_holder_leaves_no_file_lock(tmp_path: Path) -> None:
    path = tmp_path / ".job-expiry.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from registry.jobs import FileJobLock; "
         f"assert FileJobLock(Path({str(path)!r})).try_acquire(); print('held', flush=True); "
         "time.sleep(600)"], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert not FileJobLock(path).try_acquire()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        assert FileJobLock(path).try_acquire()
    finally:
        if holder.poll() is None:
            holder.kill()


def _mamoru(registry: Registry, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MAMORU_DATA_DIR": str(registry.data_dir), "PYTHONWARNINGS": "ignore",
           "MAMORU_PASSWORD": "unused"}
    return subprocess.run([sys.executable, "-m", "mamoru", *args], env=env, capture_output=True,
                          text=True, timeout=300, cwd=Path(__file__).parents[2])


@pytest.mark.cli
def test_a_second_expiry_run_says_already_running_and_leaves_the_work_to_the_first(
        registry: Registry) -> None:
    """G-REG-4: the entry past its retention is erased by exactly one run."""
    entry = registry.register(OBAMA)
    database = registry.ctx.paths.database
    registry.ctx.close()
    held = FileJobLock(job_lock_file(database, JOB_EXPIRY))
    assert held.try_acquire()  # another host's timer is running the job
    try:
        second = _mamoru(registry, "expire", "--now", "2190-01-01")
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stdout and "expired" not in second.stdout
        still = registry.reopen().repo.entry(entry)
        assert still is not None and still.state is EntryState.ACTIVE
        registry.ctx.close()
        syncing = FileJobLock(job_lock_file(database, JOB_JOINT_USE_SYNC))
        with exclusive_job(syncing) as held_sync:
            assert held_sync
            sync = _mamoru(registry, "joint-use", "sync", "--as", "mgr1")
        assert sync.returncode == 0 and "already running" in sync.stdout, sync.stderr
    finally:
        held.release()
    done = _mamoru(registry, "expire", "--now", "2190-01-01")
    assert done.returncode == 0, done.stderr
    assert "expired 1 entry" in done.stdout, done.stdout
    assert FileJobLock(job_lock_file(database, JOB_EXPIRY)).try_acquire()  # released


def test_job_keys_are_stable_and_distinct() -> None:
    assert job_key(JOB_EXPIRY) == job_key("expiry")
    assert job_key(JOB_EXPIRY) != job_key(JOB_JOINT_USE_SYNC)
    assert -(2**63) <= job_key(JOB_EXPIRY) < 2**63


@pytest.fixture
def chain(pg_cluster: ThrowawayCluster) -> Database:
    return pg_cluster.create_database(f"jobs{os.getpid()}{time.monotonic_ns() % 10**6}")


def test_postgres_job_lock_is_held_by_one_connection_and_dies_with_it(
        pg_cluster: ThrowawayCluster, chain: Database) -> None:
    first_conn, second_conn = chain.connect_app(), chain.connect_app()
    try:
        first = PostgresJobLock(first_conn, JOB_EXPIRY)
        second = PostgresJobLock(second_conn, JOB_EXPIRY)
        other_job = PostgresJobLock(second_conn, JOB_JOINT_USE_SYNC)
        assert first.try_acquire()
        assert not second.try_acquire()
        assert other_job.try_acquire()  # another job is not held back
        other_job.release()
        # The job's own transactions do not release it (a session-level lock).
        with first_conn.transaction(force_rollback=True):
            first_conn.execute("SELECT 1")
        assert not second.try_acquire()
        first.release()
        with exclusive_job(second) as held:
            assert held
            assert not first.try_acquire()
        # A holder that dies (its backend killed, as a crashed host's session ends)
        # leaves no lock.
        assert first.try_acquire()
        pid = first_conn.info.backend_pid
        with pg_cluster.connect_superuser() as su:
            su.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 10
        while not second.try_acquire():
            assert time.monotonic() < deadline, "the killed holder's lock stayed"
            time.sleep(0.1)
        second.release()
    finally:
        first_conn.close()
        second_conn.close()
