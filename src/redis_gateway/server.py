"""A small HTTP/1.1 server for the gateway's ASGI app: httptools parsing on uvloop.

Why not uvicorn, which the gateway also runs under: measured on the 2-core reference
machine, uvicorn alone costs about 28 µs of CPU per request (an asyncio task, message
dicts and two writes per response), more than the gateway's own work on a GET. This
server keeps one task per connection that runs the app for each request in turn, and
sends each response in one write. It speaks what the gateway needs: HTTP/1.0 and 1.1,
keep-alive, pipelined requests (answered in order), chunked request bodies,
``Expect: 100-continue``; no WebSocket (use uvicorn for that).

It hands the gateway a whole ``Request`` and writes its ``Response``: the same objects
the ASGI adapter (``app.Gateway.__call__``) makes, so the front doors cannot tell the two
servers apart.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections import deque
from typing import Any, Protocol

import httptools

from .http import Request, Response
from .settings import LimitSettings

log = logging.getLogger("redis_gateway.server")


# Limits on what a client may make the server hold before the app sees a request.
MAX_HEADER_BYTES = 64 * 1024
_REASONS = {200: b"OK", 204: b"No Content", 308: b"Permanent Redirect", 400: b"Bad Request",
            401: b"Unauthorized", 403: b"Forbidden", 404: b"Not Found",
            405: b"Method Not Allowed", 413: b"Content Too Large",
            431: b"Request Header Fields Too Large", 500: b"Internal Server Error",
            503: b"Service Unavailable", 504: b"Gateway Timeout"}


class _Request:
    __slots__ = ("body", "headers", "keep_alive", "method", "url", "version")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.method = b""
        self.version = "1.1"
        self.keep_alive = True


class HttpConnection(asyncio.Protocol):
    def __init__(self, app: Handler, server_state: dict[str, Any],
                 limits: LimitSettings) -> None:
        self._app = app
        self._state = server_state
        self._max_body = limits.max_body_bytes
        self._header_timeout = limits.header_timeout
        self._keep_alive_timeout = limits.keep_alive_timeout
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._current: _Request | None = None
        self._header_bytes = 0
        self._body_bytes = 0
        self._ready: deque[_Request] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        # When this connection may be closed for idling or for a slow request head; a
        # sweep in serve() enforces it, so no timer is set per request.
        self.deadline = 0.0
        self._closing = False
        self._client: tuple[str, int] | None = None
        self._local: tuple[str, int] | None = None

    # asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._client = transport.get_extra_info("peername")
        self._local = transport.get_extra_info("sockname")
        self._state["connections"].add(self)
        self._task = asyncio.get_running_loop().create_task(self._serve())
        self.deadline = asyncio.get_running_loop().time() + self._header_timeout

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._state["connections"].discard(self)
        self._wake()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, b"upgrades (WebSocket) are not served here")
        except httptools.HttpParserError as exc:
            self._reject(400, f"malformed HTTP request: {exc}".encode())

    # httptools callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.deadline = asyncio.get_running_loop().time() + self._header_timeout
        self._current = _Request()
        self._header_bytes = self._body_bytes = 0

    def on_url(self, url: bytes) -> None:
        assert self._current is not None
        self._current.url += url
        self._count_header(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._current is not None
        self._current.headers.append((name.lower(), value))
        self._count_header(len(name) + len(value))

    def on_headers_complete(self) -> None:
        request = self._current
        assert request is not None
        request.method = self._parser.get_method()
        request.version = self._parser.get_http_version()
        request.keep_alive = self._parser.should_keep_alive()
        self.deadline = float("inf")  # the app has the request now
        for name, value in request.headers:
            if name == b"expect" and value.lower() == b"100-continue" and self._transport:
                self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        assert self._current is not None
        self._body_bytes += len(body)
        if self._body_bytes > self._max_body:
            self._reject(413, b"the request body is larger than %d bytes "
                              b"(limits.max_body_bytes)" % self._max_body)
            return
        self._current.body.append(body)

    def on_message_complete(self) -> None:
        assert self._current is not None
        if self._closing:  # rejected: the app must not run this request
            return
        self._ready.append(self._current)
        self._current = None
        self._wake()

    # serving -------------------------------------------------------------------------
    def close_if_idle(self) -> None:
        if not self._ready and self._current is None and self._transport is not None:
            self._transport.close()

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            self._reject(431, b"the request's head is larger than 64 KiB")

    def expire(self, now: float) -> None:
        """Close the connection if it sat idle, or sent a request head too slowly."""
        if now > self.deadline and not self._ready and self._transport is not None:
            self._transport.close()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def _reject(self, status: int, message: bytes) -> None:
        """Answer a request the app never sees, then close: the stream is not trusted."""
        if self._transport is None or self._transport.is_closing():
            return
        self._closing = True
        body = b'{"error":"' + message.replace(b'"', b"'") + b'"}'
        self._transport.write(_head(status, [(b"content-type", b"application/json"),
                                             (b"connection", b"close")], len(body)) + body)
        self._transport.close()

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            if not self._ready:
                self._wakeup = loop.create_future()
                await self._wakeup
                self._wakeup = None
                continue
            request = self._ready.popleft()
            await self._run(request)
            if not request.keep_alive or self._state["stopping"]:
                if self._transport is not None:
                    self._transport.close()
                return
            if not self._ready:
                self.deadline = loop.time() + self._keep_alive_timeout

    async def _run(self, incoming: _Request) -> None:
        path, _, query = incoming.url.partition(b"?")
        method = incoming.method.decode("ascii")
        request = Request(method, _decode_path(path), path, query, incoming.headers,
                          b"".join(incoming.body))
        try:
            response = await self._app.handle(request)
        except Exception:  # handle() answers every error itself; this is a last resort
            log.exception("the gateway failed on %s %s", method, request.path)
            response = Response(500, b'{"error":"internal gateway error; see the log"}',
                                [(b"content-type", b"application/json")])
        if self._transport is None or self._transport.is_closing():
            return
        extra = [] if incoming.keep_alive else [(b"connection", b"close")]
        head = _head(response.status, [*response.headers, *extra], len(response.body),
                     incoming.version)
        # HEAD: the length of the body a GET would have had, and no body.
        self._transport.write(head if method == "HEAD" else head + response.body)


def _decode_path(raw: bytes) -> str:
    if b"%" not in raw:
        return raw.decode("latin-1")
    from urllib.parse import unquote

    return unquote(raw.decode("latin-1"))


def _head(status: int, headers: list[tuple[bytes, bytes]], length: int | None,
          version: str = "1.1") -> bytes:
    lines = [b"HTTP/%s %d %s" % (version.encode(), status, _REASONS.get(status, b"Status"))]
    lines += [name + b": " + value for name, value in headers]
    if length is not None:
        lines.append(b"content-length: %d" % length)
    return b"\r\n".join(lines) + b"\r\n\r\n"


class Handler(Protocol):
    async def handle(self, request: Request) -> Response: ...
    async def warm_up(self) -> None: ...
    async def close(self) -> None: ...


async def serve(app: Handler, host: str, port: int, limits: LimitSettings) -> None:
    """Run until SIGINT/SIGTERM, then finish the requests in flight and close the app."""
    loop = asyncio.get_running_loop()
    state: dict[str, Any] = {"connections": set(), "stopping": False}
    await app.warm_up()
    server = await loop.create_server(lambda: HttpConnection(app, state, limits), host,
                                      port, backlog=2048)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def sweep() -> None:
        while True:
            await asyncio.sleep(1.0)
            now = loop.time()
            for conn in list(state["connections"]):
                conn.expire(now)

    sweeper = loop.create_task(sweep())
    try:
        await stop.wait()
    finally:
        sweeper.cancel()
        state["stopping"] = True
        server.close()
        for conn in list(state["connections"]):
            conn.close_if_idle()
        await server.wait_closed()
        await app.close()
