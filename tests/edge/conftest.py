"""Fixtures for the edge-loop tests: real RTSP cameras serving composed clips."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mamoru.demo.cameras import RtspServer

RtspServerFactory = Callable[..., RtspServer]


@pytest.fixture
def rtsp_server_factory() -> Iterator[RtspServerFactory]:
    """`make(mounts, port=None, loop=True)`: a started RtspServer, stopped at teardown."""
    servers: list[RtspServer] = []

    def make(mounts: dict[str, Path], port: int | None = None, loop: bool = True) -> RtspServer:
        server = RtspServer(mounts, port=port, loop=loop)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()

# The edge tests run against the same real, per-test registry as the registry tests.
from tests.registry.conftest import engine_default, registry, registry_template  # noqa: E402,F401
