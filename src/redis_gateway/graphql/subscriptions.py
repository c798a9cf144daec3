"""Subscription fields: Redis pub/sub and keyspace events as GraphQL event streams.

Each field's ``subscribe`` opens a subscription on the streaming hub (``streams.hub``),
which holds the one Redis subscriber connection, fans messages out and enforces the
token's channel rules as Redis ACL does; ``resolve`` shapes one hub message into the
field's type. The transports (``transport_ws``, ``sse``) drive graphql-core's
``subscribe`` and never see Redis.

Keyspace events arrive only when Redis's ``notify-keyspace-events`` is on. The gateway
never turns it on by itself: only a subscription that asks (``enable: true``), from an
admin token, on a gateway whose ``graphql.keyspace_events_enable`` allows it. Otherwise a
subscription that could never receive anything fails at once and says why. Events are
also filtered by the token's key patterns: channel rules alone would show a token the
names of keys it may not read.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..auth import Principal
from ..errors import BadRequest, Forbidden, GatewayError, RedisUnavailable
from ..streams.hub import (
    CLOSED,
    SLOW_CONSUMER,
    BoundedBuffer,
    Hub,
    Kind,
    Subscription,
    notification,
)
from .resolvers import Context

log = logging.getLogger("redis_gateway.graphql")


class HubMessage(Protocol):
    """What the hub yields (``streams.hub.Message``): one pushed pub/sub message."""

    @property
    def kind(self) -> str: ...

    @property
    def channel(self) -> bytes: ...

    @property
    def pattern(self) -> bytes | None: ...

    @property
    def data(self) -> bytes: ...


# The hub of a principal's backend (``Gateway.hub``); None where nothing streams (Lambda).
HubOf = Callable[[Principal], Hub]


class KeyspaceConfig(Protocol):
    """Reads and (when allowed) sets ``notify-keyspace-events`` on a token's Redis."""

    async def get(self, backend: str) -> bytes: ...

    async def set(self, backend: str, value: bytes) -> None: ...


class PutRedisFeed:
    """onPutRedis on the gateway: each putRedis result, to the same token's subscribers.

    AppSync pushes every caller's results to every subscriber; here tokens have scopes, and
    a putRedis reply holds whatever its commands read, so only the token that ran it sees
    it. In this process only: a gateway behind a load balancer sees its own writes. Each
    subscriber's buffer holds at most ``buffer_bytes`` (streams.buffer_bytes): past it the
    stream ends as a slow consumer's, as the hub's streams do.
    """

    def __init__(self, buffer_bytes: int = 1024 * 1024) -> None:
        self._feeds: dict[str, set[BoundedBuffer[str]]] = {}
        self._buffer = buffer_bytes

    def publish(self, principal: Principal, result: str) -> None:
        for feed in self._feeds.get(principal.name, ()):
            feed.put(result, len(result))  # one that does not fit ends its stream

    async def stream(self, principal: Principal, give_back: Callable[[], None] | None = None
                     ) -> AsyncIterator[str]:
        """The results, until the subscriber leaves; ``give_back`` returns the place the
        stream holds under the streams limits (``Hub.lease``)."""
        feed: BoundedBuffer[str] = BoundedBuffer(self._buffer)
        self._feeds.setdefault(principal.name, set()).add(feed)
        try:
            while (item := await feed.get()) is not None:
                yield item
            raise StreamEnded(SLOW_CONSUMER, f"the client did not keep up: more than "
                                             f"{self._buffer} bytes of results waited for it "
                                             "(streams.buffer_bytes)")
        finally:
            feeds = self._feeds.get(principal.name)
            if feeds is not None:
                feeds.discard(feed)
                if not feeds:
                    del self._feeds[principal.name]
            if give_back is not None:
                give_back()


