"""Staff logins and sessions: the lockout, server-side sessions, the CSRF check (G-SEC-1/2).

A login checks the password (argon2, `registry.accounts.users.check_password`) and
starts a session held by the server in the encrypted registry: the browser's
cookie carries a random 256-bit token, and the database keeps only its SHA-256
as the session id, with the user, when it started and was last used, its
absolute end and its CSRF token. A session ends on logout, after
`web.session_idle_minutes` without a request (`idle_limit`: never earlier, at
most a minute later), `web.session_absolute_hours` after login, or as soon as
its user is disabled.

`web.lockout_failures` consecutive failures for one user name (known or not:
the lockout must not tell which names exist) lock that name for
`web.lockout_minutes`; while locked, even the right password gets the same
generic refusal. Failures are counted by the SHA-256 of the typed name, so a
password typed into the name field is never stored, and forgotten after a day
without failures. The audit trail records each login, logout and lock, never
a password.

This module is the rule; `registry.api.sessions` is the transport (the cookie,
the CSRF header, the registry's lock around the argon2 check).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from kernel.errors import AuthenticationError, PermissionDeniedError
from registry.audit.trail import Action
from registry.clock import to_text
from registry.config import WebSettings
from registry.context import RegistryContext
from registry.domain import User, WebSession

TOKEN_BYTES = 32
_MAX_TOKEN_CHARS = 128  # token_urlsafe(32) is 43 characters
# last_seen_at is written at most this often: a request is not a disk write.
TOUCH_INTERVAL = timedelta(seconds=60)
# A name's failure count is forgotten after this long without a failure (and unlocked).
FAILURE_MEMORY = timedelta(days=1)
LOGIN_REFUSED = "unknown user or wrong password"


class SessionRequiredError(AuthenticationError):
    """No session cookie: the person has not logged in."""


class SessionEndedError(AuthenticationError):
    """The session is unknown, expired, logged out, or its user was disabled."""


class CsrfError(PermissionDeniedError):
    """A state-changing request without the session's CSRF token."""


@dataclass(frozen=True)
class SessionUser:
    """A request's session and the (current, active) user it belongs to."""

    session: WebSession
    user: User


@dataclass(frozen=True)
class IssuedSession:
    """A new session: `token` goes into the cookie and exists nowhere else."""

    token: str
    session: WebSession
    user: User


def idle_limit(web: WebSettings) -> timedelta:
    """How long after its recorded `last_seen_at` a session ends for idleness.

    `last_seen_at` is written at most every TOUCH_INTERVAL, so the session's
    last request may have come up to TOUCH_INTERVAL after it: the session gets
    that much more, so it never ends before `session_idle_minutes` of real
    idleness (and at most TOUCH_INTERVAL after). The one rule for checking a
    session and for sweeping stale ones.
    """
    return timedelta(minutes=web.session_idle_minutes) + TOUCH_INTERVAL


def session_id_of(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _name_key(username: str) -> str:
    return hashlib.sha256(username.encode("utf-8")).hexdigest()


def conclude_login(ctx: RegistryContext, web: WebSettings, *, username: str,
                   password_ok: bool, now: datetime) -> IssuedSession:
    """Second half of `log_in`, under the registry's lock: count, lock, or start the session."""
    key = _name_key(username)
    issued: IssuedSession | None = None
    with ctx.writing(), ctx.repo.unit_of_work():
        ctx.repo.prune_login_failures(last_failure_before=now - FAILURE_MEMORY, now=now)
        ctx.repo.delete_stale_web_sessions(
            idle_before=now - idle_limit(web), now=now)
        record = ctx.repo.login_failures(key)
        if record is not None and record.locked_until is not None and record.locked_until <= now:
            ctx.repo.clear_login_failures(key)  # the lock ran out: start counting afresh
            record = None
        locked = record is not None and record.locked_until is not None
        user = ctx.repo.user_by_name(username) if password_ok else None
        if locked:
            pass  # refused like a wrong password, and not counted again
        elif user is None or not user.active:
            failures = ctx.repo.record_login_failure(key, now)
            if failures >= web.lockout_failures:
                ctx.repo.lock_login(key, now + timedelta(minutes=web.lockout_minutes))
                known = ctx.repo.user_by_name(username) is not None
                ctx.audit.record(actor="system", action=Action.LOGIN_LOCKED, at=now,
                                 details={"user": username if known else None,
                                          "known_user": known, "failures": failures,
                                          "locked_minutes": web.lockout_minutes})
        else:
            ctx.repo.clear_login_failures(key)
            issued = _start_session(ctx, web, user, now)
    if issued is None:
        raise AuthenticationError(LOGIN_REFUSED)
    return issued


def _start_session(ctx: RegistryContext, web: WebSettings, user: User,
                   now: datetime) -> IssuedSession:
    token = secrets.token_urlsafe(TOKEN_BYTES)
    session = WebSession(
        session_id=session_id_of(token), user_id=user.user_id, created_at=now,
        last_seen_at=now, csrf_token=secrets.token_urlsafe(TOKEN_BYTES),
        expires_at=now + timedelta(hours=web.session_absolute_hours),
    )
    ctx.repo.add_web_session(session)
    ctx.audit.record(actor=user.username, action=Action.LOGIN, at=now,
                     details={"session": session.session_id[:16], "role": user.role.value,
                              "expires_at": to_text(session.expires_at)})
    return IssuedSession(token, session, user)


def resolve_session(ctx: RegistryContext, web: WebSettings, *, token: str | None,
                    now: datetime) -> SessionUser:
    """The live session this cookie token names, or `AuthenticationError` (and it is deleted)."""
    if not token:
        raise SessionRequiredError("log in first")
    if len(token) > _MAX_TOKEN_CHARS:
        raise SessionEndedError("your session has ended; log in again")
    session = ctx.repo.web_session(session_id_of(token))
    if session is None:
        raise SessionEndedError("your session has ended; log in again")
    user = ctx.repo.user_by_id(session.user_id)
    idle = now >= session.last_seen_at + idle_limit(web)
    if idle or now >= session.expires_at or user is None or not user.active:
        with ctx.repo.unit_of_work():
            ctx.repo.delete_web_session(session.session_id)
        raise SessionEndedError("your session has ended; log in again")
    if now - session.last_seen_at >= TOUCH_INTERVAL:
        with ctx.repo.unit_of_work():
            ctx.repo.touch_web_session(session.session_id, now)
    return SessionUser(session, user)


def log_out(ctx: RegistryContext, current: SessionUser, *, now: datetime) -> None:
    """End the session now; the cookie's token is worthless from here on."""
    with ctx.writing(), ctx.repo.unit_of_work():
        ctx.repo.delete_web_session(current.session.session_id)
        ctx.audit.record(actor=current.user.username, action=Action.LOGOUT, at=now,
                         details={"session": current.session.session_id[:16]})


def csrf_matches(session: WebSession, submitted: str | None) -> bool:
    """Constant-time comparison of the submitted token with the session's."""
    if not submitted:
        return False
    return hmac.compare_digest(submitted.encode("utf-8"), session.csrf_token.encode("utf-8"))
