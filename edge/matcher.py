"""The watchlist as the edge loop sees it: the published encrypted index, hot-reloaded.

The registry publishes a new index version on every approval, erasure and
expiry. `WatchlistMatcher.refresh` asks its source (`edge.index_source`: the
file's clear header on a single box, the registry's API on a chain's box) whether
there is a new version, gets the new index in memory (decrypted, or a delta
applied to a copy) and swaps it in
between two searches, so cameras keep running and an erased subject stops
matching within one poll interval. Each swap reports which entries left the
list, so the box can forget every local file about them (G-REG-4).

Fail closed: when a newer version is published but cannot be loaded
(corrupt, wrong key, foreign pack), the box can no longer tell which entries
are still on the list; an erased person must not keep raising alerts because
an old copy happens to be in memory. The matcher then turns `STALE`: it
matches nobody until a good version loads, and says so in a metric and in
the status the box reports to the registry (the tablet shows it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from edge.index_source import IndexSource, IndexSourceUnreachable, LocalIndexSource
from edge.probe import FaceProbe, Match
from kernel.errors import RegistryError
from kernel.watchlist_index import Hit, WatchlistIndex

log = logging.getLogger("mamoru.edge.matcher")


class IndexState(str, Enum):
    """Whether the box can trust what it matches against."""

    NONE = "none"  # nothing published yet: nothing can match
    CURRENT = "current"  # the newest published version is loaded
    STALE = "stale"  # a newer (or no) version is published and cannot be loaded: no alerts


@dataclass(frozen=True)
class IndexChange:
    """A swap of the index in use: the new version and the entries that left the list."""

    version: int | None
    state: IndexState
    removed: frozenset[str]


class WatchlistMatcher:
    """Resolves probes against the current index; reloads it when a newer one is published.

    Where the index comes from is the `source`: the registry's file on this box
    (`LocalIndexSource`, built from `index_path` and `key` when no source is
    given) or the registry's API (`RemoteIndexSource`, deltas; issue 15).
    """

    def __init__(self, index_path: Path | None, key: bytes | None, *, pack: str, poll_s: float,
                 source: IndexSource | None = None) -> None:
        if source is None:
            if index_path is None or key is None:
                raise ValueError("a local index needs its path and key")
            source = LocalIndexSource(index_path, key, pack=pack)
        self._source = source
        self._pack = pack
        self._poll_s = poll_s
        self._index: WatchlistIndex | None = None
        self._state = IndexState.NONE
        self._checked_at = float("-inf")
        self._unreachable = False
        self._lock = threading.Lock()

    @property
    def version(self) -> int | None:
        index = self._index
        return index.version if index is not None else None

    @property
    def poll_s(self) -> float:
        """How often `refresh` asks the source (the loop's index thread waits this long)."""
        return self._poll_s

    @property
    def state(self) -> IndexState:
        return self._state

    def load(self) -> None:
        """First load at start-up: a wrong key or a foreign pack stops the box loudly."""
        index = self._source.initial()
        if index is None:
            return
        self._index = index
        self._state = IndexState.CURRENT

    def refresh(self, now: float | None = None) -> IndexChange | None:
        """Swap in a newer index if one was published; the change, or None if nothing changed."""
        now = time.monotonic() if now is None else now
        if now - self._checked_at < self._poll_s:
            return None
        self._checked_at = now
        held = self._index
        try:
            fresh = self._source.poll(held)
        except IndexSourceUnreachable:
            if not self._unreachable:
                log.warning("the registry cannot be reached; keeping index version %s",
                            self.version)
            self._unreachable = True
            return None
        except (RegistryError, OSError) as exc:
            self._unreachable = False
            if self._state is not IndexState.STALE:
                log.error("the published watchlist index cannot be loaded; no alerts until it "
                          "can", extra={"error": type(exc).__name__})
            return self._set_state(IndexState.STALE, removed=frozenset())
        self._unreachable = False
        if fresh is None:
            if held is None:
                return None  # never published: NONE, not stale
            return self._set_state(IndexState.CURRENT, removed=frozenset())
        with self._lock:
            previous, self._index = self._index, fresh
            self._state = IndexState.CURRENT
        removed = previous.entry_ids() - fresh.entry_ids() if previous else frozenset()
        log.info("watchlist index reloaded",
                 extra={"version": fresh.version, "size": fresh.size, "removed": len(removed)})
        return IndexChange(fresh.version, IndexState.CURRENT, removed)

    def _set_state(self, state: IndexState, *, removed: frozenset[str]) -> IndexChange | None:
        with self._lock:
            if state is self._state:
                return None
            self._state = state
        if state is IndexState.CURRENT:
            log.info("watchlist index usable again", extra={"version": self.version})
        return IndexChange(self.version, state, removed)

    def holds(self, entry_id: str) -> bool:
        """Whether the index in use still lists `entry_id`: an alert raised before a swap that
        removed it is dropped when it is finished after the swap (a pending snapshot)."""
        with self._lock:
            index = self._index
        return index is not None and entry_id in index.entry_ids()

    def resolve(self, probes: Sequence[FaceProbe], threshold: float) -> list[Match | None]:
        """Each probe's match, or None; every probe is resolved (and wiped) exactly once.

        The only code that reads a probe's embedding: the batch of queries is a
        copy made here and zeroed here, so no non-matching embedding outlives
        this call. A `STALE` or absent index matches nobody (fail closed).
        """
        with self._lock:
            index = self._index if self._state is IndexState.CURRENT else None
        hits: list[Hit | None] = [None] * len(probes)
        if index is not None and probes:
            queries = np.stack([probe.embedding for probe in probes])
            try:
                hits = [found[0] if found else None for found in index.search(queries, k=1)]
            finally:
                queries.fill(0.0)
        return [probe.resolve(hit, threshold) for probe, hit in zip(probes, hits, strict=True)]
