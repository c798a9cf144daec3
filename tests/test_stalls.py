"""Issue 10's reproductions at the command level: nothing stalls the shared connection,
runaway scripts are stopped, and one token's flood stays within its share.

A victim request runs while each attack is in progress; that it is answered before the
attack ends (not a wall-clock figure) is what shows the attack did not hold it up.
"""

from __future__ import annotations

import concurrent.futures
import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from redis_gateway.auth import new_token

from support import GatewayProcess, RedisServer, command_calls, redis_command

LIMITS = """
[limits]
max_block_seconds = 1
command_timeout = 2
token_concurrency = 64
[backends.default]
max_dedicated_connections = 8
"""


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    # A running script lets other clients in (to answer BUSY, or SCRIPT KILL) after this.
    s = RedisServer("--busy-reply-threshold", "300").start()
    yield s
    s.close()


@pytest.fixture(scope="module")
def gw(server: RedisServer) -> Iterator[GatewayProcess]:
    g = GatewayProcess(server.url, config_extra=LIMITS, rules={
        "admin": "admin", "rw": "read-write", "ro": "read-only"})
    for name, share in (("throttled", "rate = 2\nburst = 2"), ("paced", "rate = 2\nburst = 2"),
                        ("limited", "concurrency = 3"), ("counted", "reply_rate = 60000"),
                        ("timed", "redis_time = 0.01"),
                        ("bytes", "reply_rate = 100000")):
        g.tokens[name] = new_token()
        g.config_extra += g.token_table(name, "read-write", g.tokens[name], share)
    g.start()
    yield g
    g.stop()


def post(gw: GatewayProcess, token: str, path: str, body: object,
         timeout: float = 30) -> httpx.Response:
    return httpx.post(gw.url + path, json=body, timeout=timeout,
                      headers={"Authorization": f"Bearer {gw.tokens[token]}"})


def answered_while(gw: GatewayProcess, attack: concurrent.futures.Future[httpx.Response],
                   victim_token: str = "admin") -> None:
    """The victim's GET is answered while the attack is still pending."""
    response = post(gw, victim_token, "/", ["GET", "victim:key"], timeout=10)
    assert response.status_code == 200, response.text
    assert not attack.done(), "the attack finished before the victim was answered"


def started(pool: concurrent.futures.ThreadPoolExecutor, gw: GatewayProcess, token: str,
            body: object, path: str = "/") -> concurrent.futures.Future[httpx.Response]:
    future = pool.submit(post, gw, token, path, body)
    time.sleep(0.2)  # let it reach Redis; the victim's check below does not depend on it
    return future


@pytest.mark.parametrize("attack", [
    ["WAIT", "1", "3000"],
    ["XREAD", "BLOCK\x00", "0", "STREAMS", "app:s", "$"],
    ["BLPOP", "app:empty", "0x1p20"],
    ["XREAD", "COUNT", "1", "BLOCK", "0", "BLOCK", "0", "STREAMS", "app:s", "$"],
])
def test_commands_that_wait_hold_no_shared_connection(gw: GatewayProcess,
                                                      attack: list[str]) -> None:
    token = "ro" if attack[0] == "XREAD" else "rw"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        began = time.monotonic()
        future = started(pool, gw, token, attack)
        answered_while(gw, future)
        response = future.result()
        # Capped at max_block_seconds = 1 (WAIT's 3 s too), read as Redis reads the timeout.
        assert time.monotonic() - began < 1 + 2 + 1, response.text
        assert response.status_code == 200, response.text


def test_the_cap_rewrites_only_the_timeout(gw: GatewayProcess, server: RedisServer) -> None:
    """A stream named 'block' keeps its ID; a BLOCK after STREAMS is no option."""
    server.cli("XADD", "block", "5-0", "f", "v")
    response = post(gw, "rw", "/", ["XREAD", "STREAMS", "block", "0"])
    assert response.json()["result"][0][0] == "block"
    assert response.json()["result"][0][1][0][0] == "5-0"
    response = post(gw, "rw", "/", ["XREAD", "BLOCK", "0", "STREAMS", "block", "4-0"])
    assert response.json()["result"][0][1][0][0] == "5-0"


