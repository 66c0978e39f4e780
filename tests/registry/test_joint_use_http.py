"""Joint-use bundles over real HTTPS on loopback, between real registries.

B's (and C's) registry API runs as a real `mamoru serve` subprocess, HTTPS
with the certificate it generates in its own data folder; A pushes with
`push_bundle`, trusting that certificate only. The entry approved at A
reaches B, and B's edge loop (`mamoru edge run`, a subprocess on B's data
folder) alerts on Obama walking past strangers; an erasure at A reaches B's
index in one push and A lists B's signed confirmation; the same bytes pushed
again, and a push to C (another region), are refused with a 4xx and change
nothing there. The three stores are the `world` fixture (tests/registry/world.py).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from mamoru.demo.scene import cast, compose_walk_past
from registry.clock import utc_now
from registry.domain import EntryState
from registry.joint_use.errors import PushRefusedError, RegionRuleError, TransportError
from registry.joint_use.sync import erasure_confirmations, export_bundle, status
from registry.joint_use.transport import BUNDLES_PATH, push_bundle, send_bundle
from registry.watchlist import entries as watchlist
from tests import REPO
from tests.registry.test_joint_use import _digests, _forge, _imported_local_id
from tests.registry.world import World
from tests.waiting import answers, running, wait_until

pytestmark = pytest.mark.server



def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env(world: World, member: str) -> dict[str, str]:
    return {**os.environ, "PYTHONWARNINGS": "ignore",
            "MAMORU_DATA_DIR": str(world[member].data_dir),
            "MAMORU_REGISTRY__STORE_ID": member,
            "MAMORU_REGISTRY__JOINT_USE_SCHEME": str(world.root / "scheme.json")}


@contextmanager
def _serve(world: World, member: str) -> Iterator[tuple[str, Path]]:
    """`mamoru serve` on the member's data folder: its base URL and certificate."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "mamoru", "serve", "--port", str(port)],
                              cwd=REPO, env=_env(world, member), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    cert = world[member].data_dir / "tls" / "cert.pem"
    base = f"https://127.0.0.1:{port}"
    try:
        wait_until(cert.is_file, 60, "the server's certificate", alive=running(server))
        wait_until(answers(base + "/api/v1/session", 401,
                           verify=ssl.create_default_context(cafile=str(cert))),
                   60, "the server to answer", alive=running(server))
        yield base, cert
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_push_over_https_reaches_b_its_edge_alerts_erasure_follows_replay_refused(
        world: World, face_data: Path, tmp_path: Path) -> None:
    a, b = world["store-a"], world["store-b"]
    listed, strangers = cast(face_data, strangers=3)
    walk = compose_walk_past(tmp_path / "walk.mp4", listed, strangers)
    with _serve(world, "store-b") as (base, cert):
        # 1. A pushes: the entry approved at A is active at B, and A holds B's receipt
        pushed = push_bundle(a.ctx, a.scheme(), "store-b", base, ca_file=cert, now=utc_now(),
                             backoff_s=0.1)
        assert pushed.sequence == 1 and pushed.receipt.entries_applied == (world.obama_at_a,)
        local_id = _imported_local_id(b)
        entry = b.ctx.repo.entry(local_id)
        assert entry is not None and entry.state is EntryState.ACTIVE
        row = next(s for s in status(a.ctx, a.scheme()) if s.member_id == "store-b")
        assert (row.last_sent, row.last_acked) == (1, 1)

        # 2. B's edge loop alerts on him, with B's local id of the imported entry
        edge = subprocess.run(
            [sys.executable, "-m", "mamoru", "edge", "run", "--source", f"door={walk.path}",
             "--exit-at-end", "--alerts-jsonl", "-"],
            cwd=REPO, env=_env(world, "store-b"), capture_output=True, text=True, timeout=120,
            check=False)
        assert edge.returncode == 0, edge.stderr[-2000:]
        alerts = [json.loads(line) for line in edge.stdout.splitlines() if line.startswith("{")]
        assert [(x["camera"], x["entry_id"]) for x in alerts] == [("door", local_id)]

        # 3. erasure at A -> push -> gone from B's index; A lists B's signed confirmation
        watchlist.erase(a.ctx, actor=a.user("suzuki.mgr"), entry_id=world.obama_at_a,
                        reason="data subject's request", now=utc_now())
        assert erasure_confirmations(a.ctx, world.obama_at_a) == []
        erased = push_bundle(a.ctx, a.scheme(), "store-b", base, ca_file=cert, now=utc_now())
        assert erased.sequence == 2 and erased.receipt.tombstones_applied == (world.obama_at_a,)
        assert len(b.index()) == 0  # B held only this one
        assert b.ctx.repo.entry(local_id).state is EntryState.ERASED  # type: ignore[union-attr]
        (confirmation,) = erasure_confirmations(a.ctx, world.obama_at_a)
        assert confirmation.member_id == "store-b"

        # 4. the same bytes again: refused with a 4xx, nothing changes at B
        replayed = export_bundle(a.ctx, a.scheme(), "store-b", utc_now())  # sequence 3
        send_bundle(replayed, base, ca_file=cert)  # delivered once (nothing new: empty)
        before = _digests(b.data_dir)
        with pytest.raises(PushRefusedError, match=r"\(409\)"):
            send_bundle(replayed, base, ca_file=cert, retries=0)
        trust = ssl.create_default_context(cafile=str(cert))
        response = httpx.post(base + BUNDLES_PATH, content=replayed, verify=trust,
                              headers={"Content-Type": "application/octet-stream"})
        assert response.status_code == 409 and "\n" not in response.json()["detail"]
        assert _digests(b.data_dir) == before

        # a bundle that is not one, and a certificate the client does not trust
        garbage = httpx.post(base + BUNDLES_PATH, content=b"not a bundle", verify=trust,
                             headers={"Content-Type": "application/octet-stream"})
        assert garbage.status_code == 422
        with pytest.raises(TransportError):
            send_bundle(replayed, base, retries=1, backoff_s=0.01)  # system CAs: refused
        assert _digests(b.data_dir) == before


def test_other_region_refuses_a_push(world: World) -> None:
    """C (kansai) refuses, over HTTP, a bundle from A (kanto); A refuses to send one at all."""
    a, c = world["store-a"], world["store-c"]
    with pytest.raises(RegionRuleError):
        push_bundle(a.ctx, a.scheme(), "store-c", "https://127.0.0.1:9", now=utc_now())
    with _serve(world, "store-c") as (base, cert):
        blob = _forge(world, sender="store-a", recipient="store-c", sequence=1)
        before = _digests(c.data_dir)
        with pytest.raises(PushRefusedError, match=r"\(422\).*region"):
            send_bundle(blob, base, ca_file=cert, retries=0)
        assert _digests(c.data_dir) == before
        assert not c.ctx.repo.imported_entry_ids()
