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

What an edge box does most (the index-version poll every 10 s, the delta
after a change, the token check of every box request) only reads, and does
not wait for that turn: it runs on a second connection, opened read-only
(`RegistryContext.forbid_writes`), with a turn of its own (`reading`). Before,
a burst of alerts held each worker's one turn and 2,000 boxes' polls queued
behind it for tens of seconds (benchmarks/chain.py --only load). A token
check on the reader sees every committed disable: a disabled box is refused
by the first request that starts after the disable commits (no cache).
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
from registry.context import RegistryContext, RegistryPaths

T = TypeVar("T")


class RegistryGate:
    """Hands out the registry (and the engine) to one request at a time."""

    def __init__(self, ctx: RegistryContext, engine: FaceEngine | None = None,
                 reader: RegistryContext | None = None) -> None:
        """`reader`: a second, read-only opening of the same registry for `reading`
        (without one, readers take the registry's own turn)."""
        if reader is ctx:
            raise ValueError("the reader must be a second connection, not the registry itself")
        self._ctx = ctx
        self._engine = engine
        self._reader = reader
        self._read_turn = anyio.Semaphore(1)
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

    @property
    def paths(self) -> RegistryPaths:
        """Where the registry's files are (the published index): fixed, needs no turn."""
        return self._ctx.paths

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[RegistryContext]:
        """The read-only registry, exclusively, until the block ends; never waits for a
        writer's turn (`holding`), only for other readers (one connection, one at a time)."""
        if self._reader is None:
            async with self.holding() as ctx:
                yield ctx
            return
        async with self._read_turn:
            yield self._reader

    async def read(self, work: Callable[[RegistryContext], T]) -> T:
        """`work(reader)` in a worker thread on the read-only connection; its result."""
        async with self.reading() as ctx:
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
            try:
                if self._reader is not None:
                    self._reader.close()
            finally:
                self._ctx.close()
