"""Fit a frame into a detector's fixed input without distorting faces."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt


def letterbox(
    image: npt.NDArray[np.uint8], size: tuple[int, int]
) -> tuple[npt.NDArray[np.uint8], float]:
    """Scale to fit (width, height), pad bottom/right with black; return the scale.

    Padding only at the bottom and right keeps the inverse mapping a single
    division by `scale`, with no offset to carry around.
    """
    width, height = size
    scale = min(width / image.shape[1], height / image.shape[0])
    resized_w = max(1, round(image.shape[1] * scale))
    resized_h = max(1, round(image.shape[0] * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (resized_w, resized_h), interpolation=interpolation)
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    canvas[:resized_h, :resized_w] = resized
    return canvas, scale