@pytest.mark.parametrize(("argv", "error"), [
    (["BLPOP", "k", "-1"], "ERR timeout is negative"),
    (["BLPOP", "k", "nan"], "ERR timeout is not a float or out of range"),
    (["BLPOP", "k", "1\x00"], "ERR timeout is not a float or out of range"),
    (["XREAD", "BLOCK", "01", "STREAMS", "s", "$"], "ERR timeout is not an integer"),
    (["WAIT", "0", "-5"], "ERR timeout is negative"),
])
def test_timeouts_redis_refuses_are_refused(gw: GatewayProcess, argv: list[str],
                                            error: str) -> None:
    response = post(gw, "rw", "/", argv)
    assert response.status_code == 400
    assert response.json()["error"].startswith(error)


def test_a_runaway_script_is_stopped(gw: GatewayProcess, server: RedisServer) -> None:
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        future = started(pool, gw, "rw", ["EVAL", "while true do end", "0"])
        # Meanwhile Redis answers BUSY to everyone: a prompt 503, not a hang.
        victim = post(gw, "admin", "/", ["GET", "victim:key"], timeout=10)
        assert victim.status_code in (200, 503), victim.text
        assert not future.done()
        response = future.result()
    assert response.status_code == 504, response.text
    assert "SCRIPT KILL" in response.json()["error"]
    stopped = time.monotonic()
    assert post(gw, "admin", "/", ["PING"]).json() == {"result": "PONG"}
    assert time.monotonic() - stopped < 1.0
    assert server.cli("PING") == "PONG"


def test_a_script_that_wrote_cannot_be_killed_and_says_so(gw: GatewayProcess) -> None:
    script = "redis.call('set', KEYS[1], 'x') local t = redis.call('time')[1] " \
             "while tonumber(redis.call('time')[1]) < t + 3 do end"
    response = post(gw, "rw", "/", ["EVAL", script, "1", "app:wrote"])
    assert response.status_code == 504, response.text
    assert "cannot stop it" in response.json()["error"]
    deadline = time.monotonic() + 10
    while post(gw, "admin", "/", ["PING"]).status_code != 200:  # it ends by itself
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_blocking_reads_of_one_token_leave_reserved_connections_for_others(
        gw: GatewayProcess) -> None:
    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        blocked = [pool.submit(post, gw, "ro", "/", ["XREAD", "BLOCK", "1000", "STREAMS",
                                                     "app:quiet", "$"]) for _ in range(32)]
        time.sleep(0.2)
        response = post(gw, "admin", "/multi-exec", [["INCR", "app:n"], ["GET", "app:n"]])
        assert response.status_code == 200, response.text
        assert not all(f.done() for f in blocked)
        statuses = sorted({f.result().status_code for f in blocked})
    # The reader's share (half of 8) ran; the rest waited for its own, then got 429s.
    assert statuses in ([200], [200, 429]), statuses


def test_a_token_over_its_rate_gets_429_and_others_do_not(gw: GatewayProcess) -> None:
    statuses = [post(gw, "throttled", "/", ["PING"]) for _ in range(5)]
    assert [r.status_code for r in statuses[:2]] == [200, 200]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, [r.status_code for r in statuses]
    assert 0 < int(limited[0].headers["retry-after"]) <= 1
    assert post(gw, "rw", "/", ["PING"]).status_code == 200