@dataclass
class Live:
    """What subscription fields need beyond a query's context."""

    # None where nothing streams (Lambda): subscribing to Redis then says so.
    hub_of: HubOf | None
    keyspace: KeyspaceConfig
    keyspace_events_enable: bool = False
    put_redis: PutRedisFeed = field(default_factory=PutRedisFeed)

    def put_redis_done(self, principal: Principal, result: str) -> None:
        self.put_redis.publish(principal, result)


def live_of(ctx: Context) -> Live:
    live = getattr(ctx, "live", None)
    if live is None:
        raise BadRequest("subscriptions are served over graphql-transport-ws (a WebSocket on "
                         "/graphql) or SSE (POST /graphql with Accept: text/event-stream)")
    assert isinstance(live, Live)
    return live


# --- the streams -----------------------------------------------------------------------

async def _open(ctx: Context, live: Live, kind: Kind,
                names: Sequence[bytes]) -> AsyncIterator[HubMessage]:
    """The hub's subscription, opened now so that a refusal (channel rules, limits) fails
    the operation at once, as an async iterator closed with the operation."""
    if live.hub_of is None:
        raise BadRequest("Redis pub/sub is not available here: this gateway runs without "
                         "a streaming server (AWS Lambda)")
    hub = live.hub_of(ctx.principal)
    subscription = await hub.subscribe(ctx.principal, kind, names, recheck=ctx.recheck)
    return _closing(subscription)


async def _closing(subscription: Subscription) -> AsyncIterator[HubMessage]:
    try:
        async for message in subscription:
            yield message
        if subscription.ended not in (None, CLOSED):
            # Slow consumer, token revoked or expired, draining, Redis lost: the client
            # is told why its stream ended (the transports send it as the last event).
            raise StreamEnded(subscription.ended, subscription.detail)
    finally:
        await subscription.close()


class StreamEnded(GatewayError):
    """A subscription the gateway ended; ``reason`` is the hub's (``streams.hub``)."""

    kind = "StreamEnded"
    status = 503

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _names(values: Sequence[str], what: str) -> list[bytes]:
    if not values:
        raise BadRequest(f"give at least one {what}")
    return [v.encode() for v in values]


def _text(value: bytes, encoding: str) -> str:
    if encoding == "BASE64":
        import base64

        return base64.b64encode(value).decode()
    return value.decode("utf-8", "replace")


async def messages(ctx: Context, args: dict[str, Any]) -> AsyncIterator[HubMessage]:
    kind: Kind = "shard" if args.get("sharded") else "channel"
    return await _open(ctx, live_of(ctx), kind, _names(args["channels"], "channel"))


async def pattern_messages(ctx: Context, args: dict[str, Any]) -> AsyncIterator[HubMessage]:
    return await _open(ctx, live_of(ctx), "pattern", _names(args["patterns"], "pattern"))


def channel_message(message: HubMessage, args: dict[str, Any]) -> dict[str, Any]:
    encoding = args.get("encoding") or "UTF8"
    return {"channel": _text(message.channel, encoding),
            "pattern": None if message.pattern is None else _text(message.pattern, encoding),
            "message": _text(message.data, encoding)}


# Redis's notify-keyspace-events: K and E choose the channels, the others the event classes.
_CLASSES = frozenset(b"g$lshzxetmdnA")


def _db(args: dict[str, Any]) -> int:
    db = args.get("db")
    db = 0 if db is None else db
    if not 0 <= db <= 1_000_000:
        raise BadRequest(f"db: {db} is not a database number")
    return int(db)


