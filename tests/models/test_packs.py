"""Model packs: pinned hashes, clear errors, licence acceptance, drop-in packs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mamoru.settings import MamoruSettings
from models.carrier import IntegrityError
from models.engine import FaceEngine
from models.manifest import MANIFEST_NAME, ManifestError
from models.packs import (
    FileState,
    LicenceNotAcceptedError,
    ModelMissingError,
    PackCatalogue,
    PackError,
    UnknownPackError,
)
from models.runtime import RuntimeSettings
from tests.faces import image

BUILTIN_PACKS = Path(__file__).resolve().parents[2] / "models" / "packs"


def _copy_pack(settings: MamoruSettings, name: str, models_dir: Path) -> Path:
    source = settings.resolved_models_dir / name
    target = models_dir / name
    shutil.copytree(source, target)
    return target


def test_a_tampered_model_is_refused_at_load(settings: MamoruSettings, tmp_path: Path) -> None:
    pack_dir = _copy_pack(settings, "yunet-sface", tmp_path)
    recognizer = pack_dir / "face_recognition_sface_2021dec.onnx"
    data = bytearray(recognizer.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights
    recognizer.write_bytes(bytes(data))
    pack = PackCatalogue(tmp_path).get("yunet-sface")
    assert pack.file_states()[recognizer.name] is FileState.TAMPERED
    with pytest.raises(IntegrityError, match="tampered or wrong model") as caught:
        FaceEngine.open(pack, RuntimeSettings())
    assert recognizer.name in str(caught.value)


def test_a_missing_model_names_the_command_that_fetches_it(tmp_path: Path) -> None:
    pack = PackCatalogue(tmp_path).get("scrfd-mbf")
    with pytest.raises(ModelMissingError, match="mamoru models fetch --pack scrfd-mbf"):
        FaceEngine.open(pack, RuntimeSettings(), accept_licence=True)


def test_the_research_pack_needs_its_licence_accepted(settings: MamoruSettings) -> None:
    pack = PackCatalogue(settings.resolved_models_dir).get("scrfd-mbf")
    with pytest.raises(LicenceNotAcceptedError, match="non-commercial"):
        FaceEngine.open(pack, RuntimeSettings())
    with pytest.raises(LicenceNotAcceptedError):
        PackCatalogue(settings.resolved_models_dir).fetch(
            "scrfd-mbf", accept_licence=False, archives=settings.carrier_dir
        )


def test_the_default_pack_is_licence_clean_for_commercial_use(settings: MamoruSettings) -> None:
    manifest = PackCatalogue(settings.resolved_models_dir).get("yunet-sface").manifest
    assert manifest.licence.commercial_use
    assert not manifest.licence.requires_acceptance


def test_unknown_pack_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UnknownPackError, match="yunet-sface"):
        PackCatalogue(tmp_path).get("buffalo_xxl")


def _write_drop_in(settings: MamoruSettings, folder: Path, name: str) -> Path:
    """A store's own pack: a folder with ONNX files and a manifest without sources."""
    folder.mkdir(parents=True)
    manifest = json.loads((BUILTIN_PACKS / "yunet-sface" / MANIFEST_NAME).read_text())
    manifest["name"] = name
    manifest["description"] = "store-licensed pack dropped in by hand"
    for role in ("detector", "recognizer"):
        del manifest[role]["source"]
        shutil.copy(settings.resolved_models_dir / "yunet-sface" / manifest[role]["file"], folder)
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    return folder


def test_a_drop_in_pack_loads_through_the_same_path(
    settings: MamoruSettings, tmp_path: Path, face_data: Path
) -> None:
    folder = _write_drop_in(settings, tmp_path / "packs" / "store-pack", "store-pack")
    catalogue = PackCatalogue(tmp_path / "models", [tmp_path / "packs"])
    pack = catalogue.get("store-pack")
    assert pack.drop_in and pack.folder == folder
    engine = FaceEngine.open(pack, RuntimeSettings())
    assert len(engine.detect(image(face_data, "insightface/t1.jpg"))) == 6
    with pytest.raises(PackError, match="never fetched"):
        catalogue.fetch("store-pack", accept_licence=True, archives=tmp_path / "carriers")


def test_a_drop_in_pack_cannot_shadow_a_built_in_one(
    settings: MamoruSettings, tmp_path: Path
) -> None:
    _write_drop_in(settings, tmp_path / "packs" / "fake", "yunet-sface")
    with pytest.raises(ManifestError, match="reuses the built-in name"):
        PackCatalogue(tmp_path / "models", [tmp_path / "packs"])


def test_a_manifest_with_an_unknown_field_is_refused(
    settings: MamoruSettings, tmp_path: Path
) -> None:
    folder = _write_drop_in(settings, tmp_path / "packs" / "odd", "odd")
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["recognizer"]["normalise_magic"] = True
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="recognizer.normalise_magic"):
        PackCatalogue(tmp_path / "models", [folder])
