"""The built-in HTTP/1.1 server, spoken to over raw sockets: what clients may send it."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from redis_gateway import settings
from redis_gateway.settings import LimitSettings, SettingsError

from support import GatewayProcess, RedisServer, redis_command


@pytest.fixture(scope="module")
def small(redis_server: RedisServer) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(redis_server.url, rules={"admin": "admin"},
                        config_extra="[limits]\nmax_body_bytes = 1000\n")
    yield gw.start()
    gw.stop()


def exchange(gw: GatewayProcess, raw: bytes, responses: int = 1) -> list[bytes]:
    """Send raw bytes; read until ``responses`` complete responses (or the server closes)."""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(raw)
        return read_responses(sock, responses)


def read_responses(sock: socket.socket, responses: int = 1) -> list[bytes]:
    """``responses`` complete responses (a 100 Continue counts as one), or fewer if closed."""
    data = b""
    out: list[bytes] = []
    while len(out) < responses:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            head = data[:head_end].decode("latin-1").lower()
            length = next((int(line.split(":")[1]) for line in head.split("\r\n")
                           if line.startswith("content-length:")), 0)
            if head.startswith("http/1.1 100"):
                out.append(data[:head_end + 4])
                data = data[head_end + 4:]
                continue
            if len(data) >= head_end + 4 + length:
                out.append(data[:head_end + 4 + length])
                data = data[head_end + 4 + length:]
                continue
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return out


def auth(gw: GatewayProcess) -> bytes:
    return f"Authorization: Bearer {gw.tokens['admin']}\r\n".encode()


def post(gw: GatewayProcess, body: bytes, extra: bytes = b"") -> bytes:
    return (b"POST / HTTP/1.1\r\nHost: gw\r\n" + auth(gw) + extra
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


def body_of(response: bytes) -> object:
    return json.loads(response.split(b"\r\n\r\n", 1)[1])


def test_keep_alive_and_pipelined_requests_answer_in_order(small: GatewayProcess) -> None:
    raw = b"".join(post(small, json.dumps(["ECHO", f"r{i}"]).encode()) for i in range(5))
    responses = exchange(small, raw, responses=5)
    assert [body_of(r) for r in responses] == [{"result": f"r{i}"} for i in range(5)]
    assert all(r.startswith(b"HTTP/1.1 200 OK\r\n") for r in responses)


def test_chunked_request_body(small: GatewayProcess) -> None:
    raw = (b"POST / HTTP/1.1\r\nHost: gw\r\n" + auth(small)
           + b"Transfer-Encoding: chunked\r\n\r\n"
           b"7\r\n[\"ECHO\"\r\n8\r\n, \"hey\"]\r\n0\r\n\r\n")
    (response,) = exchange(small, raw)
    assert body_of(response) == {"result": "hey"}


def test_expect_100_continue(small: GatewayProcess) -> None:
    responses = exchange(small, post(small, b'["PING"]', b"Expect: 100-continue\r\n"), 2)
    assert responses[0] == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert body_of(responses[1]) == {"result": "PONG"}


def test_http_1_0_closes_after_the_response(small: GatewayProcess) -> None:
    raw = b"GET /echo/old HTTP/1.0\r\n" + auth(small) + b"\r\n"
    (response,) = exchange(small, raw)
    assert response.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"connection: close" in response.lower()
    assert body_of(response) == {"result": "old"}


def test_malformed_request_is_400_and_closed(small: GatewayProcess) -> None:
    (response,) = exchange(small, b"THIS IS NOT HTTP\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert "malformed HTTP request" in body_of(response)["error"]  # type: ignore[index]


def test_oversized_head_is_431(small: GatewayProcess) -> None:
    raw = b"GET /ping HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n"
    (response,) = exchange(small, raw)
    assert response.startswith(b"HTTP/1.1 431 ")


def test_chunked_body_over_the_limit_is_413(small: GatewayProcess) -> None:
    chunk = b"x" * 600
    raw = (b"POST /set/k HTTP/1.1\r\nHost: gw\r\n" + auth(small)
           + b"Transfer-Encoding: chunked\r\n\r\n"
           + b"258\r\n" + chunk + b"\r\n" + b"258\r\n" + chunk + b"\r\n0\r\n\r\n")
    (response,) = exchange(small, raw)
    assert response.startswith(b"HTTP/1.1 413 ")
    assert "max_body_bytes" in body_of(response)["error"]  # type: ignore[index]
    with httpx.Client(base_url=small.url) as client:  # the server itself is fine
        assert client.get("/healthz").status_code == 200


def test_expect_100_continue_comes_only_after_the_size_check(small: GatewayProcess) -> None:
    head = (b"POST / HTTP/1.1\r\nHost: gw\r\n" + auth(small) + b"Expect: 100-continue\r\n"
            b"Content-Length: 5000\r\n\r\n")
    (response,) = exchange(small, head)  # the body is never sent: the client waits
    assert response.startswith(b"HTTP/1.1 413 ")
    assert "limits.max_body_bytes" in body_of(response)["error"]  # type: ignore[index]


def test_a_request_budget_smaller_than_the_largest_body_stops_the_start() -> None:
    with pytest.raises(SettingsError, match=r"limits\.max_pending_request_bytes: must be "
                                            r"at least max_body_bytes"):
        settings.load(env={"REDIS_GATEWAY_LIMITS__MAX_PENDING_REQUEST_BYTES": "1000"})


# Bounds, each tried the way an attacker would, with a victim measured meanwhile --------------
BODY_TIMEOUT = 2.0
BUDGET = 16 * 1024 * 1024
MAX_BODY = LimitSettings().max_body_bytes  # the default


@pytest.fixture(scope="module")
def bounded(redis_server: RedisServer) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(redis_server.url, rules={"admin": "admin"}, config_extra=(
        f"[limits]\nheader_timeout = 1\nkeep_alive_timeout = 1\nbody_timeout = {BODY_TIMEOUT}\n"
        f"max_pending_request_bytes = {BUDGET}\n"))
    yield gw.start()
    gw.stop()


def victim_latencies(gw: GatewayProcess, count: int = 10, token: str = "admin") -> list[float]:
    """Seconds each of ``count`` small requests takes, on the victim's own connection."""
    out = []
    with gw.client(token) as client:
        for _ in range(count):
            started = time.monotonic()
            assert client.post("/", json=["PING"]).json() == {"result": "PONG"}
            out.append(time.monotonic() - started)
    return out


