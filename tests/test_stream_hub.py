"""The streaming hub (streams/hub.py) in-process, against a real Redis of its own.

One subscriber connection per rule set, each channel subscribed once however many
listen, UNSUBSCRIBE when the last listener leaves, bounded buffers, revocation, drain.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from redis_gateway import settings as settings_mod
from redis_gateway.app import Gateway
from redis_gateway.auth import Principal, TokenRecord, hash_token
from redis_gateway.errors import Forbidden, TooManyRequests, Unauthorized
from redis_gateway.streams.hub import Message, Subscription

from support import RedisServer, numsub, redis_command

RULES = {"admin": "admin", "rw": "read-write", "chat": "+@all -@admin ~* &chat:* &news.*",
         "app": "read-write resetkeys ~app:*"}


@pytest.fixture
async def gateway(redis: RedisServer) -> AsyncIterator[Gateway]:
    settings = settings_mod.load(env={}, overrides={
        "redis": redis.url,
        "streams": {"buffer_bytes": 4096, "max_streams_per_token": 5, "recheck_seconds": 0.2},
    })
    gw = Gateway(settings, extra_tokens=[TokenRecord(name, hash_token(name + "-token"), rules)
                                         for name, rules in RULES.items()])
    await gw.warm_up()
    yield gw
    await gw.close()


async def principal(gw: Gateway, name: str) -> Principal:
    return await gw.tokens.authenticate(name + "-token")


async def publish(redis: RedisServer, channel: str, data: str) -> int:
    reply = await asyncio.to_thread(redis_command, redis.port, "PUBLISH", channel, data)
    assert isinstance(reply, int)
    return reply


async def next_message(sub: Subscription) -> Message:
    return await asyncio.wait_for(anext(sub), 5)


async def test_fan_out_subscribes_once_and_unsubscribes_with_the_last(
        gateway: Gateway, redis: RedisServer) -> None:
    p = await principal(gateway, "rw")
    hub = gateway.hub(p)
    subs = [await hub.subscribe(p, "channel", [b"fan"]) for _ in range(3)]
    assert numsub(redis, "fan") == 1  # one Redis subscription for three listeners
    assert await publish(redis, "fan", "hello") == 1
    for sub in subs:
        assert await next_message(sub) == Message("message", b"fan", None, b"hello")
    await subs[0].close()
    await subs[0].close()  # idempotent
    assert subs[0].ended == "closed"
    assert numsub(redis, "fan") == 1
    for sub in subs[1:]:
        await sub.close()
    await wait_for(lambda: numsub(redis, "fan") == 0)
    await wait_for(lambda: not hub._connections)  # the connection is freed


async def test_patterns_and_binary_payloads(gateway: Gateway, redis: RedisServer) -> None:
    p = await principal(gateway, "rw")
    sub = await gateway.hub(p).subscribe(p, "pattern", [b"pat.*"])
    reply = redis_command(redis.port, "PUBLISH", "pat.one", b"\x00\xff\n")
    assert reply == 1
    assert await next_message(sub) == Message("pmessage", b"pat.one", b"pat.*", b"\x00\xff\n")
    await sub.close()


async def test_channel_rules_as_redis_acl(gateway: Gateway, redis: RedisServer) -> None:
    p = await principal(gateway, "chat")
    hub = gateway.hub(p)
    with pytest.raises(Forbidden, match="'other' channel"):
        await hub.subscribe(p, "channel", [b"chat:1", b"other"])
    with pytest.raises(Forbidden, match="'chat:1\\*' channel"):
        await hub.subscribe(p, "pattern", [b"chat:1*"])  # narrower, but not literally granted
    with pytest.raises(Forbidden, match="monitor"):
        await hub.monitor(p)
    sub = await hub.subscribe(p, "pattern", [b"chat:*"])
    assert numsub(redis, "other") == 0
    await sub.close()


async def test_keyspace_notifications_only_about_the_tokens_keys_and_database(
        gateway: Gateway, redis: RedisServer) -> None:
    """Redis's ACL sees only the channel: a token with allchannels but ~app:* would hear
    every key of every database change (found by a red-team pass)."""
    redis.cli("CONFIG", "SET", "notify-keyspace-events", "KEA")
    try:
        listening = {}
        for name in ("app", "admin"):
            p = await principal(gateway, name)
            listening[name] = await gateway.hub(p).subscribe(p, "pattern", [b"__key*@*__:*"])
        redis.cli("SET", "other:secret", "1")
        redis.cli("-n", "1", "SET", "app:in-db1", "1")
        redis.cli("SET", "app:mine", "1")
        heard = {name: [await next_message(sub) for _ in range(2)]
                 for name, sub in listening.items()}
        # The first two the app token hears are about its own key: the four before were
        # dropped, not delayed (one subscriber connection delivers in order).
        assert [(m.channel, m.data) for m in heard["app"]] == [
            (b"__keyspace@0__:app:mine", b"set"), (b"__keyevent@0__:set", b"app:mine")]
        assert [(m.channel, m.data) for m in heard["admin"]] == [
            (b"__keyspace@0__:other:secret", b"set"), (b"__keyevent@0__:set", b"other:secret")]
        for sub in listening.values():
            await sub.close()
    finally:
        redis.cli("CONFIG", "SET", "notify-keyspace-events", "")


async def test_monitor(gateway: Gateway, redis: RedisServer) -> None:
    p = await principal(gateway, "admin")
    sub = await gateway.hub(p).monitor(p)
    await asyncio.to_thread(redis_command, redis.port, "SET", "monitored", "v")
    message = await next_message(sub)
    while b"monitored" not in message.data:
        message = await next_message(sub)
    assert message.kind == "monitor" and b'"SET" "monitored" "v"' in message.data
    await sub.close()


async def test_each_channel_of_a_subscription_counts_as_a_stream(gateway: Gateway) -> None:
    """One SSE request may name many channels: each counts under
    max_streams_per_token (5 here), as each one a WebSocket subscribes does (found by a
    red-team pass: one stream held 3,000 channels)."""
    p = await principal(gateway, "rw")
    hub = gateway.hub(p)
    with pytest.raises(TooManyRequests, match="max_streams_per_token"):
        await hub.subscribe(p, "channel", [b"many:%d" % i for i in range(6)])
    three = await hub.subscribe(p, "channel", [b"a", b"b", b"c"])
    with pytest.raises(TooManyRequests, match="3 open streams"):
        await hub.subscribe(p, "channel", [b"d", b"e", b"f"])
    two = await hub.subscribe(p, "channel", [b"d", b"e"])
    await three.close()
    again = await hub.subscribe(p, "pattern", [b"x*", b"y*", b"z*"])
    for sub in (two, again):
        await sub.close()


async def test_slow_consumer_is_cut_off(gateway: Gateway, redis: RedisServer) -> None:
    p = await principal(gateway, "rw")
    hub = gateway.hub(p)
    slow = await hub.subscribe(p, "channel", [b"flood"])
    fast = await hub.subscribe(p, "channel", [b"flood"])
    for i in range(100):
        await publish(redis, "flood", "x" * 100)
        assert (await next_message(fast)).data == b"x" * 100, i
        if slow.ended:
            break
    assert slow.ended == "slow consumer"
    with pytest.raises(StopAsyncIteration):
        await anext(slow)
    assert fast.ended is None
    await fast.close()


async def test_limits_per_token(gateway: Gateway) -> None:
    p = await principal(gateway, "rw")
    hub = gateway.hub(p)
    subs = [await hub.subscribe(p, "channel", [b"lim%d" % i]) for i in range(5)]
    with pytest.raises(TooManyRequests, match="max_streams_per_token"):
        await hub.subscribe(p, "channel", [b"lim"])
    await subs[0].close()
    subs[0] = await hub.subscribe(p, "channel", [b"lim"])
    for sub in subs:
        await sub.close()


async def test_revocation_ends_streams(gateway: Gateway) -> None:
    p = await principal(gateway, "rw")
    revoked = False

    async def recheck() -> Principal:
        if revoked:
            raise Unauthorized("invalid token: it is unknown or has been revoked")
        return p

    sub = await gateway.hub(p).subscribe(p, "channel", [b"rev"], recheck=recheck)
    revoked = True
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(sub), 5)
    assert sub.ended == "token revoked"


async def test_drain_ends_streams_and_refuses_new_ones(gateway: Gateway) -> None:
    p = await principal(gateway, "rw")
    sub = await gateway.hub(p).subscribe(p, "channel", [b"drain"])
    await gateway.drain()
    assert sub.ended == "draining"
    with pytest.raises(Exception, match="shutting down"):
        await gateway.hub(p).subscribe(p, "channel", [b"drain"])


async def test_resubscribes_after_the_connection_is_killed(
        gateway: Gateway, redis: RedisServer) -> None:
    p = await principal(gateway, "rw")
    sub = await gateway.hub(p).subscribe(p, "channel", [b"again"])
    assert redis_command(redis.port, "CLIENT", "KILL", "TYPE", "pubsub") == 1
    assert numsub(redis, "again") == 0
    await wait_for(lambda: numsub(redis, "again") == 1)
    assert await publish(redis, "again", "back") == 1
    assert (await next_message(sub)).data == b"back"
    await sub.close()


async def wait_for(condition: object, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
