"""Named staff, their web sessions and the login lockout, on PostgreSQL (issue 15).

Mirrors `registry.storage.sqlcipher.users`. What does not map 1:1:

- **Roles.** SQLCipher keeps one `users.role`; the chain schema holds roles in
  `user_roles`, one per store or one chain-wide (`store_id` NULL). The
  protocols know one role per user (G-SEC-1) scoped to the user's store
  (issue 15, item 1), so that role is the row of `user_roles` for the user's
  own store (`users.store_id`, NULL for the chain office: the chain-wide row):
  `add_user` writes both in one statement, `set_role` changes it, and every
  read takes the role from it. One role per person keeps the rule "who may
  see what" a single comparison; a person working for two stores is two
  accounts, each with its own audit trail of actions.
- **Nothing personal is sealed here.** User names stay text (the login lookup
  key and the audit trail's actor, see `schema`); password hashes, session ids
  (SHA-256 of the cookie's token), CSRF tokens and the lockout's
  `name_sha256` (as the protocol passes it) are not personal data in the clear.
- **Times** are checked the way `registry.clock.to_text` checks them on
  SQLCipher (aware, inside 2000..2199 UTC: the same `TimestampError`), then
  travel as `timestamptz` and come back as aware UTC datetimes.
- **Ordering** of text uses `COLLATE "C"`: byte order, as SQLite compares text,
  whatever locale the chain's database was created with.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kernel.errors import NotFoundError
from registry.clock import checked
from registry.domain import LoginFailures, Role, User, WebSession
from registry.storage.postgres.base import PostgresStore, utc

# A user's one role is the row of `user_roles` for the user's own store (NULL: chain-wide).
_USER_SELECT = (
    "SELECT u.user_id, u.username, r.role, u.trained_at, u.active, u.store_id FROM users u "
    "JOIN user_roles r ON r.user_id = u.user_id AND r.store_id IS NOT DISTINCT FROM u.store_id"
)
_SESSION_COLUMNS = "session_id, user_id, created_at, last_seen_at, csrf_token, expires_at"


def _at(moment: datetime) -> datetime:
    """A NOT NULL timestamptz read back, in UTC."""
    return moment.astimezone(UTC)


def _user(row: Any) -> User:
    return User(user_id=int(row[0]), username=row[1], role=Role(row[2]),
                trained_at=utc(row[3]), active=bool(row[4]), store_id=row[5])


def _web_session(row: Any) -> WebSession:
    return WebSession(session_id=row[0], user_id=int(row[1]), created_at=_at(row[2]),
                      last_seen_at=_at(row[3]), csrf_token=row[4], expires_at=_at(row[5]))


class PostgresUsers(PostgresStore):
    """`UserRepository`: `users` and each user's row of `user_roles` for their store."""

    def add_user(self, username: str, role: Role, password_hash: str, now: datetime,
                 store_id: str | None = None) -> User:
        # One statement, so the user never exists without its role, in a unit of work or not.
        row = self._one(
            "WITH added AS (INSERT INTO users (username, password_hash, created_at, store_id) "
            "VALUES (%s, %s, %s, %s) RETURNING user_id, store_id) "
            "INSERT INTO user_roles (user_id, store_id, role) "
            "SELECT user_id, store_id, %s FROM added RETURNING user_id",
            (username, password_hash, checked(now), store_id, role.value),
        )
        return User(int(row[0]), username, role, None, True, store_id)

    def user_by_name(self, username: str) -> User | None:
        row = self._one(f"{_USER_SELECT} WHERE u.username = %s", (username,))
        return _user(row) if row else None

    def user_by_id(self, user_id: int) -> User | None:
        row = self._one(f"{_USER_SELECT} WHERE u.user_id = %s", (user_id,))
        return _user(row) if row else None

    def password_hash_of(self, username: str) -> str | None:
        row = self._one("SELECT password_hash FROM users WHERE username = %s", (username,))
        return str(row[0]) if row else None

    def set_password_hash(self, user_id: int, password_hash: str) -> None:
        self._db.execute("UPDATE users SET password_hash = %s WHERE user_id = %s",
                         (password_hash, user_id))

    def set_trained(self, user_id: int, at: datetime) -> None:
        self._db.execute("UPDATE users SET trained_at = %s WHERE user_id = %s",
                         (checked(at), user_id))

    def set_role(self, user_id: int, role: Role) -> None:
        self._db.execute(
            "UPDATE user_roles r SET role = %s FROM users u WHERE u.user_id = r.user_id "
            "AND r.user_id = %s AND r.store_id IS NOT DISTINCT FROM u.store_id",
            (role.value, user_id))

    def set_active(self, user_id: int, active: bool) -> None:
        self._db.execute("UPDATE users SET active = %s WHERE user_id = %s", (active, user_id))

    def users(self) -> list[User]:
        return [_user(r) for r in self._all(f'{_USER_SELECT} ORDER BY u.username COLLATE "C"')]

    def username_of(self, user_id: int) -> str:
        row = self._one("SELECT username FROM users WHERE user_id = %s", (user_id,))
        if row is None:
            raise NotFoundError(f"no user with id {user_id}")
        return str(row[0])


