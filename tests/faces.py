"""The real face data as tests read it: a photo by its path, the embedding of its main face."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from mamoru.images import read_image
from models.engine import FaceEngine


def image(face_data: Path, relative: str) -> npt.NDArray[np.uint8]:
    return read_image(face_data / relative)


def main_face_embedding(engine: FaceEngine, img: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """Embedding of the largest face: what a person means by 'the face in this photo'."""
    faces = engine.detect(img)
    assert faces, "no face found"
    face = max(faces, key=lambda f: f.size_px)
    return engine.embed_faces(img, [face])[0]
