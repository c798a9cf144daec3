"""The typed reply format (Redis-Reply-Format): every RESP type and byte, RESP2 and RESP3."""

from __future__ import annotations

import base64
import uuid

import httpx
import pytest

from support import GatewayProcess


def typed(client: httpx.Client, protocol: int, *argv: object) -> dict[str, object]:
    response = client.post("/", json=list(argv),
                           headers={"Redis-Reply-Format": f"typed-resp{protocol}"})
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()["result"]
    return result


@pytest.fixture
def k() -> str:
    return f"typed:{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("protocol", [2, 3])
def test_scalars(admin: httpx.Client, k: str, protocol: int) -> None:
    assert typed(admin, protocol, "SET", k, "OK") == {"type": "status", "value": "OK"}
    assert typed(admin, protocol, "GET", k) == {"type": "bulk", "value": "OK"}
    assert typed(admin, protocol, "GET", k + "none") == {"type": "null"}
    assert typed(admin, protocol, "SET", k + "n", "9223372036854775806") == {
        "type": "status", "value": "OK"}
    assert typed(admin, protocol, "INCR", k + "n") == {
        "type": "integer", "value": "9223372036854775807"}  # exact, beyond 2**53
    assert typed(admin, protocol, "INCR", k) == {
        "type": "error", "value": "ERR value is not an integer or out of range"}


@pytest.mark.parametrize("protocol", [2, 3])
def test_binary_bulk_is_base64(admin: httpx.Client, k: str, protocol: int) -> None:
    raw = b"\xff\x00caf\xc3\xa9\n"
    admin.post(f"/set/{k}", content=raw)
    reply = typed(admin, protocol, "GET", k)
    assert reply["type"] == "bulk" and base64.b64decode(str(reply["base64"])) == raw
    admin.post("/", json=["SET", k, "café ✓"])
    assert typed(admin, protocol, "GET", k) == {"type": "bulk", "value": "café ✓"}


def test_resp2_aggregates(admin: httpx.Client, k: str) -> None:
    admin.post("/", json=["HSET", k, "f", "v"])
    assert typed(admin, 2, "HGETALL", k) == {"type": "array", "value": [
        {"type": "bulk", "value": "f"}, {"type": "bulk", "value": "v"}]}
    assert typed(admin, 2, "BLPOP", k + "empty", "0.01") == {"type": "null-array"}
    assert typed(admin, 2, "LRANGE", k + "empty", 0, -1) == {"type": "array", "value": []}
    admin.post("/", json=["ZADD", k + "z", "2.5", "m"])
    assert typed(admin, 2, "ZSCORE", k + "z", "m") == {"type": "bulk", "value": "2.5"}


def test_resp3_types(admin: httpx.Client, k: str) -> None:
    admin.post("/", json=["HSET", k, "f", "v"])
    assert typed(admin, 3, "HGETALL", k) == {"type": "map", "value": [
        [{"type": "bulk", "value": "f"}, {"type": "bulk", "value": "v"}]]}
    admin.post("/", json=["SADD", k + "s", "a"])
    assert typed(admin, 3, "SMEMBERS", k + "s") == {"type": "set", "value": [
        {"type": "bulk", "value": "a"}]}
    admin.post("/", json=["ZADD", k + "z", "2.5", "m"])
    assert typed(admin, 3, "ZSCORE", k + "z", "m") == {"type": "double", "value": "2.5"}
    assert typed(admin, 3, "BLPOP", k + "empty", "0.01") == {"type": "null"}
    assert typed(admin, 3, "EVAL", "redis.setresp(3); return true", 0) == {
        "type": "boolean", "value": True}
    # false is a reply like any other, not "wait for more data": the next request on the
    # shared connection must get its own reply
    assert typed(admin, 3, "EVAL", "redis.setresp(3); return false", 0) == {
        "type": "boolean", "value": False}
    assert typed(admin, 3, "ECHO", "after false") == {"type": "bulk", "value": "after false"}
    assert typed(admin, 3, "EVAL", "redis.setresp(3); return {big_number='123456789012345678"
                 "901234567890'}", 0) == {"type": "bignumber",
                                          "value": "123456789012345678901234567890"}
    info = typed(admin, 3, "CLIENT", "INFO")
    assert info["type"] == "verbatim" and info["format"] == "txt"
    assert "resp=3" in str(info["value"])


def test_typed_batches(admin: httpx.Client, k: str) -> None:
    headers = {"Redis-Reply-Format": "typed-resp3"}
    items = admin.post("/pipeline", json=[["SET", k, "1"], ["INCR", k], ["NOSUCH"]],
                       headers=headers).json()
    assert items[0] == {"type": "status", "value": "OK"}
    assert items[1] == {"type": "integer", "value": "2"}
    assert items[2]["type"] == "error" and "unknown command" in items[2]["value"]
    items = admin.post("/multi-exec", json=[["INCR", k], ["HSET", k + "h", "a", "b"],
                                            ["HGETALL", k + "h"]], headers=headers).json()
    assert items[0] == {"type": "integer", "value": "3"}
    assert items[2]["type"] == "map"


def test_typed_format_refuses_mixing(gateway: GatewayProcess) -> None:
    with gateway.client() as c:
        r = c.post("/", json=["PING"], headers={"Redis-Reply-Format": "typed-resp3",
                                                "Upstash-Encoding": "base64"})
        assert r.status_code == 400 and "cannot be combined" in r.json()["error"]
        r = c.post("/", json=["PING"], headers={"Redis-Reply-Format": "fancy"})
        assert r.status_code == 400 and "typed-resp2" in r.json()["error"]
