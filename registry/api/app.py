"""`create_app(settings)`: the registry's FastAPI application.

Nothing happens at import. The registry is opened once per app, when the app
starts (its lifespan), and closed when it stops; every request shares that one
connection under a lock (`deps.RegistryGate`). The interactive docs and the
OpenAPI schema are not served: the API has exactly the callers it was built for.

    app = create_app(get_settings())
    uvicorn.run(app, host="127.0.0.1", port=8443)   # or `mamoru serve`
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from mamoru import __version__
from mamoru.settings import MamoruSettings
from mamoru.wiring import open_registry_from
from registry.alerts import MAX_SNAPSHOT_B64_CHARS
from registry.api.deps import RegistryGate, enforce_guards
from registry.api.errors import install_error_handlers
from registry.api.limits import RequestLimits
from registry.api.routes import edge

# The largest alert (an 8 MB PNG as base64) plus room for its other fields.
MAX_REQUEST_BYTES = MAX_SNAPSHOT_B64_CHARS + 64 * 1024


def create_app(settings: MamoruSettings) -> FastAPI:
    """The API for the registry `settings` point to; opened when the app starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gate = RegistryGate(open_registry_from(settings))
        app.state.registry = gate
        try:
            yield
        finally:
            app.state.registry = None
            gate.close()

    app = FastAPI(title="mamoru registry", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)
    app.add_middleware(RequestLimits, max_body_bytes=MAX_REQUEST_BYTES)
    app.include_router(edge.router)
    enforce_guards(app)
    return app
