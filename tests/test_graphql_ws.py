"""GraphQL over WebSocket (graphql-transport-ws): gql's WebsocketsTransport as a client
would use it, and the protocol's refusals with a raw WebSocket client (``websockets``).

Each gateway here is its own process on a Redis of its own: subscriptions change what
Redis is asked to send (notify-keyspace-events), which must not leak into other tests.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import websockets
from gql import Client, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport

from support import GatewayProcess, RedisServer, numsub, redis_command


class Plain:
    """A few commands straight to the test's Redis (no client library's conversions)."""

    def __init__(self, server: RedisServer) -> None:
        self.port = server.port

    def publish(self, channel: str, message: str) -> object:
        return redis_command(self.port, "PUBLISH", channel, message)

    def set(self, key: str, value: str) -> object:
        return redis_command(self.port, "SET", key, value)

    def delete(self, key: str) -> object:
        return redis_command(self.port, "DEL", key)

    def config_set(self, name: str, value: str) -> object:
        return redis_command(self.port, "CONFIG", "SET", name, value)

    def config_get(self, name: str) -> dict[str, str]:
        reply = redis_command(self.port, "CONFIG", "GET", name)
        assert isinstance(reply, list)
        return {reply[0].decode(): reply[1].decode()}

RULES = {"admin": "admin", "rw": "read-write", "ro": "read-only",
         "app": "+@all -@dangerous ~app:* &app:*",
         # Every channel (so keyspace channels too), but only app:* keys.
         "keys": "+@all -@dangerous ~app:* allchannels"}


@pytest.fixture(scope="module", params=["builtin", "uvicorn"])
def stack(request: pytest.FixtureRequest) -> Iterator[tuple[RedisServer, GatewayProcess]]:
    redis = RedisServer().start()
    gateway = GatewayProcess(redis.url, rules=RULES,
                             config_extra=f'server = "{request.param}"\n'
                                          "[graphql]\nkeyspace_events_enable = true\n"
                                          "max_subscriptions = 3\n"
                                          "[streams]\nmax_ws_message_bytes = 65536\n")
    try:
        gateway.start()
        yield redis, gateway
    finally:
        gateway.stop()
        redis.close()


@pytest.fixture(scope="module")
def gw(stack: tuple[RedisServer, GatewayProcess]) -> GatewayProcess:
    return stack[1]


def ws_url(gateway: GatewayProcess) -> str:
    return gateway.url.replace("http://", "ws://") + "/graphql"


@pytest.fixture
async def session(gw: GatewayProcess) -> AsyncIterator[Any]:
    transport = WebsocketsTransport(url=ws_url(gw), subprotocols=["graphql-transport-ws"],
                                    init_payload={"x-api-key": gw.tokens["admin"]})
    async with Client(transport=transport) as session:
        yield session


async def test_queries_and_mutations_on_the_socket(session: Any) -> None:
    key = f"ws:{uuid.uuid4().hex[:8]}"
    set_ = gql('mutation($k: String!) { set(key: $k, value: "v1") }')
    got = gql("query($k: String!) { get(key: $k) }")
    assert await session.execute(set_, variable_values={"k": key}) == {"set": "OK"}
    assert await session.execute(got, variable_values={"k": key}) == {"get": "v1"}
    with pytest.raises(TransportQueryError) as info:
        await session.execute(gql("query { nosuchfield }"))
    assert "nosuchfield" in str(info.value)


async def test_on_put_redis_pushes_the_same_tokens_results(gw: GatewayProcess,
                                                           session: Any) -> None:
    key = f"ws:{uuid.uuid4().hex[:8]}"
    received: list[Any] = []
    ready = asyncio.Event()

    async def watch() -> None:
        async for result in session.subscribe(gql("subscription { onPutRedis }")):
            received.append(result["onPutRedis"])
            return

    watcher = asyncio.create_task(watch())
    # The subscription is registered once the gateway has it: poll by writing until it
    # is seen (each write is a real putRedis; the first one after registration arrives).
    put = gql('mutation($k: String!) { putRedis(Command: [["INCR", $k]]) }')
    try:
        async with asyncio.timeout(10):
            while not watcher.done():
                await session.execute(put, variable_values={"k": key})
                await asyncio.wait([watcher], timeout=0.05)
    finally:
        ready.set()
    assert len(received) == 1 and json.loads(received[0])[0] >= 1


async def raw(gw: GatewayProcess, subprotocol: str = "graphql-transport-ws") -> Any:
    return await websockets.connect(ws_url(gw), subprotocols=[subprotocol])  # type: ignore[list-item]


async def closed_with(socket: Any) -> tuple[int, str]:
    async with asyncio.timeout(10):
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await socket.recv()
    return socket.close_code, socket.close_reason


async def test_protocol_refusals_close_with_the_protocols_codes(gw: GatewayProcess) -> None:
    # A bad token: 4403.
    socket = await raw(gw)
    await socket.send(json.dumps({"type": "connection_init", "payload": {"x-api-key": "nope"}}))
    code, _ = await closed_with(socket)
    assert code == 4403
    # No token at all: 4403 too, saying where it goes.
    socket = await raw(gw)
    await socket.send(json.dumps({"type": "connection_init"}))
    code, reason = await closed_with(socket)
    assert (code, "connection_init" in reason) == (4403, True)
    # subscribe before connection_init: 4401.
    socket = await raw(gw)
    await socket.send(json.dumps({"id": "1", "type": "subscribe",
                                  "payload": {"query": "{ __typename }"}}))
    assert (await closed_with(socket))[0] == 4401
    # Not JSON, an unknown type: 4400.
    for bad in ("{", json.dumps({"type": "hello"}), json.dumps([1])):
        socket = await raw(gw)
        await socket.send(bad)
        assert (await closed_with(socket))[0] == 4400
    # A second connection_init: 4429.
    socket = await raw(gw)
    init = json.dumps({"type": "connection_init", "payload": {"x-api-key": gw.tokens["ro"]}})
    await socket.send(init)
    assert json.loads(await socket.recv()) == {"type": "connection_ack"}
    await socket.send(init)
    assert (await closed_with(socket))[0] == 4429
    # A message past streams.max_ws_message_bytes: 1009.
    socket = await raw(gw)
    await socket.send(json.dumps({"type": "connection_init", "payload": {"x": "y" * 70_000}}))
    assert (await closed_with(socket))[0] == 1009
    # Nothing sent: closed 4408 once the initialisation time is over.
    socket = await raw(gw)
    assert (await closed_with(socket))[0] == 4408


async def test_ping_ids_and_refused_documents(gw: GatewayProcess) -> None:
    socket = await raw(gw)
    await socket.send(json.dumps({"type": "connection_init",
                                  "payload": {"Authorization": f"Bearer {gw.tokens['ro']}"}}))
    assert json.loads(await socket.recv()) == {"type": "connection_ack"}
    await socket.send(json.dumps({"type": "ping", "payload": {"n": 1}}))
    assert json.loads(await socket.recv()) == {"type": "pong", "payload": {"n": 1}}
    # A document the limits refuse: an error message for that id, the socket stays.
    deep = "query { " + "a { " * 50 + "}" * 51
    await socket.send(json.dumps({"id": "deep", "type": "subscribe",
                                  "payload": {"query": deep}}))
    answer = json.loads(await socket.recv())
    assert answer["id"] == "deep" and answer["type"] == "error" and answer["payload"]
    # A write from a read-only token: next with the error, then complete.
    await socket.send(json.dumps({"id": "w", "type": "subscribe", "payload": {
        "query": 'mutation { set(key: "ws:ro", value: "x") }'}}))
    answer = json.loads(await socket.recv())
    assert answer["type"] == "next" and answer["payload"]["errors"][0]["errorType"]
    assert json.loads(await socket.recv()) == {"id": "w", "type": "complete"}
    # An id that is still running: 4409.
    stream = {"id": "s", "type": "subscribe",
              "payload": {"query": "subscription { onPutRedis }"}}
    await socket.send(json.dumps(stream))
    await socket.send(json.dumps(stream))
    assert (await closed_with(socket))[0] == 4409


async def test_a_plain_http_subscription_says_how_to_stream(gw: GatewayProcess) -> None:
    import httpx

    async with httpx.AsyncClient() as client:
        answer = await client.post(gw.url + "/graphql",
                                   json={"query": "subscription { onPutRedis }"},
                                   headers={"x-api-key": gw.tokens["admin"]})
    assert answer.status_code == 400
    assert "graphql-transport-ws" in answer.json()["errors"][0]["message"]


# Subscriptions: Redis pub/sub through the hub ---------------------------------------------
async def publish_until(stack: tuple[RedisServer, GatewayProcess], task: asyncio.Task[Any],
                        channel: str, message: str) -> None:
    """Publishes straight on Redis until the subscriber task has what it waits for: the
    subscription is confirmed by Redis some time after the client sent it."""
    redis = stack[0]
    async with asyncio.timeout(10):
        while not task.done():
            Plain(redis).publish(channel, message)
            await asyncio.wait([task], timeout=0.05)


async def first_events(session: Any, document: str, count: int, **variables: Any) -> list[Any]:
    query = gql(document)
    query.variable_values = variables
    events = []
    async for event in session.subscribe(query):
        events.append(event)
        if len(events) == count:
            break
    return events


async def test_channel_and_pattern_messages(stack: tuple[RedisServer, GatewayProcess],
                                            session: Any) -> None:
    channel = f"ws:{uuid.uuid4().hex[:8]}"
    task = asyncio.create_task(first_events(
        session, "subscription($c: [String!]!) { messages(channels: $c) "
                 "{ channel pattern message } }", 1, c=[channel]))
    await publish_until(stack, task, channel, "hello, world")
    assert task.result() == [{"messages": {"channel": channel, "pattern": None,
                                           "message": "hello, world"}}]
    task = asyncio.create_task(first_events(
        session, 'subscription($p: [String!]!) { patternMessages(patterns: $p, '
                 'encoding: BASE64) { channel pattern message } }', 1, p=["wsp:*"]))
    await publish_until(stack, task, "wsp:x", "\u00e9")
    assert task.result() == [{"patternMessages": {
        "channel": "d3NwOng=", "pattern": "d3NwOio=", "message": "w6k="}}]


async def test_channel_rules_decide_as_redis_acl(gw: GatewayProcess) -> None:
    transport = WebsocketsTransport(url=ws_url(gw), subprotocols=["graphql-transport-ws"],
                                    init_payload={"x-api-key": gw.tokens["app"]})
    async with Client(transport=transport) as app:
        for document in ('subscription { messages(channels: ["other"]) { message } }',
                         # A pattern only when the token has that very pattern (&app:*).
                         'subscription { patternMessages(patterns: ["app:x*"]) { message } }'):
            with pytest.raises(TransportQueryError) as info:
                await first_events(app, document, 1)
            assert info.value.errors and info.value.errors[0]["errorType"] == "Forbidden"
            assert "NOPERM" in info.value.errors[0]["message"]


async def test_keyspace_events_are_opt_in_for_admins_and_filtered_by_key_rules(
        stack: tuple[RedisServer, GatewayProcess], gw: GatewayProcess, session: Any) -> None:
    redis = Plain(stack[0])
    redis.config_set("notify-keyspace-events", "")
    document = ("subscription($e: Boolean) { keyspaceEvents(keys: \"app:*\", enable: $e) "
                "{ db key event } }")
    # Off on the server and not asked for: refused at once, saying why; nothing turned on.
    with pytest.raises(TransportQueryError) as info:
        await first_events(session, document, 1)
    assert "notify-keyspace-events" in info.value.errors[0]["message"]
    assert redis.config_get("notify-keyspace-events")["notify-keyspace-events"] == ""
    # A token that is not admin may not turn it on.
    transport = WebsocketsTransport(url=ws_url(gw), subprotocols=["graphql-transport-ws"],
                                    init_payload={"x-api-key": gw.tokens["rw"]})
    async with Client(transport=transport) as rw:
        with pytest.raises(TransportQueryError) as info:
            await first_events(rw, document, 1, e=True)
        assert info.value.errors[0]["errorType"] == "Forbidden"
    assert redis.config_get("notify-keyspace-events")["notify-keyspace-events"] == ""
    # An admin, asking: turned on (K plus every class), and the events arrive.
    key = f"app:{uuid.uuid4().hex[:8]}"
    task = asyncio.create_task(first_events(session, document, 1, e=True))
    async with asyncio.timeout(10):
        while not task.done():
            redis.set(key, "v")
            await asyncio.wait([task], timeout=0.05)
    assert task.result() == [{"keyspaceEvents": {"db": 0, "key": key, "event": "set"}}]
    flags = redis.config_get("notify-keyspace-events")["notify-keyspace-events"]
    assert "K" in flags and ("A" in flags or set("g$lshzxe") <= set(flags))
    # keyEvents: the key is the message, the event the channel.
    transport = WebsocketsTransport(url=ws_url(gw), subprotocols=["graphql-transport-ws"],
                                    init_payload={"x-api-key": gw.tokens["admin"]})
    redis.config_set("notify-keyspace-events", "KEA")
    async with Client(transport=transport) as app:
        task = asyncio.create_task(first_events(
            app, 'subscription { keyEvents(events: ["del"]) { db key event } }', 1))
        async with asyncio.timeout(10):
            while not task.done():
                redis.set(key, "v")
                redis.delete(key)
                await asyncio.wait([task], timeout=0.05)
        assert task.result() == [{"keyEvents": {"db": 0, "key": key, "event": "del"}}]


async def test_key_rules_filter_keyspace_events(stack: tuple[RedisServer, GatewayProcess],
                                                gw: GatewayProcess) -> None:
    redis = Plain(stack[0])
    redis.config_set("notify-keyspace-events", "KEA")
    transport = WebsocketsTransport(url=ws_url(gw), subprotocols=["graphql-transport-ws"],
                                    init_payload={"x-api-key": gw.tokens["keys"]})
    mine = f"app:{uuid.uuid4().hex[:8]}"
    async with Client(transport=transport) as app:
        task = asyncio.create_task(first_events(
            app, 'subscription { keyEvents(events: ["set"]) { key } }', 2))
        async with asyncio.timeout(10):
            while not task.done():
                redis.set("secret:k", "v")  # never shown: the token cannot read secret:*
                redis.set(mine, "v")
                await asyncio.wait([task], timeout=0.05)
        assert task.result() == [{"keyEvents": {"key": mine}}] * 2


async def test_an_expiring_token_ends_its_subscriptions_and_connection(
        stack: tuple[RedisServer, GatewayProcess]) -> None:
    import datetime as dt

    from redis_gateway.auth import hash_token, new_token

    redis = stack[0]
    token = new_token()
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)).isoformat()
    gw = GatewayProcess(redis.url, rules={"admin": "admin"}, config_extra=(
        'server = "uvicorn"\n[streams]\nrecheck_seconds = 0.2\n\n[[tokens]]\n'
        f'name = "brief"\nhash = "{hash_token(token)}"\nrules = "read-write"\n'
        f"expires = {expires}\n"))
    gw.start()
    try:
        socket = await raw(gw)
        await socket.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
        assert json.loads(await socket.recv()) == {"type": "connection_ack"}
        await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
            "query": 'subscription { messages(channels: ["brief"]) { message } }'}}))
        # The hub ends the stream: its last event says why, then complete; then the
        # connection itself is closed 4403.
        async with asyncio.timeout(15):
            ended = json.loads(await socket.recv())
        assert ended["type"] == "next" and "token expired" in ended["payload"]["errors"][0][
            "message"]
        assert json.loads(await socket.recv()) == {"id": "1", "type": "complete"}
        code, reason = await closed_with(socket)
        assert code == 4403 and "expired" in reason
    finally:
        gw.stop()


async def test_a_disconnect_storm_leaves_no_subscription(
        stack: tuple[RedisServer, GatewayProcess], gw: GatewayProcess) -> None:
    """200 graphql-transport-ws clients subscribed to one channel drop their TCP
    connections without a close frame: the gateway's Redis subscription goes too."""
    redis = stack[0]
    channel = f"storm:{uuid.uuid4().hex[:8]}"

    async def subscriber(i: int) -> Any:
        socket = await raw(gw)
        await socket.send(json.dumps({"type": "connection_init",
                                      "payload": {"x-api-key": gw.tokens["admin"]}}))
        await socket.recv()
        await socket.send(json.dumps({"id": str(i), "type": "subscribe", "payload": {
            "query": "subscription($c: [String!]!) { messages(channels: $c) { message } }",
            "variables": {"c": [channel]}}}))
        return socket

    sockets = await asyncio.gather(*(subscriber(i) for i in range(200)))
    async with asyncio.timeout(10):
        while numsub(redis, channel) != 1:  # one Redis subscription for all of them
            Plain(redis).publish(channel, "x")
            await asyncio.sleep(0.05)
    # Every client receives a message (they are all subscribed), then drops mid-stream.
    Plain(redis).publish(channel, "last")
    for socket in sockets:
        socket.transport.abort()
    async with asyncio.timeout(10):
        while numsub(redis, channel) != 0:
            await asyncio.sleep(0.05)


