"""SCRFD (insightface) detection, decoded by insightface's own SCRFD class.

insightface's decoder is the reference for these weights, so we reuse it
rather than keep a copy; we only inject our configured session and map its
output onto `DetectedFace`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from insightface.model_zoo.scrfd import SCRFD

from models.face import DetectedFace
from models.manifest import DetectorSpec


class ScrfdDetector:
    """Boxes, five landmarks and a score for every face in a BGR image."""

    def __init__(self, spec: DetectorSpec, session: ort.InferenceSession) -> None:
        self._spec = spec
        self._scrfd = SCRFD(model_file=None, session=session)
        self._scrfd.det_thresh = spec.score_threshold
        self._scrfd.nms_thresh = spec.nms_threshold

    def detect(self, image: npt.NDArray[np.uint8],
               input_size: tuple[int, int] | None = None) -> list[DetectedFace]:
        boxes, landmarks = self._scrfd.detect(image, input_size=input_size or self._spec.input_size)
        if landmarks is None:
            return []
        return [
            DetectedFace(
                box=boxes[i, :4].astype(np.float32),
                landmarks=landmarks[i].astype(np.float32),
                score=float(boxes[i, 4]),
            )
            for i in range(len(boxes))
        ]
