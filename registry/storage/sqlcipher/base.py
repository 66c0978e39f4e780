"""The connection every SQLCipher aggregate store shares, and the one transaction boundary."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from registry.storage.database import Connection, transaction
from registry.storage.unit_of_work import NestedUnitOfWork


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


class SqlCipherUnitOfWork(SqlCipherStore, NestedUnitOfWork):
    """`UnitOfWork`: the transaction the stores sharing this connection write in."""

    def _begin(self) -> AbstractContextManager[object]:
        return transaction(self._db)
