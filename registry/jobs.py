"""Scheduled jobs run once per registry, however many hosts start them (issue 15, item 3).

The expiry job (`mamoru expire`) and the joint-use sync (`mamoru joint-use
sync`) are started by a timer on every host that has one: a chain with
several API hosts starts them several times at once. Each run takes its
job's `JobLock` first and does nothing if another run holds it; the holder
does the work, and a crashed holder's lock is gone with its process (a file
lock with its file descriptor, a PostgreSQL advisory lock with its session),
so the next start runs it. A run that finds the job held reports "already
running" and succeeds (exit 0): the timer's job is being done.

- `FileJobLock`: one host on SQLCipher: a non-blocking `flock` on a file
  next to the registry database (`job_lock_file`).
- `PostgresJobLock`: the chain's database: `pg_try_advisory_lock(job_key)`
  on a connection opened for the job alone and held while it runs (a
  session-level lock: the job's own transactions commit and roll back
  without releasing it; closing or losing the connection does).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import psycopg

JOB_EXPIRY = "expiry"
JOB_JOINT_USE_SYNC = "joint-use-sync"


class JobLock(Protocol):
    """A lock for one job, never waited for: whoever holds it runs the job."""

    def try_acquire(self) -> bool:
        """True if this run now holds the job (until `release`), False if another does."""
        ...

    def release(self) -> None:
        """Let the next run have it (also when this one failed)."""
        ...


@contextmanager
def exclusive_job(lock: JobLock) -> Iterator[bool]:
    """Yields True while this run holds the job, False (at once) if another run does."""
    if not lock.try_acquire():
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def job_lock_file(database: Path, job: str) -> Path:
    """The lock file of `job` next to the registry database (same folder, same owner)."""
    return database.parent / f".job-{job}.lock"


class FileJobLock:
    """A non-blocking exclusive `flock` on `path` (0600, created if missing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this run")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor drops the flock


def job_key(job: str) -> int:
    """The advisory-lock key of `job`: a stable signed 64-bit number from its name.

    Derived, not numbered by hand, so two jobs cannot share a key by a typo;
    prefixed so no other use of advisory locks in the database (the
    migration lock) collides with it by chance.
    """
    digest = hashlib.blake2b(f"mamoru-job:{job}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresJobLock:
    """`pg_try_advisory_lock(job_key(job))` on `connection`, a connection for this job alone.

    The caller opens the connection (as the application role) and closes it
    after `release`; the lock never outlives it. Autocommit is set here: an
    advisory lock taken inside a transaction that is then rolled back is
    still held (session level), but an idle-in-transaction session would hold
    back vacuum for the whole run.
    """

    def __init__(self, connection: psycopg.Connection[Any], job: str) -> None:
        self._db = connection
        self._db.autocommit = True
        self.key = job_key(job)
        self._held = False

    def try_acquire(self) -> bool:
        row = self._db.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        self._held = bool(row and row[0])
        return self._held

    def release(self) -> None:
        if self._held and not self._db.closed:
            self._db.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        self._held = False
