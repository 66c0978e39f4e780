"""Request size limit and response headers, applied to every request (pure ASGI).

The body is read before any route can check who is calling, so its size is
capped here: a declared `Content-Length` over the limit is refused before a
byte is read, and a chunked body is cut off as soon as it passes the limit.
Every answer carries `Cache-Control: no-store` (alerts and the index must not
linger in a proxy's or a browser's cache) and `X-Content-Type-Options: nosniff`.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_HEADERS = (("cache-control", "no-store"), ("x-content-type-options", "nosniff"))


class BodyTooLargeError(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class RequestLimits:
    """Refuse bodies over `max_body_bytes` with 413; add the no-store headers."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            await _answer(send, 400, b'{"detail":"malformed Content-Length header"}')
            return
        if declared is not None and declared > self.max_body_bytes:
            await _answer(send, 413, _too_large(self.max_body_bytes))
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLargeError(self.max_body_bytes)
            return message

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in _HEADERS:
                    headers.setdefault(name, value)
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except BodyTooLargeError:
            if started:
                raise
            await _answer(send, 413, _too_large(self.max_body_bytes))


def _too_large(limit: int) -> bytes:
    return b'{"detail":"the request body is larger than %d bytes"}' % limit


def _content_length(scope: Scope) -> int | None:
    """The declared length, None if absent, -1 if it is not a number."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return -1
            return length if length >= 0 else -1
    return None


async def _answer(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    headers += [(n.encode(), v.encode()) for n, v in _HEADERS]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
