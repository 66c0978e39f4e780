"""Masking bystanders' faces, checked with the real detectors on real faces.

Whether a face is masked is decided the way an attacker would: by running the
detectors again on the masked image. t1.jpg holds six real faces.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from kernel.masking import (
    MATCH_COLOUR,
    MaskingError,
    draw_match_box,
    iou,
    mask_all_faces,
    mask_faces,
)
from models.engine import FaceEngine
from models.face import DetectedFace
from tests.faces import image

T1 = "insightface/t1.jpg"
Image = npt.NDArray[np.uint8]


@pytest.fixture(scope="module")
def t1(face_data: Path) -> Image:
    return image(face_data, T1)


@pytest.fixture(scope="module")
def t1_faces(engines: dict[str, FaceEngine], t1: Image) -> list[DetectedFace]:
    faces = engines["yunet-sface"].detect(t1)
    assert len(faces) == 6
    return faces


def _int_box(face: DetectedFace, width: int, height: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = face.box
    return (
        max(int(np.floor(x1)), 0),
        max(int(np.floor(y1)), 0),
        min(int(np.ceil(x2)), width),
        min(int(np.ceil(y2)), height),
    )


def _enlarged(face: DetectedFace, margin: float, width: int, height: int) -> tuple[int, ...]:
    dx, dy = face.width * margin, face.height * margin
    x1, y1, x2, y2 = face.box
    grown = DetectedFace(
        box=np.array([x1 - dx, y1 - dy, x2 + dx, y2 + dy], dtype=np.float32),
        landmarks=face.landmarks,
        score=face.score,
    )
    return _int_box(grown, width, height)


def _block_runs(values: Image, axis: int) -> int:
    """How many runs of identical rows (axis=0) or columns (axis=1) a region has."""
    changes = np.any(np.diff(values.astype(np.int16), axis=axis) != 0, axis=tuple(
        a for a in range(values.ndim) if a != axis
    ))
    return int(changes.sum()) + 1


@pytest.mark.parametrize("style", ["solid", "pixelate"])
@pytest.mark.parametrize("k", range(6))
def test_only_the_kept_face_survives_redetection(
    engines: dict[str, FaceEngine], t1: Image, t1_faces: list[DetectedFace], k: int, style: str
) -> None:
    # What follows, point 1: every face except the matched one is masked (G-SEC-2).
    keep = t1_faces[k]
    masked = mask_faces(t1, t1_faces, keep=keep, style=style)  # type: ignore[arg-type]
    for pack in ("yunet-sface", "scrfd-mbf"):
        found = engines[pack].detect(masked)
        assert len(found) == 1, f"{pack} found {len(found)} faces after masking ({style})"
        assert iou(found[0].box, keep.box) > 0.8


@pytest.mark.parametrize("style", ["solid", "pixelate"])
def test_kept_box_pixels_unchanged_and_input_untouched(
    t1: Image, t1_faces: list[DetectedFace], style: str
) -> None:
    before = t1.copy()
    keep = t1_faces[2]
    masked = mask_faces(t1, t1_faces, keep=keep, style=style)  # type: ignore[arg-type]
    assert np.array_equal(t1, before), "the input image was modified"
    assert masked is not t1
    height, width = t1.shape[:2]
    x1, y1, x2, y2 = _int_box(keep, width, height)
    assert np.array_equal(masked[y1:y2, x1:x2], t1[y1:y2, x1:x2])


def test_solid_mask_is_flat_over_the_enlarged_box(t1: Image, t1_faces: list[DetectedFace]) -> None:
    masked = mask_faces(t1, t1_faces, keep=t1_faces[0], style="solid")
    height, width = t1.shape[:2]
    for face in t1_faces[1:]:
        x1, y1, x2, y2 = _enlarged(face, 0.25, width, height)
        region = masked[y1:y2, x1:x2]
        assert float(region.astype(np.float64).std()) < 1.0
        assert not np.array_equal(region, t1[y1:y2, x1:x2])


def test_pixelation_has_at_most_six_by_six_blocks(
    t1: Image, t1_faces: list[DetectedFace]
) -> None:
    masked = mask_faces(t1, t1_faces, keep=t1_faces[0], style="pixelate")
    height, width = t1.shape[:2]
    for face in t1_faces[1:]:
        x1, y1, x2, y2 = _enlarged(face, 0.25, width, height)
        region = masked[y1:y2, x1:x2]
        assert _block_runs(region, axis=0) <= 6
        assert _block_runs(region, axis=1) <= 6
        assert len(np.unique(region.reshape(-1, 3), axis=0)) <= 36
        # Still an image of something, not a flat fill: coarse pixelation, not a light blur.
        assert len(np.unique(region.reshape(-1, 3), axis=0)) > 1


def test_margin_covers_hair_and_ears_around_the_box(
    t1: Image, t1_faces: list[DetectedFace]
) -> None:
    masked = mask_faces(t1, t1_faces, keep=t1_faces[0], style="solid", margin=0.25)
    face = t1_faces[1]
    height, width = t1.shape[:2]
    bx1, by1, bx2, by2 = _int_box(face, width, height)
    ex1, ey1, ex2, ey2 = _enlarged(face, 0.25, width, height)
    assert ex1 < bx1 and ey1 < by1 and ex2 > bx2 and ey2 > by2
    assert np.all(masked[ey1:ey2, ex1:ex2] == 0)
    # Just outside the enlarged box nothing changed.
    if ex2 + 2 < width:
        assert np.array_equal(masked[ey1:ey2, ex2 + 1], t1[ey1:ey2, ex2 + 1])


def test_mask_all_faces_leaves_nothing_detectable(
    engines: dict[str, FaceEngine], t1: Image, t1_faces: list[DetectedFace]
) -> None:
    # G-SHR-6: for emergency sharing the offender's face is masked too.
    for style in ("solid", "pixelate"):
        masked = mask_all_faces(t1, t1_faces, style=style)  # type: ignore[arg-type]
        for pack in ("yunet-sface", "scrfd-mbf"):
            assert engines[pack].detect(masked) == [], f"{pack} still finds a face ({style})"


def test_keep_may_be_a_separately_detected_instance(
    engines: dict[str, FaceEngine], t1: Image, t1_faces: list[DetectedFace]
) -> None:
    again = engines["yunet-sface"].detect(t1.copy())
    keep = next(f for f in again if iou(f.box, t1_faces[3].box) > 0.9)
    assert keep is not t1_faces[3]
    masked = mask_faces(t1, t1_faces, keep=keep)
    found = engines["yunet-sface"].detect(masked)
    assert len(found) == 1 and iou(found[0].box, t1_faces[3].box) > 0.8


def test_keep_matching_no_face_is_refused(t1: Image, t1_faces: list[DetectedFace]) -> None:
    stranger = DetectedFace(
        box=np.array([0, 0, 40, 40], dtype=np.float32),
        landmarks=np.zeros((5, 2), dtype=np.float32),
        score=0.9,
    )
    with pytest.raises(MaskingError):
        mask_faces(t1, t1_faces, keep=stranger)


def test_bystander_box_is_masked_even_where_it_overlaps_the_subject(t1: Image) -> None:
    def box(x1: int, y1: int, x2: int, y2: int) -> DetectedFace:
        return DetectedFace(
            box=np.array([x1, y1, x2, y2], dtype=np.float32),
            landmarks=np.zeros((5, 2), dtype=np.float32),
            score=0.9,
        )

    subject, bystander = box(400, 200, 500, 320), box(480, 220, 580, 340)
    masked = mask_faces(t1, [subject, bystander], keep=subject, style="solid", margin=0.25)
    # The bystander's own box is always covered, even inside the subject's box.
    assert np.all(masked[220:340, 480:580] == 0)
    # The bystander's margin yields to the subject's box.
    assert np.array_equal(masked[200:320, 400:480], t1[200:320, 400:480])


def test_invalid_arguments_are_refused(t1: Image, t1_faces: list[DetectedFace]) -> None:
    with pytest.raises(ValueError):
        mask_faces(t1, t1_faces, keep=None, style="blur")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        mask_faces(t1, t1_faces, keep=None, margin=-0.1)
    with pytest.raises(TypeError):
        mask_faces(t1.astype(np.float32), t1_faces, keep=None)  # type: ignore[arg-type]


def test_grayscale_images_are_masked_too(
    engines: dict[str, FaceEngine], t1: Image, t1_faces: list[DetectedFace]
) -> None:
    gray = np.ascontiguousarray(t1[:, :, 1])
    for style in ("solid", "pixelate"):
        masked = mask_all_faces(gray, t1_faces, style=style)  # type: ignore[arg-type]
        assert masked.shape == gray.shape
        bgr = np.repeat(masked[:, :, None], 3, axis=2)
        assert engines["yunet-sface"].detect(bgr) == []


def test_draw_match_box_outlines_the_face_on_a_copy(
    t1: Image, t1_faces: list[DetectedFace]
) -> None:
    before = t1.copy()
    face = t1_faces[0]
    out = draw_match_box(t1, face)
    assert np.array_equal(t1, before)
    height, width = t1.shape[:2]
    x1, y1, x2, y2 = _int_box(face, width, height)
    assert tuple(out[y1, (x1 + x2) // 2]) == MATCH_COLOUR
    assert tuple(out[(y1 + y2) // 2, x1]) == MATCH_COLOUR
    # The face itself is not painted over: staff must see who it is.
    inner = slice(y1 + 10, y2 - 10), slice(x1 + 10, x2 - 10)
    assert np.array_equal(out[inner], t1[inner])
