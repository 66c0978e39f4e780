"""The alert snapshot from a camera's main stream, grabbed only when an alert is raised.

Issue 16: the analysis runs on a camera's sub-stream (720p or 640x360) so a
2-core box can take 8 cameras; staff confirming an alert want the sharper
picture. A profile's optional `snapshot_url` names the main stream, and it is
never decoded continuously: keeping it connected would decode every frame
(OpenCV's `grab()` decodes too), about a sixth of a core per 1080p/25 fps
camera, the cost the sub-stream saves. It is opened on demand with a short
timeout (`edge.snapshot_timeout_s`, 2 s), one frame is read, and it is
closed. Measured over the test RTSP server (1080p/25, a loaded 2-core box):
kept connected, 55 CPU ms every second; on demand, 30-46 CPU ms and ~1.3 s
wall per alert (one per camera and cool-down at most), nearly all of it
waiting for the RTSP answer and the first keyframe.

That wait is never the analysis worker's: `SnapshotTaker` is one
`mamoru.snapshot` thread with a small bounded queue, one pending grab per
camera. The worker hands it the alert (its own copy of the analysis frame)
and goes on with the next frame; when the queue is full or the camera
already has a grab pending, the alert is made from the analysis frame at
once (`mamoru_alert_snapshots{source="analysis-busy"}`). The snapshot
thread also does the verification below: `FaceEngine` is safe to call from
two threads at once (onnxruntime's `InferenceSession.run` is; the
detectors' grid caches are filled whole before they are stored, and two
analysis workers already share the engine), so the worker never waits on a
lock either. It then finishes the alert (PNG, outbox, listeners) exactly
once; both frames are zeroed as soon as the PNG is made. An alert whose
entry left the index while its snapshot was pending is dropped, and on stop
the pending ones are finished from the analysis frame without a grab.

The main-stream frame is taken a moment after the analysed one, and the
person may have moved: he is looked for by scaling the analysis box, and the
detected faces nearest it (five at most) are verified by embedding them and
searching the watchlist again. Only a face that matches the same entry is
kept (the others' embeddings are wiped by the search, as in the analysis);
every other face in the frame is masked, as in every saved image. When
the main stream cannot be opened, is not verified, or shows him nowhere, the
snapshot is the analysis frame (the alert is never held back for it).
"""
from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt
from pydantic import SecretStr

from edge.capture import is_usable, open_ffmpeg_capture
from edge.matcher import WatchlistMatcher
from edge.probe import FaceProbe, Match
from models.engine import FaceEngine
from models.face import DetectedFace

log = logging.getLogger("mamoru.edge.main_stream")

Image = npt.NDArray[np.uint8]
OpenCapture = Callable[[str, float, float], Any]
CANDIDATES = 5  # faces nearest the scaled analysis box that are verified


@dataclass(frozen=True)
class Snapshot:
    """What an alert's picture is made of: the match (its frame and face) and every face in
    that frame, all of which but the match are masked."""

    match: Match
    faces: list[DetectedFace]
    source: str  # "main", "analysis" or "analysis-busy" (the snapshot thread was full)


class MainStream:
    """One camera's main stream, opened for a single frame when an alert needs it."""

    def __init__(self, url: SecretStr, *, open_timeout_s: float, read_timeout_s: float,
                 open_capture: OpenCapture = open_ffmpeg_capture) -> None:
        self._url = url
        self._open_timeout_s = open_timeout_s
        self._read_timeout_s = read_timeout_s
        self._open_capture = open_capture

    def grab(self) -> Image | None:
        """The stream's current frame, or None when it cannot be had within the timeouts."""
        try:
            capture = self._open_capture(self._url.get_secret_value(), self._open_timeout_s,
                                         self._read_timeout_s)
        except Exception:  # an unreachable camera must not cost the alert
            log.warning("main stream could not be opened")
            return None
        try:
            if not capture.isOpened():
                return None
            for _ in range(3):  # a broken stream may decode garbage first
                ok, image = capture.read()
                if ok and is_usable(image):
                    return np.asarray(image, np.uint8)
            return None
        except Exception:
            log.warning("main stream read failed")
            return None
        finally:
            capture.release()


def by_distance(box: npt.NDArray[np.float32], faces: list[DetectedFace]) -> list[DetectedFace]:
    """The faces, nearest (centre to centre, in face widths) to `box` first."""
    centre, width = (box[:2] + box[2:]) / 2, max(1.0, float(box[2] - box[0]))
    return sorted(faces, key=lambda f: float(
        np.linalg.norm((f.box[:2] + f.box[2:]) / 2 - centre)) / width)


def main_stream_snapshot(match: Match, faces: list[DetectedFace], stream: MainStream | None,
                         engine: FaceEngine, matcher: WatchlistMatcher) -> Snapshot:
    """The alert's picture from the main stream where it shows the same person, else the
    analysis frame's."""
    fallback = Snapshot(match, faces, "analysis")
    if stream is None:
        return fallback
    image = stream.grab()
    if image is None:
        log.info("alert snapshot from the analysis stream: main stream unavailable",
                 extra={"camera": match.frame.camera})
        return fallback
    try:
        found = _verified(match, image, engine, matcher)
    except Exception:
        image.fill(0)
        raise
    if isinstance(found, str):
        image.fill(0)
        log.info("alert snapshot from the analysis stream: %s on the main stream", found,
                 extra={"camera": match.frame.camera})
        return fallback
    return found


