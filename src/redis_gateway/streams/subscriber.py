"""One Redis connection in subscriber (or MONITOR) mode: what the hub fans out from.

It is never shared with request/response traffic: once a connection has sent SUBSCRIBE
or MONITOR, Redis only pushes to it. The hub owns one per (node, Redis user, role), and
sends each SUBSCRIBE at most once per channel, however many clients listen.

Replies are RESP2, read by hiredis:
- ``[subscribe|psubscribe|ssubscribe, name, count]`` confirms the oldest pending
  subscription (each is sent alone, so confirmations and refusals come back in order);
- an error reply refuses the oldest pending subscription (NOPERM from the ACL user,
  MOVED for a shard channel whose slot moved);
- ``[message, channel, data]``, ``[pmessage, pattern, channel, data]``,
  ``[smessage, channel, data]`` are pushed to the hub;
- in MONITOR mode, ``+OK`` confirms and each later simple string is one monitor line.
"""

from __future__ import annotations

import asyncio
import ssl
import typing
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis

from ..acl import RedisUser
from ..connect import Address, TlsFiles, connect_protocol
from ..errors import Forbidden, RedisUnavailable
from ..resp import ReplyError

# (role-kind, name) of a subscription: "channel", "pattern", "shard", or "monitor".
Topic = tuple[str, bytes]
# Called with (connection, topic, channel, data) for each pushed message.
OnPush = Callable[["PushConnection", Topic, bytes, bytes], None]
OnLost = Callable[["PushConnection"], None]

SUBSCRIBE = {"channel": b"SUBSCRIBE", "pattern": b"PSUBSCRIBE", "shard": b"SSUBSCRIBE",
             "monitor": b"MONITOR"}
UNSUBSCRIBE = {"channel": b"UNSUBSCRIBE", "pattern": b"PUNSUBSCRIBE",
               "shard": b"SUNSUBSCRIBE"}
_CONFIRMS = {b"subscribe": "channel", b"psubscribe": "pattern", b"ssubscribe": "shard"}


class PushConnection(asyncio.Protocol):
    def __init__(self, label: str, role: str, user: RedisUser | None, on_push: OnPush,
                 on_lost: OnLost) -> None:
        self.label = label
        self.role = role  # "pubsub" or "monitor"
        self.user = user  # the Redis user it authenticates as (None: the gateway's own)
        self.topics: set[Topic] = set()  # subscribed (confirmed) on this connection
        self._on_push = on_push
        self._on_lost = on_lost
        self._reader = hiredis.Reader()
        self._transport: asyncio.Transport | None = None
        self._pending: deque[tuple[Topic | None, asyncio.Future[None]]] = deque()
        self.lost = False

    @property
    def busy(self) -> bool:
        """Subscribed to something, or about to be."""
        return bool(self.topics or self._pending)

    # asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = typing.cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        why = RedisUnavailable(f"the subscriber connection to Redis at {self.label} was lost")
        while self._pending:
            _, future = self._pending.popleft()
            if not future.done():
                future.set_exception(why)
        self._on_lost(self)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not False:
                self._reply(reply)
        except hiredis.ProtocolError:
            self.close()

    # replies ------------------------------------------------------------------------------
    def _reply(self, reply: Any) -> None:
        if isinstance(reply, list) and reply:
            kind = reply[0]
            if kind == b"message" and len(reply) == 3:
                self._on_push(self, ("channel", reply[1]), reply[1], reply[2])
            elif kind == b"pmessage" and len(reply) == 4:
                self._on_push(self, ("pattern", reply[1]), reply[2], reply[3])
            elif kind == b"smessage" and len(reply) == 3:
                self._on_push(self, ("shard", reply[1]), reply[1], reply[2])
            elif kind in _CONFIRMS:
                self._confirm((_CONFIRMS[kind], reply[1]), None)
            # unsubscribe confirmations and PING's pong need nothing
        elif isinstance(reply, ReplyError):
            self._confirm(None, reply)
        elif isinstance(reply, bytes) and self.role == "monitor":
            if self._pending:  # MONITOR's +OK (or AUTH's)
                self._confirm(None, None)
            else:
                self._on_push(self, ("monitor", b""), b"", reply)
        elif self._pending:  # AUTH's +OK
            self._confirm(None, None)

    def _confirm(self, topic: Topic | None, error: ReplyError | None) -> None:
        if not self._pending:
            return
        wanted, future = self._pending.popleft()
        if error is None and wanted is not None:
            self.topics.add(wanted)
        if future.done():
            return
        if error is not None:
            text = str(error)
            future.set_exception(
                Forbidden(text.replace("this user", "this token", 1)) if text.startswith(
                    "NOPERM") else RedisUnavailable(f"Redis at {self.label} refused: {text}"))
        else:
            future.set_result(None)

    # commands -----------------------------------------------------------------------------
    def _send(self, argv: list[bytes], topic: Topic | None) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.lost or self._transport is None or self._transport.is_closing():
            future.set_exception(RedisUnavailable(
                f"the subscriber connection to Redis at {self.label} is closed"))
            return future
        self._pending.append((topic, future))
        self._transport.write(hiredis.pack_command(tuple(argv)))  # type: ignore[arg-type]
        return future

    def subscribe(self, topic: Topic) -> asyncio.Future[None]:
        """SUBSCRIBE (or its kin, or MONITOR) for one topic; done when Redis confirmed."""
        kind, name = topic
        argv = [SUBSCRIBE[kind]] if kind == "monitor" else [SUBSCRIBE[kind], name]
        return self._send(argv, topic)

    def unsubscribe(self, topic: Topic) -> None:
        """Nobody listens any more; nothing waits for Redis's confirmation."""
        self.topics.discard(topic)
        kind, name = topic
        if kind == "monitor":
            self.close()  # MONITOR has no undo: its connection goes
        elif not self.lost and self._transport is not None and \
                not self._transport.is_closing():
            self._transport.write(hiredis.pack_command((UNSUBSCRIBE[kind], name)))  # type: ignore[arg-type]

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def open_push_connection(address: Address, tls: TlsFiles, role: str,
                               user: RedisUser | None, timeout: float, on_push: OnPush,
                               on_lost: OnLost) -> PushConnection:
    """Connect and authenticate within ``timeout`` seconds."""
    label = address.display()
    try:
        async with asyncio.timeout(timeout):
            conn = await connect_protocol(
                address, tls, lambda: PushConnection(label, role, user, on_push, on_lost))
            if address.password is not None:
                auth = [b"AUTH", address.password.encode()]
                if address.username:
                    auth.insert(1, address.username.encode())
                try:
                    await conn._send(auth, None)
                except RedisUnavailable as exc:
                    conn.close()
                    raise RedisUnavailable(
                        f"Redis at {label} refused the subscriber connection: {exc.message}"
                    ) from None
    except TimeoutError:
        raise RedisUnavailable(f"cannot reach Redis at {label}: no answer within "
                               f"{timeout:g} s") from None
    except (OSError, ssl.SSLError) as exc:
        raise RedisUnavailable(f"cannot reach Redis at {label}: {exc}") from None
    return conn
