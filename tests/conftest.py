"""Every shared fixture, in one place: the real model packs, the real face data, a real registry.

`make test` fetches packs and data (SHA-256 checked) before pytest starts; a test
that finds them missing fails with the command to run, it is never skipped.
Fixtures used by tests in more than one folder live here (the edge and browser
tests run against the same real, per-test registry as the registry tests);
what tests import to drive them lives in plain modules (tests/registries.py,
tests/faces.py), never in a conftest.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from mamoru.face_data import data_root
from mamoru.settings import MamoruSettings, get_settings
from mamoru.wiring import index_spec, open_engine, registry_paths
from models.engine import FaceEngine
from registry.context import init_registry, open_registry
from registry.storage.postgres.cluster import ThrowawayCluster
from tests import REPO
from tests.registries import PACK, Registry, add_test_users
from tests.registry.backends import BACKEND_NAMES, Backend

PACKS = ("yunet-sface", "scrfd-mbf")

# The tiers (pyproject.toml's markers): a test of one of these kinds is slow; a test that uses
# one of these fixtures is of that kind whether or not it says so; and a test that starts one
# of these processes outside the slow tier fails (`_spawned_kind`, `_tier_guard`), so a new slow
# test cannot land in `make test-fast` unnoticed. `serial` (a time or rate limit, checked with
# the cores to itself in `make test`'s second pass) is slow too: `make test-fast` runs on two
# xdist workers and has no serial pass.
SLOW_KINDS = ("rtsp", "browser", "server", "cli", "crash", "fuzz", "serial")
KIND_OF_FIXTURE = {"rtsp_server_factory": "rtsp", "start_edge": "rtsp", "browser": "browser"}
_SPAWNED: list[str] | None = None  # kinds of the processes the running test started

# Test registries keep a plain key file in their own tmp data folder: the explicit, loudly named
# development setting, set here for every test and every `python -m mamoru` they start. The
# default refuses it; tests/registry/test_key_custody.py removes this and checks that it does.
os.environ["MAMORU_KEY__INSECURE_PLAIN_KEY_FILE_ON_DATA_DISK"] = "true"


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by the marks added here
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        for fixture, kind in KIND_OF_FIXTURE.items():
            if fixture in fixtures:
                item.add_marker(kind)
        if any(item.get_closest_marker(kind) for kind in SLOW_KINDS):
            item.add_marker("slow")


def _spawned_kind(argv: Sequence[str]) -> str | None:
    """Which slow kind starting this command makes a test, if any."""
    words = [os.fsdecode(word) for word in argv]
    if any(word.endswith("camera_server.py") for word in words):
        return "rtsp"
    if any("crash_driver" in word for word in words):
        return "crash"
    if any("playwright" in word for word in words):
        return "browser"
    for i in range(len(words) - 2):
        if words[i:i + 2] == ["-m", "mamoru"]:
            return "server" if words[i + 2] in ("serve", "demo") else "cli"
    return None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """Python's audit hook: note the kind of every process the running test starts."""
    if event == "subprocess.Popen" and _SPAWNED is not None:
        argv = args[1]  # (executable, args, cwd, env)
        words = [argv] if isinstance(argv, (str, bytes, os.PathLike)) else list(argv)
        if (kind := _spawned_kind(words)) is not None:
            _SPAWNED.append(kind)


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def _tier_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test outside the slow tier that started a slow kind of process (its setup,
    call and teardown; what a module- or session-wide fixture starts is not seen)."""
    global _SPAWNED
    _SPAWNED = spawned = []
    yield
    _SPAWNED = None
    if spawned and request.node.get_closest_marker("slow") is None:
        kinds = sorted(set(spawned))
        pytest.fail(f"this test starts {' and '.join(kinds)} processes, so it belongs in the "
                    f"slow tier: mark it {' '.join(f'@pytest.mark.{k}' for k in kinds)} "
                    "(pyproject.toml's markers)", pytrace=False)


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


# --- a real registry per test (tests/registries.py) ---------------------------------------

@pytest.fixture(scope="session")
def engine_default(engines: dict[str, FaceEngine]) -> FaceEngine:
    return engines[PACK]


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


@pytest.fixture(scope="session")
def registry_template(tmp_path_factory: pytest.TempPathFactory,
                      settings: MamoruSettings) -> Path:
    """A registry initialised once: users, roles and training recorded (G-SEC-1)."""
    data_dir = tmp_path_factory.mktemp("registry-template") / "data"
    template_settings = get_settings(data_dir=data_dir)
    assert index_spec(template_settings).pack == PACK
    ctx = init_registry(registry_paths(template_settings), template_settings.registry,
                        index_spec(template_settings))
    with ctx:
        add_test_users(ctx)
    return data_dir


@pytest.fixture
def registry(tmp_path: Path, registry_template: Path, engine_default: FaceEngine,
             face_data: Path) -> Iterator[Registry]:
    data_dir = tmp_path / "data"
    shutil.copytree(registry_template, data_dir)  # copy2 keeps the 0600/0700 modes
    reg_settings = get_settings(data_dir=data_dir)
    ctx = open_registry(registry_paths(reg_settings), reg_settings.registry,
                        index_spec(reg_settings))
    reg = Registry(reg_settings, ctx, engine_default, face_data)
    yield reg
    with contextlib.suppress(Exception):
        reg.ctx.close()
