"""Camera capture: one reader thread per camera that keeps only the newest frame.

A camera that drops, stalls or sends garbage must never stop or slow the
others. Each reader opens its stream with open/read timeouts (OpenCV's
FFmpeg backend can otherwise block forever on a dropped stream, opencv
issues 22677 and 24393), reconnects with exponential back-off, and publishes
into a one-frame slot: a slow analysis loop drops stale frames instead of
building a backlog. If a read still hangs past its timeout, `check_stall`
abandons that thread (it exits whenever the call returns) and starts a fresh
one, so a wedged socket costs one idle thread, not a camera.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.config import CameraConfig, EdgeSettings
from edge.streams import StreamMeter, StreamReport

log = logging.getLogger("mamoru.edge.capture")

Image = npt.NDArray[np.uint8]


class CameraState(str, Enum):
    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    FAILED = "failed"  # a file that cannot be opened: nothing to retry
    ENDED = "ended"  # a file source reached its end
    STOPPED = "stopped"


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded frame; lives in memory only."""

    camera: str
    index: int
    monotonic: float
    wall_time: datetime
    image: Image = field(repr=False)


class DropReason(StrEnum):
    """Why a decoded frame was never analysed (label of `mamoru_frames_dropped`)."""

    RATE = "rate"  # not chosen: the stream sends more frames than are analysed
    LATE = "late"  # chosen, but the next chosen frame came before the analysis took it
    UNUSABLE = "unusable"  # garbage a broken stream decoded (wrong shape or type)


class FramePacer:
    """Chooses, as frames arrive, which ones the analysis gets: `period_s` apart on average.

    Pacing on the frames' own arrival times (not on when the analysis loop
    comes round) means a stream already at the analysis rate has every frame
    chosen the moment it arrives, and a faster one has every n-th frame chosen;
    the rest are never handed over. Pacing on the loop's clock instead locked
    the schedule at whatever phase a late frame left it in, so a 5 fps stream
    had frames waiting up to a period for their turn and lost one whenever the
    next arrived first (issue 16: 3.9 of 5 fps analysed at 57 % of the box).
    A frame up to half a period early still counts, so arrival jitter costs none.
    """

    def __init__(self, period_s: float) -> None:
        self._period = period_s
        self._next = float("-inf")

    def wants(self, arrived: float) -> bool:
        if arrived < self._next - self._period / 2:
            return False
        behind = arrived - self._next
        self._next = (arrived if behind > self._period else self._next) + self._period
        return True


