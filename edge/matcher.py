"""The watchlist as the edge loop sees it: the published encrypted index, hot-reloaded.

The registry publishes a new index version on every approval, erasure and
expiry. `WatchlistMatcher.refresh` reads only the file's clear header to
notice a new version, decrypts the new index in memory and swaps it in
between two searches, so cameras keep running and an erased subject stops
matching within one poll interval.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from registry.errors import RegistryError
from registry.watchlist_index import Hit, WatchlistIndex, read_index_version

log = logging.getLogger("mamoru.edge.matcher")


class WatchlistMatcher:
    """Searches the current index; reloads it when a newer version is published."""

    def __init__(self, index_path: Path, key: bytes, *, pack: str, poll_s: float) -> None:
        self._path = index_path
        self._key = key
        self._pack = pack
        self._poll_s = poll_s
        self._index: WatchlistIndex | None = None
        self._checked_at = float("-inf")
        self._lock = threading.Lock()

    @property
    def version(self) -> int | None:
        index = self._index
        return index.version if index is not None else None

    def load(self) -> None:
        """First load at start-up: a wrong key or a foreign pack stops the box loudly."""
        if read_index_version(self._path) is None:
            log.warning("no published watchlist index yet; nothing can match")
            return
        self._index = WatchlistIndex.load(self._path, key=self._key, expected_pack=self._pack)

    def refresh(self, now: float | None = None) -> bool:
        """Swap in a newer index if one was published; True if it changed."""
        now = time.monotonic() if now is None else now
        if now - self._checked_at < self._poll_s:
            return False
        self._checked_at = now
        published = read_index_version(self._path)
        if published is None or published == self.version:
            return False
        try:
            fresh = WatchlistIndex.load(self._path, key=self._key, expected_pack=self._pack)
        except RegistryError:
            log.exception("new watchlist index could not be loaded; keeping the current one")
            return False
        with self._lock:
            self._index = fresh
        log.info("watchlist index reloaded", extra={"version": fresh.version, "size": fresh.size})
        return True

    def search(self, embeddings: npt.NDArray[np.float32]) -> list[Hit | None]:
        """The best hit per embedding (None when the index is empty or absent)."""
        with self._lock:
            index = self._index
        if index is None or len(embeddings) == 0:
            return [None] * len(embeddings)
        return [hits[0] if hits else None for hits in index.search(embeddings, k=1)]
