"""Named staff, their roles and their training (G-SEC-1), with argon2 passwords."""

from __future__ import annotations

import re
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from kernel.errors import (
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    RuleViolationError,
)
from registry.audit.trail import Action, AuditTrail
from registry.domain import Role, User
from registry.repository import UserStore

_HASHER = PasswordHasher()
# Verified against when the user does not exist, so a wrong name and a wrong
# password take the same time and give the same answer.
_DUMMY_HASH = _HASHER.hash("mamoru-no-such-user")
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
MIN_PASSWORD_LENGTH = 12


def validate_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise RuleViolationError(f"passwords need at least {MIN_PASSWORD_LENGTH} characters")


def hash_password(password: str) -> str:
    validate_new_password(password)
    return _HASHER.hash(password)


def check_password(stored_hash: str | None, password: str) -> bool:
    """Whether `password` matches `stored_hash`; no hash (no such user) costs the same time.

    Pure CPU, touching no database: the web login runs it outside the registry's lock.
    """
    try:
        _HASHER.verify(stored_hash or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return stored_hash is not None


def authenticate(repo: UserStore, username: str, password: str) -> User:
    """The active user with this name and password, or `AuthenticationError`."""
    stored = repo.password_hash_of(username)
    if not check_password(stored, password):
        raise AuthenticationError("unknown user or wrong password")
    user = repo.user_by_name(username)
    if stored is None or user is None or not user.active:
        raise AuthenticationError("unknown user or wrong password")
    if _HASHER.check_needs_rehash(stored):
        with repo.unit_of_work():
            repo.set_password_hash(user.user_id, _HASHER.hash(password))
    return user


def require_role(user: User, *roles: Role, trained: bool = False) -> None:
    """Refuse unless the user has one of `roles` (and, if asked, recorded training)."""
    if user.role not in roles:
        allowed = " or ".join(r.value for r in roles)
        raise PermissionDeniedError(f"{user.username} is {user.role.value}; this needs {allowed}")
    if trained and not user.trained:
        raise PermissionDeniedError(
            f"{user.username} has no recorded privacy training (G-SEC-1); "
            "an admin records it with `mamoru user train`"
        )


def add_user(repo: UserStore, audit: AuditTrail, *, actor: str, username: str,
             role: Role, password: str, now: datetime, store_id: str | None = None) -> User:
    """Create a named user; only an admin may do this (or `registry init` for the first one).

    `store_id`: the store they work in, whose alerts they see (G-SEC-1); None: the chain
    office, whose role reaches every store (issue 15, item 1).
    """
    if not _USERNAME.match(username):
        raise RuleViolationError(
            "user names are 2-64 characters: lower-case letters, digits, '.', '_' or '-'"
        )
    if store_id is not None and repo.store(store_id) is None:
        raise NotFoundError(f"no store {store_id} (add it with `mamoru store add`)")
    if repo.user_by_name(username) is not None:
        raise RuleViolationError(f"user {username} already exists")
    password_hash = hash_password(password)
    with repo.unit_of_work():
        user = repo.add_user(username, role, password_hash, now, store_id)
        audit.record(actor=actor, action=Action.USER_ADD, at=now,
                     details={"user": username, "role": role.value, "store_id": store_id})
    return user


def record_training(repo: UserStore, audit: AuditTrail, *, admin: User, username: str,
                    now: datetime) -> None:
    require_role(admin, Role.ADMIN)
    user = _existing(repo, username)
    with repo.unit_of_work():
        repo.set_trained(user.user_id, now)
        audit.record(actor=admin.username, action=Action.USER_TRAINED, at=now,
                     details={"user": username})


def change_role(repo: UserStore, audit: AuditTrail, *, admin: User, username: str,
                role: Role, now: datetime) -> None:
    require_role(admin, Role.ADMIN)
    user = _existing(repo, username)
    with repo.unit_of_work():
        repo.set_role(user.user_id, role)
        audit.record(actor=admin.username, action=Action.USER_ROLE, at=now,
                     details={"user": username, "from": user.role.value, "to": role.value})


def disable_user(repo: UserStore, audit: AuditTrail, *, admin: User, username: str,
                 now: datetime) -> None:
    require_role(admin, Role.ADMIN)
    user = _existing(repo, username)
    with repo.unit_of_work():
        repo.set_active(user.user_id, False)
        audit.record(actor=admin.username, action=Action.USER_DISABLED, at=now,
                     details={"user": username})


def _existing(repo: UserStore, username: str) -> User:
    user = repo.user_by_name(username)
    if user is None:
        raise RuleViolationError(f"no user named {username}")
    return user
