"""Masking faces in images before they are stored or shared.

A bystander in a store photo is not on the watchlist: every face other than
the subject's is masked before an evidence image or an alert snapshot is kept
(what follows for the product, point 1; G-SEC-2). For one-off emergency sharing
the offender's face is masked too (G-SHR-6). Masking is a flat fill or coarse
pixelation, never a light blur: a Gaussian blur of a face can be re-identified
by a recogniser and partly inverted.

Masking a copy does not make the data non-personal while the unmasked original
is kept (G-SHR-5): these functions return new arrays and leave the caller's
input untouched, so which copy is stored stays the caller's explicit decision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from models.face import DetectedFace

MaskStyle = Literal["solid", "pixelate"]
Image = npt.NDArray[np.uint8]

MASK_COLOUR = (0, 0, 0)  # BGR; a flat fill carries no information about the face
MATCH_COLOUR = (0, 0, 255)  # BGR red: the outline on alert snapshots
PIXELATE_BLOCKS = 6  # at most 6x6 blocks over the enlarged box: coarse, not a blur
KEEP_IOU = 0.9  # a separately detected instance of the kept face overlaps this much
DEFAULT_MARGIN = 0.25  # hair, ears and outline identify people too

_Rect = tuple[int, int, int, int]  # x1, y1, x2, y2 in whole pixels, x2/y2 exclusive


class MaskingError(ValueError):
    """The request cannot be masked safely (e.g. the face to keep is not in the list)."""


def mask_faces(
    image: Image,
    faces: Sequence[DetectedFace],
    *,
    keep: DetectedFace | None,
    style: MaskStyle = "solid",
    margin: float = DEFAULT_MARGIN,
) -> Image:
    """A new image with every face in `faces` masked except `keep`.

    Each masked box is enlarged by `margin` times its width/height on every
    side and clipped to the image. `keep` is found by identity or by IoU above
    0.9, so a caller may pass an instance from a separate detection; every face
    that matches it is kept (a detector's duplicate of the subject is the
    subject). Where a bystander's enlarged box reaches into the kept face's box
    the margin yields to the subject, but the bystander's own box is always
    masked, even over the subject: the bystander's privacy wins.

    Raises `MaskingError` if `keep` matches none of `faces`: silently masking
    the subject, or keeping a region no detector vouched for, would both be
    wrong, so the caller has to resolve it.
    """
    _check_image(image)
    if margin < 0 or not math.isfinite(margin):
        raise ValueError(f"margin must be a finite number >= 0, got {margin}")
    if style not in ("solid", "pixelate"):
        raise ValueError(f"style must be 'solid' or 'pixelate', got {style!r}")
    kept, masked = _split_keep(faces, keep)
    height, width = image.shape[:2]
    cover = _cover_mask(image.shape[:2], masked, kept, margin)
    out = image.copy()
    if style == "solid":
        out[cover] = _fill_value(image)
        return out
    for face in masked:
        x1, y1, x2, y2 = _enlarged_rect(face, margin, width, height)
        if x2 <= x1 or y2 <= y1:
            continue
        blocks = _pixelated(image[y1:y2, x1:x2])
        region_cover = cover[y1:y2, x1:x2]
        out[y1:y2, x1:x2][region_cover] = blocks[region_cover]
    return out


def mask_all_faces(
    image: Image,
    faces: Sequence[DetectedFace],
    *,
    style: MaskStyle = "solid",
    margin: float = DEFAULT_MARGIN,
) -> Image:
    """Every face masked, the offender's included: the minimum for emergency sharing (G-SHR-6)."""
    return mask_faces(image, faces, keep=None, style=style, margin=margin)


def draw_match_box(image: Image, face: DetectedFace) -> Image:
    """A new image with the matched face outlined, for the alert a person confirms.

    The outline tells staff which of several people the system means; the
    match is a lead to check, not a verdict (what follows, point 2).
    """
    _check_image(image)
    height, width = image.shape[:2]
    x1, y1, x2, y2 = _rect(face.box, width, height)
    out = image.copy()
    if x2 <= x1 or y2 <= y1:
        return out
    thickness = max(2, round(min(height, width) / 300))
    colour: int | tuple[int, ...] = MATCH_COLOUR if image.ndim == 3 else 255
    if image.ndim == 3 and image.shape[2] == 4:
        colour = (*MATCH_COLOUR, 255)
    cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), colour, thickness, lineType=cv2.LINE_8)
    return out


