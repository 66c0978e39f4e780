"""The real app under a real uvicorn server on loopback, in the test's own process.

In-process (not `mamoru serve`) so a test can slow down one of our functions,
and so the server has uvicorn's real event loop and its real pool of worker
threads: what a route's wait for the registry is measured against.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from mamoru.settings import MamoruSettings
from mamoru.wiring import api_host
from models.engine import FaceEngine
from registry.api.app import create_app
from tests.waiting import wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_in_threads(settings: MamoruSettings, engine: FaceEngine) -> Iterator[str]:
    """Serve the app for `settings`; its base URL until the block ends."""
    port = free_port()
    app = create_app(api_host(settings, engine=engine))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, "uvicorn to start", poll_s=0.05,
               alive=lambda: None if thread.is_alive() else "its thread ended")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
