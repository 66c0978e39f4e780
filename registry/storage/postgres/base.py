"""The connection every PostgreSQL aggregate store shares, the transaction boundary, and sealing.

The PostgreSQL back-end mirrors `registry.storage.sqlcipher`: one store class per
aggregate protocol of `registry.repository`, composed over one connection by
`PostgresRepository`. What differs is where the encryption happens. SQLCipher
encrypts the whole file; a chain's database server must never see a face
template, a listed person's name, a police reference or a free-text reason in
the clear (issue 15, G-SEC-2), so every column listed in
`schema.PERSONAL_COLUMNS` is sealed by the application (`FieldSealer`) before
it leaves the process and opened after it comes back.

Connections run in autocommit; `unit_of_work()` opens the one transaction (a
nested use case joins the outer one, as on SQLCipher). Sessions use UTC and
the `registry` schema first on the search path, so a query names `users`, not
`registry.users`; times travel as `timestamptz` and come back as aware UTC
datetimes.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import psycopg

from kernel.sealed import DATABASE_FIELD, Sealer
from registry.storage.postgres.schema import PERSONAL_COLUMNS
from registry.storage.unit_of_work import NestedUnitOfWork

PgConnection = psycopg.Connection[tuple[Any, ...]]


def prepare_session(connection: PgConnection) -> PgConnection:
    """Autocommit, UTC, the registry schema first: what every store expects of its session."""
    connection.autocommit = True
    connection.execute("SET TIME ZONE 'UTC'")
    connection.execute("SET search_path = registry, audit, pg_catalog")
    return connection


class FieldSealer:
    """Seals one personal field value bound to the row and column it belongs in.

    The associated data names the table, the column and the row's key, so a
    value copied by someone with write access to the database into another row
    or column (moving one person's name onto another entry) fails
    authentication instead of showing the wrong person. Only the columns in
    `schema.PERSONAL_COLUMNS` may be sealed: a typo in a store is an error, not
    a silently clear column.
    """

    def __init__(self, key: bytes) -> None:
        """`key`: 32 bytes derived from the master key for database fields; never logged."""
        self._sealer = Sealer(DATABASE_FIELD, key)

    def __repr__(self) -> str:
        return "FieldSealer()"

    @staticmethod
    def _context(table: str, column: str, row: str | int) -> bytes:
        if column not in PERSONAL_COLUMNS.get(f"registry.{table}", ()):
            raise ValueError(f"registry.{table}.{column} is not a personal column")
        return f"{table}.{column}:{row}".encode()

    def seal(self, table: str, column: str, row: str | int, value: bytes) -> bytes:
        return self._sealer.seal(value, context=self._context(table, column, row))

    def seal_text(self, table: str, column: str, row: str | int, value: str | None) -> bytes | None:
        """None stays NULL (an absent value is not personal data)."""
        return None if value is None else self.seal(table, column, row, value.encode("utf-8"))

    def open(self, table: str, column: str, row: str | int, blob: bytes) -> bytes:
        return self._sealer.open(bytes(blob), name=f"registry.{table}.{column} of {row}",
                                 context=self._context(table, column, row))

    def open_text(self, table: str, column: str, row: str | int,
                  blob: bytes | None) -> str | None:
        return None if blob is None else self.open(table, column, row, blob).decode("utf-8")


class PostgresStore:
    """Base of each aggregate's store: queries on one connection, never a commit."""

    def __init__(self, connection: PgConnection, fields: FieldSealer) -> None:
        self._db = connection
        self._fields = fields

    @property
    def connection(self) -> PgConnection:
        return self._db

    def rebind(self, connection: PgConnection) -> None:
        """Use a new connection (after a reconnect or a restore)."""
        self._db = prepare_session(connection)

    def use_fields(self, fields: FieldSealer) -> None:
        """Seal and open under another key from now on (after a key rotation)."""
        self._fields = fields

    def _one(self, query: str, params: Sequence[Any] = ()) -> Any:
        return self._db.execute(query, params).fetchone()

    def _all(self, query: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._db.execute(query, params).fetchall()


def utc(moment: datetime | None) -> datetime | None:
    """A datetime from the database as UTC (the session's time zone is UTC already)."""
    return None if moment is None else moment.astimezone(UTC)


class PostgresUnitOfWork(PostgresStore, NestedUnitOfWork):
    """`UnitOfWork`: the one transaction the stores sharing this connection write in."""

    def _begin(self) -> AbstractContextManager[object]:
        return self._db.transaction()
