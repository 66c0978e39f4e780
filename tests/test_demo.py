"""The README's first command: the demo shows an alert within 60 s of start-up (issue: tablet/demo)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import REPO


def test_the_demo_raises_and_delivers_an_alert_within_a_minute() -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-m", "mamoru", "demo", "--port", "0", "--exit-after-alert",
         "--max-seconds", "120"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "approved by sato" in result.stdout and "proposed by tanaka" in result.stdout
    assert "tablet: http://127.0.0.1:" in result.stdout
    found = re.search(r"(\d+) delivered to the registry; first alert: ([\d.]+) s", result.stdout)
    assert found, result.stdout
    assert int(found.group(1)) >= 1
    assert float(found.group(2)) < 60.0