class LatestFrame:
    """A one-frame slot: `put` replaces, `take` returns each frame at most once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frame: Frame | None = None
        self._taken = True

    def put(self, frame: Frame) -> bool:
        """Store the newest frame; True if an unconsumed older one was dropped (a late drop:
        only chosen frames are put, so each one replaced was due and not analysed in time)."""
        with self._lock:
            dropped = not self._taken
            self._frame, self._taken = frame, False
            return dropped

    def take(self) -> Frame | None:
        with self._lock:
            if self._taken or self._frame is None:
                return None
            frame, self._frame, self._taken = self._frame, None, True
            return frame  # the slot keeps no reference: the frame lives as long as its analysis


@dataclass
class CameraStats:
    """A reader's running counts (read by the loop's metrics export and the benchmarks)."""

    frames: int = 0  # usable frames decoded
    skipped: int = 0  # not chosen by the pacer: the stream sends more than is analysed
    dropped: int = 0  # chosen, then replaced in the slot before the analysis took it
    bad_frames: int = 0
    reconnects: int = 0
    last_frame_at: float = 0.0

    def drops(self) -> dict[DropReason, int]:
        """Frames decoded but never analysed, by why."""
        return {DropReason.RATE: self.skipped, DropReason.LATE: self.dropped,
                DropReason.UNUSABLE: self.bad_frames}


OpenCapture = Callable[[str, float, float], Any]


def open_ffmpeg_capture(url: str, open_timeout_s: float, read_timeout_s: float,
                        hw: bool = False) -> Any:
    """An OpenCV capture with explicit timeouts, so no call can block forever.

    With `hw`, FFmpeg decodes on a hardware decoder where the box has one
    (VAAPI, NVDEC) and in software otherwise (`mamoru edge plan` reports which).
    """
    accel = cv2.VIDEO_ACCELERATION_ANY if hw else cv2.VIDEO_ACCELERATION_NONE
    return cv2.VideoCapture(
        url, cv2.CAP_FFMPEG,
        [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout_s * 1000),
         cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_timeout_s * 1000),
         cv2.CAP_PROP_HW_ACCELERATION, accel],
    )


def is_usable(image: Any) -> bool:
    """A decoded frame we can analyse (garbage from a broken stream is skipped)."""
    return (
        isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
        and image.shape[2] == 3 and image.shape[0] >= 32 and image.shape[1] >= 32
    )


class CameraReader:
    """Reads one camera in its own thread; `slot` always holds the newest frame."""

    def __init__(self, camera: CameraConfig, settings: EdgeSettings,
                 open_capture: OpenCapture = open_ffmpeg_capture,
                 on_event: Callable[[str, str], None] | None = None,
                 on_stream: Callable[[StreamReport], None] | None = None) -> None:
        self.camera = camera
        self.name = camera.name
        self.slot = LatestFrame()
        self._pacer = FramePacer(1.0 / settings.camera_fps(camera))
        self.stats = CameraStats()
        self._settings = settings
        self._open_capture: OpenCapture = (
            _open_with_hw if open_capture is open_ffmpeg_capture and settings.hw_decode == "auto"
            else open_capture)
        self._on_event = on_event or (lambda camera, event: None)
        self._on_stream = on_stream or (lambda report: None)
        self.stream: StreamReport | None = None  # the latest measurement of this stream
        self._state = CameraState.CONNECTING
        self._stop = threading.Event()
        self._generation = 0
        self._busy_since: float | None = None  # set while inside a blocking call
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> CameraState:
        return self._state

    def start(self) -> None:
        with self._lock:
            self._generation += 1
            generation = self._generation
        self._thread = threading.Thread(
            target=self._run, args=(generation,), name=f"mamoru.capture:{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._state not in (CameraState.ENDED, CameraState.FAILED):
            self._set_state(CameraState.STOPPED)

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def check_stall(self, now: float) -> bool:
        """Abandon a thread stuck in a call past every timeout and start a new one."""
        busy = self._busy_since
        limit = self._settings.open_timeout_s + self._settings.read_timeout_s + 2.0
        if busy is None or now - busy < limit or self._stop.is_set():
            return False
        log.warning("camera stalled; restarting its reader", extra={"camera": self.name})
        self._busy_since = None
        self.stats.reconnects += 1
        self._set_state(CameraState.RECONNECTING)
        self.start()
        return True

    def _current(self, generation: int) -> bool:
        return generation == self._generation and not self._stop.is_set()

    def _set_state(self, state: CameraState) -> None:
        if state is not self._state:
            self._state = state
            self._on_event(self.name, state.value)

    def _run(self, generation: int) -> None:
        attempt = 0
        while self._current(generation):
            capture = self._blocking(self._open_capture, self.camera.url.get_secret_value(),
                                     self._settings.open_timeout_s, self._settings.read_timeout_s)
            if not self._current(generation):
                _release(capture)
                return
            if capture is None or not capture.isOpened():
                _release(capture)
                if self.camera.is_file:
                    self._set_state(CameraState.FAILED)
                    log.error("camera source cannot be opened", extra={"camera": self.name})
                    return
                attempt += 1
                self._back_off(attempt)
                continue
            attempt = 0
            ended = self._read_until_broken(capture, generation)
            _release(capture)
            if ended:
                self._set_state(CameraState.ENDED)
                return
            if self._current(generation):
                self.stats.reconnects += 1
                self._set_state(CameraState.RECONNECTING)
                attempt += 1
                self._back_off(attempt)

    def _read_until_broken(self, capture: Any, generation: int) -> bool:
        """Read frames until the stream breaks (False) or a file ends (True)."""
        declared = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        fps = declared if self.camera.is_file else 0.0
        period = 1.0 / fps if fps and 1.0 <= fps <= 120.0 else 0.0
        meter = StreamMeter(self.name, declared, self._settings.stream_check_s)
        started = time.monotonic()
        index = 0
        while self._current(generation):
            ok, image = self._blocking(capture.read)
            if not self._current(generation):
                return False
            if not ok:
                return self.camera.is_file
            index += 1
            if not is_usable(image):
                self.stats.bad_frames += 1
                continue
            if period:  # a file replays at its own rate, like the camera it stands in for
                delay = started + index * period - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
            self._set_state(CameraState.LIVE)
            now = time.monotonic()
            self.stats.frames += 1
            self.stats.last_frame_at = now
            if not self._pacer.wants(now):
                self.stats.skipped += 1
            elif self.slot.put(Frame(self.name, index, now, datetime.now(UTC), image)):
                self.stats.dropped += 1
            if not meter.done:
                self._measured(meter.frame(now, image.shape[1], image.shape[0]))
        return False

    def _measured(self, report: StreamReport | None) -> None:
        if report is None:
            return
        self.stream = report
        try:
            self._on_stream(report)
        except Exception:  # a report must never stop the camera
            log.exception("stream report failed", extra={"camera": self.name})

    def _blocking(self, call: Callable[..., Any], *args: Any) -> Any:
        self._busy_since = time.monotonic()
        try:
            return call(*args)
        except cv2.error:
            log.warning("camera read raised; treating as a broken stream",
                        extra={"camera": self.name})
            return (False, None) if not args else None
        finally:
            self._busy_since = None

    def _back_off(self, attempt: int) -> None:
        delay = min(self._settings.reconnect_max_s,
                    self._settings.reconnect_initial_s * 2 ** min(attempt - 1, 10))
        self._stop.wait(delay * random.uniform(0.8, 1.2))


def _open_with_hw(url: str, open_timeout_s: float, read_timeout_s: float) -> Any:
    return open_ffmpeg_capture(url, open_timeout_s, read_timeout_s, hw=True)


def _release(capture: Any) -> None:
    if capture is not None:
        try:
            capture.release()
        except cv2.error:
            pass
