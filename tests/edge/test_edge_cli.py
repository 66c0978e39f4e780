"""`mamoru edge run` as a script would use it: file sources, --exit-at-end, --alerts-jsonl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mamoru.demo.scene import cast, compose_walk_past
from tests import REPO
from tests.registries import OBAMA, Registry

pytestmark = pytest.mark.cli


def _edge(registry: Registry, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MAMORU_DATA_DIR": str(registry.data_dir), "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "mamoru", "edge", "run", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=180, check=False)


def test_file_sources_end_and_alerts_come_out_as_json_lines(
    registry: Registry, tmp_path: Path, face_data: Path
) -> None:
    entry_id = registry.register(OBAMA)
    listed, strangers = cast(face_data, strangers=3)
    walk = compose_walk_past(tmp_path / "walk.mp4", listed, strangers)
    crowd = compose_walk_past(tmp_path / "crowd.mp4", strangers[0], strangers[1:])
    result = _edge(registry, "--source", f"door={walk.path}", "--source", f"aisle={crowd.path}",
                   "--exit-at-end", "--alerts-jsonl", "-")
    assert result.returncode == 0, result.stderr[-2000:]
    alerts = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [(a["camera"], a["entry_id"]) for a in alerts] == [("door", entry_id)]
    snapshot = Path(alerts[0]["snapshot"])
    assert snapshot.is_file() and b"\x89PNG" not in snapshot.read_bytes()  # encrypted at rest
    logs = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert {"door", "aisle"} <= {entry.get("camera") for entry in logs}
    assert all(str(walk.path) not in line for line in result.stderr.splitlines())


def test_a_bad_source_is_a_one_line_error(registry: Registry) -> None:
    result = _edge(registry, "--source", "no equals sign")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
