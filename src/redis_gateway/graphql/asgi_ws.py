"""``graphql-transport-ws`` on an ASGI server's WebSocket (uvicorn mode).

The ASGI ``websocket`` scope as a ``TextSocket``; the built-in server hands its own
socket to ``GraphQLWebSocket`` the same way.
"""

from __future__ import annotations

from typing import Any

from ..http import Receive, Scope, Send, query_pairs
from .operations import Runner
from .transport_ws import SUBPROTOCOL, GraphQLWebSocket


class AsgiTextSocket:
    def __init__(self, receive: Receive, send: Send, max_message_bytes: int) -> None:
        self._receive, self._send = receive, send
        self._limit = max_message_bytes
        self._closed = False

    async def receive(self) -> str | bytes | None:
        if self._closed:
            return None
        message = await self._receive()
        if message["type"] == "websocket.receive":
            data: Any = message.get("text")
            data = data if data is not None else message.get("bytes") or b""
            if len(data) > self._limit:
                await self.close(1009, f"a message is larger than {self._limit} bytes "
                                       "(streams.max_ws_message_bytes)")
                return None
            return data  # type: ignore[no-any-return]
        self._closed = True  # websocket.disconnect
        return None

    async def send(self, text: str) -> None:
        if not self._closed:
            await self._send({"type": "websocket.send", "text": text})

    async def close(self, code: int, reason: str) -> None:
        if not self._closed:
            self._closed = True
            await self._send({"type": "websocket.close", "code": code, "reason": reason})


def handshake_token(headers: list[tuple[bytes, bytes]], query_string: bytes) -> str | None:
    """A token the upgrade request carried: ``Authorization`` or ``?_token=``."""
    for name, value in headers:
        if name == b"authorization":
            text = value.decode("latin-1").strip()
            scheme, _, rest = text.partition(" ")
            return rest.strip() if scheme.lower() == "bearer" else text
    for key, raw in query_pairs(query_string):
        if key == b"_token" and raw:
            return raw.decode("utf-8", "replace")
    return None


def offers_subprotocol(scope: Scope) -> bool:
    return SUBPROTOCOL in scope.get("subprotocols", ())


async def serve_asgi(endpoint: Runner, scope: Scope, receive: Receive, send: Send,
                     *, max_operations: int, token_recheck: float,
                     max_message_bytes: int) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if not offers_subprotocol(scope):
        # Refused at the handshake: the client speaks no protocol this endpoint serves.
        await send({"type": "websocket.close", "code": 1002,
                    "reason": f"use the {SUBPROTOCOL} subprotocol"})
        return
    await send({"type": "websocket.accept", "subprotocol": SUBPROTOCOL})
    socket = AsgiTextSocket(receive, send, max_message_bytes)
    await GraphQLWebSocket(endpoint, socket,
                           handshake_token=handshake_token(scope["headers"],
                                                           scope.get("query_string", b"")),
                           max_operations=max_operations, token_recheck=token_recheck).run()
