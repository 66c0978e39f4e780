"""Index distribution by deltas (issue 15, item 4): a real registry, its real API, a real box.

The registry is the real one (SQLCipher files, real photos, two-manager
approval); the API is `create_app` under a `TestClient`; the box is a
`WatchlistMatcher` over a `RemoteIndexSource` that talks to that API with its
device token, and resolves real probes (another photo of the listed person)
through the real face engine. What a chain relies on:

- an erasure at the centre leaves the box within one poll, by a delta of a
  few hundred bytes, not the whole index (G-REG-4);
- a box offline across several versions catches up with one delta;
- a box older than the change log is told 410 and fetches the whole index;
- a delta that does not authenticate turns the box STALE (no alerts) until a
  whole index loads; the cache on the box's disk is sealed, never in clear;
- the box holds no master key: it asks the registry for the index key
  (`GET /api/v1/edge/index/key`, active devices only, audited), keeps it sealed
  under its own box key, and asks again once when an index stops opening
  after `mamoru key rotate`.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from edge.capture import Frame
from edge.index_source import RemoteIndexSource
from edge.matcher import IndexState, WatchlistMatcher
from edge.outbox import Delivery
from edge.probe import FaceProbe
from kernel.errors import KeyFileError, RegistryError
from kernel.sealed import INDEX_KEY, WATCHLIST_DELTA, Sealer, kind_of
from kernel.watchlist_index import (
    DeltaMismatchError,
    IndexedTemplate,
    IndexIntegrityError,
    WatchlistIndex,
    open_delta,
    publish_index,
    seal_delta,
)
from mamoru.wiring import api_host
from registry.accounts import devices
from registry.api.app import create_app
from registry.backup.key_rotation import rotate_key
from registry.index_log import KEEP_DAYS
from registry.watchlist import entries as watchlist
from tests.registries import BIDEN, OBAMA, OBAMA2, PACK, T0, Registry

DELTA = "/api/v1/edge/index/delta"
KEY = "/api/v1/edge/index/key"
POLL_S = 5.0
DIM = 128


class Recorder(httpx.BaseTransport):
    """The box's transport: counts what it fetched, and can alter a delta on the way."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.paths: list[str] = []
        self.tamper_next_delta = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        self.paths.append(f"{request.url.path} {response.status_code}")
        if request.url.path == DELTA and self.tamper_next_delta and response.status_code == 200:
            self.tamper_next_delta = False
            body = bytearray(response.read())
            body[-1] ^= 0x01  # one bit of the tag
            return httpx.Response(200, content=bytes(body), headers=response.headers)
        return response

    def take(self) -> list[str]:
        taken, self.paths = self.paths, []
        return taken


@dataclass
class Chain:
    """A registry, its API, and one remote box polling it."""

    reg: Registry
    client: TestClient
    token: str
    cache: Path
    transport: Recorder
    box_key: bytes = field(default_factory=lambda: os.urandom(32))  # the box's own, not ours
    source: RemoteIndexSource = field(init=False)
    matcher: WatchlistMatcher = field(init=False)
    clock: float = 0.0

    def __post_init__(self) -> None:
        self.matcher = self.new_box()

    def new_box(self) -> WatchlistMatcher:
        box_client = httpx.Client(transport=self.transport, base_url=self.client.base_url)
        self.source = RemoteIndexSource(Delivery(str(self.client.base_url), self.token),
                                        self.box_key, pack=PACK, cache=self.cache,
                                        client=box_client)
        return WatchlistMatcher(None, None, pack=PACK, poll_s=POLL_S, source=self.source)

    def poll(self) -> None:
        """One poll interval later, the box's refresh."""
        self.clock += POLL_S
        self.last_change = self.matcher.refresh(now=self.clock)

    def matched(self, photo: str) -> str | None:
        """The entry a real probe of `photo` matches on the box, through the real engine."""
        engine = self.reg.engine
        img = self.reg.image(photo)
        face = max(engine.detect(img), key=lambda f: f.size_px)
        probe = FaceProbe(Frame("door", 1, 0.0, T0, img), face,
                          engine.embed_faces(img, [face])[0])
        [match] = self.matcher.resolve([probe], engine.info.threshold)
        return match.entry_id if match is not None else None

    def erase(self, entry_id: str) -> None:
        watchlist.erase(self.reg.ctx, actor=self.reg.user("mgr1"), entry_id=entry_id,
                        reason="本人からの削除請求", now=T0)


