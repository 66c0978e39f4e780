"""A lean HTTP/1.1 keep-alive client on asyncio streams: what one benchmark process needs to
play 2,000 edge boxes (benchmarks/chain_load.py, chain_erasure.py).

httpx costs ~1-2 ms of CPU per request in the client (request and response
models, header normalisation, its connection pool's bookkeeping): at the
load benchmark's ~270 requests per second that was most of a core, and on a
2-core machine shared with the server the client's event loop ran 6-11 s
late, which the latencies then included. This client does only what a box
does: a few fixed requests with a bearer token, Content-Length bodies, on
keep-alive connections (TLS verified against the server's certificate, or
plain HTTP on loopback), from the store's own source address.

Not a general HTTP client: no redirects, no cookies, no compression.
Responses must carry Content-Length or be chunked (both are what uvicorn
sends). A request on a reused connection that the server had already closed
(nothing received) is sent again once on a new connection: every request a
box makes is safe to repeat (polls are reads; an alert's id makes it idempotent).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

_HEAD_LIMIT = 64 * 1024


class HttpError(Exception):
    """A request that got no HTTP answer; `kind` names it like httpx did (table column)."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.used = False

    def closed(self) -> bool:
        return self.reader.at_eof() or self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()

    async def exchange(self, request: bytes) -> Reply:
        self.writer.write(request)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        if len(head) > _HEAD_LIMIT:
            raise HttpError("RemoteProtocolError", "response head too large")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise HttpError("RemoteProtocolError", f"bad status line {lines[0]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._chunked()
        else:
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Reply(int(parts[1]), headers, body)

    async def _chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")  # no trailers expected
                return b"".join(chunks)
            chunks.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)


class BoxClient:
    """One box: up to `connections` keep-alive connections to one server, one token."""

    def __init__(self, *, host: str, port: int, tls: ssl.SSLContext | None, token: str,
                 local_address: str | None, connections: int, timeout_s: float) -> None:
        self._host, self._port, self._tls = host, port, tls
        self._local = (local_address, 0) if local_address else None
        self._slots = asyncio.Semaphore(connections)
        self._idle: list[_Connection] = []
        self._auth = f"Authorization: Bearer {token}\r\n".encode()
        self._head = f"Host: {host}:{port}\r\n".encode()
        self.timeout_s = timeout_s

    async def _connect(self) -> _Connection:
        try:
            reader, writer = await asyncio.open_connection(
                self._host, self._port, ssl=self._tls, local_addr=self._local,
                limit=_HEAD_LIMIT * 4)
        except (OSError, ssl.SSLError) as exc:
            raise HttpError("ConnectError", str(exc)) from None
        return _Connection(reader, writer)

    def _request(self, method: str, path: str, body: bytes, content_type: str | None) -> bytes:
        lines = [f"{method} {path} HTTP/1.1\r\n".encode(), self._head, self._auth]
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}\r\n".encode())
        if content_type:
            lines.append(f"Content-Type: {content_type}\r\n".encode())
        lines.append(b"\r\n")
        lines.append(body)
        return b"".join(lines)

    async def request(self, method: str, path: str, body: bytes = b"",
                      content_type: str | None = None) -> Reply:
        """One request; `HttpError` when no answer came (timeout, refused, dropped)."""
        raw = self._request(method, path, body, content_type)
        async with self._slots:
            try:
                async with asyncio.timeout(self.timeout_s):
                    return await self._send(raw)
            except TimeoutError:
                raise HttpError("ReadTimeout") from None

    async def _send(self, raw: bytes) -> Reply:
        while self._idle:
            connection = self._idle.pop()
            if connection.closed():
                connection.close()
                continue
            try:
                return self._keep(connection, await connection.exchange(raw))
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                connection.close()
                if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                    raise HttpError("RemoteProtocolError", "response cut short") from None
                break  # the server had closed it: once more on a new connection
            except BaseException:
                connection.close()
                raise
        connection = await self._connect()
        try:
            return self._keep(connection, await connection.exchange(raw))
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as exc:
            connection.close()
            raise HttpError("RemoteProtocolError", type(exc).__name__) from None
        except BaseException:
            connection.close()
            raise

    def _keep(self, connection: _Connection, reply: Reply) -> Reply:
        if not connection.closed():
            self._idle.append(connection)
        return reply

    async def get(self, path: str) -> Reply:
        return await self.request("GET", path)

    async def post(self, path: str, body: bytes, content_type: str = "application/json") -> Reply:
        return await self.request("POST", path, body, content_type)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
