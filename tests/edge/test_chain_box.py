"""A chain's store box (issue 15): no master key on it, and analysis that never waits on the index.

A real registry (`mamoru serve`, or the real app under uvicorn in this
process where a route must be slowed down), a real box wired by
`open_edge_parts` from its own settings (`edge.index_source = "registry"`),
a real RTSP camera and the real engine. What a chain relies on:

- a box started from a data folder without any master key runs: it generates
  its own box key, gets the index key from the registry, raises and delivers
  the alert; nothing on it opens under any key derived from the registry's
  master key (a stolen box gives away no chain-wide key, G-SEC-2, G-BRE-3),
  and it restarts from its own disk while the registry is down;
- following the index (a slow registry, a 1.8 s re-seal at 100,000
  templates) runs on its own thread: frames are analysed at their rate while
  a refresh is in flight, and an erasure still reaches the matcher within one
  poll of the registry's answer (G-REG-4).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import registry.api.deltas as edge_deltas
from edge.matcher import IndexState
from kernel.sealed import INDEX_KEY, Sealer
from mamoru.demo.cameras import free_port
from mamoru.settings import MamoruSettings
from mamoru.wiring import open_edge_parts
from registry.accounts.devices import add_device
from registry.alerts.queue import list_alerts
from registry.watchlist import entries as watchlist
from tests import REPO
from tests.edge.harness import (
    RtspServerFactory,
    RunningEdge,
    box_settings,
    build_box,
    serve,
    walk_clip,
)
from tests.forensics import all_keys, plaintexts
from tests.registries import BIDEN, OBAMA, T0, Registry
from tests.registry.servers import serve_in_threads
from tests.waiting import answers, running, wait_until

SLOW_DELTA_S = 4.0


def _analysed(edge: RunningEdge) -> int:
    return sum(lane.analysed for lane in edge.loop.lanes)


@pytest.mark.rtsp
def test_a_chain_box_without_the_master_key_gets_the_index_and_raises_the_alert(
        registry: Registry, rtsp_server_factory: RtspServerFactory, tmp_path: Path,
        face_data: Path) -> None:
    entry_id = registry.register(OBAMA)
    token = add_device(registry.ctx, admin=registry.user("admin"), name="store-7-door", now=T0)
    camera = rtsp_server_factory({"door": walk_clip(tmp_path, face_data, "walk").path})
    port = free_port()
    api = serve(registry, port)
    settings = box_settings(tmp_path, f"http://127.0.0.1:{port}", token)
    box_dir = settings.data_dir
    try:
        wait_until(answers(f"http://127.0.0.1:{port}/api/v1/edge/index/version", 401), 60,
                   "mamoru serve to answer", alive=running(api))
        edge = build_box(settings, {"door": camera.url("door")})
        edge.thread.start()
        try:
            edge.wait_for(lambda: edge.outbox.delivered >= 1, 90, "the box's alert delivered")
        finally:
            edge.finish()
    finally:
        api.terminate()
        api.wait(timeout=20)
    assert [a.entry_id for a in edge.alerts][:1] == [entry_id]
    [alert] = list_alerts(registry.reopen())
    assert alert.entry_id == entry_id and alert.device == "store-7-door"

    # What a thief finds on the box: its own key, and nothing the chain's keys open.
    box_key = box_dir / "edge" / "box.key"
    assert stat.S_IMODE(box_key.stat().st_mode) == 0o600
    master = registry.ctx.master_key
    files = sorted(p for p in box_dir.rglob("*") if p.is_file())
    assert {p.name for p in files} >= {"box.key", "watchlist.idx", "index-key.sealed"}
    for path in files:
        assert master._raw.hex().encode() not in path.read_bytes()  # noqa: SLF001
        assert list(plaintexts(path, all_keys(master))) == [path.read_bytes()], \
            f"{path} opens under a key derived from the registry's master key"

    # It restarts from its own disk while the registry is down: cache and key, sealed.
    restarted = open_edge_parts(settings)
    restarted.matcher.load()
    assert restarted.matcher.state is IndexState.CURRENT
    assert restarted.matcher.version == registry.ctx.repo.watchlist_version()


@pytest.mark.rtsp
def test_analysis_runs_on_while_an_index_refresh_waits_on_a_slow_registry(
        registry: Registry, rtsp_server_factory: RtspServerFactory, tmp_path: Path,
        face_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    obama = registry.register(OBAMA)
    registry.register(BIDEN)
    token = add_device(registry.ctx, admin=registry.user("admin"), name="store-7-door", now=T0)
    asked, answered = threading.Event(), threading.Event()
    build_delta = edge_deltas.build_delta

    def slow_delta(*args: Any, **kwargs: Any) -> bytes | None:
        """The registry's delta, answered late (a slow link, a busy registry)."""
        asked.set()
        time.sleep(SLOW_DELTA_S)
        try:
            return build_delta(*args, **kwargs)
        finally:
            answered.set()

    monkeypatch.setattr(edge_deltas, "build_delta", slow_delta)
    camera = rtsp_server_factory({"door": walk_clip(tmp_path, face_data, "walk").path})
    with serve_in_threads(registry.settings, registry.engine) as url:
        settings = box_settings(tmp_path, url, token)
        edge = build_box(settings, {"door": camera.url("door")})
        edge.thread.start()
        try:
            edge.wait_for(lambda: _analysed(edge) >= 10, 60, "the camera's first frames")
            start, started = _analysed(edge), time.monotonic()
            time.sleep(2.0)
            rate = (_analysed(edge) - start) / (time.monotonic() - started)

            watchlist.erase(registry.ctx, actor=registry.user("mgr1"), entry_id=obama,
                            reason="本人からの削除請求", now=T0)
            erased_version = registry.ctx.repo.watchlist_version()
            edge.wait_for(asked.is_set, 10, "the box to ask for the delta")
            start, started = _analysed(edge), time.monotonic()
            edge.wait_for(answered.is_set, SLOW_DELTA_S + 10, "the slow delta")
            during = (_analysed(edge) - start) / (time.monotonic() - started)
            assert during >= 0.5 * rate, \
                f"analysis stalled while the index refresh waited: {during:.1f} fps " \
                f"against {rate:.1f} fps before"

            answered_at = time.monotonic()
            edge.wait_for(lambda: edge.matcher.version == erased_version,
                          settings.edge.index_poll_s + 5, "the erasure to reach the matcher")
            assert time.monotonic() - answered_at < settings.edge.index_poll_s + 5
            assert edge.matcher.state is IndexState.CURRENT
            assert edge.loop.metrics.registry.get_sample_value(
                "mamoru_index_refresh_errors_total") == 0
        finally:
            edge.finish()


