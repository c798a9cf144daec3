"""WebSocket connections of the built-in server: the protocol is wsproto's, the session is
``streams/ws.py``'s (the same one uvicorn's WebSocket runs).

``http_connection.HttpConnection`` hands a connection over once httptools has parsed an upgrade
request for ``/ws``: the transport gets this protocol, which is fed the request's head
again so that wsproto makes the handshake itself. Client messages are taken one at a time
(their replies come in order); while one is being answered, at most ``_MAX_WAITING`` more
are kept and the socket stops being read. While the client does not read what is sent
(pause_writing/resume_writing), sends wait and nothing more is read from it either, not
even a ping (whose pong would queue up); a client that reads nothing for
``limits.write_timeout`` is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import typing
from collections import deque
from collections.abc import Callable
from urllib.parse import urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from .http import query_pairs
from .streams.ws import TOO_BIG, WsHost, WsSession, handshake_format, handshake_token

log = logging.getLogger("redis_gateway.websocket")

_MAX_WAITING = 16


class WebSocketConnection(asyncio.Protocol):
    def __init__(self, host: WsHost, on_lost: Callable[[], None]) -> None:
        self._host = host
        self._on_lost = on_lost
        self._ws = WSConnection(ConnectionType.SERVER)
        self._transport: asyncio.Transport = None  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()
        self._session: WsSession | None = None
        self._parts: list[str | bytes] = []
        self._size = 0
        self._limit = host.settings.streams.max_ws_message_bytes
        self._waiting: deque[str | bytes] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._paused = False
        self._stalled: asyncio.TimerHandle | None = None  # drops a client that reads nothing
        self._lost = False
        self._started = False

    def take_over(self, transport: asyncio.BaseTransport, head: bytes) -> None:
        """Called instead of connection_made: the handshake request is already read."""
        self._transport = typing.cast(asyncio.Transport, transport)
        self.data_received(head)

    # asyncio.Protocol ----------------------------------------------------------------------
    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._stalled is not None:
            self._stalled.cancel()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        if self._worker is not None:
            self._worker.cancel()
        session = self._session
        if session is not None:
            self._loop.create_task(session.end())
        self._on_lost()

    def pause_writing(self) -> None:
        self._paused = True
        self._update_reading()
        self._stalled = self._loop.call_later(self._host.settings.limits.write_timeout,
                                              self._transport.abort)

    def resume_writing(self) -> None:
        self._paused = False
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None
        self._update_reading()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def _update_reading(self) -> None:
        """Read while the client reads what it is sent and few of its messages wait."""
        if self._lost or self._transport.is_closing():
            return
        if self._paused or len(self._waiting) >= _MAX_WAITING:
            self._transport.pause_reading()
        else:
            self._transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        try:
            self._ws.receive_data(data)
            for event in self._ws.events():
                self._event(event)
        except (LocalProtocolError, RemoteProtocolError) as exc:
            log.debug("WebSocket protocol error: %s", exc)
            self._transport.close()

    def _event(self, event: object) -> None:
        if isinstance(event, Request):
            self._accept(event)
        elif isinstance(event, TextMessage | BytesMessage):
            self._size += len(event.data)
            if self._size > self._limit:
                self._close_now(TOO_BIG, f"a message is larger than {self._limit} bytes "
                                         "(streams.max_ws_message_bytes)")
                return
            self._parts.append(event.data if isinstance(event.data, str) else bytes(event.data))
            if event.message_finished:
                data: str | bytes = (
                    "".join(typing.cast(list[str], self._parts)) if isinstance(event, TextMessage)
                    else b"".join(typing.cast(list[bytes], self._parts)))
                self._parts, self._size = [], 0
                self._waiting.append(data)
                if len(self._waiting) >= _MAX_WAITING:
                    self._update_reading()
                if self._worker is None or self._worker.done():
                    self._worker = self._loop.create_task(self._work())
        elif isinstance(event, Ping):
            self._write(self._ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            with contextlib.suppress(LocalProtocolError):
                self._write(self._ws.send(event.response()))
            self._transport.close()

    def _accept(self, request: Request) -> None:
        target = urlsplit(request.target)
        headers = [(bytes(k).lower(), bytes(v)) for k, v in request.extra_headers]
        # wsproto keeps the offered subprotocols apart from the other headers
        headers.append((b"sec-websocket-protocol", ", ".join(request.subprotocols).encode()))
        query = dict(query_pairs(target.query.encode()))
        token, subprotocol = handshake_token(headers, query)
        if target.path.endswith("/graphql"):  # GraphQL subscriptions (graphql/ws_session.py)
            self._accept_graphql(request, token)
            return
        offered = [p for p in request.subprotocols if p == subprotocol]
        self._write(self._ws.send(AcceptConnection(subprotocol=offered[0] if offered else None)))
        self._session = WsSession(self._host, self._send_text, self._close,
                                  token, handshake_format(headers))
        self._worker = self._loop.create_task(self._work())

    def _accept_graphql(self, request: Request, token: str | None) -> None:
        from .graphql.ws_session import SUBPROTOCOL, GraphQLSession

        if SUBPROTOCOL not in request.subprotocols:
            self._write(self._ws.send(AcceptConnection()))
            self._close_now(1002, f"use the {SUBPROTOCOL} subprotocol")
            return
        self._write(self._ws.send(AcceptConnection(subprotocol=SUBPROTOCOL)))
        settings = self._host.settings
        self._session = GraphQLSession(  # type: ignore[assignment]
            self._host.graphql(),  # type: ignore[attr-defined]  # app.Gateway's
            self._send_text, self._close, token,
            max_operations=settings.graphql.max_subscriptions,
            token_recheck=settings.streams.recheck_seconds)
        self._worker = self._loop.create_task(self._work())

    async def _work(self) -> None:
        assert self._session is not None
        if not self._started:  # authenticates with the handshake's token, if any
            self._started = True
            await self._session.start()
        while self._waiting and not self._lost:
            await self._session.receive(self._waiting.popleft())
            if len(self._waiting) < _MAX_WAITING // 2:
                self._update_reading()

    # sending -------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if not self._lost and not self._transport.is_closing():
            self._transport.write(data)

    async def _send_text(self, text: str) -> None:
        while self._paused and not self._lost:
            self._writable = self._loop.create_future()
            try:
                await self._writable  # or dropped by pause_writing's timer
            finally:
                self._writable = None
        if self._lost:
            raise ConnectionError("the WebSocket client is gone")
        self._write(self._ws.send(TextMessage(data=text)))

    async def _close(self, code: int, reason: str) -> None:
        self._close_now(code, reason)

    def _close_now(self, code: int, reason: str) -> None:
        with contextlib.suppress(LocalProtocolError):
            self._write(self._ws.send(CloseConnection(code=code, reason=reason)))
        if not self._lost:
            self._transport.close()
