"""Fixtures for the edge-loop tests: real RTSP cameras serving composed clips."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.outbox import Delivery
from mamoru.demo.cameras import RtspServer
from tests.edge.harness import RunningEdge, build_edge

# The edge tests run against the same real, per-test registry as the registry tests.
from tests.registry.conftest import Registry, engine_default, registry_template  # noqa: F401
from tests.registry.conftest import registry as registry  # noqa: F401

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


@pytest.fixture
def start_edge(registry: Registry) -> Iterator[Callable[..., RunningEdge]]:
    """`start(cameras, delivery=None, **settings)`: the real loop in a thread; stopped at
    teardown."""
    running: list[RunningEdge] = []

    def start(cameras: dict[str, str], delivery: Delivery | None = None,
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