def iou(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    ax1, ay1, ax2, ay2 = (float(v) for v in np.asarray(a).reshape(4))
    bx1, by1, bx2, by2 = (float(v) for v in np.asarray(b).reshape(4))
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    union = max(0.0, ax2 - ax1) * max(0.0, ay2 - ay1) + max(0.0, bx2 - bx1) * max(
        0.0, by2 - by1
    ) - inter
    return inter / union if union > 0 else 0.0


def _check_image(image: Image) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise TypeError("image must be a uint8 numpy array (BGR, BGRA or grayscale)")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise TypeError(f"image must be HxW or HxWx(1|3|4), got shape {image.shape}")


def _split_keep(
    faces: Sequence[DetectedFace], keep: DetectedFace | None
) -> tuple[list[DetectedFace], list[DetectedFace]]:
    """(faces that are the subject, faces to mask)."""
    if keep is None:
        return [], list(faces)
    kept = [f for f in faces if f is keep or iou(f.box, keep.box) > KEEP_IOU]
    if not kept:
        raise MaskingError(
            "the face to keep matches none of the detected faces (by identity or IoU > "
            f"{KEEP_IOU}); refusing to guess which face is the subject"
        )
    kept_ids = {id(f) for f in kept}
    return kept, [f for f in faces if id(f) not in kept_ids]


def _cover_mask(
    shape: tuple[int, ...],
    masked: Sequence[DetectedFace],
    kept: Sequence[DetectedFace],
    margin: float,
) -> npt.NDArray[np.bool_]:
    """Pixels to cover: enlarged bystander boxes, minus the subject's box, plus bystander boxes."""
    height, width = shape[0], shape[1]
    cover = np.zeros((height, width), dtype=bool)
    for face in masked:
        x1, y1, x2, y2 = _enlarged_rect(face, margin, width, height)
        cover[y1:y2, x1:x2] = True
    for face in kept:
        x1, y1, x2, y2 = _rect(face.box, width, height)
        cover[y1:y2, x1:x2] = False
    for face in masked:
        x1, y1, x2, y2 = _rect(face.box, width, height)
        cover[y1:y2, x1:x2] = True
    return cover


def _enlarged_rect(face: DetectedFace, margin: float, width: int, height: int) -> _Rect:
    dx, dy = face.width * margin, face.height * margin
    x1, y1, x2, y2 = (float(v) for v in face.box)
    return _rect((x1 - dx, y1 - dy, x2 + dx, y2 + dy), width, height)


def _rect(box: npt.ArrayLike, width: int, height: int) -> _Rect:
    """Whole-pixel rectangle that contains the float box, clipped to the image.

    Rounded outward: a fraction of a pixel of face left uncovered is still
    a fraction of a face.
    """
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise MaskingError("a face box has a non-finite coordinate")
    left = min(max(math.floor(x1), 0), width)
    top = min(max(math.floor(y1), 0), height)
    right = min(max(math.ceil(x2), 0), width)
    bottom = min(max(math.ceil(y2), 0), height)
    return left, top, right, bottom


def _pixelated(region: Image) -> Image:
    """The region as at most 6x6 flat blocks: averaged down, then blown up without smoothing."""
    height, width = region.shape[:2]
    small = cv2.resize(
        region,
        (min(PIXELATE_BLOCKS, width), min(PIXELATE_BLOCKS, height)),
        interpolation=cv2.INTER_AREA,
    )
    big = cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)
    return big.reshape(region.shape).astype(np.uint8, copy=False)  # resize keeps uint8


def _fill_value(image: Image) -> npt.NDArray[np.uint8]:
    """The flat mask colour in the image's own channel layout."""
    if image.ndim == 2 or image.shape[2] == 1:
        return np.zeros(image.shape[2:], dtype=np.uint8)
    if image.shape[2] == 4:
        return np.array((*MASK_COLOUR, 255), dtype=np.uint8)
    return np.array(MASK_COLOUR, dtype=np.uint8)
