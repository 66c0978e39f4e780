"""The edge loop end to end over a real RTSP server, real models, a real encrypted registry.

Clips are composed from real photos (mamoru/demo/scene.py): Obama, registered
from obama.jpg by two people, walks past strangers in obama2.jpg; nothing
below the RTSP socket is mocked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import generate_latest

from edge.capture import CameraState
from edge.outbox import Delivery
from mamoru.demo.cameras import RtspServer, free_port
from mamoru.demo.scene import SceneTruth
from models.engine import FaceEngine
from registry.accounts.devices import add_device
from registry.alerts.queue import list_alerts
from registry.watchlist import entries as watchlist
from tests.edge.harness import RunningEdge, decode, serve, strangers_clip, walk_clip
from tests.registries import OBAMA, T0, Registry


class EmbeddingSpy:
    """Keeps a copy of every embedding the real engine returns, to search for leaks later."""

    def __init__(self, engine: FaceEngine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.embeddings: list[np.ndarray] = []
        real = engine.embed

        def spy(crops):  # type: ignore[no-untyped-def]
            out = real(crops)
            self.embeddings.extend(row.copy() for row in out)
            return out

        monkeypatch.setattr(engine, "embed", spy)


def _wait_for_passes(edge: RunningEdge, clips: dict[str, SceneTruth], passes: int) -> None:
    """Wait until each camera has delivered `passes` more whole plays of its looping clip:
    a check that nothing (more) happens watches the frames go by, not the clock."""
    targets = {camera: edge.frames(camera) + passes * clip.frame_count
               for camera, clip in clips.items()}
    longest = max(clip.duration_s for clip in clips.values())
    edge.wait_for(lambda: all(edge.frames(c) >= n for c, n in targets.items()),
                  passes * longest + 30, f"{passes} more pass(es) of {sorted(clips)}")


def _files_under(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


def test_listed_person_alerts_once_with_others_masked_and_strangers_never(
    registry: Registry, start_edge: Callable[..., RunningEdge], tmp_path: Path,
    face_data: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """What follows 1 and 2: one alert per person and camera; non-matches leave no trace."""
    entry_id = registry.register(OBAMA)
    walk, crowd = walk_clip(tmp_path, face_data, "walk"), strangers_clip(tmp_path, face_data)
    spy = EmbeddingSpy(registry.engine, monkeypatch)
    with RtspServer({"door": walk.path, "aisle": crowd.path}) as server:
        edge = start_edge({"door": server.url("door"), "aisle": server.url("aisle")})
        edge.wait_for(lambda: bool(edge.alerts), 40, "the listed person's alert")
        # Both clips play through once more: the cool-down (60 s) allows no second alert.
        _wait_for_passes(edge, {"door": walk, "aisle": crowd}, passes=1)
        edge.finish()

    assert [(a.entry_id, a.camera) for a in edge.alerts] == [(entry_id, "door")]
    alert = edge.alerts[0]
    assert alert.score >= alert.threshold == registry.engine.threshold
    snapshot = decode(alert.snapshot_png)
    visible = registry.engine.detect(snapshot)
    assert len(visible) == 1, "every face but the matched one must be masked"
    assert len(registry.engine.detect(snapshot)) < walk.faces_in(walk.listed_frames[0])
    assert len(edge.outbox.pending()) == 1  # no registry configured: it waits, encrypted

    # Forget by construction: no embedding of a face that did not match was written anywhere.
    index = registry.index()
    strangers = [e for e in spy.embeddings
                 if not (hits := index.search(e[np.newaxis], k=1)[0])
                 or hits[0].score < registry.engine.threshold]
    assert len(strangers) >= 6, "the strangers were embedded (and then forgotten)"
    written = b"".join(p.read_bytes() for p in _files_under(tmp_path, registry.data_dir))
    written += caplog.text.encode()
    for embedding in strangers:
        raw = embedding.astype(np.float32).tobytes()
        assert raw[:16] not in written and raw[-16:] not in written


def test_a_dropped_camera_reconnects_while_the_other_keeps_producing(
    start_edge: Callable[..., RunningEdge], tmp_path: Path, face_data: Path
) -> None:
    crowd = strangers_clip(tmp_path, face_data)
    with RtspServer({"cam": crowd.path}) as first, RtspServer({"cam": crowd.path}) as second:
        edge = start_edge({"one": first.url("cam"), "two": second.url("cam")})
        edge.wait_for(
            lambda: set(edge.loop.states().values()) == {CameraState.LIVE}, 30, "both live")
        first.stop()
        edge.wait_for(lambda: edge.loop.states()["one"] is CameraState.RECONNECTING, 15,
                      "camera one to notice it dropped")
        before = edge.frames("two")
        edge.wait_for(lambda: edge.frames("two") >= before + 20, 10,
                      "camera two to keep producing while camera one is down")
        assert edge.loop.states()["two"] is CameraState.LIVE
        first.start()
        edge.wait_for(lambda: edge.loop.states()["one"] is CameraState.LIVE, 30,
                      "camera one to come back")
        edge.finish()
    exported = generate_latest(edge.loop.metrics.registry).decode()
    assert 'mamoru_camera_reconnects{camera="one"} 1.0' in exported
    assert 'mamoru_frames_analysed_total{camera="two"}' in exported
    assert "rtsp://" not in exported  # camera URLs can carry passwords


def test_a_stalled_camera_never_blocks_the_other(
    start_edge: Callable[..., RunningEdge], tmp_path: Path, face_data: Path
) -> None:
    """The server stops sending but keeps the socket open (SIGSTOP): opencv issues 22677/24393."""
    crowd = strangers_clip(tmp_path, face_data)
    with RtspServer({"cam": crowd.path}) as frozen, RtspServer({"cam": crowd.path}) as healthy:
        edge = start_edge({"frozen": frozen.url("cam"), "healthy": healthy.url("cam")},
                          read_timeout_s=1.0)
        edge.wait_for(
            lambda: set(edge.loop.states().values()) == {CameraState.LIVE}, 30, "both live")
        frozen.freeze()
        try:
            before = edge.frames("healthy")
            edge.wait_for(lambda: edge.loop.states()["frozen"] is CameraState.RECONNECTING, 20,
                          "the stalled camera to be detected")
            assert edge.frames("healthy") > before + 20
        finally:
            frozen.thaw()
        edge.wait_for(lambda: edge.loop.states()["frozen"] is CameraState.LIVE, 30, "recovery")
        edge.finish()


def test_an_erased_subject_stops_alerting_after_the_index_update(
    registry: Registry, start_edge: Callable[..., RunningEdge], tmp_path: Path, face_data: Path
) -> None:
    """G-REG-4: erasure reaches the running box through the next index version."""
    entry_id = registry.register(OBAMA)
    walk = walk_clip(
        tmp_path, face_data, "loop", seconds=4, listed_enters_at=1.0, listed_leaves_at=3.0)
    with RtspServer({"door": walk.path}) as server:
        edge = start_edge({"door": server.url("door")}, alert_cooldown_s=1.0)
        edge.wait_for(lambda: len(edge.alerts) >= 2, 40, "alerts on two passes of the clip")
        version = edge.metric("mamoru_index_version") or 0.0
        watchlist.erase(registry.ctx, actor=registry.user("mgr1"), entry_id=entry_id,
                        reason="erasure request", now=T0)
        edge.wait_for(lambda: (edge.metric("mamoru_index_version") or 0.0) > version, 10,
                      "the new index version")
        raised = len(edge.alerts)
        _wait_for_passes(edge, {"door": walk}, passes=3)  # three more passes of the person
        edge.finish()
    assert len(edge.alerts) - raised <= 1, "at most one alert already in flight at the swap"
    assert all(a.entry_id == entry_id for a in edge.alerts)


def test_alerts_raised_while_the_registry_is_down_arrive_when_it_is_back(
    registry: Registry, start_edge: Callable[..., RunningEdge], tmp_path: Path, face_data: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="mamoru.edge.outbox")
    entry_id = registry.register(OBAMA)
    token = add_device(registry.ctx, admin=registry.user("admin"), name="door-box", now=T0)
    port = free_port()
    walk = walk_clip(tmp_path, face_data, "walk")
    with RtspServer({"door": walk.path}) as server:
        edge = start_edge({"door": server.url("door")},
                          delivery=Delivery(f"http://127.0.0.1:{port}", token))
        edge.wait_for(lambda: bool(edge.alerts), 40, "an alert while the registry is down")
        edge.wait_for(lambda: "registry unreachable" in caplog.text, 10,
                      "a delivery round that found the registry down")
        assert len(edge.outbox.pending()) == len(edge.alerts), "undelivered alerts wait"
        api = serve(registry, port)
        try:
            edge.wait_for(
                lambda: not edge.outbox.pending(), 60, "delivery after the registry is back")
        finally:
            api.terminate()
            api.wait(timeout=20)
        edge.finish()
    ctx = registry.reopen()
    received = [a.alert_id for a in list_alerts(ctx)]
    assert sorted(received) == sorted(a.alert_id for a in edge.alerts), "none lost, none duplicated"
    assert all(a.entry_id == entry_id for a in list_alerts(ctx))
