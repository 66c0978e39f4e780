"""`create_app(host)`: the registry's FastAPI application.

Nothing happens at import. The registry and the face engine are opened once
per app, when the app starts (its lifespan), and closed when it stops; every
request shares them under one lock (`gate.RegistryGate`). The interactive
docs and the OpenAPI schema are not served (the API has exactly the callers
it was built for); `app.openapi()` still describes it, for tests and tools.

    app = create_app(mamoru.wiring.api_host(get_settings()))
    uvicorn.run(app, host="127.0.0.1", port=8443)   # or `mamoru serve`

Everything it needs from the installation comes in the `ApiHost` (`host.py`):
this package never imports `mamoru`.

Who may call what: edge boxes their bearer token (`routes/edge.py`); people
their session cookie, with roles per route (`routes/session.py`, `alerts.py`,
`registrations.py`, `watchlist.py`, `audit.py`); member stores the signature of
the joint-use bundle they push (`joint_use.py`); anyone the public notice
(`notice.py`, whose hash is recorded at start-up when it changed). Every request passes the
rate limit, then the body limit; every HTTPS answer carries HSTS (`hsts.py`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from registry.alerts.queue import MAX_SNAPSHOT_B64_CHARS
from registry.api.deltas import DeltaCache
from registry.api.deps import enforce_guards
from registry.api.errors import install_error_handlers
from registry.api.gate import RegistryGate
from registry.api.host import ApiHost
from registry.api.hsts import StrictTransportSecurity
from registry.api.limits import RateLimits, RequestLimits
from registry.api.routes import (
    alerts,
    audit,
    edge,
    joint_use,
    notice,
    pages,
    registrations,
    session,
    watchlist,
)
from registry.api.uploads import MAX_PHOTO_BYTES, MAX_PHOTOS
from registry.notice.publication import publish_notice

# The largest alert (an 8 MB PNG as base64) plus room for its other fields.
MAX_REQUEST_BYTES = MAX_SNAPSHOT_B64_CHARS + 64 * 1024
# A registration's photos, each at most MAX_PHOTO_BYTES, plus the form's other fields.
MAX_UPLOAD_REQUEST_BYTES = MAX_PHOTOS * MAX_PHOTO_BYTES + 1024 * 1024
# Paths (and everything under them) that take photo uploads; pages add theirs here.
UPLOAD_PATH_PREFIXES = ("/api/v1/proposals", "/api/v1/quality-check", "/propose")
# Where a password is posted: these have their own, lower rate limit.
LOGIN_PATHS = frozenset({"/api/v1/session", "/login"})


def create_app(host: ApiHost) -> FastAPI:
    """The API for the registry `host` opens; opened when the app starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        face_engine = host.open_engine()
        registry = host.open_registry()
        try:
            publish_notice(registry, now=host.clock(), actor="system")  # recorded if it changed
        except BaseException:
            registry.close()
            raise
        try:
            # The edge boxes' reads (token, index version, delta) on a second connection
            # that never waits for a writer's turn (`gate.RegistryGate.reading`), and their
            # status reports on a third (`gate.RegistryGate.report`).
            reader = host.open_registry()
            reader.forbid_writes()
            try:
                reporter = host.open_registry()
            except BaseException:
                reader.close()
                raise
        except BaseException:
            registry.close()
            raise
        gate = RegistryGate(registry, face_engine, reader=reader, reporter=reporter)
        app.state.registry = gate
        app.state.deltas = DeltaCache()
        try:
            yield
        finally:
            app.state.registry = None
            gate.close()
            rate_store.close()

    app = FastAPI(title="mamoru registry", version=host.version, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.host = host
    install_error_handlers(app)
    app.add_middleware(RequestLimits, max_body_bytes=MAX_REQUEST_BYTES,
                       path_limits={
                           **dict.fromkeys(UPLOAD_PATH_PREFIXES, MAX_UPLOAD_REQUEST_BYTES),
                           joint_use.BUNDLES_PATH: joint_use.max_bundle_body(host.registry)})
    # Added last, so it runs first: a refused request costs no body read.
    rate_store = host.rate_limits()  # shared by every worker when several serve
    app.add_middleware(RateLimits, per_minute=host.web.rate_limit_per_minute,
                       login_per_minute=host.web.login_rate_limit_per_minute,
                       login_paths=LOGIN_PATHS, store=rate_store)
    app.add_middleware(StrictTransportSecurity)  # outermost: refusals carry it too
    for module in (edge, joint_use, session, alerts, registrations, watchlist, audit, notice,
                   pages):
        app.include_router(module.router)
    enforce_guards(app)
    return app
