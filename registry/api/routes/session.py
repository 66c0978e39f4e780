"""A person's session: log in, who am I (and the CSRF token), log out.

`POST /api/v1/session` takes JSON `{"username", "password"}` or the same two
form fields and answers with the session (and its CSRF token) and the
`mamoru_session` cookie. A wrong name, a wrong password and a locked name all
get the same 401. `GET` tells who is logged in; `DELETE` logs out (it needs
the CSRF token, like every state-changing request).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request, Response
from pydantic import ValidationError

from kernel.errors import PermissionDeniedError, RuleViolationError
from registry.accounts.sessions import IssuedSession, SessionUser, log_out
from registry.api.deps import (
    ContextDep,
    CurrentSession,
    GateDep,
    NowDep,
    WebDep,
    allow_public,
    require_roles,
)
from registry.api.schemas import LoginIn, SessionOut
from registry.api.sessions import clear_session_cookie, log_in, set_session_cookie
from registry.domain import Role

router = APIRouter(prefix="/api/v1/session", tags=["session"])

_ANYONE = Depends(require_roles(*Role))
_LOGIN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": LoginIn.model_json_schema()},
            "application/x-www-form-urlencoded": {"schema": LoginIn.model_json_schema()},
        },
    }
}


class CrossSiteLoginError(PermissionDeniedError):
    """A login posted from another site's page (login CSRF)."""


def check_same_origin(request: Request) -> None:
    """Refuse a login that a browser posts from any page but the registry's own (login CSRF).

    Browsers send `Origin` with every POST, so a form (or any other body a
    page could post cross-site) without it, with `null` (a sandboxed frame, a
    file: page) or with another site's is refused. Only a JSON body may come
    without `Origin`: a page elsewhere cannot send one without a CORS preflight
    the app never grants, so that is a script, not a browser.
    """
    origin = request.headers.get("origin")
    if origin is None:
        media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type == "application/json":
            return
        raise CrossSiteLoginError("log in from the registry's own page (no Origin was sent)")
    host = request.headers.get("host", "")
    parts = urlsplit(origin)
    if origin == "null" or parts.netloc != host or parts.scheme != request.url.scheme:
        raise CrossSiteLoginError("log in from the registry's own page")


async def login_credentials(request: Request) -> LoginIn:
    """The credentials from a JSON body or a form, validated alike."""
    content_type = request.headers.get("content-type", "").lower()
    try:
        if content_type.startswith(("application/x-www-form-urlencoded",
                                    "multipart/form-data")):
            form = await request.form()
            data = {k: v for k, v in form.items() if k in ("username", "password")}
            return LoginIn.model_validate(data)
        return LoginIn.model_validate_json(await request.body())
    except ValidationError:
        raise RuleViolationError(
            'send {"username": ..., "password": ...} as JSON or as form fields'
        ) from None
    except Exception:  # a body that does not parse at all
        raise RuleViolationError("the login request is not JSON or a form") from None


def session_out(issued: IssuedSession | SessionUser) -> SessionOut:
    return SessionOut(username=issued.user.username, role=issued.user.role,
                      trained=issued.user.trained, csrf_token=issued.session.csrf_token,
                      expires_at=issued.session.expires_at)


@router.post("", response_model=SessionOut, openapi_extra=_LOGIN_BODY,
             responses={401: {"description": "unknown user, wrong password, or locked"},
                        429: {"description": "too many login attempts from this address"}})
@allow_public
async def create_session(
    request: Request, response: Response, gate: GateDep, web: WebDep, now: NowDep,
    credentials: Annotated[LoginIn, Depends(login_credentials)],
) -> SessionOut:
    """Log in; the answer sets the session cookie and carries the CSRF token."""
    check_same_origin(request)
    issued = await log_in(gate, web, username=credentials.username, password=credentials.password,
                    now=now)
    set_session_cookie(response, issued.token)
    return session_out(issued)


@router.get("", response_model=SessionOut, dependencies=[_ANYONE])
def read_session(current: CurrentSession) -> SessionOut:
    """Who is logged in, and the session's CSRF token."""
    return session_out(current)


@router.delete("", status_code=204, dependencies=[_ANYONE])
def delete_session(current: CurrentSession, ctx: ContextDep, now: NowDep) -> Response:
    """Log out: the session ends on the server and the cookie is cleared."""
    log_out(ctx, current, now=now)
    response = Response(status_code=204)
    clear_session_cookie(response)
    return response