def test_a_client_pipelining_past_its_rate_gets_one_refusal_per_retry_after(
        gw: GatewayProcess) -> None:
    """Each 429 is sent after its Retry-After, the connection unread meanwhile: by then the
    rate has room again, so a refusal is followed by answers instead of a refusal for
    every request sent meanwhile (rate 2/s, burst 2: without the wait, [200, 200, 429 x 4])."""
    request = (b"POST / HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer "
               + gw.tokens["paced"].encode() + b"\r\nContent-Length: 8\r\n\r\n"
               b'["PING"]')
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(request * 6)
        data = b""
        while data.count(b"HTTP/1.1 ") < 6:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    statuses = [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]
    assert statuses[:3] == [200, 200, 429], statuses
    assert all(statuses[i + 1] == 200 for i in range(5) if statuses[i] == 429), statuses


def test_a_token_over_its_concurrency_gets_429(gw: GatewayProcess) -> None:
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        futures = [pool.submit(post, gw, "limited", "/", ["BLPOP", "app:none", "1"])
                   for _ in range(10)]
        responses = [f.result() for f in futures]
    assert sum(r.status_code == 200 for r in responses) >= 3
    refused = [r for r in responses if r.status_code == 429]
    assert refused and "requests in flight" in refused[0].json()["error"]


def test_a_shared_rate_holds_across_gateway_processes(server: RedisServer) -> None:
    token = new_token()
    config = "[limits]\nshared_rate = true\n"
    processes = [GatewayProcess(server.url, rules={}, config_extra=config) for _ in range(2)]
    for gw in processes:
        gw.config_extra += gw.token_table("shared", "read-write", token,
                                          "rate = 0.1\nburst = 3")
    try:
        for gw in processes:
            gw.start()
        headers = {"Authorization": f"Bearer {token}"}
        statuses = [httpx.post(processes[i % 2].url, json=["PING"], headers=headers).status_code
                    for i in range(8)]
        # One budget for both: the burst of 3, then one per 10 s, wherever it lands.
        assert statuses[:3] == [200, 200, 200] and set(statuses[3:]) == {429}, statuses
        # GraphQL draws from the same budget, and says so in AppSync's shape.
        query = '{ getRedis(Command: ["PING"]) }'
        response = httpx.post(processes[0].url + "/graphql", json={"query": query},
                              headers={"x-api-key": token})
        assert response.status_code == 429
        assert response.json()["errors"][0]["errorType"] == "TooManyRequests"
        assert "retry-after" in response.headers
        # The counter is the gateway's own key, out of every token's reach.
        keys = server.cli("KEYS", "redis-gateway:rate:*").split()
        assert keys == ["redis-gateway:rate:shared"]
        response = httpx.post(processes[0].url, json=["DEL", keys[0]],
                              headers={"Authorization": f"Bearer {token}"})
        assert response.status_code in (403, 429)
    finally:
        for gw in processes:
            gw.stop()


def test_a_count_past_one_second_of_the_reply_budget_is_refused_before_it_is_sent(
        gw: GatewayProcess, server: RedisServer) -> None:
    """60 kB/s of replies: at most 10,000 elements (6 bytes each at least, as Redis sends
    them) from one negative count, whatever max_reply_bytes allows; Redis never sees more."""
    assert redis_command(server.port, "SADD", "app:one", "m") in (0, 1)
    before = command_calls(server.port, "srandmember")
    refused = post(gw, "counted", "/", ["SRANDMEMBER", "app:one", "-10001"])
    assert refused.status_code == 413
    assert "one second of this token's budget" in refused.json()["error"]
    assert command_calls(server.port, "srandmember") == before
    allowed = post(gw, "counted", "/", ["SRANDMEMBER", "app:one", "-10000"])
    assert allowed.json() == {"result": ["m"] * 10_000}
    assert command_calls(server.port, "srandmember") == before + 1
    # Another token with the same rules and no budget: only max_reply_bytes bounds it.
    assert len(post(gw, "rw", "/", ["SRANDMEMBER", "app:one", "-20000"]).json()["result"]) \
        == 20_000


# Busy for 30 ms of Redis's time (by Redis's own clock), then answers.
BUSY = ("local s = redis.call('TIME') repeat local n = redis.call('TIME') "
        "until (n[1] - s[1]) * 1000000 + (n[2] - s[2]) >= 30000 return 1")