def report(what: str, quiet: list[float], attacked: list[float], grown: int) -> None:
    """Printed for the record (pytest -s): the victim's latency without and with the attack."""
    def ms(values: list[float]) -> str:
        ordered = sorted(values)
        return f"median {ordered[len(ordered) // 2] * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms"

    print(f"\n{what}: victim {ms(quiet)} alone, {ms(attacked)} under attack; "
          f"gateway RSS +{grown / 2**20:.1f} MiB")


def gets_run(redis_server: RedisServer) -> int:
    stats = redis_command(redis_server.port, "INFO", "commandstats")
    assert isinstance(stats, bytes)
    for line in stats.decode().splitlines():
        if line.startswith("cmdstat_get:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def test_a_client_that_reads_no_responses_is_not_read_either(
        bounded: GatewayProcess, redis_server: RedisServer) -> None:
    value = 1024 * 1024
    redis_command(redis_server.port, "SET", "big", b"v" * value)
    quiet = victim_latencies(bounded)
    before, ran = bounded.memory(), gets_run(redis_server)
    request = (b"GET /get/big HTTP/1.1\r\nHost: gw\r\n" + auth(bounded) + b"\r\n")
    with socket.socket() as attacker:
        attacker.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        attacker.connect(("127.0.0.1", bounded.port))
        attacker.sendall(request * 300)  # and never reads
        attacked: list[float] = []
        # Until the gateway stops running the attacker's GETs (or runs them all), with
        # the victim served throughout.
        seen, still_since = ran, time.monotonic()
        while time.monotonic() - still_since < 1.5:
            attacked += victim_latencies(bounded, 2)
            now = gets_run(redis_server)
            if now != seen:
                seen, still_since = now, time.monotonic()
            assert now - ran < 300, "every pipelined request ran: no back-pressure"
        grown = bounded.memory() - before
    report("300 pipelined 1 MiB GETs, never read", quiet, attacked, grown)
    assert seen - ran < 30  # what the socket buffers hold, and one more
    assert grown < 16 * value
    assert max(attacked) < BODY_TIMEOUT


