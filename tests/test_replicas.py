"""A primary with a read replica: writes on the primary, reads on the replica, with a
backend that opts out (reads on the primary) and a replica that goes down."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from redis_gateway.auth import new_token
from redis_gateway.settings import load

from support import GatewayProcess, RedisServer, command_calls, replicated

LIMITS = """
[limits]
command_timeout = 2
connect_timeout = 0.5
reconnect_backoff = 0.2
"""


def wait_replicating(primary: RedisServer) -> None:
    deadline = time.monotonic() + 10
    while not replicated(primary.port, 1):
        assert time.monotonic() < deadline, "the replica did not catch up with its primary"


@pytest.fixture(scope="module")
def primary() -> Iterator[RedisServer]:
    # A replica's full sync starts at once (Redis 7 waits 5 s by default).
    server = RedisServer("--repl-diskless-sync-delay", "0").start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def replica(primary: RedisServer) -> Iterator[RedisServer]:
    server = RedisServer("--replicaof", "127.0.0.1", str(primary.port)).start()
    wait_replicating(primary)
    yield server
    server.close()


@pytest.fixture(scope="module")
def gw(primary: RedisServer, replica: RedisServer) -> Iterator[GatewayProcess]:
    fresh = new_token()
    g = GatewayProcess(primary.url)
    replicas = f'replicas = ["redis://127.0.0.1:{replica.port}"]\n'
    g.config_extra = (LIMITS + '\n[backends.default]\ntopology = "replicas"\n' + replicas
                      # The opt-out for read-your-writes: the same servers, reads on the primary.
                      + f'\n[backends.fresh]\nurl = "{primary.url}"\ntopology = "replicas"\n'
                      + replicas + "read_from_replicas = false\n\n"
                      + g.token_table("fresh", "read-write", fresh, 'backend = "fresh"'))
    g.tokens["fresh"] = fresh
    g.start()
    yield g
    g.stop()


@pytest.fixture
def http(gw: GatewayProcess) -> Iterator[httpx.Client]:
    with gw.client() as client:
        yield client


def result(client: httpx.Client, *cmd: object) -> object:
    response = client.post("/", json=list(cmd))
    assert response.status_code == 200, response.text
    return response.json()["result"]


def read_eventually(client: httpx.Client, key: str, value: str) -> None:
    """Replication is asynchronous: the replica has the write within moments."""
    deadline = time.monotonic() + 5
    while result(client, "GET", key) != value:
        assert time.monotonic() < deadline, f"{key} never read back as {value}"
        time.sleep(0.02)


def test_writes_on_the_primary_reads_on_the_replica(http: httpx.Client, primary: RedisServer,
                                                    replica: RedisServer) -> None:
    sets = command_calls(primary.port, "set")
    primary_gets = command_calls(primary.port, "get")
    replica_gets = command_calls(replica.port, "get")
    assert result(http, "SET", "rep:k", "v1") == "OK"
    assert command_calls(primary.port, "set") == sets + 1
    read_eventually(http, "rep:k", "v1")
    assert command_calls(replica.port, "get") > replica_gets
    assert command_calls(primary.port, "get") == primary_gets
    # An all-read pipeline goes to the replica too; a script that may write does not.
    assert http.post("/pipeline", json=[["GET", "rep:k"], ["EXISTS", "rep:k"]]).json() == [
        {"result": "v1"}, {"result": 1}]
    assert result(http, "EVAL", "return redis.call('GET', KEYS[1])", 1, "rep:k") == "v1"
    assert command_calls(primary.port, "eval") == 1


def test_a_pipeline_that_writes_reads_its_write(http: httpx.Client, primary: RedisServer) -> None:
    gets = command_calls(primary.port, "get")
    for i in range(20):
        answer = http.post("/pipeline", json=[["SET", "rep:ryw", str(i)], ["GET", "rep:ryw"]])
        assert answer.json() == [{"result": "OK"}, {"result": str(i)}]
    assert command_calls(primary.port, "get") == gets + 20


def test_transactions_and_blocking_commands_on_the_primary(http: httpx.Client,
                                                           primary: RedisServer) -> None:
    multis = command_calls(primary.port, "multi")
    assert http.post("/multi-exec", json=[["SET", "rep:t", "1"], ["GET", "rep:t"]]).json() == [
        {"result": "OK"}, {"result": "1"}]
    assert command_calls(primary.port, "multi") == multis + 1
    assert result(http, "RPUSH", "rep:q", "job") == 1
    assert result(http, "BLPOP", "rep:q", 1) == ["rep:q", "job"]


def test_a_backend_can_opt_out_of_replica_reads(gw: GatewayProcess, http: httpx.Client,
                                                primary: RedisServer) -> None:
    assert result(http, "SET", "rep:fresh", "new") == "OK"
    gets = command_calls(primary.port, "get")
    with gw.client("fresh") as fresh:
        for _ in range(10):  # read-your-writes: never a stale value
            assert result(fresh, "GET", "rep:fresh") == "new"
    assert command_calls(primary.port, "get") == gets + 10


def test_reads_fall_back_to_the_primary_while_the_replica_is_down(
        http: httpx.Client, primary: RedisServer, replica: RedisServer) -> None:
    assert result(http, "SET", "rep:down", "x") == "OK"
    read_eventually(http, "rep:down", "x")
    replica.stop()
    try:
        gets = command_calls(primary.port, "get")
        started = time.monotonic()
        for _ in range(10):
            assert result(http, "GET", "rep:down") == "x"
        assert time.monotonic() - started < 2, "no waiting on the dead replica"
        assert command_calls(primary.port, "get") == gets + 10
    finally:
        replica.start()
    wait_replicating(primary)
    replica_gets = command_calls(replica.port, "get")
    deadline = time.monotonic() + 5
    while command_calls(replica.port, "get") == replica_gets:  # back on the replica
        assert time.monotonic() < deadline
        assert result(http, "GET", "rep:down") == "x"
        time.sleep(0.05)
    with httpx.Client() as c:
        assert c.get(f"http://127.0.0.1:{http.base_url.port}/readyz").status_code == 200


def test_replica_reads_default_on_for_replicas(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text('redis = "redis://a:1"\n[backends.default]\ntopology = "replicas"\n'
                    'replicas = ["redis://b:2", "rediss://c:3"]\n')
    assert load(path, env={}).backends["default"].replica_reads is True
