"""Reading images that users hand to the CLI, with errors a person can act on."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from mamoru.inputs import InputFileError, read_input_file

MAX_IMAGE_BYTES = 50 * 1024 * 1024


class BadImageError(InputFileError):
    """A file given as an image cannot be used as one."""


def read_image(path: Path) -> npt.NDArray[np.uint8]:
    """A BGR image from disk, or `BadImageError` saying why not."""
    try:
        data = read_input_file(path, max_bytes=MAX_IMAGE_BYTES)
    except InputFileError as exc:
        raise BadImageError(str(exc)) from None
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise BadImageError(f"{path}: not a readable image (JPEG, PNG, PGM, ...)")
    return np.asarray(image, dtype=np.uint8)
