"""The WebSocket endpoint ``/ws``: commands and pushed messages on one socket.

The same session logic serves both servers: the built-in one (``websocket.py``, wsproto)
and uvicorn (ASGI ``websocket``). Message format (``docs/streaming.md``):

Client to gateway, one JSON text message each:
- ``{"token": "<token>", "encoding": "base64" | "typed-resp2" | "typed-resp3"}``: the first
  message, unless the token came with the handshake (``Sec-WebSocket-Protocol`` offering
  ``token.<token>``, ``Authorization: Bearer``, or ``?_token=``); ``encoding`` is optional
  (or ``Upstash-Encoding``/``Redis-Reply-Format`` headers on the handshake).
- ``["SET", "k", "v"]``: a command; or ``{"id": <any>, "command": [...]}`` to have the reply
  carry that id. Replies come in order: ``{"result": ...}`` or ``{"error": "..."}`` (plus
  ``"id"``), with the same checks and reply formats as REST.
- ``SUBSCRIBE``/``PSUBSCRIBE``/``SSUBSCRIBE`` (channels...), their ``UNSUBSCRIBE`` kin
  (none: all), and ``MONITOR`` go through the hub.

Gateway to client, besides replies: ``{"push": [...]}``:
``["subscribe", ch, n]``, ``["message", ch, data]``, ``["pmessage", pattern, ch, data]``,
``["smessage", ch, data]``, ``["unsubscribe", ch, n]``, ``["monitor", line]``, and, when
the gateway ends a subscription, ``["error", reason, detail]`` (slow consumer, token
revoked or expired; the socket then closes with 1008) or ``["reconnect", "draining",
detail]`` (closes with 1012). Data is text, or base64 with that encoding.

Bounds: ``streams.max_ws_message_bytes`` per client message (1009 past it), each
subscription's buffer (``streams.buffer_bytes``), and the streams limits (each channel or
pattern subscribed counts as one stream).
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, Protocol

import orjson

from ..admission import Admission
from ..auth import Principal, TokenStore
from ..codec import Encoder, TypedEncoder
from ..errors import BadRequest, GatewayError, Unauthorized
from ..executor import Executor
from ..resp import ReplyError
from ..settings import Settings
from .hub import DRAINING, Hub, Message, Subscription

SendText = Callable[[str], Awaitable[None]]
Close = Callable[[int, str], Awaitable[None]]

POLICY_VIOLATION = 1008
TOO_BIG = 1009
SERVICE_RESTART = 1012
_KINDS = {"subscribe": "channel", "psubscribe": "pattern", "ssubscribe": "shard"}
_UNSUBSCRIBE = {"unsubscribe": "channel", "punsubscribe": "pattern", "sunsubscribe": "shard"}
_UNVERB = {kind: verb for verb, kind in _UNSUBSCRIBE.items()}
_ENCODINGS = {"base64": (True, None), "typed-resp2": (False, 2), "typed-resp3": (False, 3)}


class WsHost(Protocol):
    """What a session needs of the gateway (``app.Gateway``)."""

    settings: Settings
    tokens: TokenStore
    executor: Executor
    admission: Admission
    # The sessions open now: a drain tells each to reconnect, subscribed or not.
    ws_sessions: set[WsSession]

    def hub(self, principal: Principal) -> Hub: ...


def handshake_token(headers: Sequence[tuple[bytes, bytes]], query: dict[bytes, bytes | None]
                    ) -> tuple[str | None, str | None]:
    """The token given with the handshake, and the subprotocol to accept, if any."""
    token = None
    accept = None
    for name, value in headers:
        if name == b"sec-websocket-protocol":
            for offered in value.decode("latin-1").split(","):
                offered = offered.strip()
                if offered.startswith("token."):
                    token = offered[len("token."):]
                    accept = accept or offered
                elif offered == "redis-gateway":
                    accept = offered
        elif name == b"authorization" and token is None:
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                token = credentials.strip()
    if token is None and query.get(b"_token"):
        token = (query[b"_token"] or b"").decode("utf-8", "replace")
    return token, accept


def handshake_format(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"upstash-encoding" and value.strip().lower() == b"base64":
            return "base64"
        if name == b"redis-reply-format":
            return value.strip().lower().decode("latin-1")
    return None


class WsSession:
    def __init__(self, host: WsHost, send: SendText, close: Close, token: str | None,
                 encoding: str | None) -> None:
        self._host = host
        self._send = send
        self._close = close
        self._token = token
        self._principal: Principal | None = None
        self._base64 = False
        self._typed: int | None = None
        self._subs: dict[tuple[str, bytes], Subscription] = {}
        self._pumps: dict[Subscription, asyncio.Task[None]] = {}
        self._closed = False
        self._watcher: asyncio.Task[None] | None = None
        if encoding is not None:
            self._set_encoding(encoding)

    # the client's messages ------------------------------------------------------------------
    async def start(self) -> None:
        """Authenticate now if the handshake carried a token."""
        self._host.ws_sessions.add(self)
        self._watcher = asyncio.ensure_future(self._watch())
        if self._token is not None:
            try:
                self._principal = await self._host.tokens.authenticate(self._token)
            except GatewayError as exc:
                await self._reply({"error": exc.message})
                await self.shut(POLICY_VIOLATION, "unauthorized")

    async def _watch(self) -> None:
        """A socket that has not authenticated within limits.header_timeout is closed, as a
        request whose head does not come; afterwards its token is checked again every
        streams.recheck_seconds, so an expired or revoked one ends the socket even with no
        subscription (those are rechecked on their own)."""
        with contextlib.suppress(ConnectionError):  # the client is gone already
            await self._watch_token()

    async def _watch_token(self) -> None:
        settings = self._host.settings
        await asyncio.sleep(settings.limits.header_timeout)
        if self._principal is None:
            await self._reply({"error": "authenticate within "
                                        f"{settings.limits.header_timeout:g} s (limits."
                                        'header_timeout): {"token": "<token>"}'})
            await self.shut(POLICY_VIOLATION, "unauthorized")
            return
        while not self._closed:
            await asyncio.sleep(settings.streams.recheck_seconds)
            try:
                self._principal = await self._host.tokens.authenticate(self._token)
            except Unauthorized as exc:
                await self._push(["error", "unauthorized", exc.message])
                await self.shut(POLICY_VIOLATION, "unauthorized")
            except GatewayError:
                continue  # Redis unreachable: the token is checked again next time

    async def receive(self, text: str | bytes) -> None:
        if self._closed:
            return
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            await self._reply({"error": "each message must be JSON: a command array such as "
                                        '["GET","k"], or {"token": ...} first'})
            return
        if self._principal is None:
            await self._authenticate(message)
            return
        ident: Any = None
        command = message
        if isinstance(message, dict):
            ident, command = message.get("id"), message.get("command")
        try:
            reply = await self._command(command)
        except GatewayError as exc:
            reply = {"error": exc.message}
        if reply is not None:
            if ident is not None:
                reply["id"] = ident
            await self._reply(reply)

    async def _authenticate(self, message: Any) -> None:
        if not isinstance(message, dict) or not isinstance(message.get("token"), str):
            await self._reply({"error": 'authenticate first: {"token": "<token>"} (or give '
                                        "the token with the handshake)"})
            await self.shut(POLICY_VIOLATION, "unauthorized")
            return
        try:
            if message.get("encoding") is not None:
                self._set_encoding(str(message["encoding"]))
            self._token = message["token"]
            self._principal = await self._host.tokens.authenticate(self._token)
        except GatewayError as exc:
            await self._reply({"error": exc.message})
            await self.shut(POLICY_VIOLATION, "unauthorized")
            return
        await self._reply({"result": "OK"})

    def _set_encoding(self, encoding: str) -> None:
        found = _ENCODINGS.get(encoding.lower())
        if found is None:
            raise BadRequest("encoding must be base64, typed-resp2 or typed-resp3")
        self._base64, self._typed = found

    async def _command(self, command: Any) -> dict[str, Any] | None:
        if not isinstance(command, list) or not command or \
                not all(isinstance(a, str | int) and not isinstance(a, bool) for a in command):
            raise BadRequest('a command is a non-empty JSON array of strings and numbers, '
                             'e.g. ["SET","k","v"]')
        argv = [a.encode() if isinstance(a, str) else b"%d" % a for a in command]
        # Checked again for every command: an expired or revoked token stops at once.
        principal = self._principal = await self._host.tokens.authenticate(self._token)
        name = argv[0].lower().decode("latin-1")
        if name in _KINDS:
            await self._subscribe(principal, _KINDS[name], argv[1:])
            return None
        if name in _UNSUBSCRIBE:
            await self._unsubscribe(_UNSUBSCRIBE[name], argv[1:])
            return None
        if name == "monitor":
            await self._monitor(principal)
            return None
        limit = self._host.settings.limits.max_reply_bytes
        async with self._host.admission.request(principal.name, principal.share):
            reply = await self._host.executor.execute(principal, argv, exact=self._typed)
        if isinstance(reply, GatewayError):
            raise reply
        if self._typed:
            return {"result": TypedEncoder(limit).value(reply)}
        if isinstance(reply, ReplyError):
            return {"error": str(reply)}
        return {"result": Encoder(self._base64, limit).value(reply)}

    # subscriptions ----------------------------------------------------------------------------
    async def _subscribe(self, principal: Principal, kind: str, names: list[bytes]) -> None:
        if not names:
            raise BadRequest(f"ERR wrong number of arguments for '{_verb(kind)}' command")
        hub = self._host.hub(principal)
        hub.check_channels(principal, kind, names)  # type: ignore[arg-type]
        for name in names:
            if (kind, name) not in self._subs:
                sub = await hub.subscribe(principal, kind, [name],  # type: ignore[arg-type]
                                          recheck=self._recheck)
                self._subs[(kind, name)] = sub
                self._pumps[sub] = asyncio.ensure_future(self._pump(sub))
            await self._push([_verb(kind), self._text(name), self._count(kind)])

    async def _unsubscribe(self, kind: str, names: list[bytes]) -> None:
        targets = names or [n for k, n in self._subs if k == kind]
        for name in targets:
            sub = self._subs.pop((kind, name), None)
            if sub is not None:
                await self._stop(sub)
            await self._push([_UNVERB[kind], self._text(name), self._count(kind)])

    async def _monitor(self, principal: Principal) -> None:
        if ("monitor", b"") not in self._subs:
            sub = await self._host.hub(principal).monitor(principal, recheck=self._recheck)
            self._subs[("monitor", b"")] = sub
            self._pumps[sub] = asyncio.ensure_future(self._pump(sub))
        await self._reply({"result": "OK"})

    def _count(self, kind: str) -> int:
        return sum(1 for k, _ in self._subs if k == kind)

    def _recheck(self) -> Awaitable[Principal]:
        return self._host.tokens.authenticate(self._token)

    async def _pump(self, sub: Subscription) -> None:
        """A subscription's messages to the socket; the socket's pace is the pump's, and a
        socket that does not keep up overflows the subscription's buffer (slow consumer)."""
        try:
            async for message in sub:
                await self._push(self._message(message))
        except (ConnectionError, asyncio.CancelledError):
            return
        if sub.ended == DRAINING:
            await self._push(["reconnect", "draining", sub.detail])
            await self.shut(SERVICE_RESTART, "draining")
        elif sub.ended not in (None, "closed"):
            await self._push(["error", sub.ended, sub.detail])
            await self.shut(POLICY_VIOLATION, sub.ended or "")

    def _message(self, message: Message) -> list[Any]:
        if message.kind == "monitor":
            return ["monitor", self._text(message.data)]
        if message.kind == "pmessage":
            return ["pmessage", self._text(message.pattern or b""), self._text(message.channel),
                    self._text(message.data)]
        return [message.kind, self._text(message.channel), self._text(message.data)]

    def _text(self, data: bytes) -> str:
        if self._base64:
            return binascii.b2a_base64(data, newline=False).decode("ascii")
        return data.decode("utf-8", "replace")

    async def _stop(self, sub: Subscription) -> None:
        pump = self._pumps.pop(sub, None)
        await sub.close()
        if pump is not None and pump is not asyncio.current_task():
            pump.cancel()

    # sending --------------------------------------------------------------------------------
    async def _reply(self, reply: dict[str, Any]) -> None:
        if not self._closed:
            await self._send(orjson.dumps(reply).decode())

    async def _push(self, push: list[Any]) -> None:
        if not self._closed:
            await self._send(orjson.dumps({"push": push}).decode())

    async def shut(self, code: int, reason: str) -> None:
        """Close the socket (once) and everything the session holds."""
        if self._closed:
            return
        self._closed = True
        await self.end()
        await self._close(code, reason)

    async def drain(self) -> None:
        """The gateway stops: tell the client to reconnect (to another), then close."""
        await self._push(["reconnect", "draining", "the gateway is shutting down; reconnect"])
        await self.shut(SERVICE_RESTART, "draining")

    async def end(self) -> None:
        """The socket is gone: unsubscribe everything."""
        self._host.ws_sessions.discard(self)
        self._closed = True
        if self._watcher is not None and self._watcher is not asyncio.current_task():
            self._watcher.cancel()
        for sub in list(self._subs.values()):
            await self._stop(sub)
        self._subs.clear()


