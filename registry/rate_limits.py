"""Where the rate limits' counts live: this process, or a store every API worker shares.

`RateLimits` (`limits.py`) asks its `RateLimitStore` once per request whether
the client may go on. Two kinds:

- `MemoryRateLimitStore`: counts in this process, an exact sliding log of the
  last 60 s per client. Right for one worker (the default, `mamoru serve`),
  wrong for several: each worker would let the full limit through, N times it
  in all.
- `SharedRateLimitStore`: counts in a store all workers write, so the limit
  holds summed over every worker of every host (issue 15, item 3). It keeps
  two fixed windows per client (the current minute and the one before) and
  admits while `previous * (1 - elapsed) + current < limit`, the usual
  sliding-window estimate: no burst of 2x the limit at a window boundary, two
  counters per client instead of a log. A refused request is not counted (as
  in memory), so a client that stops hammering gets back in on time.
  The counters are `WindowCounters`: `SqliteFileCounters` here (a plain SQLite
  file next to the registry, for the workers of one host) and
  `registry.storage.postgres.rate_limits.PostgresWindowCounters` (the chain's
  database, for several hosts).

Why a thread per store: the counter statement blocks (a file lock, a
network round trip) and the middleware runs on the event loop. Each
`SharedRateLimitStore` owns one thread and one connection; `admit` hands
the statement to it and awaits the answer, so the loop keeps serving other
requests meanwhile. Measured (`benchmarks/rate_limits.py`, this machine,
loaded): see that script's table; the hop to the thread costs tens of
microseconds, about what the statement itself costs on the SQLite file.
A batched local cache would be cheaper still but would let a burst spread
over N workers pass N times before the counts meet: the login limit is what
keeps password guessing slow, so counts are exact instead.

If the shared store fails (disk full, database unreachable), the request is
judged by a per-process `MemoryRateLimitStore` instead of failing with a 500
or passing unlimited: degraded to today's limits, logged once per failure run.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

logger = logging.getLogger(__name__)

WINDOW_S = 60  # every limit is "per minute"


class RateLimitStoreError(RuntimeError):
    """The shared counters could not be read or written (the cause is chained)."""


class RateLimitStore(Protocol):
    """Counts one client's requests against a per-minute limit."""

    async def admit(self, key: str, limit: int) -> int | None:
        """None if admitted (and counted), else the seconds to wait (>= 1) before trying again."""
        ...

    def close(self) -> None:
        """Release the store's connection (the app is stopping); the next `admit` reopens it."""
        ...


