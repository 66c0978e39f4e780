"""What a camera's analysis stream really delivers, against the profile the installer set.

Issue 16: every frame a camera sends is decoded whether or not it is analysed
(OpenCV's `grab()` decodes too), so a camera left at 25 fps feeding a 5 fps
analysis spends four fifths of its decode budget on frames that are thrown
away, and a 2-core box that could take 8 cameras takes 3. The box cannot
change the camera's settings, but it can notice and say so: each reader
measures the stream over its first seconds (declared rate, measured arrival
rate, frame size) and the loop exports it as metrics and logs one warning per
camera and problem, naming the setting to change on the camera.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from edge.config import CameraConfig

BURST_S = 1.0  # after opening, FFmpeg hands over the frames it probed in a burst: not counted
TOO_MANY = 1.5  # delivered fps above this multiple of the analysis rate is worth a warning
FPS_TOLERANCE = 0.2  # measured vs expected fps


class StreamProblem(StrEnum):
    """A way a stream differs from what its profile says (metric label, log field)."""

    EXCESS_FPS = "excess_fps"  # sends far more frames than are analysed: decode wasted
    FPS_MISMATCH = "fps_mismatch"  # not the frame rate the profile expects
    SIZE_MISMATCH = "size_mismatch"  # not the resolution the profile expects


@dataclass(frozen=True)
class StreamReport:
    """One measurement of a stream: its own claim, what arrived, and the frame size."""

    camera: str
    declared_fps: float  # CAP_PROP_FPS: what the stream (or file) says; 0 if unknown
    measured_fps: float  # frames that arrived per second over the measuring window
    width: int
    height: int
    window_s: float


class StreamMeter:
    """Arrival times of one connection's frames; a report once the window is full."""

    def __init__(self, camera: str, declared_fps: float, window_s: float) -> None:
        self._camera = camera
        self._declared = declared_fps
        self._window_s = window_s
        self._opened_at: float | None = None
        self._first: float | None = None
        self._count = 0
        self.done = window_s <= 0.0

    def frame(self, now: float, width: int, height: int) -> StreamReport | None:
        """Count a frame that arrived at `now`; the report when the window has passed."""
        if self.done:
            return None
        if self._opened_at is None:
            self._opened_at = now
        if now - self._opened_at < BURST_S:
            return None
        if self._first is None:
            self._first = now
            return None
        self._count += 1
        elapsed = now - self._first
        if elapsed < self._window_s:
            return None
        self.done = True
        return StreamReport(self._camera, round(self._declared, 2),
                            round(self._count / elapsed, 2), width, height, round(elapsed, 2))


def problems(report: StreamReport, camera: CameraConfig, analysis_fps: float
             ) -> dict[StreamProblem, str]:
    """What is wrong with the stream for this camera's profile, each with what to do."""
    found: dict[StreamProblem, str] = {}
    if report.measured_fps > TOO_MANY * analysis_fps:
        found[StreamProblem.EXCESS_FPS] = (
            f"the stream sends {report.measured_fps:g} fps to a {analysis_fps:g} fps analysis: "
            f"set this stream's frame rate to {analysis_fps:g} fps on the camera (or use its "
            f"sub-stream); every frame sent is decoded")
    expected_fps = camera.expected_fps
    if expected_fps and abs(report.measured_fps - expected_fps) > FPS_TOLERANCE * expected_fps:
        found[StreamProblem.FPS_MISMATCH] = (
            f"the stream sends {report.measured_fps:g} fps, its profile expects {expected_fps:g}")
    expected = (camera.expected_width, camera.expected_height)
    actual = (report.width, report.height)
    if any(e is not None and e != a for e, a in zip(expected, actual, strict=True)):
        found[StreamProblem.SIZE_MISMATCH] = (
            f"the stream is {report.width}x{report.height}, its profile expects "
            f"{expected[0] or '*'}x{expected[1] or '*'}")
    return found
