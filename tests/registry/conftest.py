"""Fixtures of the registry tests that use three joint-use stores (tests/registry/world.py).

The stores are built once per session and copied byte for byte into each
test's own folder, so every test starts from the same fresh state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from models.engine import FaceEngine
from registry.storage.postgres.cluster import ThrowawayCluster
from tests.faces import image, main_face_embedding
from tests.registries import OBAMA2, Registry
from tests.registry.chain import chain_registry
from tests.registry.world import World, build_world, copy_world


@pytest.fixture(scope="session")
def world_template(tmp_path_factory: pytest.TempPathFactory, engines: dict[str, FaceEngine],
                   face_data: Path) -> World:
    return build_world(tmp_path_factory.mktemp("joint-use"), engines["yunet-sface"], face_data)


@pytest.fixture
def world(world_template: World, tmp_path: Path) -> Iterator[World]:
    copy = copy_world(world_template, tmp_path / "stores")
    yield copy
    for store in copy.stores.values():
        with contextlib.suppress(Exception):
            store.ctx.close()


@pytest.fixture(scope="session")
def probe(engines: dict[str, FaceEngine], face_data: Path) -> np.ndarray:
    """The embedding of a different photo of the person registered at store A."""
    return main_face_embedding(engines["yunet-sface"], image(face_data, OBAMA2))


@pytest.fixture
def chain(pg_cluster: ThrowawayCluster, tmp_path: Path, engine_default: FaceEngine,
          face_data: Path) -> Iterator[Registry]:
    """A chain's registry on a fresh database of the session's throw-away PostgreSQL cluster."""
    reg, _ = chain_registry(pg_cluster, tmp_path, engine_default, face_data)
    yield reg
    with contextlib.suppress(Exception):
        reg.ctx.close()


@pytest.fixture(params=("sqlcipher", "postgres"))
def each_backend_registry(request: pytest.FixtureRequest) -> Registry:
    """The SQLCipher `registry` fixture, then a chain's PostgreSQL one: a flow runs on both."""
    name = "registry" if request.param == "sqlcipher" else "chain"
    reg = request.getfixturevalue(name)
    assert isinstance(reg, Registry)
    return reg