def test_a_body_that_never_comes_is_408_within_body_timeout(bounded: GatewayProcess) -> None:
    head = b"POST / HTTP/1.1\r\nHost: gw\r\n" + auth(bounded) + b"Content-Length: 20\r\n\r\n"
    with socket.create_connection(("127.0.0.1", bounded.port), timeout=10) as sock:
        sock.sendall(head + b'["PI')  # and never the rest
        started = time.monotonic()
        (response,) = read_responses(sock)
        waited = time.monotonic() - started
        assert sock.recv(100) == b""  # then closed
    assert response.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert body_of(response) == {"error": f"the request body did not arrive within "
                                          f"{BODY_TIMEOUT:g} s (limits.body_timeout)"}
    assert BODY_TIMEOUT - 0.1 < waited < BODY_TIMEOUT + 3  # swept about once a second


def test_slow_bodies_hold_no_more_than_the_budget(bounded: GatewayProcess) -> None:
    size = 9 * 1024 * 1024
    piece = b"x" * (256 * 1024)
    quiet = victim_latencies(bounded)
    before = bounded.memory()
    answers: list[bytes] = []

    def trickle(i: int) -> None:
        # Half announce their length, half are chunked (refused as they arrive).
        chunked = i % 2 == 1
        framing = (b"Transfer-Encoding: chunked\r\n" if chunked
                   else b"Content-Length: %d\r\n" % size)
        with socket.create_connection(("127.0.0.1", bounded.port), timeout=10) as sock:
            try:
                sock.sendall(b"POST /set/k HTTP/1.1\r\nHost: gw\r\n" + auth(bounded)
                             + framing + b"\r\n")
                for _ in range(size // len(piece) - 1):  # all but the end
                    sock.sendall(b"40000\r\n" + piece + b"\r\n" if chunked else piece)
                    time.sleep(0.01)
                answers.append(sock.recv(4096))
            except TimeoutError:  # neither answered nor closed within 10 s
                answers.append(b"held")
            except OSError:  # refused, and reset: it kept sending (LINGER_BYTES)
                answers.append(b"")

    attackers = [threading.Thread(target=trickle, args=(i,)) for i in range(20)]
    for thread in attackers:
        thread.start()
    attacked: list[float] = []
    peak = 0
    try:
        while any(thread.is_alive() for thread in attackers):  # each ends with its answer
            attacked += victim_latencies(bounded, 2)
            peak = max(peak, bounded.memory())
    finally:
        for thread in attackers:
            thread.join(timeout=30)
    grown = peak - before
    report("20 slow 9 MiB bodies", quiet, attacked, grown)
    assert b"held" not in answers
    # Refused (503: past the budget) or too slow (408); a client that keeps sending its
    # refused body is reset past LINGER_BYTES, before it reads its answer (b"").
    statuses = sorted(int(a.split(b" ")[1]) for a in answers if a)
    assert len(answers) == 20 and set(statuses) <= {408, 503}, answers
    # What they hold is the budget, plus one body being copied as it grows, plus what
    # the allocator keeps; the 20 bodies are 180 MiB.
    assert grown < BUDGET + MAX_BODY + 16 * 1024 * 1024
    assert max(attacked) < BODY_TIMEOUT


def test_bodies_count_until_they_are_answered(redis_server: RedisServer) -> None:
    """20 clients send a 4 MiB SET each while Redis holds writes (CLIENT PAUSE), so the
    gateway cannot answer them yet. Bodies count against the budget until their requests
    are answered, not only until they are read: a body being handled lives on in copies
    (its JSON text, the command's arguments, what is written to Redis), and if each
    were let go once read, all 20 would be held at once."""
    size = 4 * 1024 * 1024
    # One token may hold the whole budget here: this is about the budget itself (the
    # next test is about one token's share of it).
    gw = GatewayProcess(redis_server.url, rules={"admin": "admin", "victim": "read-only"},
                        config_extra=(f"[limits]\nmax_pending_request_bytes = {BUDGET}\n"
                                      "token_body_share = 1\n")).start()
    try:
        request = post(gw, json.dumps(["SET", "big", "x" * size]).encode())
        quiet = victim_latencies(gw, token="victim")
        before = gw.memory(peak=True)
        statuses: list[int] = []

        def send() -> None:
            with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
                try:
                    sock.sendall(request)
                    (answer,) = read_responses(sock)
                    statuses.append(int(answer.split(b" ")[1]))
                except OSError:  # refused and reset while it still sent its body
                    statuses.append(0)

        redis_command(redis_server.port, "CLIENT", "PAUSE", "1500", "WRITE")
        senders = [threading.Thread(target=send) for _ in range(20)]
        for thread in senders:
            thread.start()
        attacked: list[float] = []
        try:
            while any(thread.is_alive() for thread in senders):  # PING is not paused
                attacked += victim_latencies(gw, 2, "victim")
        finally:
            for thread in senders:
                thread.join(timeout=30)
        grown = gw.memory(peak=True) - before
        report("20 bodies of 4 MiB, Redis paused", quiet, attacked, grown)
        # Past the budget: 503, or 429 as the one token's share (all of it here) is full.
        assert len(statuses) == 20 and set(statuses) <= {0, 200, 429, 503}, statuses
        assert 200 in statuses and statuses.count(200) < 20
        # The 20 bodies are 80 MiB. The budget takes three at a time, and each lives on in
        # a few copies while it is handled: under 4 x BUDGET measured, against 17 x when a
        # body stopped counting once read.
        assert grown < 8 * BUDGET, grown
        assert max(attacked) < 3.0
    finally:
        redis_command(redis_server.port, "CLIENT", "UNPAUSE")
        gw.stop()


def test_one_tokens_bodies_hold_at_most_its_share(redis_server: RedisServer) -> None:
    """While Redis holds writes, one token sends 3 MiB SETs on connection after connection:
    past its share of the budget (limits.token_body_share, half by default) it gets 429,
    for it only; another token's SET of the same size still finds room and is answered."""
    size = 3 * 1024 * 1024
    gw = GatewayProcess(redis_server.url, rules={"admin": "admin", "other": "read-write"},
                        config_extra=f"[limits]\nmax_pending_request_bytes = {BUDGET}\n").start()
    opened: list[socket.socket] = []

    def send(token: str, key: str) -> socket.socket:
        body = json.dumps(["SET", key, "x" * size]).encode()
        sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        opened.append(sock)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer "
                     + gw.tokens[token].encode() + b"\r\nContent-Length: %d\r\n\r\n"
                     % len(body) + body)
        return sock

    try:
        redis_command(redis_server.port, "CLIENT", "PAUSE", "3000", "WRITE")
        held = [send("admin", f"big:{i}") for i in range(2)]  # half the budget: its share
        (refused,) = read_responses(send("admin", "big:2"))
        assert refused.startswith(b"HTTP/1.1 429") and b"token_body_share" in refused
        # Chunked, it announces no length: judged once past the allowance, held as the
        # largest body it may become.
        chunked = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        opened.append(chunked)
        chunk = b"x" * (100 * 1024)
        chunked.sendall(b"POST /set/big:chunked HTTP/1.1\r\nHost: gw\r\nAuthorization: "
                        b"Bearer " + gw.tokens["admin"].encode() + b"\r\nTransfer-Encoding: "
                        b"chunked\r\n\r\n%x\r\n" % len(chunk) + chunk + b"\r\n")
        (refused,) = read_responses(chunked)
        assert refused.startswith(b"HTTP/1.1 429") and b"token_body_share" in refused
        other = send("other", "big:other")
        redis_command(redis_server.port, "CLIENT", "UNPAUSE")
        for sock in (*held, other):
            (answer,) = read_responses(sock)
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    finally:
        redis_command(redis_server.port, "CLIENT", "UNPAUSE")
        for sock in opened:
            sock.close()
        gw.stop()


