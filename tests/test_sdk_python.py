"""The upstash-redis Python SDK, unmodified and with its defaults, against the gateway.

Defaults mean base64 responses and read-your-writes sync tokens on. Keys carry a
per-test prefix because the Redis is shared with the other tests.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from upstash_redis import Redis
from upstash_redis.asyncio import Redis as AsyncRedis
from upstash_redis.errors import UpstashError

from support import GatewayProcess


@pytest.fixture
def prefix() -> str:
    return f"py:{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def redis(gateway: GatewayProcess) -> Iterator[Redis]:
    client = Redis(url=gateway.url, token=gateway.tokens["admin"], allow_telemetry=False)
    yield client
    client.close()


def test_strings(redis: Redis, prefix: str) -> None:
    k = prefix + "s"
    assert redis.set(k, "héllo wörld ✓", ex=100) is True
    assert redis.get(k) == "héllo wörld ✓"
    assert redis.set(k, "other", nx=True) is False
    assert redis.set(prefix + "n", 10) is True
    assert redis.incr(prefix + "n") == 11
    assert redis.incrbyfloat(prefix + "n", 0.5) == 11.5
    assert redis.append(k, "!") == len("héllo wörld ✓".encode()) + 1
    assert redis.mget(k, prefix + "missing") == ["héllo wörld ✓!", None]
    assert redis.getrange(k, 0, 0) == "h"
    assert 0 < redis.ttl(k) <= 100
    assert redis.delete(k, prefix + "n") == 2


def test_hashes(redis: Redis, prefix: str) -> None:
    h = prefix + "h"
    assert redis.hset(h, values={"a": "1", "b": "two"}) == 2
    assert redis.hget(h, "b") == "two"
    assert redis.hgetall(h) == {"a": "1", "b": "two"}
    assert redis.hincrby(h, "a", 5) == 6
    assert sorted(redis.hkeys(h)) == ["a", "b"]
    assert redis.hdel(h, "a") == 1
    assert redis.hlen(h) == 1


def test_lists_sets_sorted_sets(redis: Redis, prefix: str) -> None:
    lst, st, z = prefix + "l", prefix + "set", prefix + "z"
    assert redis.rpush(lst, "a", "b", "c") == 3
    assert redis.lpush(lst, "z") == 4
    assert redis.lrange(lst, 0, -1) == ["z", "a", "b", "c"]
    assert redis.lpop(lst) == "z"
    assert redis.llen(lst) == 3
    assert redis.sadd(st, "x", "y", "z") == 3
    assert redis.sismember(st, "y") is True
    assert redis.srem(st, "y") == 1
    assert sorted(redis.smembers(st)) == ["x", "z"]
    assert redis.zadd(z, {"alice": 1, "bob": 2.5}) == 2
    assert redis.zincrby(z, 1, "alice") == 2.0
    assert redis.zrange(z, 0, -1, withscores=True) == [("alice", 2.0), ("bob", 2.5)]
    assert redis.zscore(z, "bob") == 2.5
    assert redis.zrank(z, "bob") == 1
    assert redis.zrem(z, "alice") == 1


def test_streams(redis: Redis, prefix: str) -> None:
    s = prefix + "stream"
    first = redis.xadd(s, "*", {"temp": "20"})
    redis.xadd(s, "*", {"temp": "21"})
    assert redis.xlen(s) == 2
    entries = redis.xrange(s, "-", "+")
    assert entries[0][0] == first
    assert [e[1] for e in entries] == [["temp", "20"], ["temp", "21"]]
    assert redis.xrevrange(s, "+", "-", count=1)[0][1] == ["temp", "21"]


def test_scripts(redis: Redis, prefix: str) -> None:
    script = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])"
    assert redis.eval(script, keys=[prefix + "e"], args=["v"]) == "v"
    sha = redis.script_load("return {KEYS[1], ARGV[1], 42}")
    assert redis.evalsha(sha, keys=[prefix + "k"], args=["a"]) == [prefix + "k", "a", 42]


def test_pipeline_and_transaction(redis: Redis, prefix: str) -> None:
    pipe = redis.pipeline()
    pipe.set(prefix + "p", 1)
    pipe.incr(prefix + "p")
    pipe.get(prefix + "p")
    assert pipe.exec() == [True, 2, "2"]
    tx = redis.multi()
    tx.set(prefix + "t", "a")
    tx.append(prefix + "t", "b")
    tx.get(prefix + "t")
    assert tx.exec() == [True, 2, "ab"]


def test_read_your_writes_token_changes(redis: Redis, prefix: str) -> None:
    redis.set(prefix + "ryw", 1)
    before = redis._sync_token
    redis.set(prefix + "ryw", 2)
    assert redis._sync_token and redis._sync_token != before


def test_error_surfaces_redis_text(redis: Redis, prefix: str) -> None:
    redis.set(prefix + "e", "text")
    with pytest.raises(UpstashError, match="not an integer"):
        redis.incr(prefix + "e")


async def test_async_client(gateway: GatewayProcess, prefix: str) -> None:
    async with AsyncRedis(url=gateway.url, token=gateway.tokens["admin"],
                          allow_telemetry=False) as redis:
        assert await redis.set(prefix + "a", "v") is True
        results = await asyncio.gather(*(redis.incr(prefix + "ctr") for _ in range(50)))
        assert sorted(results) == list(range(1, 51))
        assert await redis.get(prefix + "a") == "v"
        pipe = redis.pipeline()
        pipe.hset(prefix + "h", values={"f": "1"})
        pipe.hgetall(prefix + "h")
        assert await pipe.exec() == [1, {"f": "1"}]
        tx = redis.multi()
        tx.sadd(prefix + "s", "a", "b")
        tx.scard(prefix + "s")
        assert await tx.exec() == [2, 2]


def test_read_only_token_refuses_writes(gateway: GatewayProcess, prefix: str) -> None:
    with Redis(url=gateway.url, token=gateway.tokens["ro"], allow_telemetry=False) as ro:
        assert ro.get(prefix + "nothing") is None
        with pytest.raises(UpstashError, match="NOPERM"):
            ro.set(prefix + "x", "1")
