"""A detected face: the value every stage after the detector works on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, eq=False)
class DetectedFace:
    """Box, five landmarks and detector score, in the pixel frame of the source image.

    Landmark order is the ArcFace template's: the eye on the image's left,
    the eye on its right, nose tip, then the two mouth corners in the same order.
    """

    box: FloatArray = field(repr=False)  # (4,) x1, y1, x2, y2
    landmarks: FloatArray = field(repr=False)  # (5, 2)
    score: float

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def size_px(self) -> float:
        """The shorter side of the box: what decides whether a face is big enough."""
        return min(self.width, self.height)

    def shifted(self, dx: float, dy: float) -> DetectedFace:
        """The same face in a frame whose origin moved by (dx, dy)."""
        offset = np.array([dx, dy], dtype=np.float32)
        return DetectedFace(
            box=self.box + np.tile(offset, 2), landmarks=self.landmarks + offset, score=self.score
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks],
            "score": round(self.score, 4),
        }
