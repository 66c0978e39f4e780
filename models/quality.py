"""The quality gate: may this face be registered, or matched at all? (G-REG-1)

A blurred, tiny or turned-away template misidentifies other people, so the
guideline allows only clear, high-quality registration images. The gate gives
one verdict with every reason that failed, so a person at the tablet can see
why a photo was refused and take a better one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from models.face import DetectedFace

# Nose tip position between the eye line (0) and the mouth line (1) on the
# ArcFace template, i.e. in a frontal face: (71.74 - 51.60) / (92.30 - 51.60).
_FRONTAL_NOSE_FRACTION = 0.495


class QualityPolicy(BaseModel):
    """Limits a face must meet; registration is stricter than live matching."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_face_px: float = Field(ge=8, description="shorter side of the face box, source pixels")
    min_detector_score: float = Field(gt=0.0, lt=1.0)
    min_sharpness: float = Field(
        ge=0.0, description="variance of the Laplacian of the aligned 112x112 grey crop"
    )
    max_abs_yaw_deg: float = Field(gt=0.0, le=90.0)
    max_abs_pitch_deg: float = Field(gt=0.0, le=90.0)


REGISTRATION_POLICY = QualityPolicy(
    min_face_px=64, min_detector_score=0.8, min_sharpness=60.0,
    max_abs_yaw_deg=30.0, max_abs_pitch_deg=25.0,
)
MATCHING_POLICY = QualityPolicy(
    min_face_px=32, min_detector_score=0.6, min_sharpness=25.0,
    max_abs_yaw_deg=45.0, max_abs_pitch_deg=35.0,
)


@dataclass(frozen=True)
class QualityMetrics:
    """What was measured; kept so a verdict can be explained and audited."""

    face_px: float
    detector_score: float
    sharpness: float
    yaw_deg: float
    pitch_deg: float


@dataclass(frozen=True)
class QualityVerdict:
    """Pass or fail, with every reason that failed (empty when passed)."""

    metrics: QualityMetrics
    reasons: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict[str, Any]:
        m = self.metrics
        return {
            "passed": self.passed,
            "reasons": list(self.reasons),
            "face_px": round(m.face_px, 1),
            "detector_score": round(m.detector_score, 4),
            "sharpness": round(m.sharpness, 1),
            "yaw_deg": round(m.yaw_deg, 1),
            "pitch_deg": round(m.pitch_deg, 1),
        }


def sharpness(aligned: npt.NDArray[np.uint8]) -> float:
    """Variance of the Laplacian on the aligned crop.

    Measured after alignment so every face is judged at the same scale: a small
    face upsampled to 112 px is as blurry to the recognizer as a defocused one.
    """
    grey = cv2.cvtColor(aligned, cv2.COLOR_BGR2GRAY) if aligned.ndim == 3 else aligned
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def head_pose(landmarks: npt.NDArray[np.float32]) -> tuple[float, float]:
    """(yaw, pitch) in degrees, estimated from five landmarks.

    The points are first de-rotated by the eye-line roll. Yaw: the nose tip
    moves off the eye midpoint by about tan(yaw) half-eye-distances (nose depth
    is close to half the eye distance). Pitch: the nose tip moves along the
    eye-mouth axis away from its frontal position. Both are estimates good to
    roughly ten degrees, which is what a gate needs.
    """
    eye_a, eye_b, nose, mouth_a, mouth_b = (landmarks[i].astype(np.float64) for i in range(5))
    roll = math.atan2(eye_b[1] - eye_a[1], eye_b[0] - eye_a[0])
    rotation = np.array(
        [[math.cos(-roll), -math.sin(-roll)], [math.sin(-roll), math.cos(-roll)]]
    )
    eye_a, eye_b, nose, mouth_a, mouth_b = (
        rotation @ p for p in (eye_a, eye_b, nose, mouth_a, mouth_b))
    eye_mid = (eye_a + eye_b) / 2
    mouth_mid = (mouth_a + mouth_b) / 2
    half_eye = max(abs(eye_b[0] - eye_a[0]) / 2, 1e-6)
    yaw = math.degrees(math.atan((nose[0] - eye_mid[0]) / half_eye))
    span = max(mouth_mid[1] - eye_mid[1], 1e-6)
    fraction = (nose[1] - eye_mid[1]) / span
    pitch = math.degrees(math.atan((fraction - _FRONTAL_NOSE_FRACTION) / 0.5))
    return yaw, pitch


def assess(
    face: DetectedFace, aligned: npt.NDArray[np.uint8], policy: QualityPolicy
) -> QualityVerdict:
    """Measure a face against a policy and name every limit it misses."""
    yaw, pitch = head_pose(face.landmarks)
    metrics = QualityMetrics(
        face_px=face.size_px,
        detector_score=face.score,
        sharpness=sharpness(aligned),
        yaw_deg=yaw,
        pitch_deg=pitch,
    )
    reasons: list[str] = []
    if metrics.face_px < policy.min_face_px:
        reasons.append(f"face too small: {metrics.face_px:.0f} px < {policy.min_face_px:.0f} px")
    if metrics.detector_score < policy.min_detector_score:
        reasons.append(
            f"detector unsure: score {metrics.detector_score:.2f} < {policy.min_detector_score:.2f}"
        )
    if metrics.sharpness < policy.min_sharpness:
        reasons.append(
            f"too blurred: sharpness {metrics.sharpness:.0f} < {policy.min_sharpness:.0f}")
    if abs(metrics.yaw_deg) > policy.max_abs_yaw_deg:
        reasons.append(
            f"head turned: yaw {metrics.yaw_deg:+.0f}° beyond ±{policy.max_abs_yaw_deg:.0f}°")
    if abs(metrics.pitch_deg) > policy.max_abs_pitch_deg:
        reasons.append(
            f"head tilted: pitch {metrics.pitch_deg:+.0f}° beyond ±{policy.max_abs_pitch_deg:.0f}°"
        )
    return QualityVerdict(metrics=metrics, reasons=tuple(reasons))
