"""Responses whose body is produced as it goes (Server-Sent Events): the plumbing for both
servers.

A front door returns a ``StreamingResponse``; its ``stream`` is an async iterator of
chunks, closed (``aclose``) however the response ends, so what it holds (a subscription,
a reserved Redis connection) is released when the client goes away.

- The built-in server (``http_connection.py``) writes it with chunked transfer encoding, waiting
  while the client does not read (its transport's pause_writing/resume_writing), and
  cancels it when the connection is lost. The request/response path pays one type check.
- Under ASGI (uvicorn), ``send_asgi`` sends ``http.response.body`` messages with
  ``more_body`` and watches ``receive`` for ``http.disconnect``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from .http import Headers, Receive, Response, Send

EVENT_STREAM_HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    # Proxies (nginx) buffer responses unless told not to: events would arrive late.
    (b"x-accel-buffering", b"no"),
]
# An SSE comment: sent while a stream is idle, so that proxies and clients see it alive.
KEEPALIVE_COMMENT = b": keepalive\n\n"


class StreamingResponse(Response):
    __slots__ = ("stream",)

    def __init__(self, status: int, headers: Headers, stream: AsyncIterator[bytes]) -> None:
        super().__init__(status, b"", headers)
        self.stream = stream


async def close_stream(stream: AsyncIterator[bytes]) -> None:
    aclose: Callable[[], Awaitable[Any]] | None = getattr(stream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


async def write_chunked(write: Callable[[bytes], None], writable: Callable[[], Awaitable[bool]],
                        stream: AsyncIterator[bytes], chunked: bool) -> None:
    """Each chunk of ``stream`` written as it comes; ``writable()`` waits while the client
    does not read and says False once the connection is gone. HTTP/1.0 clients get the
    bytes as they are (the end of the connection ends the body)."""
    try:
        async for chunk in stream:
            if not chunk:
                continue
            if not await writable():
                return
            write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
        if chunked and await writable():
            write(b"0\r\n\r\n")
    finally:
        await close_stream(stream)


async def send_asgi(response: StreamingResponse, receive: Receive, send: Send) -> None:
    """The response under an ASGI server; ends when the stream does or the client leaves."""
    await send({"type": "http.response.start", "status": response.status,
                "headers": response.headers})

    async def pump() -> None:
        async for chunk in response.stream:
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    pumping = asyncio.ensure_future(pump())
    watching = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait([pumping, watching], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pumping, watching):
            task.cancel()
        await asyncio.gather(pumping, watching, return_exceptions=True)
        await close_stream(response.stream)
