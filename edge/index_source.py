"""Where a box gets the watchlist index from: the registry's file next to it, or its API.

`LocalIndexSource` is the single-box install (the registry on the same box):
it reads the published encrypted file. `RemoteIndexSource` is a store box of a
chain (issue 15, item 4): it polls `GET /api/v1/edge/index/version` with its
device token and, when the version changed, fetches only what changed since the
version it holds (`GET /api/v1/edge/index/delta?since=`), applying it to a
copy of its index in memory. The whole index is downloaded on first start (no
cache), when the registry answers 410 (the box was offline longer than the
registry keeps its change log), when the index cannot take a delta (HNSW), and
after a delta that failed: a delta that does not authenticate or does not fit
turns the box STALE (`edge.matcher`), and only a whole index, authenticated,
makes it CURRENT again.

The index stays encrypted on the box's disk: the cache is a sealed index file
under the same index key, rewritten after each delta so it never holds a
template a delta removed (G-REG-4). Nothing in clear is ever written.

Fail closed, but not on a network blip: an unreachable registry leaves the
box on the version it holds (`IndexSourceUnreachable`); its alerts wait in the
outbox and the registry refuses any about an entry that left meanwhile (410).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Protocol

import httpx

from edge.outbox import Delivery
from kernel.durable import make_private_dir, write_private_file
from kernel.errors import RegistryError
from kernel.watchlist_index import (
    DeltaUnsupportedError,
    IndexIntegrityError,
    WatchlistIndex,
    WatchlistIndexError,
    open_delta,
    read_index_version,
)

log = logging.getLogger("mamoru.edge.index")

VERSION_PATH = "/api/v1/edge/index/version"
INDEX_PATH = "/api/v1/edge/index"
DELTA_PATH = "/api/v1/edge/index/delta"
_NOTHING_PUBLISHED = 503
_NO_DELTA = (409, 410)


class IndexSourceUnreachable(RegistryError):
    """The registry could not be asked (network, 5xx): the box keeps what it holds."""


class IndexSource(Protocol):
    """What `WatchlistMatcher` asks of wherever the index comes from."""

    def initial(self) -> WatchlistIndex | None:
        """The index to start with (None: nothing published yet); a wrong key or a foreign
        pack raise, so a misconfigured box stops loudly at start."""
        ...

    def poll(self, held: WatchlistIndex | None) -> WatchlistIndex | None:
        """A newer index than `held`, or None when `held` is still the newest (or nothing
        is published and nothing held). `RegistryError`/`OSError`: the newer version cannot
        be loaded (the box turns STALE); `IndexSourceUnreachable`: nobody could be asked."""
        ...


class LocalIndexSource:
    """The registry's published file on this box's disk (single-box install)."""

    def __init__(self, path: Path, key: bytes, *, pack: str) -> None:
        self._path = path
        self._key = key
        self._pack = pack
        self._failed: tuple[int, int, int] | None = None  # (inode, mtime, size) that failed

    def initial(self) -> WatchlistIndex | None:
        if read_index_version(self._path) is None:
            log.warning("no published watchlist index yet; nothing can match")
            return None
        return WatchlistIndex.load(self._path, key=self._key, expected_pack=self._pack)

    def poll(self, held: WatchlistIndex | None) -> WatchlistIndex | None:
        stamp = self._file_stamp()
        if stamp is not None and stamp == self._failed:
            # The same broken file: do not decrypt it again on every poll.
            raise IndexIntegrityError(f"{self._path} is unchanged since it failed to load")
        try:
            published = read_index_version(self._path)
            if published is None and held is None:
                return None  # never published: NONE, not stale
            if published is not None and held is not None and published == held.version:
                return None
            if published is None:
                raise RegistryError(f"{self._path} disappeared")
            fresh = WatchlistIndex.load(self._path, key=self._key, expected_pack=self._pack)
        except (RegistryError, OSError):
            self._failed = stamp
            raise
        self._failed = None
        return fresh

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            info = self._path.stat()
        except OSError:
            return None
        return (info.st_ino, info.st_mtime_ns, info.st_size)


class RemoteIndexSource:
    """The registry's edge API, as this box (device token): deltas, the whole index when needed.

    `client` is the box's HTTP client (tests pass a `TestClient` of the real
    app); it is used from the one thread that refreshes the index.
    """

    def __init__(self, delivery: Delivery, key: bytes, *, pack: str, cache: Path | None,
                 client: httpx.Client | None = None, timeout_s: float = 10.0) -> None:
        self._delivery = delivery
        self._key = key
        self._pack = pack
        self._cache = cache
        self._client = client or httpx.Client(verify=delivery.verify())
        self._timeout_s = timeout_s
        self._need_whole = False
        self.bytes_fetched = 0  # index and delta bodies, for the benchmark and the metrics

    def initial(self) -> WatchlistIndex | None:
        """The cached index (then a delta catches up), else the whole one from the registry."""
        cached = self._cached()
        if cached is not None:
            return cached
        try:
            return self.poll(None)
        except IndexSourceUnreachable:
            log.warning("the registry cannot be reached and no index is cached; nothing can "
                        "match until it can")
            return None

    def poll(self, held: WatchlistIndex | None) -> WatchlistIndex | None:
        published = self._published_version()
        if published is None:
            if held is None:
                return None
            raise RegistryError("the registry no longer publishes an index")
        if held is not None and not self._need_whole:
            if published == held.version:
                return None
            fresh = self._delta(held)
            if fresh is not None:
                return fresh
        return self._whole()

    def _published_version(self) -> int | None:
        response = self._get(VERSION_PATH)
        if response.status_code == _NOTHING_PUBLISHED:
            return None
        self._refuse(response)
        try:
            return int(response.json()["version"])
        except (ValueError, KeyError, TypeError):
            raise RegistryError("the registry's index version answer is malformed") from None

    def _delta(self, held: WatchlistIndex) -> WatchlistIndex | None:
        """`held` with the registry's delta applied; None when the whole index is needed."""
        response = self._get(DELTA_PATH, params={"since": held.version})
        if response.status_code in _NO_DELTA:
            log.info("no delta from the held version; fetching the whole index",
                     extra={"version": held.version})
            return None
        self._refuse(response)
        self.bytes_fetched += len(response.content)
        try:
            fresh = held.apply(open_delta(response.content, key=self._key,
                                          name=f"delta since {held.version}"))
        except DeltaUnsupportedError:
            return None
        except WatchlistIndexError:
            self._need_whole = True  # until a whole index loads: STALE meanwhile
            raise
        self._write_cache(fresh.sealed(self._key))
        return fresh

    def _whole(self) -> WatchlistIndex:
        response = self._get(INDEX_PATH)
        self._refuse(response)
        blob = response.content
        self.bytes_fetched += len(blob)
        fresh = WatchlistIndex.from_sealed(blob, key=self._key, name="the downloaded index",
                                           expected_pack=self._pack)
        self._need_whole = False
        self._write_cache(blob)
        return fresh

    def _get(self, path: str, params: dict[str, int] | None = None) -> httpx.Response:
        try:
            response = self._client.get(
                f"{self._delivery.url.rstrip('/')}{path}", params=params,
                headers={"Authorization": f"Bearer {self._delivery.token}"},
                timeout=self._timeout_s)
        except httpx.HTTPError as exc:
            raise IndexSourceUnreachable(
                f"the registry cannot be reached ({type(exc).__name__})") from None
        if response.status_code >= 500 and response.status_code != _NOTHING_PUBLISHED:
            raise IndexSourceUnreachable(f"the registry answered {response.status_code}")
        return response

    @staticmethod
    def _refuse(response: httpx.Response) -> None:
        """A 4xx other than the expected ones: this box is refused (token disabled...)."""
        if response.status_code != 200:
            raise RegistryError(f"the registry refused the index request "
                                f"({response.status_code})")

    def _cached(self) -> WatchlistIndex | None:
        if self._cache is None or not self._cache.exists():
            return None
        try:
            return WatchlistIndex.from_sealed(self._cache.read_bytes(), key=self._key,
                                              name=str(self._cache), expected_pack=self._pack)
        except (WatchlistIndexError, OSError) as exc:
            log.warning("the cached index cannot be used; fetching the whole index",
                        extra={"error": type(exc).__name__})
            with contextlib.suppress(OSError):
                self._cache.unlink()
            return None

    def _write_cache(self, sealed: bytes) -> None:
        if self._cache is None:
            return
        make_private_dir(self._cache.parent)
        write_private_file(self._cache, sealed)
