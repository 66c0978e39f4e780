"""The connection every SQLCipher aggregate store shares, and the one transaction boundary."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from registry.storage.database import Connection, transaction


class SqlCipherStore:
    """Base of each aggregate's store: queries on one connection, never a commit."""

    def __init__(self, connection: Connection) -> None:
        self._db = connection

    @property
    def connection(self) -> Connection:
        return self._db

    def rebind(self, connection: Connection) -> None:
        """Use a new connection (after a restore replaced the database file)."""
        self._db = connection

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._db.execute(sql, params).fetchone()


class SqlCipherUnitOfWork(SqlCipherStore):
    """`UnitOfWork`: the transaction the stores sharing this connection write in."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        self._depth = 0

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
        with transaction(self._db):
            self._depth = 1
            try:
                yield
            finally:
                self._depth = 0
