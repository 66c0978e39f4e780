"""Named staff, their web sessions and the login lockout, on SQLCipher."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kernel.errors import NotFoundError
from registry.clock import from_text, to_text
from registry.domain import (
    LoginFailures,
    Role,
    User,
    WebSession,
)
from registry.storage.sqlcipher.base import SqlCipherStore

_SESSION_COLUMNS = "session_id, user_id, created_at, last_seen_at, csrf_token, expires_at"


_USER_COLUMNS = "user_id, username, role, trained_at, active, store_id"


def _user(row: Any) -> User:
    return User(
        user_id=row[0], username=row[1], role=Role(row[2]),
        trained_at=from_text(row[3]) if row[3] else None, active=bool(row[4]),
        store_id=row[5],
    )


def _web_session(row: Any) -> WebSession:
    return WebSession(session_id=row[0], user_id=row[1], created_at=from_text(row[2]),
                      last_seen_at=from_text(row[3]), csrf_token=row[4],
                      expires_at=from_text(row[5]))


class SqlCipherUsers(SqlCipherStore):
    """`UserRepository`: the `users` table; `store_id` NULL is the chain office."""

    def add_user(self, username: str, role: Role, password_hash: str, now: datetime,
                 store_id: str | None = None) -> User:
        cursor = self._db.execute(
            "INSERT INTO users (username, role, password_hash, created_at, store_id) "
            "VALUES (?, ?, ?, ?, ?)",
            (username, role.value, password_hash, to_text(now), store_id),
        )
        return User(int(cursor.lastrowid or 0), username, role, None, True, store_id)

    def user_by_name(self, username: str) -> User | None:
        row = self._one(
            f"SELECT {_USER_COLUMNS} FROM users WHERE username = ?",
            (username,),
        )
        return _user(row) if row else None

    def user_by_id(self, user_id: int) -> User | None:
        row = self._one(
            f"SELECT {_USER_COLUMNS} FROM users WHERE user_id = ?",
            (user_id,),
        )
        return _user(row) if row else None

    def password_hash_of(self, username: str) -> str | None:
        row = self._one("SELECT password_hash FROM users WHERE username = ?", (username,))
        return str(row[0]) if row else None

    def set_password_hash(self, user_id: int, password_hash: str) -> None:
        self._db.execute(
            "UPDATE users SET password_hash = ? WHERE user_id = ?", (password_hash, user_id)
        )

    def set_trained(self, user_id: int, at: datetime) -> None:
        self._db.execute(
            "UPDATE users SET trained_at = ? WHERE user_id = ?", (to_text(at), user_id))

    def set_role(self, user_id: int, role: Role) -> None:
        self._db.execute("UPDATE users SET role = ? WHERE user_id = ?", (role.value, user_id))

    def set_active(self, user_id: int, active: bool) -> None:
        self._db.execute("UPDATE users SET active = ? WHERE user_id = ?", (int(active), user_id))

    def users(self) -> list[User]:
        rows = self._db.execute(
            f"SELECT {_USER_COLUMNS} FROM users ORDER BY username"
        )
        return [_user(r) for r in rows]

    def username_of(self, user_id: int) -> str:
        row = self._one("SELECT username FROM users WHERE user_id = ?", (user_id,))
        if row is None:
            raise NotFoundError(f"no user with id {user_id}")
        return str(row[0])


class SqlCipherSessions(SqlCipherStore):
    """`SessionRepository`: the `web_sessions` and `login_failures` tables."""

    def add_web_session(self, session: WebSession) -> None:
        self._db.execute(
            f"INSERT INTO web_sessions ({_SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            (session.session_id, session.user_id, to_text(session.created_at),
             to_text(session.last_seen_at), session.csrf_token, to_text(session.expires_at)),
        )

    def web_session(self, session_id: str) -> WebSession | None:
        row = self._one(
            f"SELECT {_SESSION_COLUMNS} FROM web_sessions WHERE session_id = ?", (session_id,)
        )
        return _web_session(row) if row else None

    def touch_web_session(self, session_id: str, at: datetime) -> None:
        self._db.execute(
            "UPDATE web_sessions SET last_seen_at = ? WHERE session_id = ?",
            (to_text(at), session_id),
        )

    def delete_web_session(self, session_id: str) -> None:
        self._db.execute("DELETE FROM web_sessions WHERE session_id = ?", (session_id,))

    def delete_stale_web_sessions(self, *, idle_before: datetime, now: datetime) -> int:
        cursor = self._db.execute(
            "DELETE FROM web_sessions WHERE last_seen_at < ? OR expires_at <= ?",
            (to_text(idle_before), to_text(now)),
        )
        return int(cursor.rowcount)

    def delete_all_web_sessions(self) -> int:
        return int(self._db.execute("DELETE FROM web_sessions").rowcount)

    def login_failures(self, name_key: str) -> LoginFailures | None:
        row = self._one(
            "SELECT name_sha256, failures, last_failure_at, locked_until FROM login_failures "
            "WHERE name_sha256 = ?",
            (name_key,),
        )
        if row is None:
            return None
        return LoginFailures(row[0], int(row[1]), from_text(row[2]),
                             from_text(row[3]) if row[3] else None)

    def record_login_failure(self, name_key: str, at: datetime) -> int:
        self._db.execute(
            "INSERT INTO login_failures (name_sha256, failures, last_failure_at) "
            "VALUES (?, 1, ?) ON CONFLICT (name_sha256) DO UPDATE SET "
            "failures = failures + 1, last_failure_at = excluded.last_failure_at",
            (name_key, to_text(at)),
        )
        return int(self._one(
            "SELECT failures FROM login_failures WHERE name_sha256 = ?", (name_key,))[0])

    def lock_login(self, name_key: str, until: datetime) -> None:
        self._db.execute(
            "UPDATE login_failures SET locked_until = ? WHERE name_sha256 = ?",
            (to_text(until), name_key),
        )

    def clear_login_failures(self, name_key: str) -> None:
        self._db.execute("DELETE FROM login_failures WHERE name_sha256 = ?", (name_key,))

    def prune_login_failures(self, *, last_failure_before: datetime, now: datetime) -> int:
        cursor = self._db.execute(
            "DELETE FROM login_failures WHERE last_failure_at < ? "
            "AND (locked_until IS NULL OR locked_until <= ?)",
            (to_text(last_failure_before), to_text(now)),
        )
        return int(cursor.rowcount)