def _verb(kind: str) -> str:
    return {"channel": "subscribe", "pattern": "psubscribe", "shard": "ssubscribe"}[kind]


async def serve_asgi(host: WsHost, scope: MutableMapping[str, Any],
                     receive: Callable[[], Awaitable[Any]],
                     send: Callable[[Any], Awaitable[None]]) -> None:
    """``/ws`` under an ASGI server (uvicorn)."""
    from ..http import query_pairs

    query = dict(query_pairs(scope.get("query_string", b"")))
    token, subprotocol = handshake_token(scope["headers"], query)
    limit = host.settings.streams.max_ws_message_bytes
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept", "subprotocol": subprotocol})

    async def send_text(text: str) -> None:
        await send({"type": "websocket.send", "text": text})

    async def close(code: int, reason: str) -> None:
        await send({"type": "websocket.close", "code": code, "reason": reason})

    session = WsSession(host, send_text, close, token, handshake_format(scope["headers"]))
    try:
        await session.start()
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("text") if message.get("text") is not None else \
                message.get("bytes")
            if data is None:
                continue
            if len(data) > limit:
                await session.shut(TOO_BIG, f"a message is larger than {limit} bytes "
                                            "(streams.max_ws_message_bytes)")
                break
            await session.receive(data)
    except (Unauthorized, ConnectionError):
        pass
    finally:
        await session.end()