def test_connections_past_the_cap_get_503_and_the_others_are_served(
        redis_server: RedisServer) -> None:
    cap = 10
    gw = GatewayProcess(redis_server.url, rules={"admin": "admin"},
                        config_extra=f"[limits]\nmax_connections = {cap}\n").start()
    request = b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n"
    held: list[socket.socket] = []
    try:
        # Fill the cap with kept-alive connections (the health check's may still be
        # closing: wait until a connection is refused rather than count on it).
        while True:
            sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
            held.append(sock)
            sock.sendall(request)
            answer = sock.recv(4096)
            if answer.startswith(b"HTTP/1.1 503"):
                break
            assert answer.startswith(b"HTTP/1.1 200"), answer
            assert len(held) <= cap
        refused = held.pop()
        assert b"retry-after: 1" in answer
        assert "limits.max_connections" in body_of(answer)["error"]  # type: ignore[index]
        assert refused.recv(100) == b""  # then closed
        refused.close()
        for sock in held[:3]:  # the clients already connected keep being served
            sock.sendall(request)
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        held.pop().close()
        deadline = time.monotonic() + 10
        while True:  # until the gateway has seen the close: then there is room again
            with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
                sock.sendall(request)
                if sock.recv(4096).startswith(b"HTTP/1.1 200"):
                    break
            assert time.monotonic() < deadline
    finally:
        for sock in held:
            sock.close()
        gw.stop()


