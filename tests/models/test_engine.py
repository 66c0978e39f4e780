"""The face engine on real ONNX models and real faces (issue: face engine).

Every number asserted here comes from real inference; the thresholds are the
per-pack values the accuracy benchmark calibrated (models/thresholds.json).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.engine import FaceEngine, cosine
from tests.faces import image, main_face_embedding

ORL_IDS = [f"s{i}" for i in range(1, 41)]


def test_yunet_finds_all_six_faces_in_t1(engines: dict[str, FaceEngine], face_data: Path) -> None:
    faces = engines["yunet-sface"].detect(image(face_data, "insightface/t1.jpg"))
    assert len(faces) == 6
    assert all(f.score > 0.8 for f in faces)


def test_scrfd_finds_all_six_faces_in_t1(engines: dict[str, FaceEngine], face_data: Path) -> None:
    assert len(engines["scrfd-mbf"].detect(image(face_data, "insightface/t1.jpg"))) == 6


def test_no_face_in_a_face_free_picture(engine: FaceEngine, face_data: Path) -> None:
    assert engine.detect(image(face_data, "pyfeat/free-mountain-vector-01.jpg")) == []


def test_landmarks_lie_inside_their_box(engine: FaceEngine, face_data: Path) -> None:
    for face in engine.detect(image(face_data, "insightface/t1.jpg")):
        x1, y1, x2, y2 = face.box
        assert np.all(face.landmarks[:, 0] > x1) and np.all(face.landmarks[:, 0] < x2)
        assert np.all(face.landmarks[:, 1] > y1) and np.all(face.landmarks[:, 1] < y2)


def test_embeddings_are_unit_length_with_the_manifest_dimension(
    engine: FaceEngine, face_data: Path
) -> None:
    img = image(face_data, "insightface/t1.jpg")
    embeddings = engine.embed_faces(img, engine.detect(img))
    assert embeddings.shape == (6, engine.info.embedding_dim)
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_batched_embedding_equals_one_by_one(engine: FaceEngine, face_data: Path) -> None:
    img = image(face_data, "insightface/t1.jpg")
    crops = [engine.align(img, f) for f in engine.detect(img)]
    batched = engine.embed(crops)
    single = np.vstack([engine.embed([c]) for c in crops])
    assert np.abs(batched - single).max() < 1e-4


def test_same_orl_identity_above_threshold(engine: FaceEngine, face_data: Path) -> None:
    """Image 1 vs image 2 of each of the 40 ORL people, at the pack's calibrated threshold."""
    scores = [
        cosine(
            main_face_embedding(engine, image(face_data, f"orl/{who}/1.pgm")),
            main_face_embedding(engine, image(face_data, f"orl/{who}/2.pgm")),
        )
        for who in ORL_IDS
    ]
    above = sum(s >= engine.threshold for s in scores)
    assert above >= 0.9 * len(scores), f"only {above}/40 genuine pairs at or above threshold"


def test_different_orl_identities_below_threshold(engine: FaceEngine, face_data: Path) -> None:
    """All 780 pairs of different ORL people stay below the threshold."""
    embeddings = {
        who: main_face_embedding(engine, image(face_data, f"orl/{who}/1.pgm")) for who in ORL_IDS
    }
    false_matches = [
        (a, b)
        for a, b in itertools.combinations(ORL_IDS, 2)
        if cosine(embeddings[a], embeddings[b]) >= engine.threshold
    ]
    assert false_matches == []


def test_obama_photos_match_each_other_and_not_biden(engine: FaceEngine, face_data: Path) -> None:
    obama = [
        main_face_embedding(engine, image(face_data, f"face_recognition/{name}.jpg"))
        for name in ("obama", "obama2", "obama3")
    ]
    biden = main_face_embedding(engine, image(face_data, "face_recognition/biden.jpg"))
    for a, b in itertools.combinations(obama, 2):
        assert cosine(a, b) >= engine.threshold
    for a in obama:
        assert cosine(a, biden) < engine.threshold


def _shrunk(img: np.ndarray, factor: float) -> np.ndarray:
    return cv2.resize(img, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)


def test_a_20_px_face_fails_the_gate_naming_its_size(engine: FaceEngine, face_data: Path) -> None:
    """G-REG-1: a face downscaled to 20 px is refused, and the reason says so."""
    big = image(face_data, "face_recognition/obama.jpg")
    face = engine.detect(big)[0]
    factor = 20.0 / face.size_px
    small = _shrunk(big, factor)
    small_face = type(face)(
        box=face.box * factor, landmarks=face.landmarks * factor, score=face.score)
    verdict = engine.assess(small, small_face, engine_settings_policy("registration"))
    assert not verdict.passed
    assert any("too small" in r for r in verdict.reasons)
    assert verdict.metrics.face_px == pytest.approx(20.0, abs=1.0)


def test_a_blurred_face_fails_the_gate_naming_blur(engine: FaceEngine, face_data: Path) -> None:
    sharp = image(face_data, "face_recognition/obama.jpg")
    face = engine.detect(sharp)[0]
    assert engine.assess(sharp, face, engine_settings_policy("registration")).passed
    blurred = cv2.GaussianBlur(sharp, (0, 0), sigmaX=6)
    verdict = engine.assess(blurred, face, engine_settings_policy("registration"))
    assert not verdict.passed
    assert any("blurred" in r for r in verdict.reasons)


def test_a_turned_head_fails_the_registration_gate(engine: FaceEngine, face_data: Path) -> None:
    """Face #4 of t1.jpg looks well to the side; the others look at the camera."""
    img = image(face_data, "insightface/t1.jpg")
    verdicts = [engine.assess(img, f, engine_settings_policy("registration"))
                for f in engine.detect(img)]
    turned = [v for v in verdicts if any("head turned" in r for r in v.reasons)]
    assert len(turned) >= 1
    assert sum(v.passed for v in verdicts) >= 4


def engine_settings_policy(name: str):  # type: ignore[no-untyped-def]
    from mamoru.settings import get_settings

    return getattr(get_settings().quality, name)