async def _ensure_notifications(ctx: Context, live: Live, flag: bytes, enable: bool) -> None:
    """Keyspace subscriptions need ``flag`` (K or E) and an event class in the server's
    notify-keyspace-events; turn them on only when asked by an admin and allowed."""
    backend = ctx.principal.backend
    current = await live.keyspace.get(backend)
    if flag[0] in current and any(c in _CLASSES for c in current):
        return
    shown = current.decode("latin-1")
    if not enable:
        raise BadRequest(
            f"keyspace notifications are off on this Redis (notify-keyspace-events is "
            f"'{shown}', this subscription needs '{flag.decode()}' and an event class such "
            f"as 'A'): an admin may turn them on, or subscribe with enable: true")
    if not live.keyspace_events_enable:
        raise Forbidden("turning on keyspace notifications is disabled on this gateway "
                        "(graphql.keyspace_events_enable is false)")
    if not ctx.principal.policy.unrestricted:
        raise Forbidden("only an admin token may turn on keyspace notifications "
                        "(enable: true)")
    wanted = current + flag + (b"" if any(c in _CLASSES for c in current) else b"A")
    await live.keyspace.set(backend, wanted)
    log.warning("token '%s' turned on keyspace notifications on backend '%s': "
                "notify-keyspace-events '%s' -> '%s'", ctx.principal.name, backend, shown,
                wanted.decode("latin-1"))


async def keyspace_events(ctx: Context, args: dict[str, Any]) -> AsyncIterator[HubMessage]:
    """Events about keys the token's rules cover, in its database: the hub filters them
    (``streams/hub.py``), as for every other front door."""
    live = live_of(ctx)
    keys = args.get("keys")
    pattern = b"*" if keys is None else keys.encode()
    await _ensure_notifications(ctx, live, b"K", bool(args.get("enable")))
    channel = b"__keyspace@%d__:" % _db(args) + pattern
    return await _open(ctx, live, "pattern", [channel])


async def key_events(ctx: Context, args: dict[str, Any]) -> AsyncIterator[HubMessage]:
    live = live_of(ctx)
    events = _names(args["events"], "event")
    await _ensure_notifications(ctx, live, b"E", bool(args.get("enable")))
    db = _db(args)
    channels = [b"__keyevent@%d__:" % db + event for event in events]
    return await _open(ctx, live, "channel", channels)


def keyspace_event(message: HubMessage, args: dict[str, Any]) -> dict[str, Any]:
    encoding = args.get("encoding") or "UTF8"
    about = notification(message.channel, message.data)
    if about is None:  # the hub only yields what was subscribed to
        raise GatewayError(f"unexpected keyspace channel {message.channel!r}")
    db, key, event = about
    return {"db": db, "key": _text(key, encoding), "event": event.decode("latin-1")}


async def on_put_redis(ctx: Context, _args: dict[str, Any]) -> AsyncIterator[str]:
    """Counted as a stream (streams.max_streams*), like a subscription to a channel."""
    live = live_of(ctx)
    give_back = live.hub_of(ctx.principal).lease(ctx.principal) if live.hub_of else None
    return live.put_redis.stream(ctx.principal, give_back)


def _same(value: Any, _args: dict[str, Any]) -> Any:
    return value


Source = Callable[[Context, dict[str, Any]], Awaitable[AsyncIterator[Any]]]
SUBSCRIPTIONS: dict[str, tuple[Source, Callable[[Any, dict[str, Any]], Any]]] = {
    "messages": (messages, channel_message),
    "patternMessages": (pattern_messages, channel_message),
    "keyspaceEvents": (keyspace_events, keyspace_event),
    "keyEvents": (key_events, keyspace_event),
    "onPutRedis": (on_put_redis, _same),
}


class BackendKeyspaceConfig:
    """notify-keyspace-events read and set on the gateway's own connection to a backend."""

    def __init__(self, run: Callable[[str, list[list[bytes]]], Any]) -> None:
        self._run = run

    async def get(self, backend: str) -> bytes:
        (reply,) = await self._run(backend, [[b"CONFIG", b"GET", b"notify-keyspace-events"]])
        if not isinstance(reply, list) or len(reply) != 2:
            raise RedisUnavailable(f"notify-keyspace-events could not be read: {reply}")
        return bytes(reply[1])

    async def set(self, backend: str, value: bytes) -> None:
        (reply,) = await self._run(
            backend, [[b"CONFIG", b"SET", b"notify-keyspace-events", value]])
        if isinstance(reply, Exception):
            raise RedisUnavailable(f"notify-keyspace-events could not be set: {reply}")

