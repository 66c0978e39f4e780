"""The public joint-use endpoint costs a stranger nothing, and a large sync stalls nobody.

Issue 11, finding 2 (G-SEC-2: authentication and leak prevention for a public
endpoint). The three stores of the `world` fixture (tests/registry/world.py).

- A body sent to `POST /api/v1/joint-use/bundles` of a store where joint use
  is not configured is refused before it is read, declared or streamed; an
  over-cap chunked body is cut off at the cap (413), not read to the end.
  Measured at the ASGI boundary (bytes the app pulled) and on a real
  `mamoru serve` (bytes sent before the answer came; the server's peak RSS).
- A bundle from a sender that is not a member, or not signed by the member
  its header names, is refused from its signed clear header: nothing is
  decrypted (G-SHR-1: only members share).
- While a bundle is decrypted and verified, an edge box's
  `GET /api/v1/edge/index/version` answers at once: the registry's lock is
  taken only to apply it.
- A first sync larger than one bundle is split into bounded bundles that
  import in order, each whole, with replay refusals, to the same
  state as one bundle.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from mamoru.settings import MamoruSettings
from mamoru.wiring import api_host, index_spec, registry_paths
from models.engine import FaceEngine
from registry.accounts import devices
from registry.api.app import create_app
from registry.clock import utc_now
from registry.context import open_registry
from registry.domain import ConfirmationKind, IncidentInput, OffenceCategory
from registry.joint_use import bundle as wire
from registry.joint_use.errors import NotAMemberError, ReplayError, SignatureError
from registry.joint_use.sync import apply_receipt, export_parts, import_bundle, status
from registry.joint_use.transport import push_bundle
from registry.watchlist import approval
from tests import REPO
from tests.registries import BIDEN, GROUP, T0
from tests.registry.servers import free_port, serve_in_threads
from tests.registry.world import ADMINS, DAY, Store, World, image, open_store
from tests.waiting import answers, running, wait_until

BUNDLES = "/api/v1/joint-use/bundles"
INDEX_VERSION = "/api/v1/edge/index/version"
MB = 1024 * 1024
CHUNK = 256 * 1024
OCTETS = {"content-type": "application/octet-stream"}


def _unconfigured(settings: MamoruSettings) -> MamoruSettings:
    return settings.model_copy(update={"registry": settings.registry.model_copy(
        update={"joint_use_scheme": None})})


def _with_limits(settings: MamoruSettings, **limits: int) -> MamoruSettings:
    return settings.model_copy(update={"registry": settings.registry.model_copy(update={
        f"joint_use_bundle_{name}": value for name, value in limits.items()})})


# --- the ASGI boundary: how many body bytes did the app pull? -------------------------------


class Pulled:
    """A request body handed to the app chunk by chunk, generated only as it is pulled."""

    def __init__(self, prefix: bytes, total: int) -> None:
        self.prefix, self.total, self.pulled = prefix, total, 0

    def chunks(self) -> Iterator[bytes]:
        yield self.prefix
        sent = len(self.prefix)
        filler = b"\x00" * CHUNK
        while sent < self.total:
            piece = filler[:min(CHUNK, self.total - sent)]
            sent += len(piece)
            yield piece


async def _call(app: Any, path: str, headers: dict[str, str], body: Pulled) -> tuple[int, str]:
    chunks = body.chunks()
    answer: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        piece = next(chunks, None)
        if piece is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        body.pulled += len(piece)
        return {"type": "http.request", "body": piece, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "root_path": "", "query_string": b"", "client": ("127.0.0.1", 50000),
             "server": ("127.0.0.1", 8443), "state": {},
             "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
    await app(scope, receive, send)
    return int(answer["status"]), answer["body"].decode("utf-8", "replace")


@contextmanager
def _app(settings: MamoruSettings, engine: FaceEngine) -> Iterator[tuple[Any, TestClient]]:
    app = create_app(api_host(settings, engine=engine))
    with TestClient(app) as client:  # runs the lifespan: the registry is opened
        yield app, client


def _post(client: TestClient, app: Any, headers: dict[str, str], body: Pulled,
          path: str = BUNDLES) -> tuple[int, str]:
    assert client.portal is not None
    return client.portal.call(_call, app, path, headers, body)


def test_unconfigured_joint_use_refuses_a_body_before_reading_it(
        world: World, engines: dict[str, FaceEngine]) -> None:
    """200 MB declared or streamed at a store without joint use: 404/413, nothing read."""
    settings = _unconfigured(world["store-b"].settings)
    with _app(settings, engines["yunet-sface"]) as (app, client):
        streamed = Pulled(b"MAMORUJU", 200 * MB)
        status, detail = _post(client, app, OCTETS, streamed)  # chunked: no length declared
        assert status == 404 and "not configured" in detail
        assert streamed.pulled == 0, f"{streamed.pulled} bytes read before refusing"

        declared = Pulled(b"MAMORUJU", 200 * MB)
        status, _ = _post(client, app, {**OCTETS, "content-length": str(200 * MB)}, declared)
        assert status in (404, 413) and declared.pulled == 0


def test_over_cap_chunked_bodies_are_cut_off_not_read_to_the_end(
        world: World, engines: dict[str, FaceEngine]) -> None:
    """A chunked body is counted as it streams: refused at the cap, or at the first bytes
    that show it is not a bundle from a member."""
    settings = _with_limits(world["store-b"].settings, max_bytes=4 * MB)
    with _app(settings, engines["yunet-sface"]) as (app, client):
        # the generic cap of every route (RequestLimits): an alert body streamed past it
        flood = Pulled(b'{"camera":"', 64 * MB)
        status, detail = _post(client, app, {"content-type": "application/json"}, flood,
                               path="/api/v1/edge/alerts")
        assert status == 413 and "larger than" in detail
        assert flood.pulled < 16 * MB, f"read {flood.pulled} bytes of a 64 MB body"
        # the bundles path: a declared length over this store's bundle limit, unread
        declared = Pulled(b"", 5 * MB)
        status, _ = _post(client, app, {**OCTETS, "content-length": str(5 * MB)}, declared)
        assert status == 413 and declared.pulled == 0
        # ... and a streamed one: refused after the first piece, which is no envelope
        garbage = Pulled(b"not a bundle at all", 200 * MB)
        status, detail = _post(client, app, OCTETS, garbage)
        assert status == 422 and "nothing was imported" in detail
        assert garbage.pulled <= 2 * CHUNK, f"read {garbage.pulled} bytes of garbage"


# --- refused from the signed header: nothing decrypted ----------------------------------------


def _stranger_bundle(world: World, sender: str, payload_bytes: int) -> bytes:
    """A well-formed envelope addressed to B, signed by a key no member publishes, whose
    ciphertext is then replaced by garbage: decrypting it could only fail."""
    b_key = world["store-b"].scheme().member("store-b").encryption_public()
    sealed = wire.seal("bundle", wire.Bundle(sender=sender, recipient="store-b", sequence=1,
                                             created_at=T0, scheme_sha256="0" * 64),
                       sender=sender, recipient="store-b", sequence=1,
                       signing_key=Ed25519PrivateKey.generate(), recipient_key=b_key)
    clear = sealed[:sealed.index(b'"sequence":1}') + len(b'"sequence":1}') + 64]
    return clear + os.urandom(payload_bytes)


def test_unknown_or_unauthenticated_sender_is_refused_before_decryption(
        world: World, engines: dict[str, FaceEngine], monkeypatch: pytest.MonkeyPatch) -> None:
    b = world["store-b"]
    unknown = _stranger_bundle(world, "store-x", 64 * 1024)
    impostor = _stranger_bundle(world, "store-a", 64 * 1024)  # A's name, another key
    streamed = _stranger_bundle(world, "store-x", 0)
    decryptions = []
    real_key = wire._aead_key

    def counting(*args: Any) -> Any:  # the key for decrypting: derived only to decrypt
        decryptions.append(1)
        return real_key(*args)

    monkeypatch.setattr(wire, "_aead_key", counting)
    with pytest.raises(NotAMemberError, match="not a member"):
        import_bundle(b.ctx, b.scheme(), unknown, T0 + DAY)
    with pytest.raises(SignatureError, match="signature of store-a's published key"):
        import_bundle(b.ctx, b.scheme(), impostor, T0 + DAY)
    assert decryptions == [], "a bundle from a stranger reached decryption"

    # over HTTP: refused from the first few kilobytes of a 50 MB garbage body
    with _app(b.settings, engines["yunet-sface"]) as (app, client):
        body = Pulled(streamed, 50 * MB)
        status, detail = _post(client, app, OCTETS, body)
        assert status == 422 and "not a member" in detail
        assert body.pulled <= 2 * CHUNK, f"read {body.pulled} bytes from a non-member"
    assert decryptions == []
    assert not b.ctx.repo.imported_entry_ids()


# --- a real server: memory, and the lock ----------------------------------------------------


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@contextmanager
def _serve(store: Store, root: Path, **registry_env: str) -> Iterator[tuple[str, int]]:
    """`mamoru serve --insecure-http` on loopback: base URL and the server's pid."""
    port = free_port()
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "MAMORU_DATA_DIR": str(store.data_dir),
           "MAMORU_REGISTRY__STORE_ID": store.member_id,
           **{f"MAMORU_REGISTRY__{k.upper()}": v for k, v in registry_env.items()}}
    if "joint_use_scheme" not in registry_env:
        env["MAMORU_REGISTRY__JOINT_USE_SCHEME"] = str(root / "scheme.json")
    env = {k: v for k, v in env.items() if v}
    server = subprocess.Popen(
        [sys.executable, "-m", "mamoru", "serve", "--insecure-http", "--port", str(port)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(answers(base + "/api/v1/session", 401), 60, "the server to answer",
                   alive=running(server))
        yield base, server.pid
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _sent_before_answer(port: int, head: bytes, total: int, *, chunked: bool) -> tuple[int, int]:
    """Stream `total` body bytes; stop as soon as the server answers. (bytes sent, status)"""
    filler = b"\x00" * CHUNK
    sent = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head)
        try:
            while sent < total:
                if select.select([sock], [], [], 0)[0]:
                    break  # the answer (or the close) came first
                piece = filler[:min(CHUNK, total - sent)]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
            if chunked and sent >= total:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(120)
        answer = sock.recv(4096)
    return sent, int(answer.split(b" ", 2)[1])


@pytest.mark.server
def test_real_server_without_joint_use_stays_small_under_large_posts(world: World) -> None:
    """Three 200 MB posts in parallel (the issue's 487 -> 1,590 MB): refused unread."""
    b = world["store-b"]
    for store in world.stores.values():
        store.ctx.close()
    with _serve(b, world.root, joint_use_scheme="") as (base, pid):
        port = int(base.rsplit(":", 1)[1])
        before = _peak_rss_mb(pid)
        results: list[tuple[str, int, int]] = []

        def post(chunked: bool) -> None:
            framing = (b"transfer-encoding: chunked" if chunked
                       else b"content-length: %d" % (200 * MB))
            head = (b"POST %s HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: "
                    b"application/octet-stream\r\n%s\r\n\r\n" % (BUNDLES.encode(), framing))
            sent, status = _sent_before_answer(port, head, 200 * MB, chunked=chunked)
            results.append(("chunked" if chunked else "declared", sent, status))

        started = time.monotonic()
        threads = [threading.Thread(target=post, args=(c,)) for c in (True, False, True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(180)
        elapsed = time.monotonic() - started
        after = _peak_rss_mb(pid)
    print(f"peak RSS {before:.0f} -> {after:.0f} MB; sent before the answer: "  # noqa: T201
          f"{[(k, round(s / MB, 1), st) for k, s, st in results]}; {elapsed:.1f} s")
    assert len(results) == 3
    for kind, sent, answer in results:
        assert answer in (404, 413), (kind, answer)
        assert sent < 32 * MB, f"{kind}: {sent} bytes sent before the server answered"
    assert after - before < 64, f"the server's peak RSS grew from {before:.0f} to {after:.0f} MB"


class _SlowDecryption:
    """AES-GCM whose decryption takes `seconds` longer, without holding the GIL (it sleeps):
    a large bundle's decryption and verification, made long enough to measure on any machine."""

    def __init__(self, aead: Any, seconds: float) -> None:
        self._aead, self._seconds = aead, seconds

    def encrypt(self, *args: Any) -> bytes:
        return bytes(self._aead.encrypt(*args))

    def decrypt(self, *args: Any) -> bytes:
        time.sleep(self._seconds)
        return bytes(self._aead.decrypt(*args))


@pytest.mark.server  # uvicorn on loopback, and a 3 s decryption on purpose
@pytest.mark.serial  # the longest poll must stay under 1 s: applying the bundle needs a core
def test_edge_index_version_answers_while_a_bundle_is_decrypted(
        world: World, engines: dict[str, FaceEngine], monkeypatch: pytest.MonkeyPatch) -> None:
    """Decrypting and verifying take the time a ~100 MB bundle takes (3 s here); an edge box
    polling the index version meanwhile waits no more than a moment: the registry's lock is
    held only to apply the bundle. (A real 121 MB bundle on `mamoru serve`: the longest
    poll took 1.49 s before this change, 0.38 s after it.)"""
    a, b = world["store-a"], world["store-b"]
    blob = export_parts(a.ctx, a.scheme(), "store-b", T0 + DAY)[0].blob
    token = devices.add_device(b.ctx, admin=b.user(ADMINS["store-b"]), name="box-1",
                               now=utc_now())
    real_key = wire._aead_key
    monkeypatch.setattr(wire, "_aead_key",
                        lambda *args: _SlowDecryption(real_key(*args), seconds=3.0))
    waits: list[float] = []
    pushed: dict[str, Any] = {}
    with serve_in_threads(b.settings, engines["yunet-sface"]) as base:
        edge = {"authorization": f"Bearer {token}"}
        assert httpx.get(base + INDEX_VERSION, headers=edge).status_code == 200

        def push() -> None:
            started = time.monotonic()
            pushed["response"] = httpx.post(base + BUNDLES, content=blob, headers=OCTETS,
                                            timeout=60)
            pushed["seconds"] = time.monotonic() - started

        pusher = threading.Thread(target=push)
        pusher.start()
        with httpx.Client(timeout=60) as poller:
            while pusher.is_alive():
                started = time.monotonic()
                assert poller.get(base + INDEX_VERSION, headers=edge).status_code == 200
                waits.append(time.monotonic() - started)
                time.sleep(0.05)  # the pace of a polling box, not a wait for anything
        pusher.join()
    response = pushed["response"]
    print(f"bundle imported in {pushed['seconds']:.1f} s; {len(waits)} index/version "  # noqa: T201
          f"polls meanwhile, longest {max(waits):.3f} s")
    assert response.status_code == 200, response.text[:300]
    assert max(waits) < 1.0, f"an edge box waited {max(waits):.2f} s for the index version"
    assert pushed["seconds"] >= 3.0 and len(waits) >= 10
    assert len(b.ctx.repo.imported_entry_ids()) == 1


# --- a large first sync: several bounded bundles, applied in order -----------------------------


def _register(store: Store, engine: FaceEngine, face_data: Path, photo: str) -> str:
    proposal = approval.propose(
        store.ctx, engine, store.settings.quality.registration, actor=store.user("tanaka.staff"),
        photos=[approval.Photo(photo, image(face_data, photo))],
        incident=IncidentInput(OffenceCategory.THEFT, T0, ConfirmationKind.POLICE_REPORT,
                               "被害届-2026-0099", damage="2 items", description=""),
        features="", now=T0)
    approval.approve(store.ctx, actor=store.user("suzuki.mgr"), entry_id=proposal.entry_id,
                     reason="police damage report checked", now=T0)
    return proposal.entry_id


def _reopen(root: Path, member: str, **limits: int) -> Store:
    store = open_store(root, member)
    store.ctx.close()
    settings = _with_limits(store.settings, **limits)
    ctx = open_registry(registry_paths(settings), settings.registry, index_spec(settings))
    return Store(member, settings, ctx)


def _state(store: Store) -> set[tuple[str, int, int, int, bytes]]:
    """Per imported entry: origin id, revision, incidents, evidence, template bytes."""
    rows = set()
    for local_id in store.ctx.repo.imported_entry_ids():
        copy = store.ctx.repo.imported_entry(local_id)
        entry = store.ctx.repo.entry(local_id)
        assert copy is not None and entry is not None and not entry.state.is_final
        origin = copy.origin_entry_id
        templates = b"".join(bytes(t.vector) for t in store.ctx.repo.templates(local_id))
        rows.add((origin, entry.revision, len(store.ctx.repo.incidents(local_id)),
                  len(store.ctx.repo.evidence(local_id)), templates))
    return rows


def test_large_first_sync_is_split_into_bounded_bundles_applied_in_order(
        world: World, world_template: World, tmp_path: Path, face_data: Path,
        engines: dict[str, FaceEngine]) -> None:
    engine = engines["yunet-sface"]
    a = world["store-a"]
    for photo in (BIDEN, GROUP):
        _register(a, engine, face_data, photo)
    for store in world.stores.values():
        store.ctx.close()
    single = tmp_path / "single"
    shutil.copytree(world.root, single)
    now = T0 + DAY

    # one item per bundle: three entries make bundles #1, #2, #3
    a = _reopen(world.root, "store-a", max_items=1)
    b = open_store(world.root, "store-b")
    parts = export_parts(a.ctx, a.scheme(), "store-b", now)
    assert [(p.sequence, p.items, p.remaining) for p in parts] == [(1, 1, 2), (2, 1, 1),
                                                                    (3, 1, 0)]
    receipts = [import_bundle(b.ctx, b.scheme(), p.blob, now).receipt_blob for p in parts]
    with pytest.raises(ReplayError):
        import_bundle(b.ctx, b.scheme(), parts[0].blob, now)
    for receipt in receipts:
        apply_receipt(a.ctx, a.scheme(), receipt, now)
    assert export_parts(a.ctx, a.scheme(), "store-b", now)[0].items == 0  # all acknowledged
    split_state = _state(b)
    split_index = len(b.index())
    a.ctx.close()
    b.ctx.close()

    # the same sync as one bundle, from the same starting point
    a1 = _reopen(single, "store-a")
    b1 = open_store(single, "store-b")
    (whole,) = export_parts(a1.ctx, a1.scheme(), "store-b", now)
    assert whole.items == 3
    import_bundle(b1.ctx, b1.scheme(), whole.blob, now)
    assert len(split_state) == 3 and split_state == _state(b1)
    assert split_index == len(b1.index()) == 3
    a1.ctx.close()
    b1.ctx.close()


def test_byte_limit_splits_a_sync_too(world: World, face_data: Path,
                                      engines: dict[str, FaceEngine]) -> None:
    """`joint_use_bundle_max_bytes` bounds each bundle's size, whatever the item count."""
    a = world["store-a"]
    for photo in (BIDEN, GROUP):
        _register(a, engines["yunet-sface"], face_data, photo)
    a.ctx.close()
    limit = 4 * 1024 * 1024  # the three entries are 1.9 to 3.6 MB each as bundles
    a = _reopen(world.root, "store-a", max_bytes=limit)
    parts = export_parts(a.ctx, a.scheme(), "store-b", T0 + DAY)
    assert len(parts) >= 2 and all(len(p.blob) <= limit for p in parts), [
        (p.items, len(p.blob)) for p in parts]
    assert sum(p.items for p in parts) == 3
    a.ctx.close()


@pytest.mark.server
def test_push_sends_a_large_sync_as_several_bundles_over_http(
        world: World, face_data: Path, engines: dict[str, FaceEngine]) -> None:
    """`push_bundle` sends bundle after bundle, each acknowledged before the next is made."""
    a = world["store-a"]
    for photo in (BIDEN, GROUP):
        _register(a, engines["yunet-sface"], face_data, photo)
    for store in world.stores.values():
        store.ctx.close()
    a = _reopen(world.root, "store-a", max_items=2)
    try:
        with _serve(world["store-b"], world.root) as (base, _):
            pushed = push_bundle(a.ctx, a.scheme(), "store-b", base, now=utc_now(),
                                 backoff_s=0.1)
        assert (pushed.bundles, pushed.sequence) == (2, 2)
        row = next(s for s in status(a.ctx, a.scheme()) if s.member_id == "store-b")
        assert (row.last_sent, row.last_acked) == (2, 2)
    finally:
        a.ctx.close()
    b = open_store(world.root, "store-b")
    try:
        assert len(b.ctx.repo.imported_entry_ids()) == 3 and len(b.index()) == 3
    finally:
        b.ctx.close()
