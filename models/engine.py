"""The face engine: detect, align, check quality, embed. One object for every caller.

The edge loop and registration both use this class, so a template registered
from a photo and a probe taken from a camera frame go through identical
preprocessing, and the threshold calibrated for the pack applies to both.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from models.align import align_face
from models.detectors import Detector, build_detector
from models.embedder import Embedder
from models.face import DetectedFace
from models.packs import InstalledPack, require_licence_accepted
from models.quality import QualityPolicy, QualityVerdict, assess
from models.runtime import RuntimeSettings, available_providers, create_session

THRESHOLDS_FILE = "thresholds.json"
THRESHOLDS_PATH = Path(__file__).parent / THRESHOLDS_FILE


@dataclass(frozen=True)
class EngineInfo:
    """What is running: shown wherever the active pack is shown, licence included."""

    pack: str
    licence: str
    commercial_use: bool
    embedding_dim: int
    threshold: float
    threshold_source: str
    providers: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "pack": self.pack,
            "licence": self.licence,
            "commercial_use": self.commercial_use,
            "embedding_dim": self.embedding_dim,
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "providers": list(self.providers),
        }


def calibrated_thresholds() -> dict[str, dict[str, Any]]:
    """Per-pack thresholds written by benchmarks/accuracy.py (empty if never run)."""
    source = THRESHOLDS_PATH
    if not source.is_file():
        return {}
    data: dict[str, dict[str, Any]] = json.loads(source.read_text(encoding="utf-8"))
    return data


def resolve_threshold(pack: InstalledPack, override: float | None) -> tuple[float, str]:
    """Configured override, else the calibrated value, else the manifest's default."""
    if override is not None:
        return override, "configuration"
    calibrated = calibrated_thresholds().get(pack.name)
    if calibrated is not None:
        return float(calibrated["threshold"]), f"calibrated ({THRESHOLDS_FILE})"
    return pack.manifest.default_threshold, "manifest default (not calibrated)"


class FaceEngine:
    """Detection, alignment, quality and embedding for one model pack."""

    def __init__(
        self, pack: InstalledPack, detector: Detector, embedder: Embedder, info: EngineInfo
    ) -> None:
        self.pack = pack
        self.info = info
        self._detector = detector
        self._embedder = embedder

    @classmethod
    def open(
        cls,
        pack: InstalledPack,
        runtime: RuntimeSettings,
        *,
        accept_licence: bool = False,
        threshold: float | None = None,
    ) -> FaceEngine:
        """Verify the pack's files and start its sessions; fails loudly at start-up."""
        require_licence_accepted(pack.manifest, accept_licence)
        manifest = pack.manifest
        detector_path = pack.require_file(manifest.detector)
        recognizer_path = pack.require_file(manifest.recognizer)
        session = create_session(detector_path, runtime,
                                 free_input_size=manifest.detector.kind == "yunet")
        detector = build_detector(manifest.detector, session)
        embedder = Embedder(manifest.recognizer, create_session(recognizer_path, runtime))
        value, source = resolve_threshold(pack, threshold)
        info = EngineInfo(
            pack=manifest.name,
            licence=manifest.licence.summary,
            commercial_use=manifest.licence.commercial_use,
            embedding_dim=manifest.recognizer.embedding_dim,
            threshold=value,
            threshold_source=source,
            providers=tuple(available_providers(runtime)),
        )
        return cls(pack, detector, embedder, info)

    @property
    def threshold(self) -> float:
        return self.info.threshold

    def detect(self, image: npt.NDArray[np.uint8],
               input_size: tuple[int, int] | None = None) -> list[DetectedFace]:
        """Every face in a BGR image, highest detector score first.

        `input_size` (width, height) overrides the pack's detector input, e.g.
        640x384 for a 16:9 camera frame instead of a letterboxed 640x640.
        A small image is padded first: detectors are trained on faces with
        context around them and miss a face that fills a tightly cropped
        ID-style photo (ORL's 92x112 crops, a passport scan).
        """
        size = input_size or self.pack.manifest.detector.input_size
        margin = _context_margin(image, size)
        if margin:
            padded = np.asarray(cv2.copyMakeBorder(image, margin, margin, margin, margin,
                                                   cv2.BORDER_CONSTANT), dtype=np.uint8)
            faces = [f.shifted(-margin, -margin) for f in self._detector.detect(padded, size)]
        else:
            faces = self._detector.detect(image, size)
        return sorted(faces, key=lambda f: f.score, reverse=True)

    def align(self, image: npt.NDArray[np.uint8], face: DetectedFace) -> npt.NDArray[np.uint8]:
        return align_face(image, face, self.pack.manifest.recognizer.input_size)

    def assess(
        self, image: npt.NDArray[np.uint8], face: DetectedFace, policy: QualityPolicy
    ) -> QualityVerdict:
        return assess(face, self.align(image, face), policy)

    def embed(self, crops: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        """L2-normalised embeddings of aligned crops, computed in batches."""
        return self._embedder.embed(crops)

    def embed_faces(
        self, image: npt.NDArray[np.uint8], faces: Sequence[DetectedFace]
    ) -> npt.NDArray[np.float32]:
        return self.embed([self.align(image, f) for f in faces])


def _context_margin(image: npt.NDArray[np.uint8], input_size: tuple[int, int]) -> int:
    """Border to add around an image smaller than the detector input (0 for frames)."""
    longest = max(image.shape[:2])
    if longest >= min(input_size) // 2:
        return 0
    return int(round(longest * 0.5))


def cosine(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    """Similarity of two unit-length embeddings."""
    return float(np.dot(a, b))
