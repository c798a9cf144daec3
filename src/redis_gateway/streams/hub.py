"""The hub: one backend's pub/sub and MONITOR, fanned out to every client that listens.

Every streaming front door (SSE, WebSocket, GraphQL subscriptions, the console) uses
this interface and nothing below it:

```python
hub = gateway.hub(principal)                     # one Hub per backend
sub = await hub.subscribe(principal, "channel", [b"chat"], recheck=...)  # or "pattern",
                                                 # "shard"; raises GatewayError (403, 429, 503)
async for message in sub:                        # Message(kind, channel, pattern, data)
    ...
sub.ended                                        # why it ended, or None while it runs
await sub.close()                                # idempotent; UNSUBSCRIBE if it was the last
mon = await hub.monitor(principal)               # Message(kind="monitor", data=<line>)
await hub.drain()                                # ends every stream: "draining"
```

``subscribe`` returns once Redis has confirmed every subscription, so a message published
after it returns is delivered. When a stream ends (closed, slow consumer, token revoked or
expired, draining) its iterator stops at once, without the messages still buffered; the
front door then tells its client why (``ended``).

How it scales and stays safe:
- One subscriber connection per (node, Redis user, role): every token with the same rules
  shares it, and each channel is subscribed once however many clients listen. Where Redis
  enforces the tokens' rules (enforcement "managed"/"mapped", ``enforcement.py``), that
  connection authenticates as the rule set's ACL user, so Redis checks each SUBSCRIBE too.
- The gateway checks first, exactly as Redis's ACL does (``Policy.denied_channel``): a
  channel must match one of the token's channel patterns; a pattern subscription is allowed
  only when the token has that very pattern. MONITOR only for tokens whose rules allow it.
- Keyspace notifications (``__keyspace@<db>__:<key>``, ``__keyevent@<db>__:<event>``)
  reach a token only about keys its rules cover, in its own database. Redis's ACL checks
  only the channel name, and a token with ``allchannels`` could otherwise watch the names
  of every key of every database change. An unrestricted token sees them all.
- Each stream has a bounded buffer (``streams.buffer_bytes``): a client that does not read
  is cut off ("slow consumer"), never allowed to grow the gateway's memory. Streams are
  bounded per token and per process (``streams.max_streams*``).
- Every ``streams.recheck_seconds`` each stream's token is checked again: expiry and
  revocation end its streams within seconds.
- A lost subscriber connection is reopened (following a Sentinel or Cluster failover to
  wherever the channel lives now) and its subscriptions sent again; messages published
  meanwhile are lost (pub/sub is at-most-once; use Redis Streams for at-least-once).
- When the last listener of a channel leaves, UNSUBSCRIBE; when a connection has no
  subscription left, it is closed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from ..acl import RedisUser
from ..auth import Principal
from ..backends import Backend
from ..backends.node import Node
from ..errors import (
    BadRequest,
    Forbidden,
    GatewayError,
    RedisUnavailable,
    TooManyRequests,
    Unauthorized,
)
from ..policy import Policy
from ..settings import LimitSettings, StreamSettings
from .subscriber import PushConnection, Topic, open_push_connection

log = logging.getLogger("redis_gateway.streams")

Kind = Literal["channel", "pattern", "shard"]
# Checks the token again (re-authenticates it): its principal now, or raises Unauthorized.
Recheck = Callable[[], Awaitable[Principal]]

# Why a stream ended, as front doors report it.
CLOSED = "closed"
SLOW_CONSUMER = "slow consumer"
TOKEN_REVOKED = "token revoked"
TOKEN_EXPIRED = "token expired"
DRAINING = "draining"
REDIS_LOST = "redis unavailable"

_COMMANDS = {"channel": b"SUBSCRIBE", "pattern": b"PSUBSCRIBE", "shard": b"SSUBSCRIBE"}
_MESSAGE_KIND = {"channel": "message", "pattern": "pmessage", "shard": "smessage",
                 "monitor": "monitor"}
_MESSAGE_COST = 64  # what a buffered message costs beyond its bytes (the object, the deque)
# Redis's keyspace notifications: (space|event, db, the key or the event).
_NOTIFICATION = re.compile(rb"__key(space|event)@(\d+)__:(.*)", re.S)


@dataclass(frozen=True, slots=True)
class Message:
    kind: Literal["message", "pmessage", "smessage", "monitor"]
    channel: bytes  # b"" for monitor
    pattern: bytes | None  # the pattern that matched, for pmessage
    data: bytes  # the payload; for monitor, the whole line as Redis wrote it


# A topic as the hub keys it: subscriptions under one Redis user never mix with another's.
_Key = tuple[RedisUser | None, str, bytes]
T = TypeVar("T")


class BoundedBuffer(Generic[T]):
    """Items waiting for their reader, at most ``limit`` bytes of them (the sizes the
    writer gives). Past the limit it overflows: emptied, and closed to both sides."""

    __slots__ = ("_bytes", "_items", "_limit", "_wakeup", "closed")

    def __init__(self, limit: int) -> None:
        self._items: deque[tuple[T, int]] = deque()
        self._bytes = 0
        self._limit = limit
        self._wakeup: asyncio.Future[None] | None = None
        self.closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T, size: int) -> bool:
        """False if it did not fit (the buffer is closed then) or was closed already."""
        if self.closed:
            return False
        if self._bytes + size > self._limit:
            self.close()
            return False
        self._items.append((item, size))
        self._bytes += size
        self._wake()
        return True

    async def get(self) -> T | None:
        """The next item; None once closed (what it held is dropped)."""
        while not self._items:
            if self.closed:
                return None
            self._wakeup = asyncio.get_running_loop().create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None
        item, size = self._items.popleft()
        self._bytes -= size
        return item

    def close(self) -> None:
        self.closed = True
        self._items.clear()
        self._bytes = 0
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)


class Subscription:
    """One client's stream: an async iterator of ``Message`` over a bounded buffer."""

    def __init__(self, hub: Hub, principal: Principal, kind: str, names: Sequence[bytes],
                 buffer: int, recheck: Recheck | None) -> None:
        self.principal = principal
        self.kind = kind
        self.names = tuple(names)
        self.ended: str | None = None
        self.detail = ""  # more about why it ended, for the client
        self._hub = hub
        self._limit = buffer
        self._buffer: BoundedBuffer[Message] = BoundedBuffer(buffer)
        self._recheck = recheck
        self._keys: list[_Key] = []  # registered with the hub

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        message = await self._buffer.get()
        if message is None:  # ended
            raise StopAsyncIteration
        return message

    def pending(self) -> int:
        """Messages buffered, not yet taken."""
        return len(self._buffer)

    def push(self, message: Message) -> None:
        if self.ended is None and not self._buffer.put(
                message, len(message.data) + len(message.channel) + _MESSAGE_COST):
            self.end(SLOW_CONSUMER, f"the client did not keep up: more than {self._limit} "
                                    "bytes of messages waited for it (streams.buffer_bytes)")

    def end(self, reason: str, detail: str = "") -> None:
        """End the stream now (its buffer is dropped) and leave the hub."""
        if self.ended is not None:
            return
        self.ended, self.detail = reason, detail
        self._buffer.close()
        self._hub._release(self)

    async def close(self) -> None:
        self.end(CLOSED)


