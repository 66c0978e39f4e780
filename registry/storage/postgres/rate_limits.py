"""The API workers' shared rate-limit counters in the chain's database (issue 15, item 3).

`registry.rate_limits.SharedRateLimitStore` asks these once per
request, from its own thread, on a connection of its own (autocommit): the
count and the limit check are one `INSERT ... ON CONFLICT DO UPDATE ...
RETURNING` statement, so two workers on two hosts incrementing the same
client's window at once both see the other's hit. The table is UNLOGGED
(schema step 3) and windows older than the previous minute are pruned.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from registry.rate_limits import WINDOW_S, Hit, RateLimitStoreError

PgConnection = psycopg.Connection[tuple[Any, ...]]

# The previous window's count weighs in (the sliding estimate); a row is inserted or
# incremented only while the estimate stays within the limit, else nothing comes back.
_HIT = """
WITH previous AS (
    SELECT coalesce(max(count), 0) AS n FROM registry.rate_limit_hits
    WHERE bucket = %(bucket)s AND window_start = %(previous)s
)
INSERT INTO registry.rate_limit_hits AS h (bucket, window_start, count)
SELECT %(bucket)s, %(window)s, 1 FROM previous WHERE 1 + previous.n * %(weight)s <= %(limit)s
ON CONFLICT (bucket, window_start) DO UPDATE SET count = h.count + 1
    WHERE h.count + 1 + (SELECT n FROM previous) * %(weight)s <= %(limit)s
RETURNING h.count, (SELECT n FROM previous)
"""
_COUNTS = ("SELECT window_start, count FROM registry.rate_limit_hits "
           "WHERE bucket = %(bucket)s AND window_start IN (%(window)s, %(previous)s)")


class PostgresWindowCounters:
    """`WindowCounters` on the chain's PostgreSQL database, shared by every API host.

    `connect` opens a new connection as the application role; it is called
    on the store's thread, so each worker holds one connection for its limits.
    """

    def __init__(self, connect: Callable[[], PgConnection]) -> None:
        try:
            self._db = connect()
            self._db.autocommit = True
        except psycopg.Error as exc:
            raise RateLimitStoreError("cannot connect for the rate-limit counters") from exc

    def hit(self, key: str, window: int, carried_weight: float, limit: int) -> Hit:
        values = {"bucket": key, "window": window, "previous": window - WINDOW_S,
                  "weight": carried_weight, "limit": limit}
        try:
            row = self._db.execute(_HIT, values).fetchone()
            if row is not None:
                return Hit(True, int(row[0]), int(row[1]))
            counts = {int(w): int(n) for w, n in self._db.execute(_COUNTS, values).fetchall()}
        except psycopg.Error as exc:
            raise RateLimitStoreError("rate-limit counters") from exc
        return Hit(False, counts.get(window, 0), counts.get(window - WINDOW_S, 0))

    def prune(self, before: int) -> None:
        try:
            self._db.execute("DELETE FROM registry.rate_limit_hits WHERE window_start < %s",
                             (before,))
        except psycopg.Error as exc:
            raise RateLimitStoreError("rate-limit counters") from exc

    def close(self) -> None:
        self._db.close()
