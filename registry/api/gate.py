"""The app's one opened registry and face engine, and the lock that serialises their use.

One SQLCipher connection serves the whole app, and a `FaceEngine` (ONNX
sessions plus the detector's scratch state) is not safe to share between
threads either. Sync routes run in a thread pool, so a request holds the lock
for as long as it uses either; writers additionally take `ctx.writing()`,
which serialises them with the CLI and the timers running in other processes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from models.engine import FaceEngine
from registry.context import RegistryContext


class RegistryGate:
    """Hands out the registry (and the engine) to one request at a time."""

    def __init__(self, ctx: RegistryContext, engine: FaceEngine | None = None) -> None:
        self._ctx = ctx
        self._engine = engine
        self._lock = threading.Lock()

    @contextmanager
    def use(self) -> Iterator[RegistryContext]:
        """The registry, exclusively, until the block ends."""
        with self._lock:
            yield self._ctx

    def engine(self) -> FaceEngine:
        """The face engine; call only while holding `use()` (the same lock guards it)."""
        if not self._lock.locked():
            raise RuntimeError("the face engine is used without holding the registry gate")
        if self._engine is None:
            raise RuntimeError("this app was built without a face engine")
        return self._engine

    def close(self) -> None:
        with self._lock:
            self._ctx.close()
