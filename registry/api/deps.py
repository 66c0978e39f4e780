"""What a route can ask for: the opened registry and who is calling.

Handlers read as contracts, e.g. ``post_alert(payload: AlertIn, ctx: ContextDep,
device: CurrentDevice)``. Deny by default: every route must depend on one of
`GUARDS` (directly, through its router, or through another dependency) or be
marked `allow_public`; `create_app` refuses to build an app with a route that
does neither. The people login of a later issue adds `current_user` to `GUARDS`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from registry.context import RegistryContext
from registry.devices import authenticate_device
from registry.domain import Device
from registry.errors import AuthenticationError


class RegistryGate:
    """The app's one opened registry, and the lock that serialises its use.

    One SQLCipher connection serves the whole app. Sync routes run in a thread
    pool, so a request holds the lock for as long as it uses the registry;
    writers additionally take `ctx.writing()`, which serialises them with the
    CLI and the timers running in other processes.
    """

    def __init__(self, ctx: RegistryContext) -> None:
        self._ctx = ctx
        self._lock = threading.Lock()

    @contextmanager
    def use(self) -> Iterator[RegistryContext]:
        with self._lock:
            yield self._ctx

    def close(self) -> None:
        with self._lock:
            self._ctx.close()


def get_gate(request: Request) -> RegistryGate:
    gate = getattr(request.app.state, "registry", None)
    if not isinstance(gate, RegistryGate):
        raise RuntimeError("the registry is not open: the app was started without its lifespan")
    return gate


def get_context(request: Request) -> Iterator[RegistryContext]:
    """The registry for one request, held under the app's lock until the route returns."""
    with get_gate(request).use() as ctx:
        yield ctx


# scope="function": the lock is released when the route returns, before the response is sent.
ContextDep = Annotated[RegistryContext, Depends(get_context, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="the device token from `mamoru device add`")
_REFUSED = "unknown, disabled or missing device token"


def current_device(
    ctx: ContextDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Device:
    """The active edge box whose `Authorization: Bearer <token>` this request carries."""
    if credentials is None:
        raise AuthenticationError(_REFUSED)
    return authenticate_device(ctx, credentials.credentials)


CurrentDevice = Annotated[Device, Depends(current_device)]

# Dependencies that establish who is calling; every route needs one (or `allow_public`).
GUARDS: frozenset[Callable[..., Any]] = frozenset({current_device})

_F = TypeVar("_F", bound=Callable[..., Any])
_PUBLIC_MARK = "__mamoru_public__"


def allow_public(endpoint: _F) -> _F:
    """Mark a route as callable by anyone (e.g. the store notice page). Use sparingly."""
    setattr(endpoint, _PUBLIC_MARK, True)
    return endpoint


def _guarded(dependant: Dependant) -> bool:
    return dependant.call in GUARDS or any(_guarded(d) for d in dependant.dependencies)


def unguarded_routes(app: FastAPI) -> list[str]:
    """Routes that name no caller and are not marked public."""
    return [
        f"{','.join(sorted(route.methods or ()))} {route.path}"
        for route in app.routes
        if isinstance(route, APIRoute)
        and not getattr(route.endpoint, _PUBLIC_MARK, False)
        and not _guarded(route.dependant)
    ]


def enforce_guards(app: FastAPI) -> None:
    """Refuse to build an app with a route anyone could call by accident."""
    open_routes = unguarded_routes(app)
    if open_routes:
        raise RuntimeError(
            "routes without an authentication guard (add one of deps.GUARDS, or mark the "
            f"route with allow_public): {', '.join(open_routes)}"
        )
