"""The one-command demo: everything real, on this machine, in a throw-away folder.

1. a fresh encrypted registry with demo staff (random passwords, printed once);
2. a listed person registered from two real photos through the two-person flow
   (a staff member proposes, a different manager approves);
3. a real RTSP camera (GStreamer) playing a clip in which that person walks past
   strangers, composed from other real photos of them;
4. the registry API (the tablet's server) and the edge loop, whose alerts go
   through the encrypted outbox to the API and appear on the tablet page.

Nothing here touches the configured production registry: the demo's data lives
under `<cache_dir>/demo` and is replaced on every run.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from pydantic import SecretStr

from edge.alerts import Alert
from edge.config import CameraConfig
from edge.loop import EdgeLoop
from edge.matcher import WatchlistMatcher
from edge.metrics import EdgeMetrics
from edge.outbox import Delivery, Outbox
from mamoru.demo.cameras import RtspServer
from mamoru.demo.scene import cast, compose_walk_past
from mamoru.face_data import FACE_DATA, data_root, fetch_dataset
from mamoru.images import read_image
from mamoru.settings import MamoruSettings, get_settings
from mamoru.wiring import index_spec, open_engine, registry_paths
from models.engine import FaceEngine
from registry.accounts import users
from registry.accounts.devices import add_device
from registry.clock import utc_now
from registry.context import RegistryContext, init_registry
from registry.domain import ConfirmationKind, IncidentInput, OffenceCategory, Role
from registry.keys.custody import KeyCustodySettings
from registry.watchlist import approval

DEMO_SETS = ("face_recognition", "ctu_unknowns", "pyfeat")
LISTED_PHOTOS = ("face_recognition/obama.jpg", "face_recognition/obama3.jpg")
STAFF = (("admin", Role.ADMIN), ("tanaka", Role.STAFF), ("sato", Role.MANAGER),
         ("suzuki", Role.MANAGER), ("auditor", Role.AUDITOR))

Say = Callable[[str], None]


@dataclass(frozen=True)
class DemoResult:
    alerts_raised: int
    alerts_delivered: int
    first_alert_after_s: float | None


def _demo_settings(settings: MamoruSettings, root: Path) -> MamoruSettings:
    # The demo's throw-away registry keeps its key in a plain file next to its data: the
    # explicit, loudly named development setting, never the default (see registry/keys/custody.py).
    return get_settings(cache_dir=settings.cache_dir, models_dir=settings.resolved_models_dir,
                        data_dir=root / "registry",
                        key=KeyCustodySettings(insecure_plain_key_file_on_data_disk=True))


def _register_listed_person(ctx: RegistryContext, engine: FaceEngine,
                            settings: MamoruSettings, faces: Path) -> str:
    """Two people decide (G-REG-2): tanaka proposes from two photos, sato approves."""
    now = utc_now()
    incident = IncidentInput(OffenceCategory.THEFT, now - timedelta(days=3),
                             ConfirmationKind.POLICE_REPORT, "被害届 DEMO-2026-0001",
                             damage="化粧品 ¥4,800", description="demo incident")
    proposer, approver = ctx.repo.user_by_name("tanaka"), ctx.repo.user_by_name("sato")
    assert proposer is not None and approver is not None
    proposal = approval.propose(
        ctx, engine, settings.quality.registration, actor=proposer, incident=incident,
        photos=[approval.Photo(Path(p).name, read_image(faces / p)) for p in LISTED_PHOTOS],
        features="demo: grey suit", now=now,
    )
    approval.approve(ctx, actor=approver, entry_id=proposal.entry_id,
                     reason="police report checked (demo)", now=now)
    return proposal.entry_id


def _create_staff(ctx: RegistryContext) -> dict[str, str]:
    passwords = {name: secrets.token_urlsafe(12) for name, _ in STAFF}
    now = utc_now()
    for name, role in STAFF:
        users.add_user(ctx.repo, ctx.audit, actor="demo", username=name, role=role,
                       password=passwords[name], now=now)
    admin = ctx.repo.user_by_name("admin")
    assert admin is not None
    for name, _ in STAFF:
        users.record_training(ctx.repo, ctx.audit, admin=admin, username=name, now=now)
    return passwords


@contextmanager
def _api_server(settings: MamoruSettings, port: int) -> Iterator[str]:
    """`mamoru serve` (HTTPS, its own generated certificate) as its own process, like on a box."""
    env = {**os.environ, "MAMORU_DATA_DIR": str(settings.data_dir),
           "MAMORU_CACHE_DIR": str(settings.cache_dir), "PYTHONWARNINGS": "ignore",
           "MAMORU_KEY__INSECURE_PLAIN_KEY_FILE_ON_DATA_DISK": "true"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mamoru", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not _listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                output = process.stderr.read() if process.stderr else ""
                raise RuntimeError(f"the registry API did not start: {output}")
            time.sleep(0.2)
        yield f"https://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def run_demo(settings: MamoruSettings, *, port: int, stop: threading.Event, say: Say,
             exit_after_alert: bool = False) -> DemoResult:
    """Set everything up, run until `stop` (or the first delivered alert), tear down."""
    started = time.monotonic()
    root = settings.cache_dir / "demo"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, mode=0o700)
    demo = _demo_settings(settings, root)
    for dataset in FACE_DATA:
        if dataset.name in DEMO_SETS:
            fetch_dataset(dataset, settings.cache_dir)
    faces = data_root(settings.cache_dir)
    engine = open_engine(demo)
    say(f"engine: pack {engine.info.pack} (licence: {engine.info.licence})")

    with init_registry(registry_paths(demo), demo.registry, index_spec(demo)) as ctx:
        passwords = _create_staff(ctx)
        entry_id = _register_listed_person(ctx, engine, demo, faces)
        admin = ctx.repo.user_by_name("admin")
        assert admin is not None
        token = add_device(ctx, admin=admin, name="entrance-box", now=utc_now())
        index_key, edge_key = ctx.index_key(), ctx.master_key.derive("edge")
        index_path = ctx.paths.index
    say(f"registry: {demo.data_dir} (encrypted); listed person registered as entry {entry_id[:12]} "
        "(proposed by tanaka, approved by sato)")
    listed, strangers = cast(faces, strangers=3)
    clip = compose_walk_past(root / "entrance.mp4", listed, strangers, seconds=12,
                             listed_enters_at=2.0, listed_leaves_at=8.0, engine=engine,
                             face_data=faces)
    raised: list[Alert] = []
    first_alert: list[float] = []

    def on_alert(alert: Alert) -> None:
        raised.append(alert)
        if not first_alert:
            first_alert.append(time.monotonic() - started)
        say(f"ALERT camera={alert.camera} entry={alert.entry_id[:12]} score={alert.score:.3f} "
            f"(threshold {alert.threshold:.3f}) -> sent to the tablet")

    certificate = demo.data_dir / "tls" / "cert.pem"  # written by `mamoru serve` on first start
    with RtspServer({"entrance": clip.path}) as camera, _api_server(demo, port) as api:
        say(f"camera: {camera.url('entrance')} (a real RTSP stream, looping)")
        say(f"tablet: {api}/alerts  (self-signed certificate {certificate}; "
            f"log in as sato / {passwords['sato']} or tanaka / "
            f"{passwords['tanaka']}; auditor / {passwords['auditor']})")
        outbox = Outbox(root / "edge" / "outbox", edge_key, Delivery(api, token, certificate))
        loop = EdgeLoop(
            demo.edge, [CameraConfig(name="entrance", url=SecretStr(camera.url("entrance")))],
            engine=engine, outbox=outbox, matching_policy=demo.quality.matching,
            matcher=WatchlistMatcher(index_path, index_key, pack=engine.info.pack,
                                     poll_s=demo.edge.index_poll_s),
            metrics=EdgeMetrics(), listeners=[on_alert],
        )
        loop_stop = threading.Event()
        worker = threading.Thread(target=loop.run, args=(loop_stop,), name="mamoru.demo.edge")
        worker.start()
        say("edge loop running; press Ctrl-C to stop")
        try:
            while not stop.is_set() and worker.is_alive():
                if exit_after_alert and outbox.delivered >= 1:
                    break
                stop.wait(0.2)
        finally:
            loop_stop.set()
            worker.join(timeout=30)
    return DemoResult(len(raised), outbox.delivered, first_alert[0] if first_alert else None)