@pytest.fixture
def chain(registry: Registry, tmp_path: Path) -> Iterator[Chain]:
    token = devices.add_device(registry.ctx, admin=registry.user("admin"), name="box-1", now=T0)
    with TestClient(create_app(api_host(registry.settings, engine=registry.engine))) as client:
        yield Chain(registry, client, token, tmp_path / "box" / "watchlist.idx",
                    Recorder(client._transport))  # noqa: SLF001 - the real app's transport


def state(chain: Chain) -> IndexState:
    return chain.matcher.state


def whole_index_bytes(reg: Registry) -> int:
    return reg.ctx.paths.index.stat().st_size


# --- the wire format --------------------------------------------------------------------


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


def test_a_delta_round_trips_and_applies_to_a_copy(tmp_path: Path) -> None:
    key = os.urandom(32)
    path = tmp_path / "watchlist.idx"
    publish_index(path, key=key, version=4, pack=PACK, dim=DIM,
                  templates=[IndexedTemplate(t, f"e-{t}", unit(t)) for t in (1, 2, 3)])
    held = WatchlistIndex.load(path, key=key)
    blob = seal_delta(key=key, since=4, version=6, pack=PACK, dim=DIM,
                      added=[IndexedTemplate(9, "e-9", unit(9))], removed={2: "e-2"})
    assert kind_of(blob) is WATCHLIST_DELTA
    delta = open_delta(blob, key=key, name="delta")
    assert (delta.since, delta.version, delta.removed) == (4, 6, {2: "e-2"})
    fresh = held.apply(delta)
    assert (fresh.version, fresh.size) == (6, 3)
    assert fresh.entry_ids() == {"e-1", "e-3", "e-9"}
    assert fresh.search(unit(9), k=1)[0][0].entry_id == "e-9"
    assert fresh.search(unit(2), k=1)[0][0].entry_id != "e-2"
    assert (held.version, held.entry_ids()) == (4, frozenset({"e-1", "e-2", "e-3"}))  # untouched
    # The box's cache after a delta: a sealed index file that loads as the new version.
    again = WatchlistIndex.from_sealed(fresh.sealed(key), key=key, name="cache")
    assert (again.version, again.entry_ids()) == (6, frozenset({"e-1", "e-3", "e-9"}))
    with pytest.raises(DeltaMismatchError):  # applied twice: it starts at version 4, not 6
        fresh.apply(delta)
    with pytest.raises(IndexIntegrityError):  # another registry's key
        open_delta(blob, key=os.urandom(32), name="delta")
    with pytest.raises(IndexIntegrityError, match="bad magic"):  # an index file is no delta
        open_delta(path.read_bytes(), key=key, name="index")


# --- the box against the real registry ---------------------------------------------------


def test_an_erasure_leaves_the_box_within_one_poll_by_a_small_delta(chain: Chain) -> None:
    """G-REG-4 at a chain: the entry stops matching one poll after the erasure."""
    obama = chain.reg.register(OBAMA)
    chain.reg.register(BIDEN)
    chain.matcher.load()  # first start: no cache, the whole index
    assert chain.transport.take() == ["/api/v1/edge/index/version 200", "/api/v1/edge/index 200",
                                      f"{KEY} 200"]
    assert chain.matcher.version == chain.reg.ctx.repo.watchlist_version()
    assert chain.matched(OBAMA2) == obama
    whole = chain.source.bytes_fetched
    assert whole == whole_index_bytes(chain.reg)

    chain.erase(obama)
    chain.poll()
    assert chain.transport.take() == ["/api/v1/edge/index/version 200",
                                      f"{DELTA} 200"]
    assert chain.last_change is not None and chain.last_change.removed == {obama}
    assert chain.matcher.version == chain.reg.ctx.repo.watchlist_version()
    assert chain.matched(OBAMA2) is None
    delta_bytes = chain.source.bytes_fetched - whole
    assert delta_bytes < 300
    # The cache on the box's disk: sealed under the box's key, and without the erased entry.
    blob = chain.cache.read_bytes()
    assert b"entry" not in blob and obama.encode() not in blob
    cached = WatchlistIndex.from_sealed(blob, key=chain.box_key, name="cache")
    assert obama not in cached.entry_ids() and cached.version == chain.matcher.version
    with pytest.raises(IndexIntegrityError):
        WatchlistIndex.from_sealed(blob, key=chain.reg.ctx.index_key(), name="cache")


