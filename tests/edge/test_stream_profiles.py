"""Issue 16: each camera's analysis stream is checked against its profile at start-up.

A camera left at 25 fps feeding a 5 fps analysis makes the box decode five
times the frames it looks at; the box measures what really arrives over real
RTSP, exports it and says once what to change on the camera.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from edge.config import CameraConfig, EdgeSettings
from mamoru.demo.scene import cast, compose_walk_past, default_engine
from tests.edge.harness import RtspServerFactory, RunningEdge


@pytest.mark.serial  # the decoded rate must exceed 15 fps: a core taken by another test drops it
def test_a_25fps_stream_to_a_5fps_analysis_is_measured_and_warned_once(
    tmp_path: Path, face_data: Path, rtsp_server_factory: RtspServerFactory,
    start_edge: Callable[..., RunningEdge], caplog: pytest.LogCaptureFixture,
) -> None:
    listed, strangers = cast(face_data, strangers=2)
    main = compose_walk_past(tmp_path / "main.mp4", listed, strangers, fps=25, seconds=4,
                             listed_enters_at=1.0, listed_leaves_at=3.0)
    sub = compose_walk_past(tmp_path / "sub.mp4", listed, strangers, fps=5,
                            seconds=8, listed_enters_at=1.0, listed_leaves_at=3.0)
    server = rtsp_server_factory({"main": main.path, "sub": sub.path})
    caplog.set_level(logging.WARNING, logger="mamoru.edge.loop")
    edge = start_edge({"door": server.url("main"), "aisle": server.url("sub")},
                      analysis_fps=5.0, stream_check_s=2.0)
    # the harness builds CameraConfig from URLs only; the profile is checked against defaults
    edge.wait_for(lambda: all(lane.reader.stream is not None for lane in edge.loop.lanes),
                  timeout=40, what="both streams measured")

    door = edge.metric("mamoru_camera_stream_fps", camera="door")
    aisle = edge.metric("mamoru_camera_stream_fps", camera="aisle")
    assert door is not None and 20.0 <= door <= 30.0, door
    assert aisle is not None and 4.0 <= aisle <= 6.0, aisle
    assert edge.metric("mamoru_camera_stream_pixels", camera="door", dimension="width") == 1280
    assert edge.metric("mamoru_camera_profile_problem", camera="door", problem="excess_fps") == 1
    assert edge.metric("mamoru_camera_profile_problem", camera="aisle", problem="excess_fps") == 0
    edge.wait_for(lambda: (edge.metric("mamoru_camera_decoded_fps", camera="door") or 0) > 15,
                  timeout=10, what="decoded fps exported")

    warnings = [r for r in caplog.records if "does not fit its profile" in r.getMessage()]
    assert [getattr(r, "camera", None) for r in warnings] == ["door"], warnings
    assert "set this stream's frame rate to 5 fps" in warnings[0].getMessage()
    assert "rtsp://" not in warnings[0].getMessage()  # logs never carry URLs
    edge.finish()


def test_a_profile_states_its_stream_and_a_wrong_size_is_reported() -> None:
    from edge.streams import StreamProblem, StreamReport, problems

    camera = CameraConfig(name="door", url="rtsp://cam/stream2", expected_width=640,
                          expected_height=360, expected_fps=5, detector_input=(640, 384))
    report = StreamReport("door", 5.0, 5.0, 1280, 720, 2.0)
    found = problems(report, camera, analysis_fps=5.0)
    assert list(found) == [StreamProblem.SIZE_MISMATCH]
    assert "1280x720" in found[StreamProblem.SIZE_MISMATCH]
    assert EdgeSettings(cameras=(camera,)).camera_detector_input(camera) == (640, 384)
    assert CameraConfig(name="old", url="rtsp://cam/1").detector_input is None  # old configs
    with pytest.raises(ValidationError, match="multiples of 32"):
        CameraConfig(name="door", url="rtsp://cam/1", detector_input=(640, 360))


def test_a_16_9_frame_detected_at_640x384_finds_the_faces_640x640_finds(
    tmp_path: Path, face_data: Path
) -> None:
    listed, strangers = cast(face_data, strangers=3)
    clip = compose_walk_past(tmp_path / "walk.mp4", listed, strangers, seconds=3,
                             listed_enters_at=1.0, listed_leaves_at=2.0)
    capture = cv2.VideoCapture(str(clip.path))
    capture.set(cv2.CAP_PROP_POS_FRAMES, clip.listed_frames[len(clip.listed_frames) // 2])
    ok, image = capture.read()
    capture.release()
    assert ok
    engine = default_engine()
    square = engine.detect(np.asarray(image, np.uint8))
    wide = engine.detect(np.asarray(image, np.uint8), (640, 384))
    assert len(wide) == len(square) == 4
    for a, b in zip(sorted(square, key=lambda f: f.box[0]), sorted(wide, key=lambda f: f.box[0]),
                    strict=True):
        assert np.abs(a.box - b.box).max() < 8.0
