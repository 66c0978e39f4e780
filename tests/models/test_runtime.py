"""How model files are loaded into onnxruntime: rewritten for speed, never for a different answer.

The recognizers are the largest per-camera cost after detection (issue 16:
0.46 embeddings per analysed frame at 8 cameras); what `load_model_bytes`
changes in memory must leave every embedding as the shipped file computes it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from models.engine import FaceEngine
from models.runtime import RuntimeSettings, create_session, load_model_bytes
from tests.faces import image

PORTRAITS = ("face_recognition/obama.jpg", "face_recognition/biden.jpg", "insightface/t1.jpg")


def _recognizer_file(engine: FaceEngine) -> Path:
    return engine.pack.path_of(engine.pack.manifest.recognizer)


def _aligned_faces(engine: FaceEngine, face_data: Path) -> list[np.ndarray]:
    crops = []
    for relative in PORTRAITS:
        img = image(face_data, relative)
        crops += [engine.align(img, face) for face in engine.detect(img)]
    assert len(crops) >= 8, "the portraits hold at least eight faces"
    return crops


def test_the_recognizer_is_loaded_without_prelu(engine: FaceEngine) -> None:
    """onnxruntime's PRelu took 18.9 of SFace's 35 ms on one core; it is rewritten at load."""
    shipped = onnx.load(str(_recognizer_file(engine)))
    assert any(n.op_type == "PRelu" for n in shipped.graph.node), "the shipped file uses PRelu"
    loaded = onnx.load_from_string(load_model_bytes(_recognizer_file(engine)))
    assert not [n.name for n in loaded.graph.node if n.op_type == "PRelu"]


def test_the_rewritten_recognizer_embeds_real_faces_exactly_as_the_shipped_file(
    engine: FaceEngine, face_data: Path
) -> None:
    """Same numbers, not just the same identity: the rewrite is arithmetic, not approximation."""
    path = _recognizer_file(engine)
    spec = engine.pack.manifest.recognizer
    options = ort.SessionOptions()
    options.log_severity_level = 3
    shipped = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    ours = create_session(path, RuntimeSettings(intra_op_threads=1))
    for crop in _aligned_faces(engine, face_data):
        rgb = crop[:, :, ::-1] if spec.channel_order == "RGB" else crop
        blob = ((rgb.astype(np.float32) - spec.mean) / spec.std).transpose(2, 0, 1)[np.newaxis]
        want = shipped.run(None, {shipped.get_inputs()[0].name: blob})[0]
        got = ours.run(None, {ours.get_inputs()[0].name: blob})[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


@pytest.mark.parametrize("pack", ["yunet-sface"])
def test_a_detector_without_prelu_is_left_as_shipped(engines: dict[str, FaceEngine],
                                                      pack: str) -> None:
    engine = engines[pack]
    path = engine.pack.path_of(engine.pack.manifest.detector)
    shipped = onnx.load(str(path))
    loaded = onnx.load_from_string(load_model_bytes(path))
    assert [n.op_type for n in loaded.graph.node] == [n.op_type for n in shipped.graph.node]