def test_slow_heads_and_idle_connections_are_closed(bounded: GatewayProcess) -> None:
    with socket.create_connection(("127.0.0.1", bounded.port), timeout=10) as slow:
        slow.sendall(b"GET /healthz HTTP/1.1\r\n")  # and never the rest of the head
        started = time.monotonic()
        response = slow.recv(4096)
        assert 0.9 < time.monotonic() - started < 4
        assert response.startswith(b"HTTP/1.1 408 ")
        assert "limits.header_timeout" in body_of(response)["error"]  # type: ignore[index]
        assert slow.recv(100) == b""
    with socket.create_connection(("127.0.0.1", bounded.port), timeout=10) as idle:
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        assert idle.recv(4096).startswith(b"HTTP/1.1 200 OK")
        started = time.monotonic()
        assert idle.recv(100) == b""  # idle past keep_alive_timeout: closed, no answer
        assert 0.9 < time.monotonic() - started < 4


def test_uvicorn_serves_the_same_app_with_the_limits_it_has(redis_server: RedisServer) -> None:
    gw = GatewayProcess(redis_server.url, rules={"admin": "admin"}, config_extra=(
        'server = "uvicorn"\n[limits]\nmax_body_bytes = 1000\n'
        f"body_timeout = {BODY_TIMEOUT}\nmax_connections = 5\n")).start()
    try:
        with gw.client() as client:
            assert client.post("/", json=["ECHO", "via uvicorn"]).json() == {
                "result": "via uvicorn"}
        assert "Uvicorn running" in gw.log
        # Too large by its announced length: 413 and no 100 Continue first.
        (response,) = exchange(gw, b"POST / HTTP/1.1\r\nHost: gw\r\n" + auth(gw)
                               + b"Expect: 100-continue\r\nContent-Length: 5000\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 413 ")
        # A body that never comes: 408 from the app's own deadline, and closed.
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: gw\r\n" + auth(gw)
                         + b"Content-Length: 20\r\n\r\n[")
            started = time.monotonic()
            (response,) = read_responses(sock)
            assert BODY_TIMEOUT - 0.1 < time.monotonic() - started < BODY_TIMEOUT + 3
            assert response.startswith(b"HTTP/1.1 408 ")
            assert b"limits.body_timeout" in response
            assert sock.recv(100) == b""
        # Past max_connections (uvicorn's limit_concurrency): 503 per request.
        held = [socket.create_connection(("127.0.0.1", gw.port), timeout=10) for _ in range(5)]
        try:
            (response,) = exchange(gw, b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
            assert response.startswith(b"HTTP/1.1 503 ")
        finally:
            for sock in held:
                sock.close()
    finally:
        gw.stop()
