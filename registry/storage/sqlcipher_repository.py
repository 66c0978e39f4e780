"""`RegistryRepository` on the embedded SQLCipher files: the per-aggregate stores, composed.

Each aggregate's queries live in its own class under `registry/storage/sqlcipher/`
(users.py, entries.py, alerts.py, ...), implementing one small protocol of
`registry/repository.py` over a shared `SqlCipherStore` base that holds the
connection. `SqlCipherRepository` composes them by multiple inheritance rather
than by holding one object per aggregate and forwarding to it, because:

- every store must see the *same* connection and the *same* transaction depth:
  with one object there is one `_db` and one `_depth`, so `rebind()` after a
  restore reaches every aggregate at once and a nested `unit_of_work()` joins
  the outer transaction whichever aggregate writes inside it;
- call sites stay as they are (`ctx.repo.add_user(...)`), and mypy --strict
  checks each method's real signature, which ~90 hand-written forwarders or a
  `__getattr__` would either duplicate or hide;
- the stores have disjoint method names (the contract test checks it), so the
  method resolution order never has to pick between two implementations.

The request desk's store is the exception: its method names (`add`, `get`, `all`)
are its own, so it is reached as `requests`, a `SqlCipherRequests` on the current
connection.
"""

from __future__ import annotations

from registry.repository import RegistryRepository
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


class SqlCipherRepository(
    SqlCipherUnitOfWork, SqlCipherStores, SqlCipherUsers, SqlCipherSessions, SqlCipherDevices,
    SqlCipherEntries,
    SqlCipherFaceData, SqlCipherIndex, SqlCipherAlerts, SqlCipherSchemes, SqlCipherOutbound,
    SqlCipherInbound, SqlCipherEmergencyShares, SqlCipherAudit, SqlCipherReviews, SqlCipherBreach,
    SqlCipherStopUse,
):
    """Every query of the registry, on one connection; commits only in `unit_of_work`."""

    @property
    def requests(self) -> SqlCipherRequests:
        """The desk's store on the current connection (a restore rebinds it)."""
        return SqlCipherRequests(self._db)


def _satisfies_every_protocol(repo: SqlCipherRepository) -> RegistryRepository:
    """Never called: mypy --strict checks here that the composition matches each protocol's
    signatures (the contract test checks the same at run time, for any back-end)."""
    return repo