class PostgresSessions(PostgresStore):
    """`SessionRepository`: the `web_sessions` and `login_failures` tables."""

    def add_web_session(self, session: WebSession) -> None:
        self._db.execute(
            f"INSERT INTO web_sessions ({_SESSION_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)",
            (session.session_id, session.user_id, checked(session.created_at),
             checked(session.last_seen_at), session.csrf_token, checked(session.expires_at)),
        )

    def web_session(self, session_id: str) -> WebSession | None:
        row = self._one(f"SELECT {_SESSION_COLUMNS} FROM web_sessions WHERE session_id = %s",
                        (session_id,))
        return _web_session(row) if row else None

    def touch_web_session(self, session_id: str, at: datetime) -> None:
        self._db.execute("UPDATE web_sessions SET last_seen_at = %s WHERE session_id = %s",
                         (checked(at), session_id))

    def delete_web_session(self, session_id: str) -> None:
        self._db.execute("DELETE FROM web_sessions WHERE session_id = %s", (session_id,))

    def delete_stale_web_sessions(self, *, idle_before: datetime, now: datetime) -> int:
        cursor = self._db.execute(
            "DELETE FROM web_sessions WHERE last_seen_at < %s OR expires_at <= %s",
            (checked(idle_before), checked(now)),
        )
        return int(cursor.rowcount)

    def delete_all_web_sessions(self) -> int:
        return int(self._db.execute("DELETE FROM web_sessions").rowcount)

    def login_failures(self, name_key: str) -> LoginFailures | None:
        row = self._one(
            "SELECT name_sha256, failures, last_failure_at, locked_until FROM login_failures "
            "WHERE name_sha256 = %s",
            (name_key,),
        )
        if row is None:
            return None
        return LoginFailures(row[0], int(row[1]), _at(row[2]), utc(row[3]))

    def record_login_failure(self, name_key: str, at: datetime) -> int:
        row = self._one(
            "INSERT INTO login_failures AS f (name_sha256, failures, last_failure_at) "
            "VALUES (%s, 1, %s) ON CONFLICT (name_sha256) DO UPDATE SET "
            "failures = f.failures + 1, last_failure_at = excluded.last_failure_at "
            "RETURNING failures",
            (name_key, checked(at)),
        )
        return int(row[0])

    def lock_login(self, name_key: str, until: datetime) -> None:
        self._db.execute("UPDATE login_failures SET locked_until = %s WHERE name_sha256 = %s",
                         (checked(until), name_key))

    def clear_login_failures(self, name_key: str) -> None:
        self._db.execute("DELETE FROM login_failures WHERE name_sha256 = %s", (name_key,))

    def prune_login_failures(self, *, last_failure_before: datetime, now: datetime) -> int:
        cursor = self._db.execute(
            "DELETE FROM login_failures WHERE last_failure_at < %s "
            "AND (locked_until IS NULL OR locked_until <= %s)",
            (checked(last_failure_before), checked(now)),
        )
        return int(cursor.rowcount)