def _box_run(settings: MamoruSettings) -> subprocess.CompletedProcess[str]:
    """`mamoru edge run` of this box, configured through the environment as a unit would."""
    assert settings.edge.registry_url and settings.edge.device_token_file
    env = {**os.environ, "MAMORU_DATA_DIR": str(settings.data_dir),
           "MAMORU_EDGE__INDEX_SOURCE": "registry",
           "MAMORU_EDGE__REGISTRY_URL": settings.edge.registry_url,
           "MAMORU_EDGE__DEVICE_TOKEN_FILE": str(settings.edge.device_token_file),
           "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "mamoru", "edge", "run", "--source",
                           "door=/nowhere/door.mp4", "--max-seconds", "20"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=180, check=False)


@pytest.mark.cli
def test_an_unusable_box_key_stops_the_box_at_start_with_one_line(tmp_path: Path) -> None:
    settings = box_settings(tmp_path, f"http://127.0.0.1:{free_port()}", "a-device-token")
    box_key = settings.data_dir / "edge" / "box.key"
    (box_key.parent / "index").mkdir(parents=True, mode=0o700)
    problems = {
        "readable by others": lambda: (box_key.write_text(os.urandom(32).hex()),
                                       box_key.chmod(0o644)),
        "is damaged (not a hex-encoded key)": lambda: (box_key.write_text("not a key"),
                                                        box_key.chmod(0o600)),
        "box key does not open": lambda: (
            box_key.write_text(os.urandom(32).hex()), box_key.chmod(0o600),
            Sealer(INDEX_KEY, os.urandom(32)).write(
                settings.data_dir / "edge" / "index" / "index-key.sealed", os.urandom(32))),
    }
    for message, make in problems.items():
        make()
        result = _box_run(settings)
        assert result.returncode == 2, result.stderr[-2000:]
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith("mamoru: error: ") and message in lines[-1], lines[-3:]
        assert "Traceback" not in result.stderr
