"""What a route can ask for: the opened registry, the engine, the time, and who is calling.

Handlers read as contracts, e.g. ``post_alert(payload: AlertIn, ctx: ContextDep,
device: CurrentDevice)`` or ``approve(entry_id: str, ctx: ContextDep,
user: Annotated[User, Depends(require_roles(Role.MANAGER))])``.

Deny by default: every route must depend on a guard, directly, through its
router, or through another dependency, or be marked `allow_public`;
`create_app` refuses to build an app with a route that does neither. The
guards are `current_device` (an edge box's bearer token) and the role checks
made by `require_roles(...)` (a person's session cookie, plus the CSRF token on
state-changing requests). A bare `CurrentUser` is not a guard: a people route
always says which roles may call it, `require_roles(*Role)` for "anyone
logged in".
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

try:  # FastAPI >= 0.130 keeps included routers whole; this yields their effective routes
    from fastapi.routing import iter_route_contexts as _iter_route_contexts
except ImportError:  # pragma: no cover
    _iter_route_contexts = None  # type: ignore[assignment]
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kernel.errors import AuthenticationError
from models.engine import FaceEngine
from registry.accounts.devices import authenticate_device
from registry.accounts.sessions import SessionUser, resolve_session
from registry.accounts.users import require_role
from registry.api.gate import RegistryGate
from registry.api.host import ApiHost
from registry.api.sessions import COOKIE_NAME, CSRF_FIELD, CSRF_HEADER, SAFE_METHODS, require_csrf
from registry.config import WebSettings
from registry.context import RegistryContext
from registry.domain import Device, Role, User
from registry.requests import desk as requests

__all__ = [
    "ContextDep", "CurrentDevice", "CurrentSession", "CurrentUser", "EngineDep",
    "GUARDS",
    "GateDep", "HostDep", "NowDep", "RegistryGate", "WebDep", "allow_public", "current_device",
    "RouteInfo", "api_routes", "current_session", "current_user", "enforce_guards",
    "require_roles", "route_roles", "unguarded_routes",
]


def get_gate(request: Request) -> RegistryGate:
    gate = getattr(request.app.state, "registry", None)
    if not isinstance(gate, RegistryGate):
        raise RuntimeError("the registry is not open: the app was started without its lifespan")
    return gate


async def get_context(request: Request) -> AsyncIterator[RegistryContext]:
    """The registry for one request, held until the route returns; the wait for it is in
    the event loop, not in a pooled thread (see `gate.RegistryGate`)."""
    async with get_gate(request).holding() as ctx:
        yield ctx


# The small dependencies are `async def` though they never wait: FastAPI runs a plain `def`
# dependency in its thread pool, a thread hop per dependency per request (2,000 boxes'
# polls: ~270 requests a second; tests/registry/test_api_edge_reads.py).


async def gate_dependency(request: Request) -> RegistryGate:
    return get_gate(request)


GateDep = Annotated[RegistryGate, Depends(gate_dependency)]
# scope="function": the lock is released when the route returns, before the response is sent.
ContextDep = Annotated[RegistryContext, Depends(get_context, scope="function")]


def get_engine(request: Request, ctx: ContextDep) -> FaceEngine:
    """The face engine, used under the same lock as the registry (it is not thread-safe)."""
    return get_gate(request).engine()


EngineDep = Annotated[FaceEngine, Depends(get_engine)]


def get_host(request: Request) -> ApiHost:
    """What the installation gave the app (`create_app(host)`): settings, factories, clock."""
    host = request.app.state.host
    assert isinstance(host, ApiHost)
    return host


async def host_dependency(request: Request) -> ApiHost:
    return get_host(request)


HostDep = Annotated[ApiHost, Depends(host_dependency)]


async def get_now(host: HostDep) -> datetime:
    """The app's clock (UTC); tests give the app a clock they can move."""
    return host.clock()


NowDep = Annotated[datetime, Depends(get_now)]


async def get_web_settings(host: HostDep) -> WebSettings:
    return host.web


WebDep = Annotated[WebSettings, Depends(get_web_settings)]

# --- edge boxes -----------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="the device token from `mamoru device add`")
_REFUSED = "unknown, disabled or missing device token"


