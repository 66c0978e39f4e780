"""The app's one opened registry and face engine, and the turn that serialises their use.

One registry connection serves the whole app, and a `FaceEngine` (ONNX
sessions plus the detector's scratch state) is not safe to share between
threads either, so one request at a time uses them. Requests wait for their
turn in the event loop (`holding`), never in a worker thread: sync routes
run in a pool of 40 threads, and when the wait itself took a pooled thread,
40 waiting requests left the request holding the registry no thread to run
its route in, and the server stopped answering for good (found by the
2,000-box load benchmark, `benchmarks/chain.py --only load`; test:
tests/registry/test_api_concurrency.py). Writers additionally take
`ctx.writing()`, which serialises them with the CLI and the timers running
in other processes.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread

from models.engine import FaceEngine
from registry.context import RegistryContext

T = TypeVar("T")


class RegistryGate:
    """Hands out the registry (and the engine) to one request at a time."""

    def __init__(self, ctx: RegistryContext, engine: FaceEngine | None = None) -> None:
        self._ctx = ctx
        self._engine = engine
        # The queue: waiting here costs no thread. A semaphore, not a lock: a turn taken
        # from a worker thread (`use_from_thread`) is given back by another event-loop task.
        self._turn = anyio.Semaphore(1)
        self._lock = threading.Lock()  # held while a thread uses the registry

    @asynccontextmanager
    async def holding(self) -> AsyncIterator[RegistryContext]:
        """The registry, exclusively, until the block ends; waits in the event loop.

        The thread lock is free whenever the turn is ours (every user takes
        the turn first), so taking it never blocks; it is what lets `engine()`
        and `close()` check that the registry is held.
        """
        async with self._turn:
            if not self._lock.acquire(blocking=False):  # only while closing
                await anyio.to_thread.run_sync(self._lock.acquire)
            try:
                yield self._ctx
            finally:
                self._lock.release()

    async def run(self, work: Callable[[RegistryContext], T]) -> T:
        """`work(ctx)` in a worker thread while holding the registry; its result."""
        async with self.holding() as ctx:
            return await anyio.to_thread.run_sync(work, ctx)

    @contextmanager
    def use_from_thread(self) -> Iterator[RegistryContext]:
        """For sync code already in a worker thread (an error page drawn again): takes the
        turn through the event loop, so it queues with the requests, not ahead of them."""
        anyio.from_thread.run(self._turn.acquire)
        try:
            with self._lock:  # free once the turn is ours (only `close` takes it otherwise)
                yield self._ctx
        finally:
            anyio.from_thread.run_sync(self._turn.release)

    def engine(self) -> FaceEngine:
        """The face engine; call only while holding the registry (the same turn guards it)."""
        if not self._lock.locked():
            raise RuntimeError("the face engine is used without holding the registry gate")
        if self._engine is None:
            raise RuntimeError("this app was built without a face engine")
        return self._engine

    def close(self) -> None:
        with self._lock:
            self._ctx.close()
