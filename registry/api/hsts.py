"""`Strict-Transport-Security` on every HTTPS answer (pure ASGI, outermost).

A browser that has once reached the registry over HTTPS then refuses plain
HTTP to that host for a year, so a network attacker cannot strip the tablet
down to HTTP and read the session cookie or the pages (G-SEC-2: leak prevention). Browsers
ignore the header on a connection whose certificate they did not accept, and
plain-HTTP answers (`--insecure-http`, loopback only) do not carry it: it
would mean nothing there. No `includeSubDomains`: other services of the
store may live under the registry's host name.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HSTS_VALUE = "max-age=31536000"


class StrictTransportSecurity:
    """Adds `Strict-Transport-Security` to the answers of HTTPS requests, refusals included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("scheme") != "https":
            await self.app(scope, receive, send)
            return

        async def send_with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).setdefault("strict-transport-security", HSTS_VALUE)
            await send(message)

        await self.app(scope, receive, send_with_hsts)
