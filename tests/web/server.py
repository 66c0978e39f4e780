"""`mamoru serve` as a real process for the browser tests: HTTPS with its own certificate.

    server = RegistryServer(data_dir).start()   # waits until the login page answers
    server.url                                  # https://127.0.0.1:<free port>
    server.cert                                 # <data_dir>/tls/cert.pem (self-signed)
    server.stop()

HTTPS is what a store runs, so it is what the tests drive (the browser ignores
the self-signed certificate; httpx and the edge box trust that one file). If
this checkout's `mamoru serve` cannot serve HTTPS, the server is started with
`--insecure-http` on loopback instead, where the browser still treats the
origin as secure (Secure cookies work on http://localhost).
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import httpx

from tests import REPO
from tests.waiting import answers, wait_until

START_TIMEOUT_S = 60.0


def trust(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServerFailedError(RuntimeError):
    """`mamoru serve` exited or never answered."""


class RegistryServer:
    """One `mamoru serve` process on a free loopback port, for one registry."""

    def __init__(self, data_dir: Path, *, log_file: Path | None = None) -> None:
        self.data_dir = data_dir
        self.log_file = log_file or data_dir.parent / "serve.log"
        self.port = free_port()
        self.url = ""
        self.cert: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return {**os.environ, "MAMORU_DATA_DIR": str(self.data_dir), "PYTHONWARNINGS": "ignore"}

    def start(self) -> RegistryServer:
        try:
            self._launch(https=True)
        except ServerFailedError:
            self.stop()
            self._launch(https=False)
        return self

    def _launch(self, *, https: bool) -> None:
        args = [sys.executable, "-m", "mamoru", "serve", "--host", "127.0.0.1",
                "--port", str(self.port)]
        if not https:
            args.append("--insecure-http")
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(args, cwd=REPO, env=self.env(), stdout=log,
                                             stderr=subprocess.STDOUT)
        cert = self.data_dir / "tls" / "cert.pem"
        self.url = f"https://127.0.0.1:{self.port}" if https else f"http://localhost:{self.port}"
        process = self._process

        def up() -> bool:
            verify = trust(cert) if https and cert.is_file() else False
            return answers(f"{self.url}/login", 200, verify=verify)()

        try:
            wait_until(up, START_TIMEOUT_S, "mamoru serve to answer", poll_s=0.2,
                       alive=lambda: None if process.poll() is None else "it exited")
        except AssertionError as failed:
            raise ServerFailedError(f"{failed}: {self.log_tail()}") from None
        self.cert = cert if https else None

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What httpx should trust to reach this server: its certificate, nothing else."""
        return trust(self.cert) if self.cert else True

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=self.verify, timeout=30.0)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None