def _verified(match: Match, image: Image, engine: FaceEngine,
              matcher: WatchlistMatcher) -> Snapshot | str:
    """The main-stream face the watchlist says is him, nearest the scaled analysis box
    first; else why not. He moved on since the analysed frame (the grab takes a moment),
    so the nearest faces are each verified, at most `CANDIDATES` of them."""
    small = match.frame.image
    scale = np.array([image.shape[1] / small.shape[1], image.shape[0] / small.shape[0]] * 2,
                     np.float32)
    faces = engine.detect(image)
    candidates = by_distance(match.face.box * scale, faces)[:CANDIDATES]
    if not candidates:
        return "no face"
    crops = [engine.align(image, face) for face in candidates]
    embeddings = engine.embed(crops)
    for crop in crops:
        crop.fill(0)
    frame = replace(match.frame, image=image)  # same camera, index and time as the alert
    found = matcher.resolve([FaceProbe(frame, face, embeddings[i])
                             for i, face in enumerate(candidates)], engine.threshold)
    embeddings.fill(0.0)
    for again in found:
        if again is not None and again.entry_id == match.entry_id:
            return Snapshot(replace(match, frame=frame, face=again.face), faces, "main")
    return f"none of the {len(candidates)} faces nearest his is him"


class PendingSnapshot:
    """An alert waiting for its main-stream grab: the match (holding its own copy of the
    analysis frame) and the analysis frame's faces. Memory only: like a probe, it refuses to
    be pickled or copied, so a frame it holds cannot reach a file or a queue on disk."""

    __slots__ = ("faces", "match", "stream")

    def __init__(self, match: Match, faces: list[DetectedFace], stream: MainStream) -> None:
        self.match = match
        self.faces = faces
        self.stream = stream

    def _refuse(self, *args: Any) -> NoReturn:
        raise TypeError("a pending snapshot holds a camera frame: memory only")

    __reduce__ = __reduce_ex__ = __getstate__ = __copy__ = __deepcopy__ = _refuse

    def __repr__(self) -> str:
        return f"PendingSnapshot(camera={self.match.frame.camera!r})"


Finish = Callable[[Snapshot, Sequence[Image]], object]  # the shot, and the frames to zero


class SnapshotTaker:
    """The `mamoru.snapshot` thread: grabs, verifies and finishes alerts off the analysis.

    `offer` never blocks: it queues the alert, or says no (the queue is full,
    the camera has a grab pending, or the taker is closed) and the caller makes
    the alert from the analysis frame itself. `finish(shot, wipe)` is called
    exactly once per accepted alert, on this thread; it must zero `wipe` (the
    frames only this alert holds) as soon as the PNG is made.
    """

    def __init__(self, engine: FaceEngine, matcher: WatchlistMatcher, finish: Finish, *,
                 capacity: int = 4) -> None:
        self._engine = engine
        self._matcher = matcher
        self._finish = finish
        self._capacity = capacity
        self._jobs: queue.SimpleQueue[PendingSnapshot | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._busy: set[str] = set()  # cameras with a grab queued or in flight
        self._closing = False
        self._thread: threading.Thread | None = None

    def offer(self, match: Match, faces: list[DetectedFace], stream: MainStream) -> bool:
        """Queue the alert for a main-stream snapshot; False when the caller must finish it."""
        camera = match.frame.camera
        with self._lock:
            if self._closing or camera in self._busy or len(self._busy) >= self._capacity:
                return False
            self._busy.add(camera)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mamoru.snapshot",
                                                 daemon=True)
                self._thread.start()
            # its own copy: the worker's frame goes on to other matches, and this one is zeroed
            own = replace(match, frame=replace(match.frame, image=match.frame.image.copy()))
            self._jobs.put(PendingSnapshot(own, faces, stream))
        return True

    def pending(self) -> int:
        """Alerts accepted and not finished yet."""
        with self._lock:
            return len(self._busy)

    def close(self, timeout_s: float) -> None:
        """Finish every pending alert from its analysis frame (no new grab); an in-flight grab
        ends within its timeouts. Offers made from now on are refused."""
        with self._lock:
            self._closing = True
            thread = self._thread
        if thread is None:
            return
        self._jobs.put(None)
        thread.join(timeout=timeout_s)
        if thread.is_alive():
            log.warning("the snapshot thread is still waiting on a main stream at stop")

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                self._take(job)
            finally:
                with self._lock:
                    self._busy.discard(job.match.frame.camera)

    def _take(self, job: PendingSnapshot) -> None:
        """Grab, verify, finish; any failure falls back to the analysis frame, never loses it."""
        analysis = job.match.frame.image
        shot = Snapshot(job.match, job.faces, "analysis")
        try:
            with self._lock:
                closing = self._closing
            if not closing:
                shot = main_stream_snapshot(job.match, job.faces, job.stream, self._engine,
                                            self._matcher)
        except Exception:
            log.exception("main-stream snapshot failed; the analysis frame is used",
                          extra={"camera": job.match.frame.camera})
        wipe = [analysis] if shot.source != "main" else [analysis, shot.match.frame.image]
        try:
            if not self._matcher.holds(job.match.entry_id):
                log.info("alert dropped: its entry left the watchlist while its snapshot was "
                         "taken", extra={"camera": job.match.frame.camera})
                return
            self._finish(shot, wipe)
        except Exception:
            log.exception("an alert could not be finished",
                          extra={"camera": job.match.frame.camera})
        finally:
            for image in wipe:
                image.fill(0)  # zeroed already by `finish`; again when it failed or was dropped
