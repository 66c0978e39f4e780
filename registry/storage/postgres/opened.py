"""Opening a chain's registry on PostgreSQL: connect, check, and the `OpenedStorage` on it.

Start-up fails loudly, in one line that names no secret, on each thing an
operator can get wrong (issue 15):

- the server is unreachable, refuses the role, or the password is wrong;
- its certificate is not trusted by the configured CA or does not name the
  host (`sslmode=verify-full` always; there is no setting to turn TLS off);
- the database's schema is older than this mamoru (run `mamoru registry init`
  as the owner to migrate) or newer (upgrade mamoru);
- the master key is not the one the registry was created with: a constant
  sealed under it at `registry init` (`registry.key_canary`) must open, as
  SQLCipher's first page must decrypt, before anything is read or written.
  Writing personal columns under another key would leave rows nobody can read.

Passwords are read from a file given by path (0600), handed to libpq as a
keyword, never put in a URL, a log line or an exception.
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from kernel.errors import (
    NotInitialisedError,
    RegistryError,
    SealedFileError,
    StorageUnavailableError,
    WrongKeyError,
)
from kernel.sealed import DATABASE_FIELD, Sealer
from registry.config import PostgresSettings
from registry.keys.master import MasterKey
from registry.storage.postgres.anchors import PostgresAnchors
from registry.storage.postgres.base import FieldSealer, PgConnection, prepare_session
from registry.storage.postgres.evidence import PostgresEvidence
from registry.storage.postgres.schema import MIGRATIONS, migrate, schema_version
from registry.storage.postgres_repository import PostgresRepository

if TYPE_CHECKING:
    from sqlite3 import Connection

# pg_advisory_lock key of the registry's writers: "mamoruWR" (the audit head's is "mamoruAT")
WRITER_LOCK = 0x6D616D6F72755752
_CANARY = b"mamoru registry key canary v1"
_CANARY_CONTEXT = b"registry.key_canary"


def read_password_file(path: Path) -> str:
    """The first line of a 0600 password file; refused if missing, empty or readable by others."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StorageUnavailableError(f"password file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StorageUnavailableError(f"password file {path} cannot be read ({type(exc).__name__})"
                                      ) from None
    if stat.S_IMODE(mode) & 0o077:
        raise StorageUnavailableError(f"password file {path} is readable by others; "
                                      f"run `chmod 600 {path}`")
    password = text.splitlines()[0].strip() if text.strip() else ""
    if not password:
        raise StorageUnavailableError(f"password file {path} is empty")
    return password


def _why(settings: PostgresSettings, user: str, exc: Exception, password: str) -> str:
    """One line saying what went wrong connecting, in the operator's terms; never the password."""
    text = " ".join(str(exc).split())
    where = f"PostgreSQL {settings.host}:{settings.port}/{settings.dbname} as {user}"
    lowered = text.lower()
    if "password authentication failed" in lowered:
        reason = "the password was refused (check the password file)"
    elif "certificate verify failed" in lowered or "certificate" in lowered:
        reason = (f"the server's certificate is not trusted by {settings.ca_file} or does not "
                  f"name {settings.host}")
    elif "no pg_hba.conf entry" in lowered:
        reason = "the server does not let this role in from here (pg_hba.conf, TLS required)"
    elif ("connection refused" in lowered or "timeout expired" in lowered
          or "could not translate host name" in lowered or "failed to resolve host" in lowered
          or "no route to host" in lowered
          or "network is unreachable" in lowered):
        reason = "the server is unreachable (address, port, firewall, or it is down)"
    elif "does not exist" in lowered:
        reason = "the database or role does not exist"
    else:
        reason = text.rsplit("FATAL:", 1)[-1].strip() or type(exc).__name__
    return f"cannot connect to {where}: {reason}".replace(password, "***")


def connect(settings: PostgresSettings, *, user: str | None = None,
            password_file: Path | None = None) -> PgConnection:
    """A TLS (verify-full) connection as the app role, or as `user` with its password file."""
    login = user or settings.user
    password = read_password_file(password_file or settings.password_file)
    if not settings.ca_file.is_file():
        raise StorageUnavailableError(f"the CA file {settings.ca_file} does not exist: "
                                      "TLS with a verified server certificate is required")
    try:
        return psycopg.connect(
            host=settings.host, port=settings.port, dbname=settings.dbname, user=login,
            password=password, sslmode="verify-full", sslrootcert=str(settings.ca_file),
            connect_timeout=settings.connect_timeout_s, application_name="mamoru")
    except psycopg.Error as exc:
        raise StorageUnavailableError(_why(settings, login, exc, password)) from None


def connect_app(settings: PostgresSettings) -> PgConnection:
    """A new session of the application role, prepared as every store expects it
    (`prepare_session`): the registry's own, or one for a rate-limit store or a job's lock."""
    return prepare_session(connect(settings))


def _canary_sealer(key: MasterKey) -> Sealer:
    return Sealer(DATABASE_FIELD, key.derive("database-fields"))


def check_schema(connection: PgConnection, settings: PostgresSettings) -> None:
    """The database's schema is exactly this code's; otherwise one line saying what to do."""
    current = schema_version(connection)
    if current == len(MIGRATIONS):
        return
    where = f"{settings.host}/{settings.dbname}"
    if current == 0:
        raise NotInitialisedError(f"no mamoru registry in PostgreSQL {where}: run `mamoru "
                                  "registry init` with the owner role's password file")
    if current < len(MIGRATIONS):
        raise RegistryError(f"the registry in PostgreSQL {where} has schema version {current}, "
                            f"older than this mamoru ({len(MIGRATIONS)}): run `mamoru registry "
                            "init` with the owner role's password file to migrate it")
    raise RegistryError(f"the registry in PostgreSQL {where} has schema version {current}, "
                        f"newer than this mamoru ({len(MIGRATIONS)}): upgrade mamoru")