async def test_operations_per_connection_are_bounded(gw: GatewayProcess) -> None:
    socket = await raw(gw)
    await socket.send(json.dumps({"type": "connection_init",
                                  "payload": {"x-api-key": gw.tokens["admin"]}}))
    assert json.loads(await socket.recv()) == {"type": "connection_ack"}
    for operation_id in "abcd":
        await socket.send(json.dumps({"id": operation_id, "type": "subscribe",
                                      "payload": {"query": "subscription { onPutRedis }"}}))
    refused = json.loads(await socket.recv())
    assert refused["id"] == "d" and refused["type"] == "error"
    assert "graphql.max_subscriptions" in refused["payload"][0]["message"]
    # The connection stays; completing one makes room for another.
    await socket.send(json.dumps({"id": "a", "type": "complete"}))
    await socket.send(json.dumps({"type": "ping"}))
    assert json.loads(await socket.recv()) == {"type": "pong"}
    await socket.send(json.dumps({"id": "e", "type": "subscribe", "payload": {
        "query": "{ __typename }"}}))
    assert json.loads(await socket.recv()) == {"id": "e", "type": "next",
                                               "payload": {"data": {"__typename": "Query"}}}
    await socket.close()


async def test_on_put_redis_streams_are_counted_and_bounded_in_bytes(
        stack: tuple[RedisServer, GatewayProcess]) -> None:
    """onPutRedis holds a place under streams.max_streams_per_token, as a channel does,
    and a buffer of streams.buffer_bytes: a result that does not fit ends the stream as a
    slow consumer's (found by a red-team pass: 100 results of any size were kept)."""
    redis, _ = stack
    gw = GatewayProcess(redis.url, rules=RULES, config_extra=(
        "[streams]\nbuffer_bytes = 4096\nmax_streams_per_token = 2\n")).start()
    try:
        socket = await raw(gw)
        await socket.send(json.dumps({"type": "connection_init",
                                      "payload": {"x-api-key": gw.tokens["rw"]}}))
        assert json.loads(await socket.recv()) == {"type": "connection_ack"}
        for operation_id in "abc":
            await socket.send(json.dumps({"id": operation_id, "type": "subscribe", "payload": {
                "query": "subscription { onPutRedis }"}}))
        refused = json.loads(await asyncio.wait_for(socket.recv(), 5))  # a resolver's error
        assert refused["id"] == "c" and "max_streams_per_token" in json.dumps(refused)
        big = "x" * 10_000  # one result larger than the buffer
        async with httpx.AsyncClient() as client:
            answer = await client.post(gw.url + "/graphql", headers={
                "x-api-key": gw.tokens["rw"]}, json={"query": (
                    f'mutation {{ putRedis(Command: [["ECHO", "{big}"]]) }}')})
        assert answer.status_code == 200 and big in answer.text
        ended: set[str] = set()
        async with asyncio.timeout(10):
            while ended != {"a", "b"}:
                event = json.loads(await socket.recv())
                assert big not in json.dumps(event)
                if "slow consumer" in json.dumps(event):
                    ended.add(event["id"])
        await socket.close()
    finally:
        gw.stop()
