"""graphql-transport-ws on the built-in server's WebSocket (``websocket.py``).

That connection pushes each client message in (``receive``) and says when the socket is
gone (``end``); ``GraphQLWebSocket`` pulls messages. A small bounded queue joins them, so
the connection's own back-pressure (it stops reading while messages wait) still holds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from .operations import Runner
from .transport_ws import SUBPROTOCOL, GraphQLWebSocket

__all__ = ["SUBPROTOCOL", "GraphQLSession"]


class _PulledSocket:
    def __init__(self, queue: asyncio.Queue[str | bytes | None],
                 send: Callable[[str], Awaitable[None]],
                 close: Callable[[int, str], Awaitable[None]]) -> None:
        self._queue, self._send, self._close = queue, send, close

    async def receive(self) -> str | bytes | None:
        return await self._queue.get()

    async def send(self, text: str) -> None:
        await self._send(text)

    async def close(self, code: int, reason: str) -> None:
        await self._close(code, reason)


class GraphQLSession:
    """The session interface of ``streams/ws.py`` (start, receive, end) for GraphQL."""

    def __init__(self, endpoint: Runner, send: Callable[[str], Awaitable[None]],
                 close: Callable[[int, str], Awaitable[None]], token: str | None, *,
                 max_operations: int, token_recheck: float) -> None:
        self._queue: asyncio.Queue[str | bytes | None] = asyncio.Queue(16)
        self._protocol = GraphQLWebSocket(endpoint, _PulledSocket(self._queue, send, close),
                                          handshake_token=token,
                                          max_operations=max_operations,
                                          token_recheck=token_recheck)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._protocol.run())

    async def receive(self, data: str | bytes) -> None:
        await self._queue.put(data)

    async def end(self) -> None:
        """The socket is gone: the protocol stops, its operations with it."""
        if self._task is None:
            return
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
