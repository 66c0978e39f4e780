"""Opening the encrypted registry database (SQLCipher) and its audit database.

The audit trail lives in its own encrypted file, attached to the same
connection: every use case writes its change and its audit record in one
transaction (SQLite commits attached databases atomically through a
super-journal in rollback-journal mode, which is why WAL is not used), and a
restore of the registry from a backup cannot roll the audit trail back.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlcipher3

from registry.errors import NotInitialisedError, WrongKeyError
from registry.keys import MasterKey, sqlcipher_pragma_value
from registry.storage.migrations import migrate

Connection = sqlcipher3.Connection


def _opens(connection: Connection, schema: str) -> bool:
    try:
        connection.execute(f"SELECT count(*) FROM {schema}.sqlite_master").fetchone()
    except sqlcipher3.DatabaseError:
        return False
    return True


def _connect_main(database: Path, keys: Sequence[MasterKey]) -> tuple[Connection, MasterKey]:
    for key in keys:
        connection = sqlcipher3.connect(str(database), isolation_level=None,
                                        check_same_thread=False)
        connection.execute("PRAGMA cipher_log_level = NONE")
        connection.execute(f"PRAGMA main.key = {sqlcipher_pragma_value(key.derive('database'))}")
        if _opens(connection, "main"):
            return connection, key
        connection.close()
    raise WrongKeyError(
        f"the key file does not open {database}: wrong key file, or not a mamoru database. "
        "Nothing was changed"
    )


def _attach_audit(connection: Connection, audit: Path, keys: Sequence[MasterKey]) -> MasterKey:
    for key in keys:
        connection.execute(
            f"ATTACH DATABASE ? AS audit KEY {sqlcipher_pragma_value(key.derive('audit'))}",
            (str(audit),),
        )
        if _opens(connection, "audit"):
            return key
        connection.execute("DETACH DATABASE audit")
    connection.close()
    raise WrongKeyError(f"the key file does not open the audit trail {audit}. Nothing was changed")


@dataclass(frozen=True)
class OpenedDatabase:
    """The connection, and which candidate key opened each file (mid-rotation they differ)."""

    connection: Connection
    main_key: MasterKey
    audit_key: MasterKey


def open_registry_database(
    database: Path, audit: Path, keys: Sequence[MasterKey], *, create: bool = False
) -> OpenedDatabase:
    """A migrated connection to both files; fails closed if no candidate key opens them.

    Without `create`, a missing file is an error: silently creating an empty
    registry next to a mistyped path would look like an empty watchlist.
    Normally `keys` holds the one master key; during an interrupted key
    rotation it holds the old and the pending key.
    """
    for path in (database, audit):
        if not create and not path.is_file():
            raise NotInitialisedError(f"no registry database at {path}: run `mamoru registry init`")
    connection, main_key = _connect_main(database, keys)
    audit_key = _attach_audit(connection, audit, keys)
    for schema in ("main", "audit"):
        connection.execute(f"PRAGMA {schema}.journal_mode = DELETE")
        connection.execute(f"PRAGMA {schema}.synchronous = FULL")
        # Deleted rows are overwritten, not left in free pages (G-REG-4: real erasure).
        connection.execute(f"PRAGMA {schema}.secure_delete = ON")
    connection.execute("PRAGMA foreign_keys = ON")
    migrate(connection)
    return OpenedDatabase(connection, main_key, audit_key)


def rekey(connection: Connection, schema: str, key: MasterKey) -> None:
    """Re-encrypt one attached database under `key` (SQLCipher rewrites every page)."""
    purpose = "database" if schema == "main" else "audit"
    connection.execute(f"PRAGMA {schema}.rekey = {sqlcipher_pragma_value(key.derive(purpose))}")


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
