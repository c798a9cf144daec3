"""The WebSocket endpoint /ws (streams/ws.py) with a real client library (``websockets``),
on the built-in server (wsproto) and on uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import websockets

from support import GatewayProcess, RedisServer, redis_command

RULES = {"admin": "admin", "rw": "read-write", "ro": "read-only", "app": "read-write "
         "resetkeys ~app:* resetchannels &app:*"}


@pytest.fixture(scope="module", params=["builtin", "uvicorn"])
def gateway(request: pytest.FixtureRequest, redis: RedisServer) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(redis.url, rules=RULES, config_extra=(
        f'server = "{request.param}"\n[streams]\nmax_ws_message_bytes = 4096\n')).start()
    yield gw
    gw.stop()


def ws_url(gw: GatewayProcess) -> str:
    return gw.url.replace("http://", "ws://") + "/ws"


async def call(ws: Any, message: object) -> Any:
    await ws.send(json.dumps(message))
    return json.loads(await asyncio.wait_for(ws.recv(), 5))


async def test_commands_and_pushes(gateway: GatewayProcess, redis: RedisServer) -> None:
    async with websockets.connect(ws_url(gateway)) as ws:
        assert await call(ws, {"token": gateway.tokens["rw"]}) == {"result": "OK"}
        assert await call(ws, ["SET", "ws:k", "v"]) == {"result": "OK"}
        assert await call(ws, {"id": 7, "command": ["GET", "ws:k"]}) == {"result": "v", "id": 7}
        assert (await call(ws, ["INCR", "ws:k"]))["error"].startswith("ERR value is not")
        assert await call(ws, ["SUBSCRIBE", "ws:a", "ws:b"]) == {"push": ["subscribe", "ws:a", 1]}
        assert json.loads(await ws.recv()) == {"push": ["subscribe", "ws:b", 2]}
        assert redis_command(redis.port, "PUBLISH", "ws:a", "hello") == 1
        assert json.loads(await ws.recv()) == {"push": ["message", "ws:a", "hello"]}
        # commands still work while subscribed, on the same socket
        assert await call(ws, ["PUBLISH", "ws:b", "mine"]) in (
            {"result": 1}, {"push": ["message", "ws:b", "mine"]})
        assert await call(ws, ["UNSUBSCRIBE"]) in (
            {"push": ["message", "ws:b", "mine"]}, {"push": ["unsubscribe", "ws:a", 1]})
    await wait_numsub(redis, "ws:a")


async def test_auth_by_subprotocol_and_base64(gateway: GatewayProcess,
                                              redis: RedisServer) -> None:
    async with websockets.connect(
            ws_url(gateway), additional_headers={"Upstash-Encoding": "base64"},
            subprotocols=["redis-gateway", f"token.{gateway.tokens['rw']}"]) as ws:  # type: ignore[list-item]
        assert await call(ws, ["ECHO", "hi"]) == {"result": "aGk="}
        assert await call(ws, ["PSUBSCRIBE", "b64.*"]) == {"push": ["psubscribe", "YjY0Lio=", 1]}
        redis_command(redis.port, "PUBLISH", "b64.x", b"\xff")
        assert json.loads(await ws.recv()) == {"push": ["pmessage", "YjY0Lio=", "YjY0Lng=",
                                                        "/w=="]}


async def test_rules_apply(gateway: GatewayProcess) -> None:
    async with websockets.connect(ws_url(gateway) + f"?_token={gateway.tokens['app']}") as ws:
        assert "'other' key" in (await call(ws, ["GET", "other"]))["error"]
        assert "'other' channel" in (await call(ws, ["SUBSCRIBE", "other"]))["error"]
        assert "'monitor' command" in (await call(ws, ["MONITOR"]))["error"]
        # A refused channel among allowed ones: subscribed to none of them, as in Redis.
        refused = await call(ws, ["SUBSCRIBE", "app:0", "other", "app:2"])
        assert "'other' channel" in refused["error"]
        assert (await call(ws, ["SUBSCRIBE", "app:1"]))["push"] == ["subscribe", "app:1", 1]


async def test_bad_token_and_oversized_messages_close(gateway: GatewayProcess) -> None:
    async with websockets.connect(ws_url(gateway)) as ws:
        assert "invalid token" in (await call(ws, {"token": "nope"}))["error"]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    async with websockets.connect(ws_url(gateway)) as ws:
        assert await call(ws, {"token": gateway.tokens["rw"]}) == {"result": "OK"}
        await ws.send(json.dumps(["SET", "k", "x" * 5000]))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_monitor(gateway: GatewayProcess, redis: RedisServer) -> None:
    async with websockets.connect(ws_url(gateway)) as ws:
        await call(ws, {"token": gateway.tokens["admin"]})
        assert await call(ws, ["MONITOR"]) == {"result": "OK"}
        redis_command(redis.port, "SET", "ws:monitored", "1")
        while True:
            push = json.loads(await asyncio.wait_for(ws.recv(), 5))["push"]
            if "ws:monitored" in push[1]:
                break
        assert push[0] == "monitor"


async def test_a_storm_of_websocket_clients(gateway: GatewayProcess, redis: RedisServer) -> None:
    """200 clients subscribe, get a message, and drop (half without a close frame)."""
    async def one(i: int) -> None:
        ws = await websockets.connect(ws_url(gateway) + f"?_token={gateway.tokens['rw']}")
        await call(ws, ["SUBSCRIBE", f"wstorm{i % 5}"])
        if i % 2:
            await ws.close()
        else:
            ws.transport.abort()

    await asyncio.gather(*(one(i) for i in range(200)))
    for i in range(5):
        await wait_numsub(redis, f"wstorm{i}")


async def wait_numsub(redis: RedisServer, channel: str) -> None:
    for _ in range(250):
        reply = redis_command(redis.port, "PUBSUB", "NUMSUB", channel)
        if reply == [channel.encode(), 0]:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{channel} is still subscribed")


def test_a_client_that_reads_nothing_is_not_read_either(redis: RedisServer) -> None:
    """Pings from a client that reads no pongs, with no token at all: the built-in server
    stops reading it once its pongs are not taken (each would otherwise queue up in the
    gateway's memory), and drops it after write_timeout (found by a red-team pass)."""
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Ping, Request

    gw = GatewayProcess(redis.url, rules=RULES,
                        config_extra="[limits]\nwrite_timeout = 2\n").start()
    try:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", gw.port))
            client = WSConnection(ConnectionType.CLIENT)
            sock.sendall(client.send(Request(host="gw", target="/ws")))
            client.receive_data(sock.recv(4096))
            assert isinstance(next(client.events()), AcceptConnection)
            pings = client.send(Ping(b"p" * 125)) * 512
            before = gw.memory()
            sock.settimeout(3)
            sent = 0
            with contextlib.suppress(TimeoutError, ConnectionError):
                while sent < 64 * 2**20:
                    sock.sendall(pings)
                    sent += len(pings)
            grown = gw.memory() - before
            assert sent < 32 * 2**20, sent  # it stopped being read
            assert grown < 16 * 2**20, grown
            sock.settimeout(10)  # dropped: write_timeout after it stopped reading
            with contextlib.suppress(ConnectionError):
                while sock.recv(65536):
                    pass
    finally:
        gw.stop()


async def test_a_socket_must_authenticate_in_time_and_ends_with_its_token(
        redis: RedisServer) -> None:
    """No token within header_timeout: closed (1008), as a request whose head never
    comes. A token that expires ends the socket though it has no subscription (found by
    a red-team pass: both stayed open)."""
    import datetime as dt

    from redis_gateway.auth import hash_token, new_token

    token = new_token()
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=6)).isoformat()
    gw = GatewayProcess(redis.url, rules=RULES, config_extra=(
        f'[[tokens]]\nname = "brief"\nhash = "{hash_token(token)}"\nrules = "read-write"\n'
        f'expires = "{expires}"\n'
        "[limits]\nheader_timeout = 1\n[streams]\nrecheck_seconds = 0.2\n")).start()
    try:
        for server_closes in (None, token):
            async with websockets.connect(ws_url(gw)) as ws:
                if server_closes is not None:
                    assert await call(ws, {"token": token}) == {"result": "OK"}
                    assert await call(ws, ["PING"]) == {"result": "PONG"}
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    while True:
                        await asyncio.wait_for(ws.recv(), 10)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    finally:
        gw.stop()
