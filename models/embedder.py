"""ArcFace-style recognizer: aligned crops in, L2-normalised embeddings out."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from models.manifest import RecognizerSpec


class Embedder:
    """Runs a recognizer in batches; preprocessing comes from the manifest, not guessed."""

    def __init__(self, spec: RecognizerSpec, session: ort.InferenceSession) -> None:
        self._spec = spec
        self._session = session
        self._input_name = session.get_inputs()[0].name

    @property
    def dim(self) -> int:
        return self._spec.embedding_dim

    def embed(self, crops: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        """One unit-length row per crop (BGR, aligned, input_size square)."""
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = self._spec.max_batch
        parts = [self._run(crops[i : i + batch]) for i in range(0, len(crops), batch)]
        features = np.concatenate(parts).astype(np.float32)
        if features.shape[1] != self.dim:
            raise ValueError(
                f"recognizer returned {features.shape[1]}-D embeddings, manifest says {self.dim}"
            )
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        normalised: npt.NDArray[np.float32] = features / np.maximum(norms, 1e-12)
        return normalised

    def _run(self, crops: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        size = self._spec.input_size
        blob = cv2.dnn.blobFromImages(
            [np.ascontiguousarray(c) for c in crops],
            scalefactor=1.0 / self._spec.std,
            size=(size, size),
            mean=(self._spec.mean, self._spec.mean, self._spec.mean),
            swapRB=self._spec.channel_order == "RGB",
        )
        output: npt.NDArray[np.float32] = self._session.run(None, {self._input_name: blob})[0]
        return output.reshape(len(crops), -1)
