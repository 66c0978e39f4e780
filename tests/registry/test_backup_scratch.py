"""A backup or restore killed midway leaves no copy of the database for ever (G-REG-4, G-RET-1).

A backup snapshots the database into a scratch folder under `backups/`, a
restore unpacks a backup there. A real subprocess (`crash_driver`) is
SIGKILLed at a named step while its scratch copy exists; `mamoru registry
check` then names the folder without touching it, and the next backup,
restore or nightly `mamoru expire` wipes it. A scratch folder still in use
by a running backup or restore is never swept.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from registry.backup import archive as backup
from registry.backup.scratch import leftover_scratch, scratch_folder, sweep_scratch
from tests import REPO
from tests.registries import OBAMA, PASSWORD, T0, Registry

ADMIN = ("--as", "admin")
LATER = "2026-06-01T00:00:00Z"


def _driver(data_dir: Path, op: str, kill_at: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.registry.crash_driver", str(data_dir), op, kill_at, LATER],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )


def _mamoru(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MAMORU_DATA_DIR": str(data_dir), "MAMORU_PASSWORD": PASSWORD,
           "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "mamoru", *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=120, check=False)


def _folders(backups: Path) -> list[Path]:
    """Every folder in `backups/`, whatever its name: only backup files belong there."""
    return sorted(p for p in backups.iterdir() if p.is_dir())


@pytest.mark.crash
@pytest.mark.parametrize(("killed", "step", "then"), [
    ("backup", "@_write_archive", ("expire",)),
    ("restore", "@refuse_if_erasures_were_pruned", ("backup", *ADMIN)),
    ("backup", "@_write_archive", ("restore", "{backup}", *ADMIN)),
])
def test_a_killed_backup_or_restores_scratch_copy_is_named_by_check_and_wiped_next(
        registry: Registry, killed: str, step: str, then: tuple[str, ...]) -> None:
    registry.register(OBAMA)
    made = backup.create_backup(registry.ctx, actor=registry.user("admin"), now=T0)
    registry.ctx.close()
    data_dir, backups = registry.data_dir, registry.data_dir / "backups"

    crashed = _driver(data_dir, killed, step)
    assert crashed.returncode == -9, f"{step} was not reached: {crashed.stderr[-300:]}"
    left = _folders(backups)
    assert len(left) == 1, left
    assert (left[0] / "registry.db").is_file(), "the kill point is not while a copy exists"

    check = _mamoru(data_dir, "registry", "check", *ADMIN)
    assert check.returncode == 1, check
    assert f"LEFTOVER: {left[0]}" in check.stdout
    assert _folders(backups) == left and (left[0] / "registry.db").is_file(), "check wrote"

    following = _mamoru(data_dir, *(arg.format(backup=made) for arg in then))
    assert following.returncode == 0, following.stderr
    assert _folders(backups) == [], f"`mamoru {then[0]}` left {_folders(backups)}"
    assert _mamoru(data_dir, "registry", "check", *ADMIN).returncode == 0

    ctx = registry.reopen()
    swept = [r for r in ctx.repo.audit_rows() if r.action == "backup_scratch_swept"]
    if then[0] == "expire":
        assert len(swept) == 1 and left[0].name in swept[0].details
        assert "wiped 1 backup scratch folder(s)" in following.stdout


def test_a_scratch_folder_in_use_is_never_swept_nor_reported(tmp_path: Path) -> None:
    """Its maker holds its lock; another sweep (here another open of the folder) skips it."""
    backups = tmp_path / "backups"
    with scratch_folder(backups, "backup") as live:
        (live / "registry.db").write_bytes(b"snapshot")
        assert leftover_scratch(backups) == [] and sweep_scratch(backups) == []
        assert (live / "registry.db").read_bytes() == b"snapshot"
    assert not live.exists()