def test_a_box_offline_across_several_versions_catches_up_with_one_delta(chain: Chain) -> None:
    obama = chain.reg.register(OBAMA)
    chain.matcher.load()
    chain.transport.take()
    # Offline: three versions go by (an approval, an erasure, another approval).
    biden = chain.reg.register(BIDEN)
    chain.erase(obama)
    withdrawn = chain.reg.register("insightface/t1.jpg")
    watchlist.withdraw(chain.reg.ctx, actor=chain.reg.user("mgr1"), entry_id=withdrawn,
                       reason="別人と判明", now=T0)
    assert chain.reg.ctx.repo.watchlist_version() >= chain.matcher.version + 4  # type: ignore[operator]
    chain.poll()
    assert chain.transport.take() == ["/api/v1/edge/index/version 200", f"{DELTA} 200"]
    assert chain.matcher.version == chain.reg.ctx.repo.watchlist_version()
    assert chain.matched(OBAMA2) is None
    assert chain.matched(BIDEN) == biden
    # The box holds what a box starting now would download.
    assert chain.last_change is not None and chain.last_change.removed == {obama}
    fresh = chain.new_box()
    fresh.load()
    assert fresh.version == chain.matcher.version


def test_a_box_restarting_from_its_cache_fetches_only_the_delta(chain: Chain) -> None:
    obama = chain.reg.register(OBAMA)
    chain.matcher.load()
    chain.erase(obama)
    restarted = chain.new_box()
    chain.transport.take()
    restarted.load()  # from the sealed cache, no download
    assert chain.transport.take() == []
    assert restarted.refresh(now=POLL_S) is not None
    assert chain.transport.take() == ["/api/v1/edge/index/version 200", f"{DELTA} 200"]
    assert restarted.version == chain.reg.ctx.repo.watchlist_version()


def test_a_box_older_than_the_change_log_gets_the_whole_index(chain: Chain) -> None:
    obama = chain.reg.register(OBAMA)
    chain.matcher.load()
    held = chain.matcher.version
    chain.reg.register(BIDEN)
    chain.erase(obama)
    with chain.reg.ctx.repo.unit_of_work():  # as if the box had been away longer than kept
        chain.reg.ctx.repo.prune_index_log(keep_versions=0,
                                           logged_before=T0 + timedelta(days=KEEP_DAYS * 99))
    answer = chain.client.get(DELTA, params={"since": held},
                              headers={"Authorization": f"Bearer {chain.token}"})
    assert answer.status_code == 410 and "whole index" in answer.json()["detail"]
    chain.transport.take()
    chain.poll()
    assert chain.transport.take() == ["/api/v1/edge/index/version 200", f"{DELTA} 410",
                                      "/api/v1/edge/index 200"]
    assert chain.matcher.version == chain.reg.ctx.repo.watchlist_version()
    assert chain.matched(OBAMA2) is None


def test_a_tampered_delta_turns_the_box_stale_until_a_whole_index_loads(chain: Chain) -> None:
    obama = chain.reg.register(OBAMA)
    biden = chain.reg.register(BIDEN)
    chain.matcher.load()
    chain.erase(obama)
    chain.transport.take()
    chain.transport.tamper_next_delta = True
    chain.poll()
    assert state(chain) is IndexState.STALE
    assert chain.matched(BIDEN) is None  # fail closed: nobody matches
    # It asked for the key once (a rotation?), got the same one, and stayed closed.
    assert chain.transport.take() == ["/api/v1/edge/index/version 200", f"{DELTA} 200",
                                      f"{KEY} 200"]
    chain.poll()  # the next poll fetches the whole index, not another delta
    assert chain.transport.take() == ["/api/v1/edge/index/version 200", "/api/v1/edge/index 200"]
    assert state(chain) is IndexState.CURRENT
    assert chain.matched(BIDEN) == biden
    assert chain.matched(OBAMA2) is None


