"""The sealed index deltas one API worker has built, per published index version.

When the watchlist changes (an erasure), every box of the chain polls the new
version within one interval and asks for the delta from the version it holds:
2,000 boxes asking for the same bytes. A delta from `since` to the newest
version is the same for every box that holds `since` (it is sealed under the
one index key every box holds), so each worker builds it once per published
version and serves it from memory after that; the next publish empties the
cache. Builds run on the read-only connection (`RegistryGate.read`), one at a
time, so a crowd asking at once costs one build, not a queue of them.
"""

from __future__ import annotations

import anyio
import anyio.to_thread

from kernel.watchlist_index import read_index_header
from registry.api.gate import RegistryGate
from registry.index_log import build_delta

MAX_CACHED = 64  # distinct `since` values per published version (a box picks its own)


class DeltaCache:
    """`sealed(gate, since)`: the delta blob (None: the box needs the whole index)."""

    def __init__(self) -> None:
        self._lock = anyio.Lock()
        self._version: int | None = None
        self._built: dict[int, bytes | None] = {}

    async def sealed(self, gate: RegistryGate, since: int) -> bytes | None:
        # The published version first, the database after it: the database is never older
        # than the file (a publish follows its commit), so a cached delta reaches at least it.
        header = await anyio.to_thread.run_sync(read_index_header, gate.paths.index)
        published = None if header is None else header.version
        async with self._lock:
            if published != self._version:
                self._built.clear()
                self._version = published
            if since in self._built:
                return self._built[since]
            blob = await gate.read(lambda ctx: build_delta(
                ctx.repo, since=since, key=ctx.index_key(), pack=ctx.index_spec.pack,
                dim=ctx.index_spec.dim))
            if published is not None and len(self._built) < MAX_CACHED:
                self._built[since] = blob
            return blob

    @property
    def cached(self) -> int:
        """How many deltas are held now (for tests)."""
        return len(self._built)
