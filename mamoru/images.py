"""Reading images that users hand to the CLI, with errors a person can act on."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

MAX_IMAGE_BYTES = 50 * 1024 * 1024


class BadImageError(ValueError):
    """A file given as an image cannot be used as one."""


def read_image(path: Path) -> npt.NDArray[np.uint8]:
    """A BGR image from disk, or `BadImageError` saying why not."""
    if not path.is_file():
        raise BadImageError(f"{path}: no such file")
    if path.stat().st_size > MAX_IMAGE_BYTES:
        raise BadImageError(f"{path}: larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise BadImageError(f"{path}: not a readable image (JPEG, PNG, PGM, ...)")
    return np.asarray(image, dtype=np.uint8)
