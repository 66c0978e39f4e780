"""`RegistryRepository` on a chain's PostgreSQL database: the per-aggregate stores, composed.

The same shape as `sqlcipher_repository.SqlCipherRepository` and for the same
reasons (one connection, one transaction depth, call sites unchanged, mypy
checks every signature): each aggregate's queries live in one class under
`registry/storage/postgres/`, implementing one protocol of
`registry/repository.py` over `PostgresStore`. What the SQLCipher file does by
encrypting everything, this back-end does per value: the personal columns
(`postgres.schema.PERSONAL_COLUMNS`) are sealed by the application with a key
derived from the registry's master key, bound to their table, column and row.
"""

from __future__ import annotations

from registry.repository import RegistryRepository
from registry.storage.postgres.alerts import PostgresAlerts
from registry.storage.postgres.audit import PostgresAudit
from registry.storage.postgres.base import FieldSealer, PgConnection, PostgresUnitOfWork
from registry.storage.postgres.breach import PostgresBreach, PostgresStopUse
from registry.storage.postgres.devices import PostgresDevices
from registry.storage.postgres.entries import PostgresEntries, PostgresFaceData, PostgresIndex
from registry.storage.postgres.joint_use import (
    PostgresEmergencyShares,
    PostgresInbound,
    PostgresOutbound,
    PostgresSchemes,
)
from registry.storage.postgres.requests import PostgresRequestDesk, PostgresReviews
from registry.storage.postgres.stores import PostgresStores
from registry.storage.postgres.users import PostgresSessions, PostgresUsers


class PostgresRepository(
    PostgresUnitOfWork, PostgresStores, PostgresUsers, PostgresSessions, PostgresDevices,
    PostgresEntries,
    PostgresFaceData, PostgresIndex, PostgresAlerts, PostgresSchemes, PostgresOutbound,
    PostgresInbound, PostgresEmergencyShares, PostgresAudit, PostgresReviews, PostgresRequestDesk,
    PostgresBreach, PostgresStopUse,
):
    """Every query of the registry on one PostgreSQL connection; commits only in
    `unit_of_work`; personal values sealed before they leave the process."""

    def __init__(self, connection: PgConnection, fields: FieldSealer) -> None:
        super().__init__(connection, fields)


def _satisfies_every_protocol(repo: PostgresRepository) -> RegistryRepository:
    """Never called: mypy --strict checks here that the composition matches each protocol's
    signatures (the contract test checks the same at run time)."""
    return repo