def test_a_token_over_its_budget_of_redis_time_waits_and_others_do_not(
        gw: GatewayProcess) -> None:
    """1% of Redis: a script that holds Redis 30 ms puts the token three seconds in debt;
    its next request is refused before it reaches Redis, another token's is not."""
    assert post(gw, "timed", "/", ["EVAL", BUSY, "0"]).json() == {"result": 1}
    refused = post(gw, "timed", "/", ["GET", "app:k"])
    assert refused.status_code == 429, refused.text
    assert "seconds of Redis per second" in refused.json()["error"]
    assert 1 <= int(refused.headers["retry-after"]) <= 3
    assert post(gw, "rw", "/", ["EVAL", BUSY, "0"]).status_code == 200
    assert post(gw, "rw", "/", ["GET", "app:k"]).status_code == 200


def test_a_token_over_its_reply_budget_waits_and_others_do_not(gw: GatewayProcess,
                                                              server: RedisServer) -> None:
    assert redis_command(server.port, "SET", "app:half", b"x" * 600_000) == b"OK"
    headers = {"Authorization": f"Bearer {gw.tokens['bytes']}"}
    first = httpx.post(gw.url + "/get/app:half", headers=headers)
    assert first.status_code == 200
    second = httpx.post(gw.url + "/get/app:half", headers=headers)
    # 100 kB/s: the first runs into six seconds of debt, then the token waits it off.
    assert second.status_code == 429, second.text
    assert "bytes of replies" in second.json()["error"]
    assert 4 <= int(second.headers["retry-after"]) <= 6
    assert post(gw, "rw", "/", ["GET", "app:half"]).status_code == 200


@pytest.mark.parametrize("server_kind", ["built-in", "uvicorn"])
def test_a_large_body_over_its_token_budget_is_refused_by_its_head(server: RedisServer,
                                                                  server_kind: str) -> None:
    """Bytes of bodies are a token's share too: past its budget, a large body is refused
    from its head, before the client sends it (nothing read, nothing parsed)."""
    gw = GatewayProcess(server.url, rules={"rw": "read-write"}, config_extra=(
        'server = "uvicorn"\n' if server_kind == "uvicorn" else ""))
    gw.tokens["uploads"] = new_token()
    gw.config_extra += gw.token_table("uploads", "read-write", gw.tokens["uploads"],
                                      "body_rate = 100000")
    gw.start()
    try:
        auth = f"Authorization: Bearer {gw.tokens['uploads']}\r\n".encode()
        first = httpx.post(gw.url + "/set/app:upload", content=b"x" * 300_000,
                           headers={"Authorization": f"Bearer {gw.tokens['uploads']}"})
        assert first.status_code == 200, first.text
        # 100 kB/s: the first put it three seconds in debt. The next one's head is enough.
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
            sock.sendall(b"POST /set/app:upload HTTP/1.1\r\nHost: gw\r\n" + auth
                         + b"Content-Length: 300000\r\n\r\n")
            response = b""
            while chunk := sock.recv(65536):
                response += chunk
        assert response.startswith(b"HTTP/1.1 429 "), response
        head, _, body = response.partition(b"\r\n\r\n")
        assert b"bytes of request bodies" in body
        assert 1 <= int(re.search(rb"(?i)retry-after: (\d+)", head)[1]) <= 3  # type: ignore[index]
        assert b"connection: close" in head.lower()
        # Small bodies count too, when their requests are admitted: still in debt.
        small = httpx.post(gw.url + "/set/app:upload", content=b"y",
                           headers={"Authorization": f"Bearer {gw.tokens['uploads']}"})
        assert small.status_code == 429
        # Another token is not held up by it.
        assert post(gw, "rw", "/", ["SET", "app:other", "z" * 300_000]).status_code == 200
    finally:
        gw.stop()
