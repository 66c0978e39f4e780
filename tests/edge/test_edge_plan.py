"""`mamoru edge plan` (issue 16): the installer's answer on this box, before buying hardware."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mamoru.demo.scene import cast, compose_walk_past
from tests import REPO

pytestmark = pytest.mark.cli


# It times decoding on this box, profile after profile: a test on the other worker taking a
# core during one profile's timing and not the other's skews the ratio it compares.
@pytest.mark.serial
def test_plan_times_each_profile_on_this_box_and_says_how_many_cameras(
    tmp_path: Path, face_data: Path
) -> None:
    listed, strangers = cast(face_data, strangers=3)
    clip = compose_walk_past(tmp_path / "recorded.mp4", listed, strangers, fps=25, seconds=2,
                             listed_enters_at=0.5, listed_leaves_at=1.5)
    env = {**os.environ, "MAMORU_DATA_DIR": str(tmp_path / "data"), "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-m", "mamoru", "edge", "plan", "--clip", str(clip.path),
         "--seconds", "2", "--profile", "main=1280x720@25", "--profile", "sub=1280x720@5:640x384"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "hardware decoders" in out and "VAAPI" in out and "NVDEC" in out
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]]
            for line in out.splitlines() if line.startswith("| main") or line.startswith("| sub")}
    assert set(rows) == {"main", "sub"}
    decode = {name: float(row[3]) for name, row in rows.items()}
    cameras = {name: int(row[6]) for name, row in rows.items()}
    # the same pictures sent at 5 fps instead of 25 cost a fraction of the decoding
    assert decode["sub"] < 0.5 * decode["main"], out
    assert cameras["sub"] >= cameras["main"] >= 0, out
    assert "this box: up to" in out


def test_a_malformed_profile_is_a_one_line_error(tmp_path: Path) -> None:
    env = {**os.environ, "MAMORU_DATA_DIR": str(tmp_path / "data"), "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, "-m", "mamoru", "edge", "plan", "--profile", "720p"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 2
    assert "NAME=WIDTHxHEIGHT@FPS" in result.stderr and "Traceback" not in result.stderr
