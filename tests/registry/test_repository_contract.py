"""The repository contract: every storage back-end implements each aggregate's protocol.

Issue 14.3 / 15.5: every test here runs on each back-end of the `backend`
fixture (SQLCipher files; PostgreSQL in the session's throw-away cluster). The
checks are run-time ones (no mypy): `@runtime_checkable` isinstance checks,
and each protocol method's parameters (names, kinds, defaults, annotations)
against the implementation's, so a back-end that renames `now` to `at` or
drops a keyword-only marker fails here, not in a use case months later.
Real SQLCipher files and a real PostgreSQL server, no mocks. Behaviour per
aggregate: tests/registry/test_repository_*.py, on both back-ends too.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

import pytest

from registry.domain import Role, Store
from registry.repository import (
    AlertRepository,
    AuditRepository,
    BreachRepository,
    DeviceRepository,
    EmergencyShareRepository,
    EntryRepository,
    FaceDataRepository,
    InboundRepository,
    IndexRepository,
    OutboundRepository,
    RegistryRepository,
    RequestRepository,
    ReviewRepository,
    SchemeRepository,
    SessionRepository,
    StopUseRepository,
    StoreRepository,
    UnitOfWork,
    UserRepository,
)
from registry.storage.postgres.alerts import PostgresAlerts
from registry.storage.postgres.audit import PostgresAudit
from registry.storage.postgres.base import PostgresUnitOfWork
from registry.storage.postgres.breach import PostgresBreach, PostgresStopUse
from registry.storage.postgres.devices import PostgresDevices
from registry.storage.postgres.entries import PostgresEntries, PostgresFaceData, PostgresIndex
from registry.storage.postgres.joint_use import (
    PostgresEmergencyShares,
    PostgresInbound,
    PostgresOutbound,
    PostgresSchemes,
)
from registry.storage.postgres.requests import (
    PostgresRequestDesk,
    PostgresRequests,
    PostgresReviews,
)
from registry.storage.postgres.stores import PostgresStores
from registry.storage.postgres.users import PostgresSessions, PostgresUsers
from registry.storage.postgres_repository import PostgresRepository
from registry.storage.sqlcipher.alerts import SqlCipherAlerts
from registry.storage.sqlcipher.audit import SqlCipherAudit
from registry.storage.sqlcipher.base import SqlCipherUnitOfWork
from registry.storage.sqlcipher.breach import SqlCipherBreach, SqlCipherStopUse
from registry.storage.sqlcipher.devices import SqlCipherDevices
from registry.storage.sqlcipher.entries import SqlCipherEntries, SqlCipherFaceData, SqlCipherIndex
from registry.storage.sqlcipher.joint_use import (
    SqlCipherEmergencyShares,
    SqlCipherInbound,
    SqlCipherOutbound,
    SqlCipherSchemes,
)
from registry.storage.sqlcipher.requests import SqlCipherRequests, SqlCipherReviews
from registry.storage.sqlcipher.stores import SqlCipherStores
from registry.storage.sqlcipher.users import SqlCipherSessions, SqlCipherUsers
from registry.storage.sqlcipher_repository import SqlCipherRepository
from tests.registry.backends import Backend

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)

# The composite's own parts: the transaction boundary and one protocol per aggregate.
PARTS: tuple[type, ...] = tuple(
    base for base in RegistryRepository.__bases__
    if base is not Protocol and getattr(base, "_is_protocol", False))
AGGREGATES = tuple(p for p in PARTS if p is not UnitOfWork)
EVERY_PROTOCOL = (*PARTS, RequestRepository)

# At most this many methods per protocol: the point of the split is that a back-end
# implements small interfaces; a protocol outgrowing it is an aggregate to split again.
SMALL = 15

# A back-end's own members of its composed class (a restore swaps the connection under it).
BACKEND_ONLY = {"connection", "rebind", "use_fields"}  # use_fields: PostgreSQL key rotation

# Each SQLCipher store and the protocol it implements on its own.
SQLCIPHER_STORES: dict[type, type] = {
    UnitOfWork: SqlCipherUnitOfWork,
    StoreRepository: SqlCipherStores,
    UserRepository: SqlCipherUsers,
    SessionRepository: SqlCipherSessions,
    DeviceRepository: SqlCipherDevices,
    EntryRepository: SqlCipherEntries,
    FaceDataRepository: SqlCipherFaceData,
    IndexRepository: SqlCipherIndex,
    AlertRepository: SqlCipherAlerts,
    SchemeRepository: SqlCipherSchemes,
    OutboundRepository: SqlCipherOutbound,
    InboundRepository: SqlCipherInbound,
    EmergencyShareRepository: SqlCipherEmergencyShares,
    AuditRepository: SqlCipherAudit,
    ReviewRepository: SqlCipherReviews,
    RequestRepository: SqlCipherRequests,
    BreachRepository: SqlCipherBreach,
    StopUseRepository: SqlCipherStopUse,
}


# And the PostgreSQL ones (issue 15): the same protocols, a chain's server database.
POSTGRES_STORES: dict[type, type] = {
    UnitOfWork: PostgresUnitOfWork,
    StoreRepository: PostgresStores,
    UserRepository: PostgresUsers,
    SessionRepository: PostgresSessions,
    DeviceRepository: PostgresDevices,
    EntryRepository: PostgresEntries,
    FaceDataRepository: PostgresFaceData,
    IndexRepository: PostgresIndex,
    AlertRepository: PostgresAlerts,
    SchemeRepository: PostgresSchemes,
    OutboundRepository: PostgresOutbound,
    InboundRepository: PostgresInbound,
    EmergencyShareRepository: PostgresEmergencyShares,
    AuditRepository: PostgresAudit,
    ReviewRepository: PostgresReviews,
    RequestRepository: PostgresRequests,
    BreachRepository: PostgresBreach,
    StopUseRepository: PostgresStopUse,
}
STORES = {"sqlcipher": SQLCIPHER_STORES, "postgres": POSTGRES_STORES}
COMPOSITES: dict[str, type] = {"sqlcipher": SqlCipherRepository, "postgres": PostgresRepository}


@pytest.fixture
def repository(backend: Backend) -> RegistryRepository:
    """The whole repository of each back-end (SQLCipher files, a PostgreSQL database)."""
    composite: RegistryRepository = backend.open(PostgresRepository)
    return composite


def members(protocol: type) -> dict[str, object]:
    """The methods and properties the protocol itself declares (not object's or Protocol's)."""
    return {name: value for name, value in vars(protocol).items()
            if not name.startswith("_") and (callable(value) or isinstance(value, property))}


def _same_signature(declared: Callable[..., object], implemented: Callable[..., object]
                    ) -> list[str]:
    """What differs between the protocol's and the implementation's signature ([] if nothing)."""
    want, got = inspect.signature(declared), inspect.signature(implemented)
    problems = []
    if [(p.name, p.kind, p.default, p.annotation) for p in want.parameters.values()] != [
            (p.name, p.kind, p.default, p.annotation) for p in got.parameters.values()]:
        problems.append(f"parameters {want} != {got}")
    if want.return_annotation != got.return_annotation:
        problems.append(f"returns {want.return_annotation} != {got.return_annotation}")
    return problems


def _mismatches(protocol: type, implementation: object) -> list[str]:
    """Each member of `protocol` on `implementation` (an instance or a class), as declared."""
    owner = implementation if isinstance(implementation, type) else type(implementation)
    problems = []
    for name, declared in members(protocol).items():
        implemented = inspect.getattr_static(implementation, name, None)
        if implemented is None:
            problems.append(f"{protocol.__name__}.{name}: missing")
        elif isinstance(declared, property):
            if not isinstance(implemented, property):
                problems.append(f"{protocol.__name__}.{name}: not a property")
        elif not callable(implemented) or isinstance(implemented, property):
            problems.append(f"{protocol.__name__}.{name}: not a method")
        else:
            problems += [f"{protocol.__name__}.{name}: {p}"
                         for p in _same_signature(declared, getattr(owner, name))]
    return problems


@pytest.mark.parametrize("protocol", EVERY_PROTOCOL, ids=lambda p: p.__name__)
def test_the_repository_satisfies_every_aggregate_protocol(
        repository: RegistryRepository, protocol: type) -> None:
    """Issue 14.3: isinstance and signature-by-signature, per protocol, for every back-end."""
    implementation = repository.requests if protocol is RequestRepository else repository
    assert isinstance(implementation, protocol)
    assert _mismatches(protocol, implementation) == []


def test_the_repository_is_the_composite(repository: RegistryRepository) -> None:
    assert isinstance(repository, RegistryRepository)
    assert _mismatches(RegistryRepository, repository) == []


@pytest.mark.parametrize("name", sorted(STORES))
@pytest.mark.parametrize("protocol", EVERY_PROTOCOL, ids=lambda p: p.__name__)
def test_each_store_implements_its_protocol_on_its_own(name: str, protocol: type) -> None:
    """A store is one aggregate's queries: it needs none of the others to satisfy its protocol."""
    store = STORES[name][protocol]
    assert issubclass(store, protocol)
    assert _mismatches(protocol, store) == []


