"""The README's first command: the full demo alerts within 60 s and Ctrl-C stops everything."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from mamoru.settings import MamoruSettings
from tests import REPO
from tests.waiting import wait_until

# The whole demo, for real; its first alert within 60 s of start-up is the README's promise
# on a box whose cores it has to itself, so it runs in `make test`'s serial pass.
pytestmark = [pytest.mark.server, pytest.mark.rtsp, pytest.mark.serial]


def _open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _wait_for_an_alert_on_the_tablet(port: int, output: str) -> None:
    """Log in as the printed manager and wait until the registry lists the delivered alert."""
    password = re.search(r"log in as sato / (\S+) ", output)
    certificate = re.search(r"self-signed certificate (\S+);", output)
    assert password and certificate, output
    trust = ssl.create_default_context(cafile=certificate.group(1))
    with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=trust, timeout=10) as tablet:
        login = tablet.post("/api/v1/session",
                            json={"username": "sato", "password": password.group(1)})
        assert login.status_code == 200, login.text
        wait_until(lambda: bool(tablet.get("/api/v1/alerts").json()), 30,
                   "the outbox to deliver the alert to the registry")


def _own_cache(shared: Path, tmp_path: Path) -> Path:
    """A cache folder of this test's own, for the demo's throw-away folder (`<cache>/demo`,
    removed and remade on every run) that shares the read-only face data and carriers (the
    models through MAMORU_MODELS_DIR): a demo in another pytest worker or checkout on the same
    machine can never remove this one's registry or clip under it."""
    own = tmp_path / "cache"
    own.mkdir()
    for name in ("face-data", "carriers"):
        (own / name).symlink_to(shared / name, target_is_directory=True)
    return own


def test_the_demo_alerts_within_a_minute_and_ctrl_c_stops_everything(
        settings: MamoruSettings, tmp_path: Path) -> None:
    cache = _own_cache(settings.cache_dir, tmp_path)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "MAMORU_CACHE_DIR": str(cache),
           "MAMORU_MODELS_DIR": str(settings.resolved_models_dir)}
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
        _wait_for_an_alert_on_the_tablet(int(tablet.group(1)), output)
        demo.send_signal(signal.SIGINT)  # Ctrl-C
        rest, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 0
    assert re.search(r"[1-9]\d* delivered to the registry", rest), rest
    assert (cache / "demo" / "registry").is_dir()  # its own folder, not the shared cache's
    for port in (int(tablet.group(1)), int(camera.group(1))):
        assert not _open(port), f"port {port} still served after Ctrl-C"