class MemoryRateLimitStore:
    """An exact sliding log of the last `WINDOW_S` seconds per key, in this process only."""

    MAX_TRACKED = 10_000  # keys; beyond this the idle ones are forgotten first

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}

    async def admit(self, key: str, limit: int) -> int | None:
        return self.admit_now(key, limit)

    def close(self) -> None:
        self._seen.clear()

    def admit_now(self, key: str, limit: int) -> int | None:
        """`admit` without the coroutine: nothing here waits."""
        now = self._clock()
        times = self._seen.get(key)
        if times is None:
            if len(self._seen) >= self.MAX_TRACKED:
                self._forget_idle(now)
            times = self._seen[key] = deque()
        while times and now - times[0] >= WINDOW_S:
            times.popleft()
        if len(times) >= limit:
            return max(1, math.ceil(WINDOW_S - (now - times[0])))
        times.append(now)
        return None

    def _forget_idle(self, now: float) -> None:
        idle = [k for k, v in self._seen.items() if not v or now - v[-1] >= WINDOW_S]
        for key in idle:
            del self._seen[key]
        if len(self._seen) >= self.MAX_TRACKED:  # all busy: forget the least recent half
            by_age = sorted(self._seen, key=lambda k: self._seen[k][-1])
            for key in by_age[: len(by_age) // 2]:
                del self._seen[key]


@dataclass(frozen=True)
class Hit:
    """One counter statement's answer: admitted or not, and the two windows' counts."""

    admitted: bool
    current: int  # requests counted in the current window (this one included if admitted)
    previous: int  # requests counted in the window before


class WindowCounters(Protocol):
    """Fixed-window counters shared by every worker: one back-end's blocking statements.

    Used from one thread only (the store's), which also opens it.
    """

    def hit(self, key: str, window: int, carried_weight: float, limit: int) -> Hit:
        """Count one request in `window` (its start, in epoch seconds) if
        `current + 1 + previous * carried_weight <= limit`, atomically across workers."""
        ...

    def prune(self, before: int) -> None:
        """Forget windows that started before `before` (no estimate reads them any more)."""
        ...

    def close(self) -> None: ...


def retry_after(hit: Hit, limit: int, elapsed: float) -> int:
    """Seconds until the sliding estimate lets one more request in, if nobody else asks.

    Within the current window the previous one's weight falls as time passes;
    if the current window alone is full, wait into the next one, where the
    current count becomes the falling part.
    """
    room = limit - 1 - hit.current  # what the previous window's share must fall to
    if room >= 0 and hit.previous > 0:
        wait = WINDOW_S * (1 - room / hit.previous) - elapsed
    else:  # the current window alone fills the limit: its share must fall next window
        fraction = 1 - (limit - 1) / hit.current if hit.current else 0.0
        wait = WINDOW_S - elapsed + WINDOW_S * fraction
    return max(1, math.ceil(wait))


class SharedRateLimitStore:
    """The sliding-window estimate over `WindowCounters` every worker shares.

    `open_counters` is called on the store's own thread, at the first
    request: each worker process opens its own connection after it started.
    `clock` is wall time (epoch seconds): every host must agree on the minute.
    """

    def __init__(self, open_counters: Callable[[], WindowCounters], *,
                 clock: Callable[[], float] = time.time) -> None:
        self._open = open_counters
        self._clock = clock
        self._counters: WindowCounters | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rate-limits")
        self._pruned_window = -1
        self._fallback = MemoryRateLimitStore()
        self._failing = False

    async def admit(self, key: str, limit: int) -> int | None:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._thread, self.admit_blocking, key, limit)
        except RateLimitStoreError as exc:
            if not self._failing:
                logger.warning("shared rate-limit store failed (%s); counting in this worker "
                               "until it answers again", exc.__cause__ or exc)
                self._failing = True
            return self._fallback.admit_now(key, limit)

    def admit_blocking(self, key: str, limit: int) -> int | None:
        """One request's decision, on the calling thread (the store's, or a benchmark's)."""
        now = self._clock()
        window = int(now // WINDOW_S) * WINDOW_S
        elapsed = now - window
        counters = self._connected()
        if window != self._pruned_window:  # once a window per worker
            counters.prune(window - WINDOW_S)
            self._pruned_window = window
        hit = counters.hit(key, window, 1 - elapsed / WINDOW_S, limit)
        if self._failing:
            logger.warning("shared rate-limit store answers again")
            self._failing = False
        return None if hit.admitted else retry_after(hit, limit, elapsed)

    def _connected(self) -> WindowCounters:
        if self._counters is None:
            self._counters = self._open()
        return self._counters

    def close(self) -> None:
        def close_counters() -> None:
            if self._counters is not None:
                self._counters.close()
                self._counters = None

        # The thread stays (idle): an app started again opens the counters again.
        self._thread.submit(close_counters).result()


# --- one host: a plain SQLite file next to the registry ----------------------------------

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS rate_limit_hits (
    bucket TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (bucket, window_start)
) WITHOUT ROWID
"""
# Count this request only if the sliding estimate stays within the limit: a new window's
# row is inserted only then, an existing one incremented only then (no row back: refused).
_SQLITE_HIT = """
INSERT INTO rate_limit_hits (bucket, window_start, count)
SELECT :bucket, :window, 1 WHERE 1 + :carried <= :limit
ON CONFLICT (bucket, window_start) DO UPDATE SET count = count + 1
    WHERE count + 1 + :carried <= :limit
RETURNING count
"""
_SQLITE_COUNTS = ("SELECT window_start, count FROM rate_limit_hits "
                  "WHERE bucket = :bucket AND window_start IN (:window, :previous)")


class SqliteFileCounters:
    """The counters of one host's workers in a plain SQLite file (`<data_dir>/ratelimit.db`).

    Not the registry's SQLCipher database, on purpose: a counter write per
    request there would queue behind the registry's writers (an expiry run
    holds the write lock for seconds, and every request would wait on it),
    pay page encryption for numbers that are no secret, and land in backups.
    The file holds client addresses and counts for two minutes at most, mode
    0600; `synchronous=OFF` because counts lost in a power cut only mean a
    fresh minute. WAL lets the workers read while one writes.
    """

    def __init__(self, path: Path) -> None:
        path.touch(mode=0o600, exist_ok=True)  # the WAL and shared-memory files take its mode
        try:
            # One user at a time (the store's thread); opened possibly on another one.
            self._db = sqlite3.connect(path, isolation_level=None, timeout=5.0,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.execute(_SQLITE_SCHEMA)
        except sqlite3.Error as exc:
            raise RateLimitStoreError(f"cannot open {path}") from exc

    def hit(self, key: str, window: int, carried_weight: float, limit: int) -> Hit:
        previous_window = window - WINDOW_S
        try:
            counts = dict(self._db.execute(_SQLITE_COUNTS, {
                "bucket": key, "window": window, "previous": previous_window}).fetchall())
            previous = int(counts.get(previous_window, 0))
            row = self._db.execute(_SQLITE_HIT, {
                "bucket": key, "window": window, "carried": previous * carried_weight,
                "limit": limit}).fetchone()
        except sqlite3.Error as exc:
            raise RateLimitStoreError("rate-limit counters") from exc
        if row is not None:
            return Hit(True, int(row[0]), previous)
        return Hit(False, int(counts.get(window, 0)), previous)

    def prune(self, before: int) -> None:
        try:
            self._db.execute("DELETE FROM rate_limit_hits WHERE window_start < ?", (before,))
        except sqlite3.Error as exc:
            raise RateLimitStoreError("rate-limit counters") from exc

    def close(self) -> None:
        self._db.close()