async def current_device(
    gate: GateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Device:
    """The active edge box whose `Authorization: Bearer <token>` this request carries.

    Looked up on the read-only connection (`RegistryGate.reading`), so a box's
    request is authenticated while another request holds the registry: the
    lookup sees every committed disable (no cache), so a disabled box is refused
    by the first request it starts after the disable commits.
    """
    if credentials is None:
        raise AuthenticationError(_REFUSED)
    token = credentials.credentials
    return await gate.read(lambda ctx: authenticate_device(ctx, token))


CurrentDevice = Annotated[Device, Depends(current_device)]

# --- people -----------------------------------------------------------------------

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def submitted_csrf(request: Request) -> str | None:
    """The CSRF token a state-changing request carries (header first, then form field)."""
    if request.method in SAFE_METHODS:
        return None
    header = request.headers.get(CSRF_HEADER)
    if header is not None:
        return header
    if request.headers.get("content-type", "").lower().startswith(_FORM_TYPES):
        try:
            form = await request.form()  # parsed once: the route's own Form fields reuse it
        except Exception:  # a body that does not parse carries no token
            return None
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


def current_session(
    request: Request, csrf: Annotated[str | None, Depends(submitted_csrf)], now: NowDep,
    web: WebDep, ctx: ContextDep,
) -> SessionUser:
    """The caller's live session (cookie `mamoru_session`); CSRF-checked unless GET/HEAD.

    The CSRF token is read (a form body received) before the registry's lock is taken.
    """
    current = resolve_session(ctx, web, token=request.cookies.get(COOKIE_NAME), now=now)
    require_csrf(current, request.method, csrf)
    if current.user.role is Role.MANAGER:  # the nav's badge: overdue requests (G-DSR-2)
        request.state.nav_badges = {"/requests": requests.overdue_count(ctx, now)}
    return current


CurrentSession = Annotated[SessionUser, Depends(current_session)]


def current_user(current: CurrentSession) -> User:
    return current.user


CurrentUser = Annotated[User, Depends(current_user)]

_ROLES_MARK = "__mamoru_roles__"


def require_roles(*roles: Role,
                  check: Callable[[User], None] | None = None) -> Callable[[User], User]:
    """A guard: the logged-in user, if their role is one of `roles` (else 403).

    Use as ``Depends(require_roles(Role.STAFF, Role.MANAGER))`` on a route or
    router; ``require_roles(*Role)`` lets anyone logged in through. Training
    (G-SEC-1) is checked by the services that need it. `check`: a further rule
    of the service behind the route (e.g. `require_overseer`: the chain office
    only), raising `PermissionDeniedError` (403) for a person it refuses.
    """
    if not roles:
        raise ValueError("require_roles needs at least one role")
    allowed = frozenset(roles)

    def role_guard(user: CurrentUser) -> User:
        require_role(user, *roles)
        if check is not None:
            check(user)
        return user

    role_guard.__name__ = "require_" + "_or_".join(sorted(r.value for r in allowed))
    setattr(role_guard, _ROLES_MARK, allowed)
    return role_guard


# Dependencies that establish who is calling; every route needs one (or `allow_public`).
# The role guards that `require_roles` makes count as well (they carry their roles).
GUARDS: frozenset[Callable[..., Any]] = frozenset({current_device})

_F = TypeVar("_F", bound=Callable[..., Any])
_PUBLIC_MARK = "__mamoru_public__"


def allow_public(endpoint: _F) -> _F:
    """Mark a route as callable by anyone (e.g. the login, the store notice). Use sparingly."""
    setattr(endpoint, _PUBLIC_MARK, True)
    return endpoint


def _is_guard(call: Any) -> bool:
    return call in GUARDS or getattr(call, _ROLES_MARK, None) is not None


def _guards_of(dependant: Dependant) -> list[Any]:
    found = [dependant.call] if _is_guard(dependant.call) else []
    for sub in dependant.dependencies:
        found += _guards_of(sub)
    return found


@dataclass(frozen=True)
class RouteInfo:
    """One API route as the app serves it: full path, methods, endpoint, all its dependencies."""

    path: str
    methods: frozenset[str]
    endpoint: Callable[..., Any]
    dependant: Dependant

    @property
    def label(self) -> str:
        return f"{','.join(sorted(self.methods))} {self.path}"


def api_routes(app: FastAPI) -> list[RouteInfo]:
    """Every API route, including those of included routers (with their prefixes and guards).

    Newer FastAPI keeps an included router as one entry of `app.routes`; its
    effective routes (prefix and router dependencies applied) are what the app
    serves, so those are what the guards are checked on.
    """
    found: list[RouteInfo] = []
    if _iter_route_contexts is not None:
        for context in _iter_route_contexts(app.routes):
            if isinstance(context.original_route, APIRoute):
                endpoint = context.endpoint or context.original_route.endpoint
                found.append(RouteInfo(str(context.path), frozenset(context.methods or ()),
                                       endpoint, context.dependant))
        return found
    for route in app.routes:  # pragma: no cover - FastAPI before included-router contexts
        if isinstance(route, APIRoute):
            found.append(RouteInfo(route.path, frozenset(route.methods or ()), route.endpoint,
                                   route.dependant))
    return found


def route_roles(route: RouteInfo) -> frozenset[Role] | str | None:
    """Who may call a route: the roles it allows, "device", "public", or None (unguarded).

    With several role guards on one route, all must pass: the intersection.
    """
    if getattr(route.endpoint, _PUBLIC_MARK, False):
        return "public"
    guards = _guards_of(route.dependant)
    role_sets = [getattr(g, _ROLES_MARK) for g in guards if getattr(g, _ROLES_MARK, None)]
    if role_sets:
        allowed: frozenset[Role] = frozenset(Role)
        for roles in role_sets:
            allowed &= roles
        return allowed
    if guards:
        return "device"
    return None


def unguarded_routes(app: FastAPI) -> list[str]:
    """Routes that name no caller and are not marked public."""
    return [route.label for route in api_routes(app) if route_roles(route) is None]


def enforce_guards(app: FastAPI) -> None:
    """Refuse to build an app with a route anyone could call by accident."""
    open_routes = unguarded_routes(app)
    if open_routes:
        raise RuntimeError(
            "routes without an authentication guard (add one of deps.GUARDS or "
            "require_roles(...), or mark the route with allow_public): "
            f"{', '.join(open_routes)}"
        )
