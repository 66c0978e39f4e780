"""The operator's stores, and which store's alerts a person may see (issue 15, item 1).

A chain is one operator: the watchlist, approvals, retention, requests and
erasure are chain-wide. What happens in a store stays with that store's
people: its boxes' alerts, their snapshots (faces of visitors), the precision
figure and the boxes' status. G-SEC-1 (access limited to the persons who need
it): store staff and managers see and judge their own store's alerts only; a
user of the chain office (`User.store_id` None) sees every store's. Another
store's alert answers exactly as an alert that does not exist, so a store's
people cannot learn what happens elsewhere (not even that an id is taken).
"""

from __future__ import annotations

import re
from datetime import datetime

from kernel.errors import NotFoundError, RuleViolationError
from registry.accounts.users import require_role
from registry.audit.trail import Action, AuditTrail
from registry.config import STORE_ID_PATTERN
from registry.domain import Role, Store, User
from registry.repository import StoreRepository, UserStore

_STORE_ID = re.compile(STORE_ID_PATTERN)
MAX_STORE_NAME = 100


def add_store(repo: UserStore, audit: AuditTrail, *, admin: User, store_id: str, name: str,
              now: datetime) -> Store:
    """Register a store of the operator; admins only (G-SEC-1: users, configuration)."""
    require_role(admin, Role.ADMIN)
    if not _STORE_ID.match(store_id):
        raise RuleViolationError(
            "store ids are 1-64 characters: letters, digits, '.', '_' or '-' (not first)")
    name = name.strip()
    if not name or len(name) > MAX_STORE_NAME or not name.isprintable():
        raise RuleViolationError(f"a store's name is 1-{MAX_STORE_NAME} printable characters")
    store = Store(store_id, name)
    with repo.unit_of_work():
        repo.add_store(store, now)  # ConflictError if the id is taken
        audit.record(actor=admin.username, action=Action.STORE_ADD, at=now,
                     details={"store_id": store_id, "name": name})
    return store


def existing_store(repo: StoreRepository, store_id: str) -> Store:
    """The store with this id, or `NotFoundError` naming it."""
    store = repo.store(store_id)
    if store is None:
        raise NotFoundError(f"no store {store_id} (add it with `mamoru store add`)")
    return store


def sees_store(actor: User, store_id: str) -> bool:
    """Whether `actor` may see what happened in `store_id` (G-SEC-1)."""
    return actor.store_id is None or actor.store_id == store_id


def store_in_view(repo: StoreRepository, actor: User, requested: str | None) -> str | None:
    """The store whose alerts `actor` is shown: a store's people their own, whatever they
    ask; the chain office the store asked for, or every store (None).

    A store's person asking for another store gets `NotFoundError`, as for a store that
    does not exist: the answer does not tell which stores there are.
    """
    if requested is not None and not sees_store(actor, requested):
        raise NotFoundError(f"no store {requested}")
    if actor.store_id is not None:
        return actor.store_id
    if requested is not None:
        existing_store(repo, requested)
    return requested
