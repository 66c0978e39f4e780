"""The storage back-ends the repository contract runs on (issue 15, item 5).

A behaviour test takes the `backend` fixture (tests/conftest.py) and opens a
repository from it: on SQLCipher the full `SqlCipherRepository` on real
encrypted files, on PostgreSQL the stores it names, composed over one
connection of the application role to a freshly migrated database of the
session's throw-away cluster (TLS, SCRAM, least privilege). The same
assertions then hold on both, or the test names the back-end that broke them.

    def test_x(backend: Backend) -> None:
        repo = backend.open(PostgresUsers, PostgresSessions)
        with repo.unit_of_work():
            ...
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.keys.master import new_master_key
from registry.storage.database import open_registry_database
from registry.storage.postgres.base import FieldSealer, PostgresUnitOfWork, prepare_session
from registry.storage.postgres.cluster import ThrowawayCluster
from registry.storage.postgres.schema import migrate
from registry.storage.sqlcipher_repository import SqlCipherRepository

BACKEND_NAMES = ("sqlcipher", "postgres")


@dataclass
class Backend:
    """One back-end for one test; everything it opened is closed by the fixture."""

    name: str
    tmp_path: Path
    cluster: Callable[[], ThrowawayCluster]  # started only when a PostgreSQL test asks
    stack: ExitStack = field(default_factory=ExitStack)

    def open(self, *postgres_stores: type) -> Any:
        """A repository: SQLCipher's whole one, or PostgreSQL's `postgres_stores` composed."""
        if self.name == "sqlcipher":
            return self._sqlcipher()
        return self._postgres(postgres_stores)

    def _sqlcipher(self) -> SqlCipherRepository:
        folder = self.tmp_path / f"sqlcipher-{secrets.token_hex(4)}"
        folder.mkdir()
        opened = open_registry_database(folder / "registry.db", folder / "audit.db",
                                        [new_master_key()], create=True)
        self.stack.callback(opened.connection.close)
        return SqlCipherRepository(opened.connection)

    def _postgres(self, stores: tuple[type, ...]) -> Any:
        if not stores:
            raise TypeError("name the PostgreSQL stores this test exercises")
        database = self.cluster().create_database(f"c{secrets.token_hex(6)}")
        with database.connect_owner() as owner:
            migrate(owner, app_role=database.app)
        connection = prepare_session(database.connect_app())
        self.stack.callback(connection.close)
        if any(issubclass(store, PostgresUnitOfWork) for store in stores):
            bases = stores  # already composed (PostgresRepository): used as it is
        else:
            bases = (PostgresUnitOfWork, *stores)
        composed = type("PostgresUnderTest", bases, {})
        return composed(connection, FieldSealer(new_master_key().derive("database-fields")))
