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

import pytest
import websockets
from gql import Client, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport

from support import GatewayProcess, RedisServer

RULES = {"admin": "admin", "rw": "read-write", "ro": "read-only",
         "app": "+@all -@dangerous ~app:* &app:*"}


@pytest.fixture(scope="module", params=["uvicorn"])
def stack(request: pytest.FixtureRequest) -> Iterator[tuple[RedisServer, GatewayProcess]]:
    redis = RedisServer().start()
    gateway = GatewayProcess(redis.url, rules=RULES,
                             config_extra=f'server = "{request.param}"\n'
                                          "[graphql]\nkeyspace_events_enable = true\n")
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
