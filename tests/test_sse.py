"""Pub/sub and MONITOR over Server-Sent Events (streams/sse.py), on both HTTP servers.

Real gateway processes, real Redis, httpx reading the event stream.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from redis_gateway import settings as settings_mod
from redis_gateway.app import Gateway
from redis_gateway.auth import TokenRecord, hash_token
from redis_gateway.http import Request
from redis_gateway.streams.sse import event_lines

from support import GatewayProcess, RedisServer, numsub, redis_command, wait_for

RULES = {"admin": "admin", "rw": "read-write", "ro": "read-only",
         "chat": "+@all -@admin ~* &chat:*", "app": "read-write resetkeys ~app:*"}


@pytest.fixture(scope="module", params=["builtin", "uvicorn"])
def gateway(request: pytest.FixtureRequest, redis: RedisServer) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(redis.url, rules=RULES, config_extra=(
        f'server = "{request.param}"\n[streams]\nbuffer_bytes = 65536\n'
        "recheck_seconds = 0.5\nkeepalive_seconds = 0.5\n")).start()
    yield gw
    gw.stop()


def auth(gw: GatewayProcess, token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {gw.tokens[token]}"}


class Events:
    """The events of one SSE response, read as they come."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.iter_lines()

    def rest(self) -> Iterator[str]:
        """Every line left, until the stream ends."""
        yield from self._lines

    def next(self, *, comments: bool = False) -> list[str]:
        event: list[str] = []
        for line in self._lines:
            if line == "":
                if event and (comments or not all(x.startswith(":") for x in event)):
                    return event
                event = []
                continue
            event.append(line)
        raise AssertionError(f"the stream ended; last lines {event}")


def test_subscribe_publish_unsubscribe(gateway: GatewayProcess, redis: RedisServer) -> None:
    with httpx.stream("POST", gateway.url + "/subscribe/chat:a/chat%2Fb", json=[],
                      headers=auth(gateway, "rw"), timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = Events(response)
        assert events.next() == ["data: subscribe,chat:a,1"]
        assert events.next() == ["data: subscribe,chat/b,2"]
        assert numsub(redis, "chat:a") == 1
        published = httpx.post(gateway.url, json=["PUBLISH", "chat:a", "how, are you"],
                               headers=auth(gateway, "rw")).json()
        assert published == {"result": 1}
        assert events.next() == ["data: message,chat:a,how, are you"]
        redis_command(redis.port, "PUBLISH", "chat/b", b"two\nlines\r\n spaced")
        assert events.next() == ["data: message,chat/b,two", "data:lines", "data:  spaced"]
        assert events.next(comments=True) == [": keepalive"]
    wait_for(lambda: numsub(redis, "chat:a") == 0 and numsub(redis, "chat/b") == 0, 5,
             "both channels unsubscribed")


def test_psubscribe_and_get(gateway: GatewayProcess, redis: RedisServer) -> None:
    with httpx.stream("GET", gateway.url + "/psubscribe/news.*", headers=auth(gateway, "ro"),
                      timeout=10) as response:
        events = Events(response)
        assert events.next() == ["data: psubscribe,news.*,1"]
        redis_command(redis.port, "PUBLISH", "news.tech", "{\"a\":1}")
        assert events.next() == ['data: pmessage,news.*,news.tech,{"a":1}']


def test_monitor(gateway: GatewayProcess) -> None:
    with httpx.stream("POST", gateway.url + "/monitor", headers=auth(gateway, "admin"),
                      timeout=10) as response:
        events = Events(response)
        assert events.next() == ['data: "OK"']
        httpx.post(gateway.url, json=["SET", "monitored", "1"], headers=auth(gateway, "admin"))
        line = events.next()
        while "monitored" not in line[0]:
            line = events.next()
        assert line[0].endswith('"SET" "monitored" "1"')


@pytest.mark.parametrize(("token", "path", "status", "text"), [
    ("chat", "/subscribe/other", 403, "'other' channel"),
    ("chat", "/psubscribe/chat:1*", 403, "'chat:1*' channel"),  # only the very pattern
    ("ro", "/monitor", 403, "'monitor' command"),
    ("rw", "/subscribe", 400, "at least one channel"),
    (None, "/subscribe/x", 401, "missing token"),
])
def test_refusals(gateway: GatewayProcess, token: str | None, path: str, status: int,
                  text: str) -> None:
    headers = auth(gateway, token) if token else {}
    response = httpx.post(gateway.url + path, headers=headers, timeout=10)
    assert response.status_code == status, response.text
    assert text in response.json()["error"]


def test_slow_consumer_gets_a_final_error_event(gateway: GatewayProcess,
                                                redis: RedisServer) -> None:
    with httpx.stream("POST", gateway.url + "/subscribe/slow", headers=auth(gateway, "rw"),
                      timeout=10) as response:
        events = Events(response)
        assert events.next() == ["data: subscribe,slow,1"]
        # Flood it without reading: the socket buffers fill, then the stream's buffer
        # (64 KiB), and the gateway cuts the stream off with an error event.
        payload = "x" * 60_000
        for _ in range(400):
            redis_command(redis.port, "PUBLISH", "slow", payload)
            if numsub(redis, "slow") == 0:
                break
        assert numsub(redis, "slow") == 0
        last = None
        for line in events.rest():
            if line.startswith("data: error"):
                last = line
        assert last is not None and last.startswith("data: error,slow consumer,")


def test_lambda_mode_answers_400() -> None:
    settings = settings_mod.load(env={}, overrides={"redis": "redis://127.0.0.1:1"})
    gw = Gateway(settings, extra_tokens=[TokenRecord("t", hash_token("t-token"), "admin")])
    gw.streaming = False
    import asyncio

    request = Request("POST", "/subscribe/x", b"/subscribe/x", b"",
                      [(b"authorization", b"Bearer t-token")], b"")
    response = asyncio.run(gw.handle(request))
    assert response.status == 400
    assert b"AWS Lambda" in response.body


def test_event_lines_cannot_forge_events() -> None:
    assert event_lines(b"message,c,a\ndata: message,other,forged\r x") == (
        b"data: message,c,a\ndata:data: message,other,forged\ndata:  x\n\n")


def test_an_expiring_token_ends_its_stream(redis: RedisServer) -> None:
    import datetime as dt

    from redis_gateway.auth import new_token

    token = new_token()
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)).isoformat()
    gw = GatewayProcess(redis.url, rules={"admin": "admin"}, config_extra=(
        "[streams]\nrecheck_seconds = 0.2\n\n[[tokens]]\nname = \"brief\"\n"
        f"hash = \"{hash_token(token)}\"\nrules = \"read-write\"\nexpires = {expires}\n"))
    gw.start()
    try:
        with httpx.stream("GET", gw.url + "/subscribe/brief", timeout=10,
                          headers={"Authorization": f"Bearer {token}"}) as response:
            events = Events(response)
            assert events.next() == ["data: subscribe,brief,1"]
            assert events.next() == ["event: error",
                                     f"data: error,token expired,token 'brief' expired at "
                                     f"{dt.datetime.fromisoformat(expires).isoformat()}"]
        wait_for(lambda: numsub(redis, "brief") == 0, 5, "'brief' unsubscribed")
    finally:
        gw.stop()


