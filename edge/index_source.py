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

A chain's box holds no master key (a stolen box must not give away the
chain's). The index key comes from the registry itself, over the box's
authenticated connection (`GET /api/v1/edge/index/key`, device token): the box
keeps it in memory and, sealed under its own box key, next to its cache, so
it restarts while the registry is down. After `mamoru key rotate` the
registry's index and deltas no longer open under the held key: the box asks
for the key again, once per published version, and stays STALE if they still
do not open.

The index stays encrypted on the box's disk: the cache is a sealed index file
under the box key (the index key's own copy is sealed there too), rewritten
after each delta so it never holds a template a delta removed (G-REG-4).
Nothing in clear is ever written.

Fail closed, but not on a network blip: an unreachable registry leaves the
box on the version it holds (`IndexSourceUnreachable`); its alerts wait in the
outbox and the registry refuses any about an entry that left meanwhile (410).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

import httpx

from edge.outbox import Delivery
from kernel.durable import make_private_dir, write_private_file
from kernel.errors import KeyFileError, RegistryError, SealedFileError
from kernel.sealed import INDEX_KEY, KEY_BYTES, Sealer
from kernel.watchlist_index import (
    DeltaMismatchError,
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
KEY_PATH = "/api/v1/edge/index/key"
KEY_FILE = "index-key.sealed"  # next to the cache
_NOTHING_PUBLISHED = 503
_NO_DELTA = (409, 410)
T = TypeVar("T")


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

    `box_key`: this box's own 32-byte key (never the registry's); it seals the
    cache and the held index key. `client` is the box's HTTP client (tests
    pass one over the real app); it is used from the one thread that
    refreshes the index.
    """

    def __init__(self, delivery: Delivery, box_key: bytes, *, pack: str, cache: Path | None,
                 client: httpx.Client | None = None, timeout_s: float = 10.0) -> None:
        self._delivery = delivery
        self._box_key = box_key
        self._key_sealer = Sealer(INDEX_KEY, box_key)
        self._index_key: bytes | None = None
        self._refetched_for: int | None = None  # the published version a key refetch was for
        self._pack = pack
        self._cache = cache
        self._client = client or httpx.Client(verify=delivery.verify())
        self._timeout_s = timeout_s
        self._need_whole = False
        self.bytes_fetched = 0  # index and delta bodies, for the benchmark and the metrics

    @property
    def key_file(self) -> Path | None:
        """Where the index key is kept sealed under the box key (None: memory only)."""
        return self._cache.with_name(KEY_FILE) if self._cache is not None else None

    def initial(self) -> WatchlistIndex | None:
        """The cached index (then a delta catches up), else the whole one from the registry.

        A held index key that does not open under the box key means a wrong
        box key: `KeyFileError`, so the box stops at start-up, loudly.
        """
        self._index_key = self._sealed_key()
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
            fresh = self._delta(held, published)
            if fresh is not None:
                return fresh
        return self._whole(published)

    def _published_version(self) -> int | None:
        response = self._get(VERSION_PATH)
        if response.status_code == _NOTHING_PUBLISHED:
            return None
        self._refuse(response)
        try:
            return int(response.json()["version"])
        except (ValueError, KeyError, TypeError):
            raise RegistryError("the registry's index version answer is malformed") from None

    def _delta(self, held: WatchlistIndex, published: int) -> WatchlistIndex | None:
        """`held` with the registry's delta applied; None when the whole index is needed."""
        response = self._get(DELTA_PATH, params={"since": held.version})
        if response.status_code in _NO_DELTA:
            log.info("no delta from the held version; fetching the whole index",
                     extra={"version": held.version})
            return None
        self._refuse(response)
        self.bytes_fetched += len(response.content)
        name = f"delta since {held.version}"
        try:
            fresh = held.apply(self._opened(
                published, lambda key: open_delta(response.content, key=key, name=name)))
        except DeltaUnsupportedError:
            return None
        except WatchlistIndexError:
            self._need_whole = True  # until a whole index loads: STALE meanwhile
            raise
        self._write_cache(fresh.sealed(self._box_key))
        return fresh

    def _whole(self, published: int) -> WatchlistIndex:
        response = self._get(INDEX_PATH)
        self._refuse(response)
        blob = response.content
        self.bytes_fetched += len(blob)
        fresh = self._opened(published, lambda key: WatchlistIndex.from_sealed(
            blob, key=key, name="the downloaded index", expected_pack=self._pack))
        self._need_whole = False
        self._write_cache(fresh.sealed(self._box_key))
        return fresh

    def _opened(self, published: int, opening: Callable[[bytes], T]) -> T:
        """`opening(index key)`; when it does not authenticate (the registry rotated its key),
        the key is asked for again, once per published version, and tried once more."""
        key = self._index_key if self._index_key is not None else self._fetch_key()
        try:
            return opening(key)
        except DeltaMismatchError:
            raise  # authentic, so the key is right: the delta does not fit
        except IndexIntegrityError:
            if self._refetched_for == published:
                raise
            self._refetched_for = published
            fresh = self._fetch_key()
            if hmac.compare_digest(fresh, key):
                raise
            log.info("the registry's index key changed; using the new one")
            return opening(fresh)

    def _fetch_key(self) -> bytes:
        """The registry's current index key, held in memory and sealed under the box key."""
        response = self._get(KEY_PATH)
        self._refuse(response)
        try:
            key = base64.b64decode(response.json()["key"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise RegistryError("the registry's index key answer is malformed") from None
        if len(key) != KEY_BYTES:
            raise RegistryError("the registry's index key answer is malformed")
        self._index_key = key
        if self.key_file is not None:
            make_private_dir(self.key_file.parent)
            self._key_sealer.write(self.key_file, key)
        return key

    def _sealed_key(self) -> bytes | None:
        """The index key kept from a previous run; refused loudly under a wrong box key."""
        path = self.key_file
        if path is None or not path.exists():
            return None
        try:
            key = self._key_sealer.read(path)
        except (SealedFileError, OSError) as exc:
            raise KeyFileError(f"the box key does not open {path} ({type(exc).__name__}): "
                               "a wrong or replaced box key; put the right one back, or "
                               "remove both to start this box afresh") from None
        if len(key) != KEY_BYTES:
            raise KeyFileError(f"{path} does not hold an index key")
        return key

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
            return WatchlistIndex.from_sealed(self._cache.read_bytes(), key=self._box_key,
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
