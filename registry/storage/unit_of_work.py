"""The one transaction boundary of a use case, whatever the back-end.

A use case writes everything it changes in one transaction: all of it or none
survives a crash or a refusal. Use cases call one another (an erasure inside
a breach response), so a nested `unit_of_work()` joins the outer transaction
instead of committing early; only the outermost one begins and commits. The
back-end supplies how a transaction is begun (`_begin`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager


class NestedUnitOfWork:
    """`UnitOfWork` for a store on one connection: the depth of the open use cases."""

    _depth = 0

    def _begin(self) -> AbstractContextManager[object]:
        """The back-end's transaction: commits on a normal exit, rolls back on an exception."""
        raise NotImplementedError

    def unit_of_work(self) -> AbstractContextManager[None]:
        return self._unit_of_work()

    @contextmanager
    def _unit_of_work(self) -> Iterator[None]:
        if self._depth:  # nested use cases join the outer transaction
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        with self._begin():
            self._depth = 1
            try:
                yield
            finally:
                self._depth = 0
