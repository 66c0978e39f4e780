"""What `RegistryContext` needs from wherever the registry is stored (issue 15).

Two implementations: `SqlCipherStorage` (the encrypted files in the data folder,
one store, one box; this module) and `PostgresStorage` (a chain's central
database, `registry.storage.postgres.opened`). The context, and every use case
above it, sees only this seam: the repository, the evidence images, where the
audit trail's head and base are anchored, the writer lock that serialises
writing use cases across processes (and on PostgreSQL across hosts), and the
key operations.
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from kernel.evidence import EvidenceImages, EvidenceStore
from registry.audit.trail import FileAnchors, TrailAnchors
from registry.config import DEFAULT_STORE_ID
from registry.keys.master import MasterKey
from registry.repository import RegistryRepository
from registry.storage.database import OpenedDatabase, open_registry_database, rekey
from registry.storage.sqlcipher_repository import SqlCipherRepository

if TYPE_CHECKING:
    from sqlite3 import Connection


class OpenedStorage(Protocol):
    """An opened registry store: the one thing `RegistryContext` holds besides its policy."""

    @property
    def backend(self) -> str:
        """"sqlcipher" or "postgres": named in refusals of what one back-end cannot do yet."""
        ...

    @property
    def repo(self) -> RegistryRepository: ...

    @property
    def evidence(self) -> EvidenceImages: ...

    @property
    def anchors(self) -> TrailAnchors: ...

    def writer_lock(self) -> AbstractContextManager[None]:
        """Held by every writing use case: one writer at a time across processes and hosts."""
        ...

    def forbid_writes(self) -> None:
        """From now on this connection only reads: a write is refused by the database
        (the API's second connection for the edge boxes' reads, `registry.api.gate`)."""
        ...

    def close(self) -> None: ...

    def reconnect(self, while_closed: Callable[[], None]) -> None:
        """Close, run `while_closed` (a restore swaps files), open again."""
        ...

    def switch_key(self, new_key: MasterKey) -> None:
        """Re-encrypt everything this store seals under `new_key` (resumable)."""
        ...

    def sqlcipher_connection(self) -> Connection:
        """The SQLCipher connection for the few use cases still written in SQLite's SQL;
        a `RegistryError` naming the back-end where there is none."""
        ...


class SqlCipherStorage:
    """registry.db + audit.db (SQLCipher), evidence/ files, audit.head/base, an fcntl lock."""

    backend = "sqlcipher"

    def __init__(self, opened: OpenedDatabase, *, database: Path, audit_database: Path,
                 evidence_dir: Path, head_file: Path, base_file: Path, lock_file: Path,
                 key: MasterKey, default_store: str = DEFAULT_STORE_ID) -> None:
        self._opened = opened
        self._default_store = default_store
        self._database = database
        self._audit_database = audit_database
        self._lock_file = lock_file
        self._repo = SqlCipherRepository(opened.connection)
        self._evidence = EvidenceStore(evidence_dir, key.derive("evidence"))
        self._anchors = FileAnchors(head_file, base_file)

    @property
    def repo(self) -> SqlCipherRepository:
        return self._repo

    @property
    def evidence(self) -> EvidenceStore:
        return self._evidence

    @property
    def anchors(self) -> FileAnchors:
        return self._anchors

    @property
    def opened(self) -> OpenedDatabase:
        return self._opened

    def sqlcipher_connection(self) -> Connection:
        return self._opened.connection

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._lock_file.touch(mode=0o600, exist_ok=True)
        with self._lock_file.open("r+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def writer_lock(self) -> AbstractContextManager[None]:
        return self._locked()

    def forbid_writes(self) -> None:
        self._opened.connection.execute("PRAGMA query_only = ON")

    def close(self) -> None:
        self._opened.connection.close()

    def reconnect(self, while_closed: Callable[[], None]) -> None:
        self._opened.connection.close()
        while_closed()
        key = self._opened.main_key
        self._opened = open_registry_database(self._database, self._audit_database, [key],
                                              default_store=self._default_store)
        self._repo.rebind(self._opened.connection)

    def switch_key(self, new_key: MasterKey) -> None:
        """Resumable: a database already under the new key is left alone, and the evidence
        store skips files that already open under the new key."""
        if self._opened.main_key is not new_key:
            rekey(self._opened.connection, "main", new_key)
        if self._opened.audit_key is not new_key:
            rekey(self._opened.connection, "audit", new_key)
        self._opened = OpenedDatabase(self._opened.connection, new_key, new_key)
        self._evidence = self._evidence.rekey(new_key.derive("evidence"))
