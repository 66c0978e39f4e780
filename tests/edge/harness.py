"""The real edge loop in a thread, as the edge tests drive it: cameras, outbox, snapshots.

The box's files live where `mamoru edge run` keeps them, `<data_dir>/edge`,
so a test that opens every file under the data directory sees the box's
copies as well as the registry's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from pydantic import SecretStr

from edge.alerts import Alert
from edge.archive import SnapshotArchive
from edge.config import CameraConfig, EdgeSettings
from edge.loop import EdgeLoop
from edge.matcher import WatchlistMatcher
from edge.outbox import Delivery, Outbox
from kernel.evidence import EvidenceStore
from mamoru.demo.cameras import RtspServer
from mamoru.demo.scene import SceneTruth, cast, compose_walk_past
from mamoru.settings import MamoruSettings, get_settings
from mamoru.wiring import open_edge_parts
from tests import REPO
from tests.registries import Registry
from tests.waiting import wait_until

RtspServerFactory = Callable[..., RtspServer]  # the `rtsp_server_factory` fixture

FAST = {"open_timeout_s": 3.0, "read_timeout_s": 2.0, "reconnect_initial_s": 0.3,
        "reconnect_max_s": 1.5, "index_poll_s": 0.3, "outbox_max_backoff_s": 1.0}


@dataclass
class RunningEdge:
    loop: EdgeLoop
    outbox: Outbox
    stop: threading.Event
    thread: threading.Thread
    edge_dir: Path
    matcher: WatchlistMatcher
    alerts: list[Alert] = field(default_factory=list)

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """`wait_until` while the loop runs; a failure says what each camera was doing."""
        try:
            wait_until(condition, timeout, what,
                       alive=lambda: None if self.thread.is_alive() else "the edge loop died")
        except AssertionError as failed:
            raise AssertionError(f"{failed}; cameras: {self.loop.states()}") from None

    def metric(self, name: str, **labels: str) -> float | None:
        """A sample of the loop's metrics as a Prometheus scrape reads it (the public API, not
        a metric's private value); None while the series does not exist."""
        return self.loop.metrics.registry.get_sample_value(name, labels)

    def frames(self, camera: str) -> int:
        return next(lane.reader.stats.frames
                    for lane in self.loop.lanes if lane.reader.name == camera)

    def snapshots(self) -> list[Path]:
        return sorted((self.edge_dir / "snapshots").glob("*.bin"))

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the edge loop did not stop"


def build_edge(registry: Registry, cameras: dict[str, str | CameraConfig],
               delivery: Delivery | None = None, **overrides: float) -> RunningEdge:
    """The loop wired as `open_edge_parts` wires it (outbox + snapshot archive), not started."""
    settings = EdgeSettings(**{**FAST, **overrides})
    edge_key = registry.ctx.master_key.derive("edge")
    edge_dir = registry.data_dir / "edge"
    archive = SnapshotArchive(EvidenceStore(edge_dir / "snapshots", edge_key))
    outbox = Outbox(edge_dir / "outbox", edge_key, delivery,
                    lifetimes=settings.outbox_lifetimes(), snapshots=archive)
    matcher = WatchlistMatcher(registry.ctx.paths.index, registry.ctx.index_key(),
                               pack=registry.engine.info.pack, poll_s=settings.index_poll_s)
    configs = [u if isinstance(u, CameraConfig) else CameraConfig(name=n, url=SecretStr(u))
               for n, u in cameras.items()]
    edge: RunningEdge
    loop = EdgeLoop(settings, configs, engine=registry.engine, matcher=matcher, outbox=outbox,
                    matching_policy=registry.settings.quality.matching,
                    listeners=[lambda alert: edge.alerts.append(alert), archive])
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    edge = RunningEdge(loop, outbox, stop, thread, edge_dir, matcher)
    return edge


def walk_clip(tmp_path: Path, face_data: Path, name: str, **timing: float) -> SceneTruth:
    """A clip in which the listed person (Obama) walks past three strangers."""
    listed, strangers = cast(face_data, strangers=3)
    return compose_walk_past(tmp_path / f"{name}.mp4", listed, strangers, **timing)


def strangers_clip(tmp_path: Path, face_data: Path) -> SceneTruth:
    """A clip where the walker is a stranger too (Biden is not registered)."""
    _, strangers = cast(face_data, strangers=4)
    return compose_walk_past(tmp_path / "strangers.mp4", strangers[3], strangers[:3])


def decode(png: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)


def serve(registry: Registry, port: int) -> subprocess.Popen[str]:
    """A real `mamoru serve` on the test's registry (plain HTTP on loopback)."""
    env = {**os.environ, "MAMORU_DATA_DIR": str(registry.data_dir), "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(
        [sys.executable, "-m", "mamoru", "serve", "--insecure-http", "--port", str(port)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def box_settings(tmp_path: Path, registry_url: str, token: str,
                 **overrides: float) -> MamoruSettings:
    """A chain's store box (issue 15): its own data folder, the registry's URL and its device
    token (0600), the index from the registry's API; no master key anywhere in it."""
    secrets_dir = tmp_path / "box-secrets"
    secrets_dir.mkdir(mode=0o700, exist_ok=True)
    token_file = secrets_dir / "device-token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    edge = EdgeSettings(**{**FAST, **overrides}, index_source="registry",
                        registry_url=registry_url, device_token_file=token_file)
    return get_settings(data_dir=tmp_path / "box", edge=edge)


def build_box(settings: MamoruSettings, cameras: dict[str, str]) -> RunningEdge:
    """The loop of a box wired by `open_edge_parts` itself, as `mamoru edge run` wires it."""
    parts = open_edge_parts(settings)
    configs = [CameraConfig(name=n, url=SecretStr(u)) for n, u in cameras.items()]
    edge: RunningEdge
    loop = EdgeLoop(settings.edge, configs, engine=parts.engine, matcher=parts.matcher,
                    outbox=parts.outbox, matching_policy=settings.quality.matching,
                    metrics=parts.metrics,
                    listeners=[lambda alert: edge.alerts.append(alert), parts.archive])
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    edge = RunningEdge(loop, parts.outbox, stop, thread, settings.data_dir / "edge",
                       parts.matcher)
    return edge
