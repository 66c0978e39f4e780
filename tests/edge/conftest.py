"""Fixtures for the edge-loop tests: real RTSP cameras serving composed clips.

The registry they run against is the shared `registry` fixture (tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.config import CameraConfig
from edge.outbox import Delivery
from mamoru.demo.cameras import RtspServer
from tests.edge.harness import RtspServerFactory, RunningEdge, build_edge
from tests.registries import Registry


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


@pytest.fixture
def start_edge(registry: Registry) -> Iterator[Callable[..., RunningEdge]]:
    """`start(cameras, delivery=None, **settings)`: the real loop in a thread; stopped at
    teardown."""
    running: list[RunningEdge] = []

    def start(cameras: dict[str, str | CameraConfig], delivery: Delivery | None = None,
              **overrides: float) -> RunningEdge:
        edge = build_edge(registry, cameras, delivery, **overrides)
        running.append(edge)
        edge.thread.start()
        return edge

    yield start
    for edge in running:
        edge.stop.set()
    for edge in running:
        edge.thread.join(timeout=30)