def check_key(connection: PgConnection, key: MasterKey, settings: PostgresSettings) -> None:
    """The canary opens under `key`, or nothing is read or written (a wrong or damaged key)."""
    row = connection.execute("SELECT sealed FROM key_canary").fetchone()
    if row is None:
        raise NotInitialisedError(f"the registry in PostgreSQL {settings.host}/{settings.dbname} "
                                  "has no key canary: run `mamoru registry init`")
    try:
        opened = _canary_sealer(key).open(bytes(row[0]), name="the key canary",
                                          context=_CANARY_CONTEXT)
    except SealedFileError:
        opened = b""
    if opened != _CANARY:
        raise WrongKeyError(
            f"the master key does not open the registry in PostgreSQL {settings.host}/"
            f"{settings.dbname} (its key canary): a wrong or damaged key file (put back the "
            "custody copy of the key). Nothing was read or written")


def write_canary(connection: PgConnection, key: MasterKey) -> None:
    """Record the key canary once, at init (an existing one is kept: `check_key` judges it)."""
    connection.execute(
        "INSERT INTO key_canary (one, sealed) VALUES (true, %s) ON CONFLICT (one) DO NOTHING",
        (_canary_sealer(key).seal(_CANARY, context=_CANARY_CONTEXT),))


def replace_canary(connection: PgConnection, key: MasterKey) -> None:
    """Seal the key canary under `key` (the last step of a key rotation's transaction)."""
    connection.execute("UPDATE key_canary SET sealed = %s",
                       (_canary_sealer(key).seal(_CANARY, context=_CANARY_CONTEXT),))


def opens_canary(connection: PgConnection, key: MasterKey) -> bool:
    """Whether the key canary opens under `key` (`check_key`, without the refusal)."""
    row = connection.execute("SELECT sealed FROM key_canary").fetchone()
    if row is None:
        return False
    try:
        return _canary_sealer(key).open(bytes(row[0]), name="the key canary",
                                        context=_CANARY_CONTEXT) == _CANARY
    except SealedFileError:
        return False


def migrate_as_owner(settings: PostgresSettings, *, owner: str, owner_password_file: Path) -> int:
    """`registry init`: bring the database to this code's schema as its owner; steps applied."""
    with connect(settings, user=owner, password_file=owner_password_file) as conn:
        try:
            return migrate(conn, app_role=settings.user)
        except RuntimeError as exc:  # a newer schema
            raise RegistryError(str(exc)) from None


class PostgresStorage:
    """`OpenedStorage` on one connection of the application role (autocommit, UTC)."""

    backend = "postgres"

    def __init__(self, settings: PostgresSettings, connection: PgConnection,
                 key: MasterKey) -> None:
        self._settings = settings
        self._key = key
        self._conn = prepare_session(connection)
        self._repo = PostgresRepository(self._conn, FieldSealer(key.derive("database-fields")))
        self._evidence = PostgresEvidence(self._conn, key.derive("evidence"))
        self._anchors = PostgresAnchors(self._conn)

    @property
    def repo(self) -> PostgresRepository:
        return self._repo

    @property
    def evidence(self) -> PostgresEvidence:
        return self._evidence

    @property
    def anchors(self) -> PostgresAnchors:
        return self._anchors

    @property
    def connection(self) -> PgConnection:
        return self._conn

    def sqlcipher_connection(self) -> Connection:
        raise RegistryError("this use case is not available on the PostgreSQL registry yet "
                            "(it still reads the SQLCipher files directly)")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # Session-level advisory lock: writers on every API host wait for each other, as
        # processes on one box wait for the fcntl lock. Re-entrant within this session.
        self._conn.execute("SELECT pg_advisory_lock(%s)", (WRITER_LOCK,))
        try:
            yield
        finally:
            if not self._conn.closed:
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (WRITER_LOCK,))

    def writer_lock(self) -> AbstractContextManager[None]:
        return self._locked()

    def forbid_writes(self) -> None:
        # Every statement of this autocommit session runs in a read-only transaction.
        self._conn.execute("SET default_transaction_read_only = on")

    def close(self) -> None:
        self._conn.close()

    def reconnect(self, while_closed: Callable[[], None]) -> None:
        self._conn.close()
        while_closed()
        self._conn = connect_app(self._settings)
        check_schema(self._conn, self._settings)
        self._repo.rebind(self._conn)
        self._evidence.rebind(self._conn)
        self._anchors.rebind(self._conn)

    def switch_key(self, new_key: MasterKey) -> None:
        """Every personal column and evidence image re-sealed under `new_key`, then the key
        canary, in one transaction (`rekey.reseal_database`; resumable: a value already under
        the new key is left)."""
        from registry.storage.postgres.rekey import reseal_database

        reseal_database(self._conn, self._key, new_key, replace_canary)
        self._key = new_key
        self._repo.use_fields(FieldSealer(new_key.derive("database-fields")))
        self._evidence.use_key(new_key.derive("evidence"))


def open_postgres_storage(settings: PostgresSettings, key: MasterKey,
                          pending: MasterKey | None = None) -> PostgresStorage:
    """Connect as the app role, check schema and key; close the connection on any refusal.

    `pending`: the key of a rotation that was interrupted. If its transaction committed, the
    canary opens under it and the storage works under it; the caller finishes the rotation.
    """
    connection = connect(settings)
    try:
        prepare_session(connection)
        check_schema(connection, settings)
        if pending is not None and not opens_canary(connection, key):
            check_key(connection, pending, settings)
            key = pending
        else:
            check_key(connection, key, settings)
    except BaseException:
        connection.close()
        raise
    return PostgresStorage(settings, connection, key)