# Redis Streams: at-least-once, resumable -------------------------------------------------
def xadd(redis: RedisServer, key: str, value: str) -> str:
    reply = redis_command(redis.port, "XADD", key, "*", "v", value)
    assert isinstance(reply, bytes)
    return reply.decode()


def test_stream_resumes_with_last_event_id(gateway: GatewayProcess, redis: RedisServer) -> None:
    key = f"feed:{gateway.url[-5:]}"
    first = xadd(redis, key, "before")
    url = gateway.url + "/streams/" + key
    with httpx.stream("GET", url, params={"last_id": "0"}, headers=auth(gateway, "rw"),
                      timeout=10) as response:
        assert response.status_code == 200
        events = Events(response)
        assert events.next() == [f"id: {first}", 'data: ["v","before"]']
        second = xadd(redis, key, "live")
        assert events.next() == [f"id: {second}", 'data: ["v","live"]']
    # The client is gone; entries keep coming; it comes back with Last-Event-ID.
    missed = [xadd(redis, key, f"missed{i}") for i in range(3)]
    headers = {**auth(gateway, "rw"), "Last-Event-ID": second}
    with httpx.stream("GET", url, headers=headers, timeout=10) as response:
        events = Events(response)
        got = [events.next()[0] for _ in missed]
        assert got == [f"id: {i}" for i in missed]


def test_stream_key_rules_and_groups(gateway: GatewayProcess, redis: RedisServer) -> None:
    key = f"jobs:{gateway.url[-5:]}"
    response = httpx.get(gateway.url + "/streams/secret", headers=auth(gateway, "app"),
                         timeout=10)
    assert response.status_code == 403, response.text
    redis_command(redis.port, "XGROUP", "CREATE", key, "workers", "0", "MKSTREAM")
    ids = [xadd(redis, key, f"job{i}") for i in range(2)]
    url = gateway.url + "/streams/" + key
    params = {"group": "workers", "consumer": "w1"}
    ro = httpx.get(url, params=params, headers=auth(gateway, "ro"), timeout=10)
    assert ro.status_code == 403, ro.text  # the group form writes: not for read-only
    with httpx.stream("GET", url, params=params, headers=auth(gateway, "rw"),
                      timeout=10) as response:
        events = Events(response)
        assert [events.next()[0] for _ in ids] == [f"id: {i}" for i in ids]
    # Not acknowledged: delivered again to the same consumer.
    with httpx.stream("GET", url, params=params, headers=auth(gateway, "rw"),
                      timeout=10) as response:
        events = Events(response)
        assert [events.next()[0] for _ in ids] == [f"id: {i}" for i in ids]
    acked = httpx.post(url + "/ack", params={"group": "workers"}, json=ids,
                       headers=auth(gateway, "rw"), timeout=10)
    assert acked.json() == {"result": 2}
    pending = redis_command(redis.port, "XPENDING", key, "workers")
    assert isinstance(pending, list) and pending[0] == 0
