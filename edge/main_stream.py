"""The alert snapshot from a camera's main stream, grabbed only when an alert is raised.

Issue 16: the analysis runs on a camera's sub-stream (720p or 640x360) so a
2-core box can take 8 cameras; staff confirming an alert want the sharper
picture. A profile's optional `snapshot_url` names the main stream, and it is
never decoded continuously: keeping it connected would decode every frame
(OpenCV's `grab()` decodes too), about a sixth of a core per 1080p/25 fps
camera, the cost the sub-stream saves. It is opened on demand with a short
timeout, one frame is read, and it is closed. Measured over the test RTSP
server (1080p/25, a loaded 2-core box): kept connected, 55 CPU ms every
second; on demand, 30-46 CPU ms and ~1.3 s wall per alert (one per camera and
cool-down at most).

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
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

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
    source: str  # "main" or "analysis"


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
    found = _verified(match, image, engine, matcher)
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
