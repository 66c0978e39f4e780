"""What one request's rate-limit check costs, per store (issue 15, item 3).

Times `admit` for each place the counts could live, p50/p99 in microseconds:

* ``memory``: `MemoryRateLimitStore` (one worker; today's default);
* ``sqlite file, inline``: `SqliteFileCounters` (`<data_dir>/ratelimit.db`, WAL,
  synchronous=OFF), the statement on the calling thread;
* ``sqlite file, via thread``: the same through `await store.admit(...)`, as the
  middleware does it (the hop to the store's thread included);
* ``sqlcipher registry.db``: the same statements in a table of the registry's
  own SQLCipher database, with its settings (journal DELETE, synchronous FULL,
  secure_delete): the alternative the shared file was chosen over;
* ``postgres``: `PostgresWindowCounters` on a throw-away cluster over TLS on
  loopback (``--no-postgres`` to skip), inline and via the thread;
* ``thread hop alone``: `run_in_executor` of a no-op, the floor of "via thread".

Keys cycle over 50 client addresses with a limit never reached, so every
call is an admitted increment (the common case). Run:
``python -m benchmarks.rate_limits [--calls 2000] [--no-postgres]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from registry.keys.master import new_master_key
from registry.rate_limits import (
    MemoryRateLimitStore,
    SharedRateLimitStore,
    SqliteFileCounters,
    WindowCounters,
)
from registry.storage.database import open_registry_database

LIMIT = 10**9
KEYS = [f"all|10.0.{i // 250}.{i % 250}" for i in range(50)]


def _summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"{name:<32} {statistics.median(ordered):>9.1f} {p99:>9.1f} {len(ordered):>7}"


def time_sync(call: Callable[[str], object], calls: int) -> list[float]:
    samples = []
    for i in range(calls):
        key = KEYS[i % len(KEYS)]
        start = time.perf_counter_ns()
        call(key)
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


def time_async(call: Callable[[str], Awaitable[object]], calls: int) -> list[float]:
    async def run() -> list[float]:
        samples = []
        for i in range(calls):
            key = KEYS[i % len(KEYS)]
            start = time.perf_counter_ns()
            await call(key)
            samples.append((time.perf_counter_ns() - start) / 1000)
        return samples

    return asyncio.run(run())


def sqlcipher_counters(folder: Path) -> WindowCounters:
    """The shared file's statements in a table of a real SQLCipher registry database."""
    opened = open_registry_database(folder / "registry.db", folder / "audit.db",
                                    [new_master_key()], create=True)
    counters = SqliteFileCounters.__new__(SqliteFileCounters)
    counters._db = opened.connection  # same SQL, the registry's connection and settings
    counters._db.execute("CREATE TABLE rate_limit_hits (bucket TEXT NOT NULL, "
                         "window_start INTEGER NOT NULL, count INTEGER NOT NULL, "
                         "PRIMARY KEY (bucket, window_start)) WITHOUT ROWID")
    return counters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        memory = MemoryRateLimitStore()
        rows.append(_summary("memory", time_sync(lambda k: memory.admit_now(k, LIMIT),
                                                 args.calls)))
        shared = SharedRateLimitStore(lambda: SqliteFileCounters(folder / "ratelimit.db"))
        rows.append(_summary("sqlite file, inline",
                             time_sync(lambda k: shared.admit_blocking(k, LIMIT), args.calls)))
        rows.append(_summary("sqlite file, via thread",
                             time_async(lambda k: shared.admit(k, LIMIT), args.calls)))
        shared.close()
        hop = ThreadPoolExecutor(max_workers=1)

        async def no_op(_: str) -> None:
            await asyncio.get_running_loop().run_in_executor(hop, lambda: None)

        rows.append(_summary("thread hop alone", time_async(no_op, args.calls)))
        cipher_dir = folder / "cipher"
        cipher_dir.mkdir()
        cipher = SharedRateLimitStore(lambda: sqlcipher_counters(cipher_dir))
        rows.append(_summary("sqlcipher registry.db, inline",
                             time_sync(lambda k: cipher.admit_blocking(k, LIMIT),
                                       max(50, args.calls // 10))))
        cipher.close()
        if not args.no_postgres:
            rows += _postgres(args.calls)
    print(f"{'store':<32} {'p50 us':>9} {'p99 us':>9} {'calls':>7}")  # noqa: T201
    for row in rows:
        print(row)  # noqa: T201


def _postgres(calls: int) -> list[str]:
    from registry.storage.postgres.base import prepare_session
    from registry.storage.postgres.cluster import ThrowawayCluster
    from registry.storage.postgres.rate_limits import PostgresWindowCounters
    from registry.storage.postgres.schema import migrate

    with ThrowawayCluster() as cluster:
        database = cluster.create_database("bench")
        with database.connect_owner() as owner:
            migrate(owner, app_role=database.app)
        store = SharedRateLimitStore(
            lambda: PostgresWindowCounters(lambda: prepare_session(database.connect_app())))
        rows = [_summary("postgres (TLS, loopback), inline",
                         time_sync(lambda k: store.admit_blocking(k, LIMIT), calls)),
                _summary("postgres, via thread",
                         time_async(lambda k: store.admit(k, LIMIT), calls))]
        store.close()
        return rows


if __name__ == "__main__":
    main()
