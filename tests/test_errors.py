"""Every refusal has its status and a message that says what was wrong; none is a 500."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import time
from collections.abc import Iterator

import httpx
import pytest

from redis_gateway.auth import new_token

from support import GatewayProcess, RedisServer


def error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    message: str = body["error"]
    assert message and "Traceback" not in message
    return message


@pytest.mark.parametrize(("body", "expected"), [
    (b"", "body is empty"),
    (b"{not json", "not valid JSON"),
    (b'{"cmd": "GET"}', "must be a JSON array"),
    (b"[]", "empty array"),
    (b'["SET", "k", null]', "element 3, is null"),
    (b'["SET", "k", {"a": 1}]', "element 3, is an object"),
    (b'["SET", "k", [1]]', "element 3, is an array"),
    (b'["SET", "k", NaN]', "not valid JSON"),
    (b'["SET", "k", "\\udcff"]', "not valid Unicode"),
    (b'[' * 100000, "not valid JSON"),
])
def test_malformed_single_command(admin: httpx.Client, body: bytes, expected: str) -> None:
    assert expected in error(admin.post("/", content=body), 400)


@pytest.mark.parametrize(("body", "expected"), [
    (b'["GET", "k"]', "array of command arrays"),
    (b"[]", "holds no commands"),
    (b'[["GET", "k"], "PING"]', "array of command arrays"),
    (b'[["GET", "k"], []]', "command 2 is an empty array"),
])
def test_malformed_batches(admin: httpx.Client, body: bytes, expected: str) -> None:
    assert expected in error(admin.post("/pipeline", content=body), 400)
    assert expected in error(admin.post("/multi-exec", content=body), 400)


def test_unknown_command_and_arity(admin: httpx.Client) -> None:
    message = error(admin.post("/", json=["FOO", "bar"]), 400)
    assert message == "ERR unknown command 'FOO', with args beginning with: 'bar' "
    message = error(admin.post("/", json=["GET"]), 400)
    assert message == "ERR wrong number of arguments for 'get' command"
    assert "path names no command" not in error(admin.get("/nosuch"), 400)


def test_redis_error_reply_is_400(admin: httpx.Client) -> None:
    admin.post("/", json=["SET", "errors:str", "x"])
    assert error(admin.post("/", json=["LPUSH", "errors:str", "y"]), 400).startswith(
        "WRONGTYPE")


@pytest.mark.parametrize(("command", "why"), [
    (["SUBSCRIBE", "ch"], "use the streaming endpoints"),
    (["PSUBSCRIBE", "c*"], "use the streaming endpoints"),
    (["MONITOR"], "use the streaming endpoints"),
    (["MULTI"], "/multi-exec"),
    (["EXEC"], "/multi-exec"),
    (["WATCH", "k"], "WATCH needs a connection"),
    (["SELECT", "1"], "backend URL"),
    (["SYNC"], "replication protocol"),
    (["HELLO", "3"], "state of a connection"),
    (["CLIENT", "PAUSE", "100"], "pause the gateway"),
    (["CLIENT", "REPLY", "OFF"], "state of a connection"),
    (["AUTH", "pw"], "gateway token"),
])
def test_commands_that_cannot_work_here(admin: httpx.Client, command: list[str],
                                        why: str) -> None:
    message = error(admin.post("/", json=command), 400)
    assert "is not available here" in message and why in message


def test_missing_invalid_and_malformed_tokens(gateway: GatewayProcess) -> None:
    url = gateway.url + "/"
    assert "missing token" in error(httpx.post(url, json=["PING"]), 401)
    bad = {"Authorization": "Bearer rgw_nope"}
    assert "invalid token" in error(httpx.post(url, json=["PING"], headers=bad), 401)
    basic = {"Authorization": "Basic dXNlcjpwdw=="}
    assert "missing token" in error(httpx.post(url, json=["PING"], headers=basic), 401)
    assert "invalid token" in error(httpx.get(gateway.url + "/ping?_token=x"), 401)


def test_forbidden_commands_by_preset(gateway: GatewayProcess) -> None:
    with gateway.client("rw") as rw, gateway.client("ro") as ro:
        assert "NOPERM" in error(rw.post("/", json=["FLUSHALL"]), 403)
        assert "'keys'" in error(rw.post("/", json=["KEYS", "*"]), 403)
        assert "'config|set'" in error(rw.post("/", json=["CONFIG", "SET", "x", "y"]), 403)
        assert "'set'" in error(ro.post("/", json=["SET", "k", "v"]), 403)
        assert ro.post("/", json=["GET", "k"]).status_code == 200
        assert ro.post("/", json=["PING"]).json() == {"result": "PONG"}
        assert "'eval'" in error(ro.post("/", json=["EVAL", "return 1", "0"]), 403)


def test_forbidden_subcommands_and_categories(gateway: GatewayProcess) -> None:
    with gateway.client("configget") as cg, gateway.client("nohash") as nh:
        assert cg.post("/", json=["CONFIG", "GET", "maxmemory"]).status_code == 200
        error(cg.post("/", json=["CONFIG", "SET", "maxmemory", "0"]), 403)
        error(nh.post("/", json=["HSET", "h", "f", "v"]), 403)
        assert nh.post("/", json=["SET", "nohash:s", "v"]).status_code == 200


def test_forbidden_keys(gateway: GatewayProcess) -> None:
    with gateway.client("scoped") as scoped:
        assert scoped.post("/", json=["SET", "app:1", "v"]).json() == {"result": "OK"}
        assert "'other:1' key" in error(scoped.post("/", json=["SET", "other:1", "v"]), 403)
        # %R~shared:* grants reading, not writing
        assert scoped.post("/", json=["GET", "shared:x"]).status_code == 200
        error(scoped.post("/", json=["SET", "shared:x", "v"]), 403)
        # every key of a multi-key command is checked
        error(scoped.post("/", json=["MSET", "app:2", "v", "other:2", "v"]), 403)
        assert scoped.post("/", json=["MSET", "app:2", "v", "app:3", "v"]).status_code == 200
        # keys only the server can find: SORT ... STORE, and a script's declared keys
        error(scoped.post("/", json=["EVAL", "return 1", "1", "other:3"]), 403)
        assert scoped.post("/", json=["EVAL", "return 1", "1", "app:3"]).json() == {
            "result": 1}
        error(scoped.post("/", json=["SORT", "app:list", "STORE", "other:4"]), 403)


def test_expired_token(redis_server: RedisServer) -> None:
    token = new_token()
    gw = GatewayProcess(redis_server.url, rules={})
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
    gw.config_extra = gw.token_table("old", "admin", token, f'expires = "{past}"')
    gw.start()
    try:
        response = httpx.post(gw.url, json=["PING"], headers={"Authorization": f"Bearer {token}"})
        assert "expired at" in error(response, 401)
    finally:
        gw.stop()


def test_method_not_allowed(admin: httpx.Client) -> None:
    r = admin.delete("/get/k")
    assert "DELETE is not allowed" in error(r, 405)
    assert "GET" in r.headers["allow"]
    assert "use POST" in error(admin.get("/pipeline"), 405)
    assert "POST a JSON array" in error(admin.get("/"), 405)


@pytest.fixture(scope="module")
def limited(redis_server: RedisServer) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(redis_server.url, rules={"admin": "admin"}, config_extra=(
        "[limits]\nmax_body_bytes = 1000\nmax_commands = 5\nmax_reply_bytes = 2000\n"
        "max_block_seconds = 1\ncommand_timeout = 2\nconnect_timeout = 1\n"))
    gw.start()
    yield gw
    gw.stop()


def test_body_too_large(limited: GatewayProcess) -> None:
    with limited.client() as c:
        assert "max_body_bytes" in error(c.post("/", json=["SET", "k", "x" * 2000]), 413)

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
            yield b'["SET", "k", "'
            yield b"x" * 2000
            yield b'"]'

        assert "max_body_bytes" in error(c.post("/", content=chunks()), 413)
        assert "max_body_bytes" in error(c.post("/set/k", content=b"x" * 2000), 413)


def test_too_many_commands(limited: GatewayProcess) -> None:
    with limited.client() as c:
        batch = [["PING"]] * 6
        assert "limits.max_commands" in error(c.post("/pipeline", json=batch), 413)
        assert "limits.max_commands" in error(c.post("/multi-exec", json=batch), 413)
        assert len(c.post("/pipeline", json=batch[:5]).json()) == 5


def test_reply_too_large_is_an_error_not_a_truncated_body(limited: GatewayProcess) -> None:
    with limited.client() as c:
        c.post("/", json=["SET", "limits:big", "x" * 900])
        assert c.post("/", json=["GET", "limits:big"]).status_code == 200
        message = error(c.post("/", json=["MGET", "limits:big", "limits:big", "limits:big"]),
                        413)
        assert "max_reply_bytes" in message
        error(c.post("/pipeline", json=[["GET", "limits:big"]] * 3), 413)


def test_blocking_command_is_capped_and_does_not_stall_others(limited: GatewayProcess) -> None:
    with limited.client() as c, concurrent.futures.ThreadPoolExecutor(4) as pool:
        started = time.monotonic()
        blocked = [pool.submit(c.post, "/", json=["BLPOP", "limits:empty", 0]) for _ in range(3)]
        time.sleep(0.2)
        # other requests are answered at once while three BLPOPs wait
        quick = time.monotonic()
        assert c.post("/", json=["PING"]).json() == {"result": "PONG"}
        assert time.monotonic() - quick < 0.5
        for future in blocked:
            assert future.result().json() == {"result": None}
        # capped at max_block_seconds = 1, well before the 0 (forever) asked for
        assert 0.9 < time.monotonic() - started < 5
        # a capped XREAD BLOCK 0 answers too
        r = c.post("/", json=["XREAD", "BLOCK", "0", "STREAMS", "limits:stream", "$"])
        assert r.json() == {"result": None}


def wait_until_answering(client: httpx.Client, within: float = 5.0) -> None:
    """Poll until the gateway runs commands again: it recovers by itself, no restart."""
    deadline = time.monotonic() + within
    while client.post("/", json=["PING"]).status_code != 200:
        assert time.monotonic() < deadline, "the gateway did not recover"
        time.sleep(0.1)


def test_redis_down_fails_fast_with_503_and_recovers() -> None:
    server = RedisServer().start()
    gw = GatewayProcess(server.url, rules={"admin": "admin"},
                        config_extra="[limits]\nconnect_timeout = 1\ncommand_timeout = 2\n")
    gw.start()
    try:
        with gw.client() as c:
            assert c.post("/", json=["SET", "k", "v"]).json() == {"result": "OK"}
            server.stop()
            for _ in range(3):
                started = time.monotonic()
                message = error(c.post("/", json=["GET", "k"]), 503)
                assert time.monotonic() - started < 1.5
                assert "Redis" in message
            assert error(c.get("/readyz"), 503).startswith("Redis not reachable")
            assert c.get("/healthz").status_code == 200
            server.start()  # same port, empty data
            wait_until_answering(c)
            assert c.post("/", json=["GET", "k"]).json() == {"result": None}
            assert c.post("/multi-exec", json=[["INCR", "n"]]).json() == [{"result": 1}]
    finally:
        gw.stop()
        server.close()


def test_paused_redis_gives_504_then_recovers() -> None:
    server = RedisServer().start()
    gw = GatewayProcess(server.url, rules={"admin": "admin"},
                        config_extra="[limits]\nconnect_timeout = 0.5\ncommand_timeout = 1\n")
    gw.start()
    try:
        with gw.client() as c:
            assert c.post("/", json=["PING"]).status_code == 200
            server.pause()
            started = time.monotonic()
            assert "did not answer within 1 s" in error(c.post("/", json=["PING"]), 504)
            assert time.monotonic() - started < 2.5
            # the stuck connection was dropped: the next request fails fast too
            started = time.monotonic()
            assert c.post("/", json=["PING"]).status_code == 503
            assert time.monotonic() - started < 1.5
            server.resume()
            wait_until_answering(c)
    finally:
        server.resume()
        gw.stop()
        server.close()


def test_base_path(redis_server: RedisServer) -> None:
    gw = GatewayProcess(redis_server.url, rules={"admin": "admin"}, base_path="/redis")
    gw.start()
    try:
        with gw.client() as c:
            assert c.post("/redis", json=["PING"]).json() == {"result": "PONG"}
            assert c.get("/redis/echo/a%2Fb").json() == {"result": "a/b"}
            assert c.post("/redis/pipeline", json=[["PING"]]).json() == [{"result": "PONG"}]
            assert "mounted at /redis" in error(c.post("/", json=["PING"]), 404)
    finally:
        gw.stop()


def test_no_request_in_this_file_produced_a_500(gateway: GatewayProcess) -> None:
    assert "incident" not in gateway.log
    assert "Traceback" not in gateway.log
