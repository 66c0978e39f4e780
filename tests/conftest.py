"""Shared fixtures: the real model packs and the real face data.

`make test` fetches both (SHA-256 checked) before pytest starts; a test that
finds them missing fails with the command to run, it is never skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from mamoru.face_data import data_root
from mamoru.images import read_image
from mamoru.settings import MamoruSettings, get_settings
from mamoru.wiring import open_engine
from models.engine import FaceEngine
from registry.storage.postgres.cluster import ThrowawayCluster
from tests.registry.backends import BACKEND_NAMES, Backend

REPO = Path(__file__).resolve().parents[1]
PACKS = ("yunet-sface", "scrfd-mbf")

# Test registries keep a plain key file in their own tmp data folder: the explicit, loudly named
# development setting, set here for every test and every `python -m mamoru` they start. The
# default refuses it; tests/registry/test_key_custody.py removes this and checks that it does.
os.environ["MAMORU_KEY__INSECURE_PLAIN_KEY_FILE_ON_DATA_DISK"] = "true"


@pytest.fixture(scope="session")
def settings() -> MamoruSettings:
    os.environ.setdefault("MAMORU_CACHE_DIR", str(REPO / ".cache"))
    return get_settings()


@pytest.fixture(scope="session")
def face_data(settings: MamoruSettings) -> Path:
    root = data_root(settings.cache_dir)
    if not (root / "orl" / ".complete").is_file():
        pytest.fail(f"real face data missing under {root}: run `make face-data`")
    return root


@pytest.fixture(scope="session")
def engines(settings: MamoruSettings) -> Iterator[dict[str, FaceEngine]]:
    """One engine per built-in pack (the research pack with its licence accepted)."""
    yield {pack: open_engine(settings, pack=pack, accept_licence=True) for pack in PACKS}


@pytest.fixture(params=PACKS)
def engine(request: pytest.FixtureRequest, engines: dict[str, FaceEngine]) -> FaceEngine:
    return engines[request.param]


def image(face_data: Path, relative: str) -> npt.NDArray[np.uint8]:
    return read_image(face_data / relative)


def main_face_embedding(engine: FaceEngine, img: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """Embedding of the largest face: what a person means by 'the face in this photo'."""
    faces = engine.detect(img)
    assert faces, "no face found"
    face = max(faces, key=lambda f: f.size_px)
    return engine.embed_faces(img, [face])[0]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[ThrowawayCluster]:
    """One throw-away PostgreSQL cluster for the session (issue 15): TLS 1.3, SCRAM, loopback
    only; each test makes its own database in it with `pg_cluster.create_database(name)`."""
    with ThrowawayCluster() as cluster:
        yield cluster


@pytest.fixture(params=BACKEND_NAMES)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each repository behaviour test runs on SQLCipher and on PostgreSQL (issue 15, item 5);
    the PostgreSQL cluster starts only when a test on it opens a repository."""
    chosen = Backend(request.param, tmp_path,
                     cluster=lambda: request.getfixturevalue("pg_cluster"))
    with chosen.stack:
        yield chosen
