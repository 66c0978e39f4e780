"""The edge-loop test harness is real: composed clips of real faces, served over
real RTSP by GStreamer, read by OpenCV's FFmpeg backend as the edge loop reads a
camera; a camera that drops or freezes fails its reader in bounded time."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from mamoru.demo.cameras import READ_TIMEOUT_MS, open_capture
from mamoru.demo.scene import SceneTruth, cast, compose_walk_past, default_engine
from tests.edge.harness import RtspServerFactory

WIDTH, HEIGHT = 1280, 720
READ_TIMEOUT_S = READ_TIMEOUT_MS / 1000


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory, face_data: Path) -> SceneTruth:
    """4 s: two strangers throughout, the listed person from 1 s to 3 s."""
    listed, strangers = cast(face_data, strangers=2)
    return compose_walk_past(
        tmp_path_factory.mktemp("scene") / "walk.mp4",
        listed,
        strangers,
        seconds=4,
        listed_enters_at=1.0,
        listed_leaves_at=3.0,
    )


def test_real_faces_come_over_rtsp_and_a_dropped_camera_comes_back(
    walk: SceneTruth, rtsp_server_factory: RtspServerFactory
) -> None:
    server = rtsp_server_factory({"door": walk.path})
    engine = default_engine()
    capture = open_capture(server.url("door"))
    assert capture.isOpened(), f"cannot open {server.url('door')}"

    # A new stream starts at the clip's first frame, so the k-th frame read is
    # frame k of the clip (modulo its length: the camera loops).
    faces_seen: list[int] = []
    for _ in range(walk.frame_count + 5):
        ok, frame = capture.read()
        assert ok, f"read {len(faces_seen)} frames, then the stream failed"
        assert frame.shape == (HEIGHT, WIDTH, 3)
        faces_seen.append(len(engine.detect(np.asarray(frame, np.uint8))))

    # The third face is the listed person, seen only while the clip shows him
    # (two frames of slack at the edges).
    with_listed = [k for k, n in enumerate(faces_seen) if n >= 3]
    assert with_listed, f"never 3 faces over RTSP; faces per frame: {faces_seen}"
    near = {k + d for k in walk.listed_frames for d in range(-2, 3)}
    assert all(k % walk.frame_count in near for k in with_listed), faces_seen
    assert faces_seen[walk.listed_frames[len(walk.listed_frames) // 2]] == 3, faces_seen

    # The camera drops: the open reader fails within its read timeout, no hang.
    server.stop()
    reads = _read_until_failure(capture, limit_s=READ_TIMEOUT_S + 3)
    assert reads is not None, "reader still getting frames, or hung, after the camera dropped"
    capture.release()  # not if it hung: releasing under a blocked read is unsafe

    # It comes back on the same URL and a new reader gets frames again.
    server.start()
    again = open_capture(server.url("door"))
    assert again.isOpened(), "cannot reconnect after the camera came back"
    ok, frame = again.read()
    assert ok and frame.shape == (HEIGHT, WIDTH, 3)
    again.release()


def test_a_frozen_camera_does_not_hang_its_reader(
    walk: SceneTruth, rtsp_server_factory: RtspServerFactory
) -> None:
    server = rtsp_server_factory({"door": walk.path})
    timeout_s = 1.5  # short, to keep the test short: it is waited out three times
    capture = open_capture(server.url("door"), read_timeout_ms=int(timeout_s * 1000))
    assert capture.isOpened()
    assert capture.read()[0]

    # Connection open, nothing arriving: after the frames already buffered,
    # each read returns within the read timeout (OpenCV may still say ok,
    # with a stale frame, a couple of times before a read fails).
    server.freeze()
    reads = _read_until_failure(capture, limit_s=5 * timeout_s + 3)
    assert reads is not None, "reader hung on a frozen camera"
    assert max(reads) < timeout_s + 1, f"a read outlasted the read timeout: {reads}"
    capture.release()

    server.thaw()
    again = open_capture(server.url("door"))
    assert again.isOpened() and again.read()[0], "cannot reconnect after the camera thawed"
    again.release()


def _read_until_failure(capture: cv2.VideoCapture, limit_s: float) -> list[float] | None:
    """Read until a read fails: the seconds each read took, or None if that
    did not happen within `limit_s`.

    Reads run in a daemon thread, so a reader that hangs fails the test
    instead of hanging it. Frames already buffered may come first.
    """
    took: list[float] = []
    failed = threading.Event()

    def drain() -> None:
        while True:
            started = time.monotonic()
            ok, _ = capture.read()
            took.append(time.monotonic() - started)
            if not ok:
                failed.set()
                return

    threading.Thread(target=drain, daemon=True).start()
    return list(took) if failed.wait(limit_s) else None
