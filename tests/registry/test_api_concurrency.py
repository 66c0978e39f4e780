"""Many edge boxes at once never stop the registry's API (issue 15, item 3).

Found by the 2,000-box load benchmark (`benchmarks/chain.py --only load`):
the registry's lock was taken in a dependency that ran in uvicorn's pool of
40 worker threads. Once 40 requests waited for the lock, the request holding
it had no thread left to run its route, and `mamoru serve` stopped answering
for good, every request timing out. Requests now wait for their turn in the
event loop (`registry.api.gate.RegistryGate.holding`).
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from kernel import watchlist_index
from registry.accounts import devices
from tests.registries import OBAMA, T0, Registry
from tests.registry.servers import serve_in_threads

BOXES = 120  # three times uvicorn's 40 pooled threads
VERSION = "/api/v1/edge/index/version"


async def _poll_all(base: str, tokens: list[str]) -> list[int | str]:
    """Every box polls once, all at the same moment, each on its own connection."""
    async def one(token: str) -> int | str:
        async with httpx.AsyncClient(base_url=base, timeout=20.0) as client:
            try:
                response = await client.get(VERSION, headers={"Authorization": f"Bearer {token}"})
            except httpx.TimeoutException:
                return "timeout"
            return response.status_code
    return list(await asyncio.gather(*(one(t) for t in tokens)))


@pytest.mark.server
def test_a_crowd_of_boxes_polling_at_once_is_answered_and_the_api_stays_up(
        registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    registry.register(OBAMA)
    admin = registry.user("admin")
    tokens = [devices.add_device(registry.ctx, admin=admin, name=f"box-{i}", now=T0)
              for i in range(BOXES)]
    # Each poll holds the registry a moment (a busy disk), so the crowd piles up behind it.
    slow_header = watchlist_index.read_index_header

    def read_slowly(*args: object, **kwargs: object) -> object:
        time.sleep(0.01)
        return slow_header(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("registry.api.routes.edge.read_index_header", read_slowly)
    with serve_in_threads(registry.settings, registry.engine) as base:
        statuses = asyncio.run(_poll_all(base, tokens))
        assert statuses.count(200) == BOXES, {s: statuses.count(s) for s in set(statuses)}
        after = httpx.get(base + VERSION, headers={"Authorization": f"Bearer {tokens[0]}"},
                          timeout=10.0)
        assert after.status_code == 200


@pytest.mark.server
def test_the_load_benchmark_s_lean_box_client_speaks_to_the_real_server(
        registry: Registry) -> None:
    """benchmarks/box_http.py (the benchmark's 2,000 boxes in one process) against real uvicorn:
    answers and their bodies, one kept-alive connection for many requests, a refusal."""
    from benchmarks.box_http import BoxClient

    registry.register(OBAMA)
    token = devices.add_device(registry.ctx, admin=registry.user("admin"), name="box-1",
                               now=T0)

    async def box(port: int) -> tuple[list[int], int, int, bytes]:
        good = BoxClient(host="127.0.0.1", port=port, tls=None, token=token,
                         local_address="127.0.0.1", connections=1, timeout_s=20.0)
        bad = BoxClient(host="127.0.0.1", port=port, tls=None, token="x" * 43,
                        local_address=None, connections=1, timeout_s=20.0)
        try:
            replies = [await good.get(VERSION) for _ in range(5)]
            whole = await good.get("/api/v1/edge/index")
            refused = await bad.get(VERSION)
            return ([r.status for r in replies], whole.status, refused.status,
                    whole.body)
        finally:
            await good.aclose()
            await bad.aclose()

    with serve_in_threads(registry.settings, registry.engine) as base:
        statuses, whole, refused, body = asyncio.run(box(int(base.rsplit(":", 1)[1])))
    assert statuses == [200] * 5
    assert whole == 200 and body == registry.ctx.paths.index.read_bytes()
    assert refused == 401
