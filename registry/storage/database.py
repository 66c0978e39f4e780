"""Opening the encrypted registry database (SQLCipher) and its audit database.

The audit trail lives in its own encrypted file, attached to the same
connection: every use case writes its change and its audit record in one
transaction (SQLite commits attached databases atomically through a
super-journal in rollback-journal mode, which is why WAL is not used), and a
restore of the registry from a backup cannot roll the audit trail back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlcipher3

from registry.errors import NotInitialisedError, WrongKeyError
from registry.keys import MasterKey, sqlcipher_pragma_value
from registry.storage.migrations import migrate

Connection = sqlcipher3.Connection


def _apply_key(connection: Connection, schema: str, key: bytes) -> None:
    connection.execute(f"PRAGMA {schema}.key = {sqlcipher_pragma_value(key)}")


def _check_opens(connection: Connection, schema: str, path: Path) -> None:
    try:
        connection.execute(f"SELECT count(*) FROM {schema}.sqlite_master").fetchone()
    except sqlcipher3.DatabaseError:
        connection.close()
        raise WrongKeyError(
            f"the key file does not open {path}: wrong key file, or not a mamoru database. "
            "Nothing was changed"
        ) from None


def open_registry_database(
    database: Path, audit: Path, key: MasterKey, *, create: bool = False
) -> Connection:
    """A migrated connection to both files; fails closed on a wrong key.

    Without `create`, a missing file is an error: silently creating an empty
    registry next to a mistyped path would look like an empty watchlist.
    """
    for path in (database, audit):
        if not create and not path.is_file():
            raise NotInitialisedError(f"no registry database at {path}: run `mamoru registry init`")
    connection = sqlcipher3.connect(str(database), isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA cipher_log_level = NONE")
    _apply_key(connection, "main", key.derive("database"))
    _check_opens(connection, "main", database)
    connection.execute(
        f"ATTACH DATABASE ? AS audit KEY {sqlcipher_pragma_value(key.derive('audit'))}",
        (str(audit),),
    )
    _check_opens(connection, "audit", audit)
    for schema in ("main", "audit"):
        connection.execute(f"PRAGMA {schema}.journal_mode = DELETE")
        connection.execute(f"PRAGMA {schema}.synchronous = FULL")
        # Deleted rows are overwritten, not left in free pages (G-REG-4: real erasure).
        connection.execute(f"PRAGMA {schema}.secure_delete = ON")
    connection.execute("PRAGMA foreign_keys = ON")
    migrate(connection)
    return connection


@contextmanager
def transaction(connection: Connection) -> Iterator[Connection]:
    """One unit of work: everything inside commits together or not at all."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
