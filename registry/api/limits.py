"""Request size and rate limits and response headers, applied to every request (pure ASGI).

`RequestLimits` is the one reader every request body passes through,
whatever route, form parser or JSON parser asks for it: a declared
`Content-Length` over the path's cap is refused with 413 before a byte is
read, and a chunked body is counted as it streams and cut off with 413 as
soon as it passes the cap. `BodyStream` reads such a body piece by piece for
a route that must look at its first bytes before deciding to read more
(joint-use bundles: who signed them). Every answer carries
`Cache-Control: no-store` (alerts and the index must not linger in a
proxy's or a browser's cache) and `X-Content-Type-Options: nosniff`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.rate_limits import MemoryRateLimitStore, RateLimitStore

_HEADERS = (("cache-control", "no-store"), ("x-content-type-options", "nosniff"))


class BodyTooLargeError(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodyStream:
    """A request body read in order, in pieces no larger than asked for.

    Sits on the body as `RequestLimits` lets it through (so the path's cap
    still holds); `read_exactly(n)` returns the next n bytes, and `at_end()`
    says whether the sender stopped there. Nothing beyond what was asked for
    is kept, so a route can refuse a body after its first bytes.
    """

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()
        self._ended = False

    async def _fill(self, wanted: int) -> None:
        while len(self._buffer) < wanted and not self._ended:
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                self._ended = True
                break
            self._buffer += chunk

    async def read_exactly(self, size: int) -> bytes:
        """The next `size` bytes, or fewer if the body ends first."""
        await self._fill(size)
        if size >= len(self._buffer):  # the common case: hand over the buffer, no second copy
            piece, self._buffer = bytes(self._buffer), bytearray()
            return piece
        with memoryview(self._buffer) as view:
            piece = bytes(view[:size])
        del self._buffer[:size]
        return piece

    async def at_end(self) -> bool:
        """True when nothing follows what was read (reads at most one more piece to know)."""
        await self._fill(1)
        return not self._buffer


class RequestLimits:
    """Refuse bodies over `max_body_bytes` with 413; add the no-store headers.

    `path_limits` gives paths under the given prefixes their own limit,
    larger (photo uploads) or smaller (joint-use bundles, whose limit is the
    store's setting); every other path keeps `max_body_bytes`.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int,
                 path_limits: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.path_limits = dict(path_limits or {})

    def _limit_for(self, path: str) -> int:
        for prefix, limit in self.path_limits.items():
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return limit
        return self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope.get("path", ""))
        declared = _content_length(scope)
        if declared == -1:
            await _answer(send, 400, b'{"detail":"malformed Content-Length header"}')
            return
        if declared is not None and declared > limit:
            await _answer(send, 413, _too_large(limit))
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
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
            await _answer(send, 413, _too_large(limit))


class RateLimits:
    """At most so many requests per client address in any 60 seconds; then 429.

    Login attempts (POST to one of `login_paths`) have their own, lower limit:
    with the per-name lockout it keeps password guessing slow from any one
    address. The counts live in `store` (`rate_limit_store`): by default in
    this process (a restart forgets them), or in a store every API worker
    shares, so N workers do not let N times the limit through.
    """

    def __init__(self, app: ASGIApp, *, per_minute: int, login_per_minute: int,
                 login_paths: frozenset[str],
                 clock: Callable[[], float] = time.monotonic,
                 store: RateLimitStore | None = None) -> None:
        self.app = app
        self.per_minute = per_minute
        self.login_per_minute = login_per_minute
        self.login_paths = login_paths
        self.store: RateLimitStore = store if store is not None else MemoryRateLimitStore(clock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = str(client[0]) if client else "unknown"
        login = scope.get("method") == "POST" and scope.get("path") in self.login_paths
        bucket, limit = ("login", self.login_per_minute) if login else ("all", self.per_minute)
        retry_after = await self.store.admit(f"{bucket}|{address}", limit)
        if retry_after is not None:
            body = b'{"detail":"too many requests from this address; try again in %d s"}' % (
                retry_after)
            await _answer(send, 429, body, extra=((b"retry-after", str(retry_after).encode()),))
            return
        await self.app(scope, receive, send)


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


async def _answer(send: Send, status: int, body: bytes,
                  extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), *extra]
    headers += [(n.encode(), v.encode()) for n, v in _HEADERS]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
