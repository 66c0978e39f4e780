"""The README's first command: the full demo alerts within 60 s and Ctrl-C stops everything."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

from tests.conftest import REPO


def _open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_the_demo_alerts_within_a_minute_and_ctrl_c_stops_everything() -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    started = time.monotonic()
    demo = subprocess.Popen([sys.executable, "-m", "mamoru", "demo", "--port", "0"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.append(line)
            if line.startswith("ALERT ") or time.monotonic() - started > 90:
                break
        alert_after = time.monotonic() - started
        output = "".join(lines)
        assert "ALERT camera=entrance" in output, output
        assert alert_after < 60.0, f"first alert after {alert_after:.1f} s (incl. start-up)"
        assert "proposed by tanaka, approved by sato" in output  # the two-person flow
        tablet = re.search(r"tablet: https://127\.0\.0\.1:(\d+)/alerts", output)
        camera = re.search(r"camera: rtsp://127\.0\.0\.1:(\d+)/", output)
        assert tablet and camera, output
        time.sleep(2)  # let the outbox deliver
        demo.send_signal(signal.SIGINT)  # Ctrl-C
        rest, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 0
    assert re.search(r"[1-9]\d* delivered to the registry", rest), rest
    for port in (int(tablet.group(1)), int(camera.group(1))):
        assert not _open(port), f"port {port} still served after Ctrl-C"
