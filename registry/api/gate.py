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
A box's status report, the one write a box sends every half minute, has a
third connection and turn of its own (`report`) for the same reason.
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
                 reader: RegistryContext | None = None,
                 reporter: RegistryContext | None = None) -> None:
        """`reader`: a second, read-only opening of the same registry for `reading`
        (without one, readers take the registry's own turn). `reporter`: a third opening,
        for the boxes' status reports only (`report`; without one, the registry's turn)."""
        if reader is ctx or reporter is ctx or (reporter is not None and reporter is reader):
            raise ValueError("the reader and the reporter must be connections of their own, "
                             "not the registry itself or each other")
        self._ctx = ctx
        self._engine = engine
        self._reader = reader
        self._read_turn = anyio.Semaphore(1)
        self._reporter = reporter
        self._report_turn = anyio.Semaphore(1)
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

    async def report(self, work: Callable[[RegistryContext], T]) -> T:
        """`work(reporter)` in a worker thread on the status reports' own connection.

        A box's status report is one row replaced, outside the writers' lock
        (`registry.accounts.devices.report_box_status`); 2,000 boxes send ~67 a
        second. On the registry's turn each waited behind every alert of a
        burst (p99 1.7 s, benchmarks/chain.py --only load); here it waits only
        for other reports.
        """
        if self._reporter is None:
            return await self.run(work)
        async with self._report_turn:
            return await anyio.to_thread.run_sync(work, self._reporter)

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
                for extra in (self._reader, self._reporter):
                    if extra is not None:
                        extra.close()
            finally:
                self._ctx.close()
