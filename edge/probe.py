"""Privacy by construction: what a visitor's face may become, and what it may not.

Everything the edge loop learns about a face lives in a `FaceProbe` until
the watchlist search returns. A probe cannot be pickled, copied, printed or
turned into bytes, so it cannot reach a queue, a log, a file or the network
by accident. The one way out is `FaceProbe.resolve`, which returns a `Match`
only if the face is on the watchlist above the threshold and otherwise
wipes the embedding and returns `None`. Only a `Match` can become an alert;
only an alert is ever written or sent (REQUIREMENTS "what follows" 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt

from edge.capture import Frame
from kernel.watchlist_index import Hit
from models.face import DetectedFace


class ProbeLeakError(TypeError):
    """Something tried to serialise, copy or print a non-matched face."""


class FaceProbe:
    """A face from a camera frame with its embedding; memory-only and single-use."""

    __slots__ = ("_embedding", "_face", "_frame", "_resolved")

    def __init__(
        self, frame: Frame, face: DetectedFace, embedding: npt.NDArray[np.float32]
    ) -> None:
        self._frame: Frame | None = frame
        self._face: DetectedFace | None = face
        self._embedding: npt.NDArray[np.float32] | None = embedding
        self._resolved = False

    @property
    def embedding(self) -> npt.NDArray[np.float32]:
        """For `WatchlistMatcher.resolve` only: the one place a probe is searched."""
        if self._embedding is None:
            raise ProbeLeakError("this probe was resolved; its embedding is gone")
        return self._embedding

    def resolve(self, hit: Hit | None, threshold: float) -> Match | None:
        """The match if `hit` reaches the threshold; otherwise forget everything now."""
        if self._resolved:
            raise ProbeLeakError("a probe is resolved once")
        self._resolved = True
        embedding, self._embedding = self._embedding, None
        if embedding is not None:
            embedding.fill(0.0)  # wipe the buffer, not just our reference to it
        frame, face = self._frame, self._face
        self._frame = self._face = None
        if hit is None or hit.score < threshold or frame is None or face is None:
            return None
        return Match(frame=frame, face=face, entry_id=hit.entry_id, score=hit.score,
                     threshold=threshold)

    def _refuse(self, *args: Any) -> NoReturn:
        raise ProbeLeakError("a non-matched face must never be serialised, copied or shown")

    __reduce__ = __reduce_ex__ = __getstate__ = __copy__ = __deepcopy__ = __bytes__ = _refuse

    def __repr__(self) -> str:
        return "FaceProbe(<redacted>)"


@dataclass(frozen=True, eq=False)
class Match:
    """A face that matched a watchlist entry: the only face that may leave memory."""

    frame: Frame
    face: DetectedFace
    entry_id: str
    score: float
    threshold: float
