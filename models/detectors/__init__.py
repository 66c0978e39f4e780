"""Face detectors: one class per network family, chosen by the pack manifest."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from models.face import DetectedFace
from models.manifest import DetectorSpec


class Detector(Protocol):
    """Finds faces in a BGR image."""

    def detect(self, image: npt.NDArray[np.uint8],
               input_size: tuple[int, int] | None = None) -> list[DetectedFace]: ...


def build_detector(spec: DetectorSpec, session: ort.InferenceSession) -> Detector:
    """The detector class the manifest names, around an injected session."""
    if spec.kind == "yunet":
        from models.detectors.yunet import YuNetDetector

        return YuNetDetector(spec, session)
    from models.detectors.scrfd import ScrfdDetector

    return ScrfdDetector(spec, session)
