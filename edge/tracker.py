"""A small IoU tracker: follows each face across frames so it is embedded a few
times, not every frame.

Embedding dominates the per-face cost, and consecutive frames of one face
tell us nothing new. The tracker links detections to tracks by box overlap
(with a constant-velocity guess of where the box moved) and remembers, per
track, when it was last embedded and whether it already matched, so the
loop embeds a face when it is new, when its quality clearly improved, or at
most every `embed_interval_s`, and stops after `max_embeds_per_track`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from models.face import DetectedFace


def iou(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, float(x2 - x1)) * max(0.0, float(y2 - y1))
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
    return inter / union if union > 0 else 0.0


@dataclass(eq=False)
class Track:
    """One face followed over time in one camera. Holds no embedding and no image."""

    track_id: int
    box: npt.NDArray[np.float32]
    last_seen: float
    velocity: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(4, np.float32))
    hits: int = 1
    embeds: int = 0
    last_embedded_at: float = float("-inf")
    best_quality: float = 0.0
    matched_entry: str | None = None

    def predicted(self, now: float) -> npt.NDArray[np.float32]:
        return self.box + self.velocity * float(now - self.last_seen)


@dataclass(frozen=True, eq=False)
class Observation:
    """A detection in the current frame and the track it belongs to."""

    face: DetectedFace
    track: Track


def _centre_affinity(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32],
                     max_jump: float) -> float:
    """How plausibly box `b` is box `a` moved on: 1 at the same centre, 0 at `max_jump` widths.

    At 5 analysed frames a second a walking person's face moves more than its
    own width between frames, so boxes no longer overlap; their centres are
    still close relative to the face size, and the size barely changes.
    """
    size_a, size_b = float(a[2] - a[0]), float(b[2] - b[0])
    if size_a <= 0 or size_b <= 0 or not 0.67 <= size_b / size_a <= 1.5:
        return 0.0
    centre_a = (a[:2] + a[2:]) / 2
    centre_b = (b[:2] + b[2:]) / 2
    jump = float(np.linalg.norm(centre_b - centre_a)) / ((size_a + size_b) / 2)
    return max(0.0, 1.0 - jump / max_jump)


class IouTracker:
    """Greedy association, overlap first, then nearby centres; unseen tracks age out."""

    def __init__(self, *, max_age_s: float, min_iou: float = 0.3, max_jump: float = 2.0) -> None:
        self._max_age_s = max_age_s
        self._min_iou = min_iou
        self._max_jump = max_jump
        self._tracks: list[Track] = []
        self._ids = itertools.count(1)
        self._last_update: float | None = None

    @property
    def tracks(self) -> list[Track]:
        return list(self._tracks)

    def update(self, faces: list[DetectedFace], now: float) -> list[Observation]:
        """Assign each face to a track (new or existing); forget tracks that are gone.

        A track is forgotten once it has gone unseen for `max_age_s` seconds, whatever
        the camera's frame rate, and a frame since its last sighting looked for it: a
        camera at 5 fps and one at 25 fps forget a person after the same time. A busy
        box that analyses a camera less often than `max_age_s` keeps its tracks until
        a frame has looked, so a standing face is not taken for a new one and embedded
        again, making the box busier still (the rule was three analysis intervals,
        which made a slower camera remember longer).
        """
        looked = self._last_update
        self._last_update = now
        self._tracks = [t for t in self._tracks if not self._gone(t, now, looked)]
        pairs = sorted(
            ((self._affinity(t, f, now), ti, fi)
             for ti, t in enumerate(self._tracks) for fi, f in enumerate(faces)),
            reverse=True,
        )
        assigned: dict[int, Track] = {}
        used_tracks: set[int] = set()
        for affinity, ti, fi in pairs:
            if affinity <= 0.0:
                break
            if ti in used_tracks or fi in assigned:
                continue
            track = self._tracks[ti]
            self._advance(track, faces[fi], now)
            assigned[fi] = track
            used_tracks.add(ti)
        for fi, face in enumerate(faces):
            if fi not in assigned:
                track = Track(next(self._ids), face.box.copy(), now)
                self._tracks.append(track)
                assigned[fi] = track
        return [Observation(faces[fi], assigned[fi]) for fi in range(len(faces))]

    def _gone(self, track: Track, now: float, looked: float | None) -> bool:
        """Unseen past the age limit, and a frame after its last sighting did not show it."""
        return (now - track.last_seen > self._max_age_s
                and looked is not None and looked > track.last_seen)

    def _affinity(self, track: Track, face: DetectedFace, now: float) -> float:
        """Overlap wins (scores 1..2); failing that, centre proximity (0..min_iou)."""
        predicted = track.predicted(now)
        overlap = iou(predicted, face.box)
        if overlap >= self._min_iou:
            return 1.0 + overlap
        return self._min_iou * _centre_affinity(predicted, face.box, self._max_jump)

    @staticmethod
    def _advance(track: Track, face: DetectedFace, now: float) -> None:
        elapsed = now - track.last_seen
        if elapsed > 0:
            track.velocity = ((face.box - track.box) / elapsed).astype(np.float32)
        track.box = face.box.copy()
        track.last_seen = now
        track.hits += 1


def wants_embedding(track: Track, quality: float, now: float, *, interval_s: float,
                    max_embeds: int) -> bool:
    """Embed when new, when quality improved by a quarter, or when the interval passed."""
    if track.matched_entry is not None or track.embeds >= max_embeds:
        return False
    if track.embeds == 0:
        return True
    if quality > track.best_quality * 1.25:
        return True
    return now - track.last_embedded_at >= interval_s
