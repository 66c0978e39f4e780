"""YuNet (OpenCV Zoo, 2023mar) run on onnxruntime with our own decoder.

OpenCV's `FaceDetectorYN` runs the same file, but through OpenCV DNN, which
ignores the execution-provider and thread settings the rest of the engine
uses; the anchor-free decoding below follows OpenCV's `face_detect.cpp`.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from models.detectors.letterbox import letterbox
from models.face import DetectedFace
from models.manifest import DetectorSpec

_STRIDES = (8, 16, 32)


class YuNetDetector:
    """Boxes, five landmarks and a score for every face in a BGR image."""

    def __init__(self, spec: DetectorSpec, session: ort.InferenceSession) -> None:
        self._spec = spec
        self._session = session
        self._input_name = session.get_inputs()[0].name
        self._grids: dict[tuple[int, int], dict[int, npt.NDArray[np.float32]]] = {}

    def _grids_for(self, size: tuple[int, int]) -> dict[int, npt.NDArray[np.float32]]:
        grids = self._grids.get(size)
        if grids is None:
            width, height = size
            grids = self._grids[size] = {s: _grid(width // s, height // s) for s in _STRIDES}
        return grids

    def detect(self, image: npt.NDArray[np.uint8],
               input_size: tuple[int, int] | None = None) -> list[DetectedFace]:
        size = input_size or self._spec.input_size
        canvas, scale = letterbox(image, size)
        blob = canvas.transpose(2, 0, 1)[np.newaxis].astype(np.float32)
        outputs = dict(
            zip(
                (o.name for o in self._session.get_outputs()),
                self._session.run(None, {self._input_name: blob}),
                strict=True,
            )
        )
        boxes, landmarks, scores = self._decode(outputs, self._grids_for(size))
        keep = _nms(boxes, scores, self._spec.score_threshold, self._spec.nms_threshold)
        return [
            DetectedFace(
                box=(boxes[i] / scale).astype(np.float32),
                landmarks=(landmarks[i] / scale).astype(np.float32),
                score=float(scores[i]),
            )
            for i in keep
        ]

    def _decode(
        self, outputs: dict[str, npt.NDArray[np.float32]],
        grids: dict[int, npt.NDArray[np.float32]],
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        all_boxes, all_landmarks, all_scores = [], [], []
        for stride in _STRIDES:
            cls = np.clip(outputs[f"cls_{stride}"][0, :, 0], 0.0, 1.0)
            obj = np.clip(outputs[f"obj_{stride}"][0, :, 0], 0.0, 1.0)
            scores = np.sqrt(cls * obj)
            candidates = scores >= self._spec.score_threshold
            if not candidates.any():
                continue
            grid = grids[stride][candidates]
            bbox = outputs[f"bbox_{stride}"][0][candidates]
            kps = outputs[f"kps_{stride}"][0][candidates].reshape(-1, 5, 2)
            centres = (grid + bbox[:, :2]) * stride
            sizes = np.exp(bbox[:, 2:4]) * stride
            all_boxes.append(np.hstack([centres - sizes / 2, centres + sizes / 2]))
            all_landmarks.append((kps + grid[:, np.newaxis, :]) * stride)
            all_scores.append(scores[candidates])
        if not all_scores:
            empty = np.zeros((0,), np.float32)
            return empty.reshape(0, 4), empty.reshape(0, 5, 2), empty
        return (
            np.concatenate(all_boxes).astype(np.float32),
            np.concatenate(all_landmarks).astype(np.float32),
            np.concatenate(all_scores).astype(np.float32),
        )


def _grid(cols: int, rows: int) -> npt.NDArray[np.float32]:
    """(col, row) of every anchor point, in the row-major order the network emits."""
    ys, xs = np.mgrid[0:rows, 0:cols]
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)


def _nms(
    boxes: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    score_threshold: float,
    nms_threshold: float,
) -> list[int]:
    if len(scores) == 0:
        return []
    xywh = np.hstack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]])
    kept = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), score_threshold, nms_threshold)
    return [int(i) for i in np.asarray(kept).ravel()]
