"""The built-in HTTP/1.1 server, spoken to over raw sockets: what clients may send it."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from support import GatewayProcess, RedisServer


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


def test_slow_heads_and_idle_connections_are_closed(redis_server: RedisServer) -> None:
    gw = GatewayProcess(redis_server.url, rules={"admin": "admin"}, config_extra=(
        "[limits]\nheader_timeout = 1\nkeep_alive_timeout = 1\n")).start()
    try:
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as slow:
            slow.sendall(b"GET /healthz HTTP/1.1\r\n")  # and never the rest of the head
            started = time.monotonic()
            assert slow.recv(100) == b""  # closed by the server
            assert 0.9 < time.monotonic() - started < 4
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as idle:
            idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
            assert idle.recv(4096).startswith(b"HTTP/1.1 200 OK")
            started = time.monotonic()
            assert idle.recv(100) == b""  # idle past keep_alive_timeout
            assert 0.9 < time.monotonic() - started < 4
    finally:
        gw.stop()


def test_uvicorn_can_serve_the_same_app(redis_server: RedisServer) -> None:
    gw = GatewayProcess(redis_server.url, rules={"admin": "admin"},
                        config_extra='server = "uvicorn"').start()
    try:
        with gw.client() as client:
            assert client.post("/", json=["ECHO", "via uvicorn"]).json() == {
                "result": "via uvicorn"}
        assert "Uvicorn running" in gw.log
    finally:
        gw.stop()