def test_each_repository_is_composed_of_exactly_its_stores() -> None:
    assert set(SqlCipherRepository.__bases__) == set(SQLCIPHER_STORES.values()) - {
        SqlCipherRequests}
    assert set(PostgresRepository.__bases__) == set(POSTGRES_STORES.values()) - {
        PostgresRequests} | {PostgresRequestDesk}


@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_no_two_stores_of_a_composite_define_the_same_name(name: str) -> None:
    """Composed by inheritance, a helper named alike in two stores would silently resolve to
    one of them for both (found once: two `_seal_reason`s, alerts' and emergency checks')."""
    owners: dict[str, list[str]] = {}
    for store in COMPOSITES[name].__bases__:
        for member in vars(store):
            if not member.startswith("__"):
                owners.setdefault(member, []).append(store.__name__)
    assert {m: where for m, where in owners.items() if len(where) > 1} == {}


def test_the_protocols_are_small_disjoint_and_cover_every_storage_call() -> None:
    """No method in two protocols (one owner per table's writes) and none outside them.

    Every public method of the composed SQLCipher class is declared by some
    protocol, so a service cannot come to depend on a query another back-end
    would not have. Only the connection itself is SQLCipher's own.
    """
    owners: dict[str, list[str]] = {}
    for protocol in EVERY_PROTOCOL:
        assert len(members(protocol)) <= SMALL, protocol.__name__
        for name in members(protocol):
            owners.setdefault(name, []).append(protocol.__name__)
    assert {name: where for name, where in owners.items() if len(where) > 1} == {}
    declared = set(owners) | set(members(RegistryRepository))
    for composite in COMPOSITES.values():
        public = {name for name in dir(composite) if not name.startswith("_")}
        assert public - BACKEND_ONLY == declared - set(members(RequestRepository)), composite


# Behaviour every back-end owes the use cases: one transaction boundary for all aggregates.

def test_a_failed_unit_of_work_leaves_no_aggregate_changed(
        repository: RegistryRepository) -> None:
    with pytest.raises(RuntimeError), repository.unit_of_work():
        repository.add_store(Store("ginza", "Ginza"), T0)
        repository.add_user("alice", Role.STAFF, "hash", T0, "ginza")
        repository.add_device("box-1", "0" * 64, T0, "ginza")
        raise RuntimeError("the audit record could not be written")
    assert repository.user_by_name("alice") is None
    assert repository.device_by_name("box-1") is None
    assert repository.store("ginza") is None


def test_a_nested_unit_of_work_joins_the_outer_one(repository: RegistryRepository) -> None:
    with pytest.raises(RuntimeError), repository.unit_of_work():
        with repository.unit_of_work():
            repository.add_user("bob", Role.STAFF, "hash", T0)
        assert repository.user_by_name("bob") is not None  # visible inside, not yet committed
        raise RuntimeError("a later step of the same use case failed")
    assert repository.user_by_name("bob") is None
    with repository.unit_of_work():
        repository.add_user("bob", Role.STAFF, "hash", T0)
    assert [u.username for u in repository.users()] == ["bob"]
