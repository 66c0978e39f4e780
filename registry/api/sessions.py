"""Logins over HTTP: the session cookie, the CSRF token's header and field (G-SEC-1/2).

The rules (lockout, session lifetime, CSRF comparison) are in
`registry.accounts.sessions`; this module carries them over HTTP. The cookie
`mamoru_session` carries the session's random token; every state-changing
request of a session must carry its CSRF token (`X-CSRF-Token` header or
`csrf_token` form field): the cookie is also SameSite=Strict, the token is the
second, independent defence.

    issued = await log_in(gate, settings.web, username=name, password=pw, now=utc_now())
    set_session_cookie(response, issued.token)
"""

from __future__ import annotations

from datetime import datetime

import anyio.to_thread
from fastapi import Response

from registry.accounts.sessions import (
    CsrfError,
    IssuedSession,
    SessionUser,
    conclude_login,
    csrf_matches,
)
from registry.accounts.users import check_password
from registry.api.gate import RegistryGate
from registry.config import WebSettings

COOKIE_NAME = "mamoru_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
async def log_in(gate: RegistryGate, web: WebSettings, *, username: str, password: str,
                 now: datetime) -> IssuedSession:
    """Check the password and start a session; `AuthenticationError` with one generic message.

    The argon2 check runs in a worker thread without holding the registry, so a
    burst of login attempts does not hold up alerts from the edge boxes.
    """
    stored = await gate.run(lambda ctx: ctx.repo.password_hash_of(username))
    password_ok = await anyio.to_thread.run_sync(check_password, stored, password)
    return await gate.run(lambda ctx: conclude_login(ctx, web, username=username,
                                                     password_ok=password_ok, now=now))


def require_csrf(current: SessionUser, method: str, submitted: str | None) -> None:
    if method.upper() not in SAFE_METHODS and not csrf_matches(current.session, submitted):
        raise CsrfError(
            f"missing or wrong CSRF token: send the session's token in the {CSRF_HEADER} "
            f"header or the {CSRF_FIELD} form field"
        )


def set_session_cookie(response: Response, token: str) -> None:
    """HttpOnly (no script reads it), Secure (HTTPS; browsers also accept it on
    http://localhost), SameSite=Strict (no other site's page can send it), whole site."""
    response.set_cookie(COOKIE_NAME, token, httponly=True, secure=True, samesite="strict",
                        path="/")


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE_NAME, path="/", secure=True, httponly=True,
                           samesite="strict")