class Hub:
    """One backend's subscriptions (see the module's docstring)."""

    def __init__(self, backend: Backend, user_of: Callable[[Policy], RedisUser | None],
                 limits: LimitSettings, settings: StreamSettings, db: int) -> None:
        self._backend = backend
        self._user_of = user_of
        self._db = db  # the backend's database: restricted tokens hear only its notifications
        self._limits = limits
        self.settings = settings
        self._listeners: dict[_Key, set[Subscription]] = {}
        self._ready: dict[_Key, asyncio.Future[None]] = {}  # subscribing, not confirmed yet
        self._home: dict[_Key, PushConnection] = {}
        self._connections: dict[tuple[str, RedisUser | None, str], PushConnection] = {}
        self._opening: dict[tuple[str, RedisUser | None, str], asyncio.Lock] = {}
        self.subscriptions: set[Subscription] = set()
        self._per_token: Counter[str] = Counter()
        self._draining = False
        # Streams open: each channel or pattern of a subscription counts as one, as on a
        # WebSocket (one SSE request may name many), and each lease.
        self._open_streams = 0
        self._watcher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # the interface ------------------------------------------------------------------------
    async def subscribe(self, principal: Principal, kind: Kind, names: Sequence[bytes], *,
                        buffer: int | None = None, recheck: Recheck | None = None
                        ) -> Subscription:
        if kind not in _COMMANDS:
            raise BadRequest(f"unknown subscription kind {kind!r}")
        if not names:
            raise BadRequest(f"{_COMMANDS[kind].decode()} needs at least one "
                             f"{'pattern' if kind == 'pattern' else 'channel'}")
        await self._check_command(principal, [_COMMANDS[kind], *names])
        self.check_channels(principal, kind, names)
        return await self._open(principal, kind, list(dict.fromkeys(names)), buffer, recheck)

    @staticmethod
    def check_channels(principal: Principal, kind: Kind, names: Sequence[bytes]) -> None:
        """Every channel (or pattern) allowed, or 403 for the first that is not, as
        Redis's ACL decides it; a client subscribing to several one at a time checks them
        all first, so that a refused one leaves it subscribed to none, as in Redis."""
        denied = principal.policy.denied_channel(names, patterns=kind == "pattern")
        if denied is not None:
            raise Forbidden(f"NOPERM this token has no permissions to access the "
                            f"'{denied.decode('utf-8', 'replace')}' channel")

    async def monitor(self, principal: Principal, *, buffer: int | None = None,
                      recheck: Recheck | None = None) -> Subscription:
        await self._check_command(principal, [b"MONITOR"])
        return await self._open(principal, "monitor", [b""], buffer, recheck)

    @property
    def draining(self) -> bool:
        return self._draining

    def lease(self, principal: Principal) -> Callable[[], None]:
        """A place for a stream the hub does not carry (a Redis Streams reader, which reads
        on reserved connections), under the same limits; call the result to give it back."""
        self._admit(principal, 1)
        self._count_in(principal.name, 1)
        given_back = False

        def give_back() -> None:
            nonlocal given_back
            if not given_back:
                given_back = True
                self._count_out(principal.name, 1)

        return give_back

    def _admit(self, principal: Principal, streams: int) -> None:
        settings = self.settings
        if self._draining:
            raise RedisUnavailable("the gateway is shutting down; reconnect to another")
        if self._open_streams + streams > settings.max_streams:
            raise TooManyRequests(f"the gateway has {settings.max_streams} open streams "
                                  "(streams.max_streams); retry later")
        held = self._per_token[principal.name]
        if held + streams > settings.max_streams_per_token:
            raise TooManyRequests(f"this token has {held} open streams (each channel or "
                                  f"pattern counts), and {streams} more would pass "
                                  f"{settings.max_streams_per_token} (streams."
                                  "max_streams_per_token); close one first")

    def _count_in(self, name: str, streams: int) -> None:
        self._per_token[name] += streams
        self._open_streams += streams

    def _count_out(self, name: str, streams: int) -> None:
        self._open_streams -= streams
        self._per_token[name] -= streams
        if self._per_token[name] <= 0:
            del self._per_token[name]

    async def drain(self) -> None:
        """End every stream with "draining" (their clients reconnect elsewhere) and refuse
        new ones: for a graceful shutdown."""
        self._draining = True
        for sub in list(self.subscriptions):
            sub.end(DRAINING, "the gateway is shutting down; reconnect")

    async def close(self) -> None:
        await self.drain()
        if self._watcher is not None:
            self._watcher.cancel()
        for task in list(self._tasks):
            task.cancel()
        for conn in list(self._connections.values()):
            conn.close()
        self._connections.clear()

    # opening ------------------------------------------------------------------------------
    async def _check_command(self, principal: Principal, argv: list[bytes]) -> None:
        table = await self._backend.command_table()
        info = table.lookup(argv)
        if info is None:
            raise BadRequest(f"ERR this Redis has no '{argv[0].decode()}' command")
        if not principal.policy.allows_command(info):
            raise Forbidden(f"NOPERM this token has no permissions to run the "
                            f"'{info.name}' command")

    async def _open(self, principal: Principal, kind: str, names: list[bytes],
                    buffer: int | None, recheck: Recheck | None) -> Subscription:
        self._admit(principal, len(names))
        sub = Subscription(self, principal, kind, names,
                           buffer or self.settings.buffer_bytes, recheck)
        self.subscriptions.add(sub)
        self._count_in(principal.name, len(names))
        self._start_watching()
        try:
            user = self._user_of(principal.policy)
            for name in names:
                key = (user, kind, name)
                sub._keys.append(key)
                listeners = self._listeners.setdefault(key, set())
                listeners.add(sub)
                ready = self._ready.get(key)
                if ready is None and len(listeners) == 1:
                    ready = self._ready[key] = asyncio.get_running_loop().create_future()
                    ready.add_done_callback(_consume)
                    self._spawn(self._subscribe_key(key, ready))
                if ready is not None:
                    await asyncio.shield(ready)
        except BaseException:
            sub.end(CLOSED)
            raise
        return sub

    async def _subscribe_key(self, key: _Key, ready: asyncio.Future[None]) -> None:
        """SUBSCRIBE one topic on the connection where it belongs; ``ready`` says how."""
        try:
            conn = await self._connection_for(key)
            await conn.subscribe((key[1], key[2]))
            self._home[key] = conn
            if key not in self._listeners:  # every listener left meanwhile
                self._unsubscribe(key)
        except GatewayError as exc:
            if not ready.done():
                ready.set_exception(exc)
            for sub in list(self._listeners.get(key, ())):
                sub.end(REDIS_LOST if isinstance(exc, RedisUnavailable) else CLOSED,
                        exc.message)
        else:
            if not ready.done():
                ready.set_result(None)
        finally:
            if self._ready.get(key) is ready:
                del self._ready[key]

    async def _connection_for(self, key: _Key) -> PushConnection:
        user, kind, name = key
        node: Node = await self._backend.pubsub_node(name if kind == "shard" else None)
        role = "monitor" if kind == "monitor" else "pubsub"
        where = (node.label, user, role)
        conn = self._connections.get(where)
        if conn is not None and not conn.lost:
            return conn
        lock = self._opening.setdefault(where, asyncio.Lock())
        async with lock:
            conn = self._connections.get(where)
            if conn is not None and not conn.lost:
                return conn
            if user is not None and user.create is not None:
                await node.make_user(user)
            address, tls = node.push_address(user)
            conn = await open_push_connection(address, tls, role, user,
                                              self._limits.connect_timeout,
                                              self._on_push, self._on_lost)
            self._connections[where] = conn
            return conn

    # fan-out ------------------------------------------------------------------------------
    def _on_push(self, conn: PushConnection, topic: Topic, channel: bytes,
                 data: bytes) -> None:
        kind, name = topic
        listeners = self._listeners.get((conn.user, kind, name))
        if not listeners:
            return
        message = Message(_MESSAGE_KIND[kind], channel,  # type: ignore[arg-type]
                          name if kind == "pattern" else None, data)
        about = notification(channel, data) if channel.startswith(b"__key") else None
        heard: dict[Policy, bool] = {}
        for sub in list(listeners):
            if about is not None:
                policy = sub.principal.policy
                allowed = heard.get(policy)
                if allowed is None:
                    allowed = heard[policy] = policy.unrestricted or (
                        about[0] == self._db and
                        policy.denied_key([(about[1], frozenset())]) is None)
                if not allowed:
                    continue
            sub.push(message)

    # leaving ------------------------------------------------------------------------------
    def _release(self, sub: Subscription) -> None:
        if sub not in self.subscriptions:
            return
        self.subscriptions.discard(sub)
        self._count_out(sub.principal.name, len(sub.names))
        for key in sub._keys:
            listeners = self._listeners.get(key)
            if listeners is None:
                continue
            listeners.discard(sub)
            if not listeners:
                del self._listeners[key]
                if key not in self._ready:  # still subscribing: _subscribe_key undoes it
                    self._unsubscribe(key)

    def _unsubscribe(self, key: _Key) -> None:
        conn = self._home.pop(key, None)
        if conn is None:
            return
        conn.unsubscribe((key[1], key[2]))
        if not conn.busy and not conn.lost:  # nobody left on it: free the connection
            self._forget(conn)
            conn.close()

    def _forget(self, conn: PushConnection) -> None:
        for where, c in list(self._connections.items()):
            if c is conn:
                del self._connections[where]

    # failures -----------------------------------------------------------------------------
    def _on_lost(self, conn: PushConnection) -> None:
        """Subscribe again, wherever each topic lives now, for the topics still listened to."""
        self._forget(conn)
        for key, home in list(self._home.items()):
            if home is conn:
                del self._home[key]
                if key in self._listeners and not self._draining:
                    self._spawn(self._resubscribe(key))

    async def _resubscribe(self, key: _Key) -> None:
        backoff = self._limits.reconnect_backoff
        while key in self._listeners and key not in self._home and not self._draining:
            if key in self._ready:
                return  # a new subscriber is subscribing it already
            ready = self._ready[key] = asyncio.get_running_loop().create_future()
            ready.add_done_callback(_consume)
            await self._subscribe_again(key, ready)
            if key in self._home:
                log.info("subscription %r on Redis %s restored", key[2], self._home[key].label)
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _subscribe_again(self, key: _Key, ready: asyncio.Future[None]) -> None:
        try:
            conn = await self._connection_for(key)
            await conn.subscribe((key[1], key[2]))
            self._home[key] = conn
            if key not in self._listeners:
                self._unsubscribe(key)
            ready.set_result(None)
        except GatewayError as exc:
            ready.set_exception(exc)
        finally:
            if self._ready.get(key) is ready:
                del self._ready[key]

    # the token watch ----------------------------------------------------------------------
    def _start_watching(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while self.subscriptions:
            await asyncio.sleep(self.settings.recheck_seconds)
            await self.recheck()

    async def recheck(self) -> None:
        """End the streams whose token expired or was revoked (or whose rules changed)."""
        now = dt.datetime.now(dt.UTC)
        checked: dict[int, Principal | GatewayError] = {}
        for sub in list(self.subscriptions):
            expires = sub.principal.expires
            if expires is not None and expires <= now:
                sub.end(TOKEN_EXPIRED, f"token '{sub.principal.name}' expired at "
                                       f"{expires.isoformat()}")
                continue
            if sub._recheck is None:
                continue
            found = checked.get(id(sub._recheck))
            if found is None:
                try:
                    found = await sub._recheck()
                except Unauthorized as exc:
                    found = exc
                except GatewayError:
                    continue  # the token store is unreachable: keep the stream for now
                checked[id(sub._recheck)] = found
            if isinstance(found, GatewayError):
                sub.end(TOKEN_REVOKED, found.message)
            elif found.policy != sub.principal.policy:
                sub.end(TOKEN_REVOKED, "the token's rules changed; subscribe again")

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def notification(channel: bytes, data: bytes) -> tuple[int, bytes, bytes] | None:
    """(database, key, event) of a keyspace notification; None for any other message."""
    found = _NOTIFICATION.fullmatch(channel)
    if found is None:
        return None
    space, db, tail = found.groups()
    key, event = (tail, data) if space == b"space" else (data, tail)
    return int(db), key, event


def _consume(future: asyncio.Future[None]) -> None:
    """Retrieve a failure nobody awaited, so asyncio does not log it."""
    if not future.cancelled():
        future.exception()
