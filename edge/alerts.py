"""Alerts: one per (subject, camera) per cool-down window, with a masked snapshot.

A match is a lead, not a verdict: the alert goes to a person on staff who
confirms or dismisses it. What it carries is the minimum they need: camera,
time, score and threshold, the matched entry id, and the best frame with
every other face masked solid and the matched face boxed.
"""

from __future__ import annotations

import base64
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from edge.probe import Match
from kernel.masking import draw_match_box, mask_faces
from models.face import DetectedFace


@dataclass(frozen=True)
class Alert:
    """What leaves the edge box. Built only from a `Match`."""

    alert_id: str
    camera: str
    detected_at: datetime
    score: float
    threshold: float
    entry_id: str
    index_version: int
    snapshot_png: bytes = field(repr=False)

    def to_payload(self) -> dict[str, Any]:
        """The registry API's alert body."""
        return {
            "alert_id": self.alert_id,
            "camera": self.camera,
            "detected_at": self.detected_at.isoformat(),
            "score": round(self.score, 6),
            "threshold": self.threshold,
            "entry_id": self.entry_id,
            "index_version": self.index_version,
            "snapshot_png_b64": base64.b64encode(self.snapshot_png).decode("ascii"),
        }


def snapshot(match: Match, all_faces: list[DetectedFace],
             style: Literal["solid", "pixelate"]) -> bytes:
    """The frame with every face but the matched one masked, and the match boxed, as PNG."""
    masked = mask_faces(match.frame.image, all_faces, keep=match.face, style=style)
    boxed: npt.NDArray[np.uint8] = draw_match_box(masked, match.face)
    ok, png = cv2.imencode(".png", boxed)
    if not ok:
        raise ValueError("snapshot could not be encoded")
    return bytes(png.tobytes())


class AlertPolicy:
    """Cool-down per (entry, camera): a person standing in view raises one alert, not fifty."""

    def __init__(self, cooldown_s: float) -> None:
        self._cooldown_s = cooldown_s
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()  # analysis workers share one policy

    def should_alert(self, entry_id: str, camera: str, now: float) -> bool:
        key = (entry_id, camera)
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._cooldown_s:
                return False
            self._last[key] = now
            return True

    def forget(self, entry_id: str) -> None:
        """An erased subject's cool-downs go too: nothing about them is kept."""
        with self._lock:
            for key in [k for k in self._last if k[0] == entry_id]:
                del self._last[key]


def build_alert(match: Match, all_faces: list[DetectedFace], *, index_version: int,
                style: Literal["solid", "pixelate"]) -> Alert:
    return Alert(
        alert_id=uuid.uuid4().hex,
        camera=match.frame.camera,
        detected_at=match.frame.wall_time,
        score=match.score,
        threshold=match.threshold,
        entry_id=match.entry_id,
        index_version=index_version,
        snapshot_png=snapshot(match, all_faces, style),
    )
