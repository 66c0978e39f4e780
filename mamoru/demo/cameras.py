"""Test cameras: video files served over real RTSP by mamoru/demo/camera_server.py.

    with RtspServer({"cam1": clip}) as server:
        capture = open_capture(server.url("cam1"))
        ...
        server.stop()    # the camera drops (hangs up): open readers fail at once
        server.start()   # and comes back on the same port and URL
        server.freeze()  # the camera hangs without hanging up: readers wait
        server.thaw()    # for their read timeout (see READ_TIMEOUT_MS)

Readers seen here (opencv-python 5.0, FFmpeg backend, default UDP transport):
opening takes about 3 s (FFmpeg probes ~20 frames to learn the frame rate),
then frames come at the clip's rate and a new stream starts at the clip's first
frame. After stop() a blocked read fails at once. After freeze() each read
waits the read timeout and may still return True with a stale frame: two such
reads, then one fails (about 3 x READ_TIMEOUT_MS in all).

The server runs on Debian's /usr/bin/python3 (GStreamer's RTSP server through
`gi`, see camera_server.py); this module, imported by the tests in the venv, only
starts and stops it.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, NoReturn

import cv2

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("camera_server.py")
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
# Bounded waits for readers: a plain VideoCapture can hang forever once a camera
# drops (opencv issues 22677, 24393).
OPEN_TIMEOUT_MS = 5000
READ_TIMEOUT_MS = 5000


class RtspServerError(RuntimeError):
    """The test RTSP server did not start."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def open_capture(
    url: str, open_timeout_ms: int = OPEN_TIMEOUT_MS, read_timeout_ms: int = READ_TIMEOUT_MS
) -> cv2.VideoCapture:
    """A reader of an RTSP URL whose open and reads give up instead of hanging."""
    return cv2.VideoCapture(
        url,
        cv2.CAP_FFMPEG,
        [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            open_timeout_ms,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            read_timeout_ms,
        ],
    )


class RtspServer:
    """One RTSP server process serving each file of `mounts` at `/NAME`.

    `port` defaults to a free one, kept across `stop()` and `start()` so a
    reader can reconnect to the same URL. With `loop` (the default) a stream
    never ends, like a camera; without it a stream ends with its file.
    """

    def __init__(self, mounts: dict[str, Path], port: int | None = None, loop: bool = True) -> None:
        if not mounts:
            raise ValueError("an RTSP server needs at least one mount")
        for name, path in mounts.items():
            if not Path(path).is_file():
                raise FileNotFoundError(f"mount {name!r}: {path}: no such file")
        self.mounts = {name: Path(path).resolve() for name, path in mounts.items()}
        self.port = port or free_port()
        self._port_chosen = port is None
        self.loop = loop
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[str] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def url(self, mount: str) -> str:
        if mount not in self.mounts:
            raise KeyError(f"no mount {mount!r}; mounts: {sorted(self.mounts)}")
        return f"rtsp://127.0.0.1:{self.port}/{mount}"

    def start(self) -> RtspServer:
        """Start serving (again, on the same port); returns once it listens."""
        if self.running:
            return self
        attempts = 3 if self._port_chosen else 1
        for attempt in range(1, attempts + 1):
            try:
                self._start()
            except RtspServerError as error:
                # The free port picked here was taken meanwhile: pick another.
                if attempt == attempts or "cannot listen" not in str(error):
                    raise
                self.port = free_port()
            else:
                self._port_chosen = False  # the camera's address from now on
                return self
        raise AssertionError("unreachable")

    def _start(self) -> None:
        command = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port)]
        for name, path in self.mounts.items():
            command += ["--mount", f"{name}={path}"]
        if self.loop:
            command.append("--loop")
        # stderr goes to a file: an unread pipe could fill up and block the server.
        self._stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115
        try:
            self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._stderr)
        except FileNotFoundError as error:
            self.stop()
            raise RtspServerError(f"{SYSTEM_PYTHON} not found: run `make system-deps`") from error
        self._wait_ready()

    def stop(self) -> None:
        """Stop serving: the camera drops. Safe to call when already stopped."""
        self._terminate()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def freeze(self) -> None:
        """The camera hangs without hanging up (SIGSTOP): connections stay open
        but nothing more arrives, so readers only have their read timeout."""
        if self.running:
            assert self._process is not None
            self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """A frozen camera resumes (SIGCONT)."""
        if self.running:
            assert self._process is not None
            self._process.send_signal(signal.SIGCONT)

    def _terminate(self) -> int | None:
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a frozen server could not act on SIGTERM
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        assert process.stdout is not None
        process.stdout.close()
        return process.returncode

    def _wait_ready(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        fd = self._process.stdout.fileno()
        expected = f"READY {self.port}\n".encode()
        seen = b""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while expected not in seen:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self._fail(f"no READY within {READY_TIMEOUT_S:.0f} s")
            chunk = os.read(fd, 4096)
            if not chunk:
                self._fail("the server exited")
            seen += chunk

    def _fail(self, why: str) -> NoReturn:
        code = self._terminate()
        assert self._stderr is not None
        self._stderr.seek(0)
        stderr = self._stderr.read().strip()
        self.stop()
        raise RtspServerError(
            f"RTSP server on port {self.port} did not start: {why} (exit code {code}).\n"
            f"command: {SYSTEM_PYTHON} {SERVER_SCRIPT}\n"
            f"its stderr:\n{stderr or '(empty)'}\n"
            "(`gi` or GStreamer missing? Run `make system-deps`.)"
        )

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        if self.running:
            self.stop()