def test_the_delta_route_needs_a_device_and_a_version(chain: Chain) -> None:
    chain.reg.register(OBAMA)
    assert chain.client.get(DELTA, params={"since": 0}).status_code == 401
    auth = {"Authorization": f"Bearer {chain.token}"}
    assert chain.client.get(DELTA, params={"since": -1}, headers=auth).status_code == 422
    assert chain.client.get(DELTA, params={"since": "x"}, headers=auth).status_code == 422
    assert chain.client.get(DELTA, params={"since": 2**63}, headers=auth).status_code == 422
    unknown = chain.client.get(DELTA, params={"since": 10**9}, headers=auth)
    assert unknown.status_code == 410


# --- the index key: from the registry, to active boxes only; the box holds no master key ------


def test_the_key_route_answers_active_boxes_only_never_cached_and_audited_without_the_key(
        chain: Chain) -> None:
    ctx = chain.reg.ctx
    refused = [chain.client.get(KEY),  # anonymous
               chain.client.get(KEY, headers={"Authorization": "Bearer " + "x" * 43}),
               chain.client.get(KEY, headers={"Authorization": f"Bearer {chain.token}x"})]
    assert [r.status_code for r in refused] == [401, 401, 401]
    assert all("key" not in r.json() for r in refused)

    answer = chain.client.get(KEY, headers={"Authorization": f"Bearer {chain.token}"})
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    assert base64.b64decode(answer.json()["key"]) == ctx.index_key()
    delivered = [r for r in ctx.repo.audit_rows() if r.action == "index_key_delivered"]
    assert [json.loads(r.details) for r in delivered] == [{"device": "box-1"}]
    assert delivered[0].actor == "device:box-1"
    key = ctx.index_key()
    for text in (key.hex(), base64.b64encode(key).decode(), answer.json()["key"]):
        assert all(text not in r.details for r in ctx.repo.audit_rows())

    devices.disable_device(ctx, admin=chain.reg.user("admin"), name="box-1", now=T0)
    gone = chain.client.get(KEY, headers={"Authorization": f"Bearer {chain.token}"})
    assert gone.status_code == 401 and "key" not in gone.json()


def test_a_disabled_box_cannot_start_matching_and_keeps_no_key(chain: Chain) -> None:
    chain.reg.register(OBAMA)
    devices.disable_device(chain.reg.ctx, admin=chain.reg.user("admin"), name="box-1", now=T0)
    with pytest.raises(RegistryError):  # no cache, no key: a refused box cannot start matching
        chain.matcher.load()
    assert chain.matched(OBAMA2) is None and not chain.source.key_file.exists()  # type: ignore[union-attr]


def test_after_a_key_rotation_the_box_fetches_the_key_again_and_recovers(chain: Chain) -> None:
    obama = chain.reg.register(OBAMA)
    biden = chain.reg.register(BIDEN)
    chain.matcher.load()
    old_key = chain.reg.ctx.index_key()
    rotate_key(chain.reg.ctx, actor=chain.reg.user("admin"), now=T0)
    assert chain.reg.ctx.index_key() != old_key
    chain.erase(obama)  # a delta now sealed under the new index key
    # `mamoru serve` restarted on the rotated registry; the box still holds the old key.
    with TestClient(create_app(api_host(chain.reg.settings, engine=chain.reg.engine))) as client:
        chain.transport.inner = client._transport  # noqa: SLF001 - the real app's transport
        chain.transport.take()
        chain.poll()
        assert chain.transport.take() == ["/api/v1/edge/index/version 200", f"{DELTA} 200",
                                          f"{KEY} 200"]
        assert state(chain) is IndexState.CURRENT
        assert chain.last_change is not None and chain.last_change.removed == {obama}
        assert chain.matched(OBAMA2) is None and chain.matched(BIDEN) == biden
        # The new key is what the box keeps (sealed under its box key) for its next start.
        restarted = chain.new_box()
        restarted.load()
        assert chain.transport.take() == []  # cache and key from the box's disk
        assert restarted.version == chain.reg.ctx.repo.watchlist_version()
        sealed = Sealer(INDEX_KEY, chain.box_key).read(chain.cache.with_name("index-key.sealed"))
        assert sealed == chain.reg.ctx.index_key()


def test_a_wrong_box_key_stops_the_box_at_start(chain: Chain) -> None:
    chain.reg.register(OBAMA)
    chain.matcher.load()
    chain.box_key = os.urandom(32)  # another box's key, or a replaced box.key
    with pytest.raises(KeyFileError, match="box key does not open"):
        chain.new_box().load()
