"""Everything mamoru keeps under its data dir is the owner's alone: files 0600, folders 0700.

Encrypted or not, these are personal data and keys (G-SEC-2). A real data dir
is walked after `registry init`, a proposal and its approval, a key file
for joint use, and a run of the edge loop, with a permissive umask (0022), so
the modes come from how mamoru creates things, not from the caller's umask.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mamoru.demo.scene import cast, compose_walk_past
from mamoru.settings import get_settings
from mamoru.wiring import index_spec, registry_paths
from models.engine import FaceEngine
from registry.accounts import users
from registry.context import init_registry
from registry.domain import Role
from registry.watchlist import approval
from tests import REPO
from tests.registries import OBAMA, PASSWORD, T0, Registry, incident

pytestmark = pytest.mark.cli


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def modes_not_private(root: Path) -> list[str]:
    """Every path under `root` (and root) that others could read, write or enter."""
    wrong = []
    for path in [root, *sorted(root.rglob("*"))]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        want = 0o700 if path.is_dir() else 0o600
        if mode != want:
            wrong.append(f"{path.relative_to(root.parent)}: {mode:o}")
    return wrong


def test_every_file_and_folder_under_the_data_dir_is_private(
        tmp_path: Path, engine_default: FaceEngine, face_data: Path) -> None:
    data_dir = tmp_path / "data"
    settings = get_settings(data_dir=data_dir)
    with umask(0o022):
        ctx = init_registry(registry_paths(settings), settings.registry, index_spec(settings))
        try:
            reg = Registry(settings, ctx, engine_default, face_data)
            with ctx.writing():
                for name, role in (("admin", Role.ADMIN), ("staff", Role.STAFF),
                                   ("mgr1", Role.MANAGER)):
                    users.add_user(ctx.repo, ctx.audit, actor="test", username=name, role=role,
                                   password=PASSWORD, now=T0)
                for name in ("staff", "mgr1"):
                    users.record_training(ctx.repo, ctx.audit, admin=reg.user("admin"),
                                          username=name, now=T0)
            proposal = approval.propose(
                ctx, engine_default, settings.quality.registration, actor=reg.user("staff"),
                photos=[approval.Photo("obama", reg.image(OBAMA))], incident=incident(),
                features="", now=T0)
            approval.approve(ctx, actor=reg.user("mgr1"), entry_id=proposal.entry_id,
                             reason="police report checked", now=T0)
        finally:
            ctx.close()
        listed, strangers = cast(face_data, strangers=1)
        walk = compose_walk_past(tmp_path / "walk.mp4", listed, strangers)
        env = {**os.environ, "MAMORU_DATA_DIR": str(data_dir), "PYTHONWARNINGS": "ignore"}
        edge = subprocess.run([sys.executable, "-m", "mamoru", "edge", "run", "--source",
                               f"door={walk.path}", "--exit-at-end"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=180, check=False)
    assert edge.returncode == 0, edge.stderr[-2000:]
    assert (data_dir / "edge" / "outbox").is_dir() and (data_dir / "audit.head").is_file()
    assert any((data_dir / "edge" / "snapshots").iterdir())  # the edge loop did write
    assert modes_not_private(data_dir) == []

