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
from typing import TYPE_CHECKING, Any

import sqlcipher3

from kernel.errors import NotInitialisedError, RegistryError, StoreDamagedError, WrongKeyError
from registry.config import DEFAULT_STORE_ID
from registry.keys.master import MasterKey, Purpose, sqlcipher_pragma_value
from registry.storage import damage
from registry.storage.migrations import migrate

if TYPE_CHECKING:
    # sqlcipher3 is an API-compatible fork of sqlite3 without type information: its
    # connection is typed through the standard library's.
    from sqlite3 import Connection as Connection
else:
    Connection = sqlcipher3.Connection

# SQLite's primary result codes for a damaged file (extended codes keep them in the low byte).
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
_DAMAGE_CODES = frozenset({_SQLITE_CORRUPT, _SQLITE_NOTADB})


def is_damage(exc: BaseException) -> bool:
    """True for SQLite's "malformed" / "not a database": a damaged file, not a wrong query."""
    if not isinstance(exc, sqlcipher3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in _DAMAGE_CODES
    text = str(exc)
    return "malformed" in text or "not a database" in text


class _CheckedCursor(sqlcipher3.Cursor):  # type: ignore[misc]
    """A cursor whose every read turns a damaged page into `StoreDamagedError`."""

    def execute(self, *args: Any) -> Any:
        try:
            return super().execute(*args)
        except sqlcipher3.DatabaseError as exc:
            raise self.connection.damaged(exc) from None

    def executemany(self, *args: Any) -> Any:
        try:
            return super().executemany(*args)
        except sqlcipher3.DatabaseError as exc:
            raise self.connection.damaged(exc) from None

    def fetchone(self) -> Any:
        try:
            return super().fetchone()
        except sqlcipher3.DatabaseError as exc:
            raise self.connection.damaged(exc) from None

    def fetchmany(self, *args: Any) -> Any:
        try:
            return super().fetchmany(*args)
        except sqlcipher3.DatabaseError as exc:
            raise self.connection.damaged(exc) from None

    def fetchall(self) -> Any:
        try:
            return super().fetchall()
        except sqlcipher3.DatabaseError as exc:
            raise self.connection.damaged(exc) from None

    def __next__(self) -> Any:
        try:
            return super().__next__()
        except sqlcipher3.DatabaseError as exc:
            raise self.connection.damaged(exc) from None


class CheckedConnection(sqlcipher3.Connection):  # type: ignore[misc]
    """The registry's connection: the one place where SQLite's damage errors get a file name.

    Every statement of the repository runs through `_CheckedCursor`, so a
    damaged page found by any query, at start-up or deep in a use case,
    becomes one `StoreDamagedError` naming registry.db or audit.db (found
    by SQLCipher's per-page HMAC check) and what to do. Other database
    errors (constraints, triggers, locks) pass through unchanged.
    """

    files: dict[str, Path]

    def cursor(self, factory: Any = _CheckedCursor) -> Any:
        return super().cursor(factory)

    def backup(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().backup(*args, **kwargs)
        except sqlcipher3.DatabaseError as exc:
            raise self.damaged(exc) from None

    def damaged(self, exc: Exception) -> Exception:
        """`exc` itself unless it means a damaged file; then the typed error naming that file."""
        files = getattr(self, "files", {})
        if not files or not is_damage(exc):
            return exc  # still opening: the opener tells a wrong key from a damaged file
        for schema, path in files.items():
            problems = schema_problems(self, schema)
            if problems:
                return _damaged_file(schema, path, problems[0])
        named = " or ".join(str(path) for path in files.values()) or "the registry database"
        return damage.database_damaged(Path(named), str(exc))


def schema_problems(connection: Connection, schema: str) -> list[str]:
    """Every page-level problem of one attached database; [] if it reads clean.

    `cipher_integrity_check` verifies the HMAC of every page (a flipped bit
    anywhere, also in pages no query reads), `integrity_check` the b-trees
    and indexes SQLite builds from them. Uses a plain cursor, so it can run
    while a damage error is being translated.
    """
    plain = sqlcipher3.Connection.cursor(connection, sqlcipher3.Cursor)
    try:
        found = [str(row[0]) for row in plain.execute(f"PRAGMA {schema}.cipher_integrity_check")]
        if found:
            return found
        rows = [str(row[0]) for row in plain.execute(f"PRAGMA {schema}.integrity_check")]
    except sqlcipher3.DatabaseError as exc:
        return [str(exc)]
    finally:
        plain.close()
    return [] if rows == ["ok"] else rows


def _damaged_file(schema: str, path: Path, problem: str) -> StoreDamagedError:
    return (damage.database_damaged if schema == "main" else damage.audit_damaged)(path, problem)


def _connect(database: Path) -> CheckedConnection:
    connection: CheckedConnection = sqlcipher3.connect(
        str(database), isolation_level=None, check_same_thread=False, factory=CheckedConnection
    )
    connection.files = {}
    connection.execute("PRAGMA cipher_log_level = NONE")
    return connection


def _opens(connection: Connection, schema: str) -> bool:
    try:
        connection.execute(f"SELECT count(*) FROM {schema}.sqlite_master").fetchone()
    except sqlcipher3.DatabaseError:
        return False
    return True


def _key_that_opens(path: Path, purpose: Purpose, keys: Sequence[MasterKey]) -> MasterKey | None:
    """The candidate key that opens `path` on its own connection, or None."""
    for key in keys:
        connection = _connect(path)
        try:
            connection.execute(f"PRAGMA main.key = {sqlcipher_pragma_value(key.derive(purpose))}")
            if _opens(connection, "main"):
                return key
        finally:
            connection.close()
    return None


def _unopened(database: Path, audit: Path, keys: Sequence[MasterKey]) -> RegistryError:
    """Why the two files did not open: a wrong key opens neither, a damaged file only the other."""
    main_key = _key_that_opens(database, "database", keys)
    audit_key = _key_that_opens(audit, "audit", keys)
    if main_key is None and audit_key is not None:
        return damage.database_damaged(database, "its first page does not decrypt with the key "
                                                 "that opens the audit trail")
    if main_key is not None and audit_key is None:
        return damage.audit_damaged(audit, "its first page does not decrypt with the key that "
                                           "opens registry.db")
    return WrongKeyError(
        f"the key file does not open {database} nor {audit}: a wrong or damaged key file "
        "(put back the custody copy of the key), or not a mamoru registry. Nothing was changed"
    )


def _connect_main(database: Path,
                  keys: Sequence[MasterKey]) -> tuple[CheckedConnection, MasterKey] | None:
    for key in keys:
        connection = _connect(database)
        connection.execute(f"PRAGMA main.key = {sqlcipher_pragma_value(key.derive('database'))}")
        if _opens(connection, "main"):
            return connection, key
        connection.close()
    return None


def _attach_audit(connection: CheckedConnection, audit: Path,
                  keys: Sequence[MasterKey]) -> MasterKey | None:
    for key in keys:
        try:
            connection.execute(
                f"ATTACH DATABASE ? AS audit KEY {sqlcipher_pragma_value(key.derive('audit'))}",
                (str(audit),),
            )
        except sqlcipher3.DatabaseError:
            continue  # SQLite reads the first page on ATTACH when the main file is open
        if _opens(connection, "audit"):
            return key
        connection.execute("DETACH DATABASE audit")
    return None


@dataclass(frozen=True)
class OpenedDatabase:
    """The connection, and which candidate key opened each file (mid-rotation they differ)."""

    connection: Connection
    main_key: MasterKey
    audit_key: MasterKey


def open_registry_database(
    database: Path, audit: Path, keys: Sequence[MasterKey], *, create: bool = False,
    default_store: str = DEFAULT_STORE_ID,
) -> OpenedDatabase:
    """A migrated connection to both files; fails closed if no candidate key opens them.

    Without `create`, a missing file is an error: silently creating an empty
    registry next to a mistyped path would look like an empty watchlist.
    Normally `keys` holds the one master key; during an interrupted key
    rotation it holds the old and the pending key. `default_store`: the installation's
    store (`registry.store_id`), given to boxes and alerts from before stores existed.
    """
    for path in (database, audit):
        if not create and not path.is_file():
            raise NotInitialisedError(f"no registry database at {path}: run `mamoru registry init`")
    opened = _connect_main(database, keys)
    if opened is None:
        raise _unopened(database, audit, keys)
    connection, main_key = opened
    audit_key = _attach_audit(connection, audit, keys)
    if audit_key is None:
        connection.close()
        raise _unopened(database, audit, keys)
    connection.files = {"main": database, "audit": audit}
    for schema in ("main", "audit"):
        connection.execute(f"PRAGMA {schema}.journal_mode = DELETE")
        connection.execute(f"PRAGMA {schema}.synchronous = FULL")
        # Deleted rows are overwritten, not left in free pages (G-REG-4: real erasure).
        connection.execute(f"PRAGMA {schema}.secure_delete = ON")
    connection.execute("PRAGMA foreign_keys = ON")
    migrate(connection, default_store=default_store)
    return OpenedDatabase(connection, main_key, audit_key)


def rekey(connection: Connection, schema: str, key: MasterKey) -> None:
    """Re-encrypt one attached database under `key` (SQLCipher rewrites every page)."""
    purpose: Purpose = "database" if schema == "main" else "audit"
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
