"""Redis Cluster behind the gateway: slot routing, multi-key rules, keyless commands that
fan out, replica reads, and a slot resharded (MIGRATING/IMPORTING, ASK, MOVED) under traffic.

One 3-primary/3-replica cluster made by ``redis-cli --cluster create`` for the module.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from redis_gateway.backends.slots import key_slot
from redis_gateway.settings import load

from support import GatewayProcess, RedisCluster, RedisServer, command_calls

CONFIG = """
[limits]
command_timeout = 2
connect_timeout = 0.5
reconnect_backoff = 0.2

[backends.default]
topology = "cluster"
"""


@pytest.fixture(scope="module")
def gw(cluster: RedisCluster) -> Iterator[GatewayProcess]:
    g = GatewayProcess(cluster.url, config_extra=CONFIG).start()
    yield g
    g.stop()


@pytest.fixture
def http(gw: GatewayProcess) -> Iterator[httpx.Client]:
    with gw.client() as client:
        yield client


def run(http: httpx.Client, *cmd: object) -> httpx.Response:
    return http.post("/", json=list(cmd))


def result(http: httpx.Client, *cmd: object) -> object:
    response = run(http, *cmd)
    assert response.status_code == 200, response.text
    return response.json()["result"]


def keys_on_every_primary(cluster: RedisCluster, prefix: str, per_shard: int = 1) -> list[str]:
    """Key names spread so that each primary serves ``per_shard`` of them."""
    primaries = {p.port: 0 for p in cluster.primaries()}
    found = []
    for i in range(10_000):
        key = f"{prefix}{i}"
        port = cluster.primary_of_slot(key_slot(key.encode())).port
        if primaries[port] < per_shard:
            primaries[port] += 1
            found.append(key)
            if all(n == per_shard for n in primaries.values()):
                return found
    raise AssertionError("could not spread keys over the primaries")


def commandstats(node: RedisServer, cluster: RedisCluster, command: str) -> int:
    return command_calls(node.port, command, auth=cluster.user)


def test_key_slot_matches_redis(cluster: RedisCluster) -> None:
    node = cluster.nodes[0]
    for key in ["foo", "", "{user1000}.following", "{user1000}.followers", "foo{}{bar}",
                "foo{{bar}}zap", "foo{bar}{zap}", "{", "}{", "ключ🔑", "a" * 300]:
        assert key_slot(key.encode()) == cluster.command(node, "CLUSTER", "KEYSLOT", key)


def test_each_key_lands_on_the_primary_of_its_slot(http: httpx.Client,
                                                    cluster: RedisCluster) -> None:
    keys = [f"route:{i}" for i in range(40)]
    for i, key in enumerate(keys):
        assert result(http, "SET", key, f"v{i}") == "OK"
    for i, key in enumerate(keys):
        primary = cluster.primary_of_slot(key_slot(key.encode()))
        assert cluster.command(primary, "GET", key) == f"v{i}".encode()
    assert {cluster.primary_of_slot(key_slot(k.encode())).port for k in keys} == \
        {p.port for p in cluster.primaries()}


def test_keys_sharing_a_hash_tag_run_as_one_command(http: httpx.Client) -> None:
    # Across slots: test_cluster_multikey.py.
    assert result(http, "SUNIONSTORE", "{acct}:u", "{acct}:s1", "{acct}:s2") == 0
    assert result(http, "MSET", "{acct}:a", "1", "{acct}:b", "2") == "OK"
    assert result(http, "MGET", "{acct}:a", "{acct}:b", "{acct}:none") == ["1", "2", None]
    assert result(http, "DEL", "{acct}:a", "{acct}:b") == 2


def test_pipeline_is_split_by_node_and_answered_in_order(http: httpx.Client,
                                                         cluster: RedisCluster) -> None:
    rng = random.Random(7)
    keys = [f"pipe:{i}" for i in range(60)]
    before = {p.port: commandstats(p, cluster, "incr") for p in cluster.primaries()}
    commands: list[list[object]] = []
    expected: list[dict[str, object]] = []
    counts: dict[str, int] = {}
    for i in range(300):
        key = rng.choice(keys)
        if i == 150:  # a Redis error and a refusal by the gateway stay in their places
            commands += [["SET", "pipe:text", "x"], ["INCR", "pipe:text"], ["NOSUCHCMD"]]
            expected += [{"result": "OK"},
                         {"error": "ERR value is not an integer or out of range"}, {}]
        counts[key] = counts.get(key, 0) + 1
        commands.append(["INCR", key])
        expected.append({"result": counts[key]})
    answer = http.post("/pipeline", json=commands).json()
    assert len(answer) == len(commands)
    for got, want in zip(answer, expected, strict=True):
        if want:
            assert got == want
        else:
            assert "unknown command" in got["error"]
    after = {p.port: commandstats(p, cluster, "incr") for p in cluster.primaries()}
    assert all(after[port] > before[port] for port in before), "every primary took a part"
    # The same across shards as raw RESP: one reply after the other, in order.
    raw = http.post("/pipeline", json=[["GET", k] for k in keys[:10]],
                    headers={"Upstash-Response-Format": "resp2"})
    assert raw.content == b"".join(b"$%d\r\n%d\r\n" % (len(str(counts[k])), counts[k])
                                   if k in counts else b"$-1\r\n" for k in keys[:10])


def test_transaction_needs_one_slot(http: httpx.Client) -> None:
    ok = http.post("/multi-exec", json=[["SET", "{tx}:a", "1"], ["INCRBY", "{tx}:b", "5"],
                                        ["MGET", "{tx}:a", "{tx}:b"]])
    assert ok.json() == [{"result": "OK"}, {"result": 5}, {"result": ["1", "5"]}]
    refused = http.post("/multi-exec", json=[["SET", "tx:c", "1"], ["SET", "tx:d", "2"]])
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error.startswith("CROSSSLOT") and "'tx:c' is in slot" in error
    assert "common hash tag" in error and "nothing was run" in error
    assert result(http, "EXISTS", "tx:c") == 0
    assert http.post("/multi-exec", json=[["PING"], ["ECHO", "x"]]).json() == [
        {"result": "PONG"}, {"result": "x"}]


def test_scripts_and_functions_go_where_their_keys_are(http: httpx.Client,
                                                        cluster: RedisCluster) -> None:
    keys = keys_on_every_primary(cluster, "script:")
    sha = result(http, "SCRIPT", "LOAD", "return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert result(http, "SCRIPT", "EXISTS", sha, "0" * 40) == [1, 0]  # on every primary
    lib = ("#!lua name=gwtest\nredis.register_function('getset2', function(keys, args) "
           "redis.call('SET', keys[1], args[1]) return redis.call('GET', keys[1]) end)")
    assert result(http, "FUNCTION", "LOAD", "REPLACE", lib) == "gwtest"
    for key in keys:  # one key on each shard
        assert result(http, "EVALSHA", sha, 1, key, 3) == 3
        assert result(http, "EVAL", "return redis.call('GET', KEYS[1])", 1, key) == "3"
        assert result(http, "FCALL", "getset2", 1, key, "f") == "f"


def test_a_script_cannot_pose_as_a_redirect(gw: GatewayProcess, cluster: RedisCluster) -> None:
    """A script may return any error text: "ASK <slot> host:port" from redis.error_reply
    must not send the gateway (with its credentials) or anyone's commands anywhere, nor
    "MOVED" repoint a slot (found by a red-team pass)."""
    key = "app:{victim}"
    slot = key_slot(key.encode())
    owner = cluster.primary_for(key)
    elsewhere = next(p for p in cluster.primaries() if p.port != owner.port)
    with socket.socket() as trap, gw.client("rw") as attacker, gw.client() as victim:
        trap.bind(("127.0.0.1", 0))
        trap.listen()
        trap.setblocking(False)
        fake = f"127.0.0.1:{trap.getsockname()[1]}"
        result(victim, "SET", key, "kept")
        other_slot = (slot + 1) % 16384
        forged = [f"ASK {slot} {fake}", f"MOVED {slot} {fake}", f"ASK {other_slot} {fake}",
                  f"MOVED {other_slot} 127.0.0.1:{elsewhere.port}"]  # a node, not its slot
        for text in forged:
            reply = run(attacker, "EVAL", f"return redis.error_reply('{text}')", 1, key)
            assert reply.status_code == 400 and text in reply.text, reply.text
            assert result(victim, "GET", key) == "kept"
        with pytest.raises(BlockingIOError):  # nobody came
            trap.accept()
        assert result(victim, "GET", key) == "kept"


def test_keyless_commands_fan_out_and_merge(http: httpx.Client) -> None:
    assert result(http, "FLUSHALL") == "OK"
    keys = sorted(f"fan:{i}" for i in range(40))
    assert http.post("/pipeline", json=[["SET", k, "1"] for k in keys]).status_code == 200
    assert result(http, "DBSIZE") == 40  # summed over the primaries
    assert sorted(result(http, "KEYS", "fan:*")) == keys  # packed into one list
    assert result(http, "RANDOMKEY") in keys
    assert result(http, "PING") == "PONG"
    # SCAN walks each primary in turn; the cursor carries which one.
    seen: list[str] = []
    cursor, rounds = "0", 0
    while True:
        cursor, batch = result(http, "SCAN", cursor, "COUNT", 7)
        seen += batch
        rounds += 1
        if cursor == "0":
            break
    assert sorted(seen) == keys and rounds >= 3
    cursor, batch = result(http, "SCAN", "0", "MATCH", "fan:1*", "COUNT", 1000)
    assert cursor != "0"  # the first primary is done; others follow
    bad = run(http, "SCAN", "999999")
    assert bad.status_code == 400 and bad.json() == {"error": "ERR invalid cursor"}
    assert result(http, "FLUSHDB") == "OK"
    assert result(http, "DBSIZE") == 0


def test_blocking_commands_run_on_their_key_node(http: httpx.Client) -> None:
    assert result(http, "RPUSH", "queue:1", "job") == 1
    assert result(http, "BLPOP", "queue:1", "queue:1", 1) == ["queue:1", "job"]
    started = time.monotonic()
    assert result(http, "BLPOP", "queue:1", "0.2") is None
    assert time.monotonic() - started < 2


def test_exact_reply_formats_through_the_cluster(http: httpx.Client) -> None:
    raw = http.post("/", json=["SET", "fmt:k", "v"],
                    headers={"Upstash-Response-Format": "resp2"})
    assert raw.content == b"+OK\r\n"
    http.post("/", json=["HSET", "fmt:h", "f", "1"])
    typed = http.post("/", json=["HGETALL", "fmt:h"],
                      headers={"Redis-Reply-Format": "typed-resp3"}).json()
    assert typed == {"result": {"type": "map", "value": [[{"type": "bulk", "value": "f"},
                                                          {"type": "bulk", "value": "1"}]]}}


def test_reads_from_replicas_when_asked(cluster: RedisCluster, http: httpx.Client) -> None:
    extra = CONFIG + "read_from_replicas = true\n"
    reader = GatewayProcess(cluster.url, config_extra=extra).start()
    try:
        keys = keys_on_every_primary(cluster, "replica:")
        for key in keys:
            assert result(http, "SET", key, "v") == "OK"
        replicas = [r for p in cluster.primaries() for r in cluster.replicas_of(p)]
        primaries = cluster.primaries()
        gets = sum(commandstats(r, cluster, "get") for r in replicas)
        primary_gets = sum(commandstats(p, cluster, "get") for p in primaries)
        with reader.client() as c:
            for key in keys:
                deadline = time.monotonic() + 5
                while result(c, "GET", key) != "v":  # replication is asynchronous
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
            # A batch that writes then reads a key stays on the primary: it sees its write.
            answer = c.post("/pipeline", json=[["SET", keys[0], "w"], ["GET", keys[0]]])
            assert answer.json() == [{"result": "OK"}, {"result": "w"}]
        assert sum(commandstats(r, cluster, "get") for r in replicas) >= gets + len(keys)
        assert sum(commandstats(p, cluster, "get") for p in primaries) == primary_gets + 1
    finally:
        reader.stop()


def test_slot_resharded_while_traffic_runs(gw: GatewayProcess, cluster: RedisCluster) -> None:
    """MIGRATING/IMPORTING + MIGRATE in small steps: ASK during, MOVED after; no error
    reaches a client and no acknowledged write is lost or doubled."""
    tag = "{reshard}"
    slot = key_slot(b"reshard")
    source = cluster.primary_of_slot(slot)
    target = next(p for p in cluster.primaries() if p.port != source.port)
    with gw.client() as c:
        assert c.post("/pipeline", json=[["SET", f"{tag}:{i}", str(i)]
                                         for i in range(300)]).status_code == 200
    asking_before = commandstats(target, cluster, "asking")

    errors: list[str] = []
    increments = 0
    created: list[int] = []
    stop = threading.Event()

    def traffic() -> None:
        nonlocal increments
        rng = random.Random(1)
        with gw.client() as c:
            n = 0
            while not stop.is_set():
                n += 1
                i = rng.randrange(300)
                answer = c.post("/pipeline", json=[
                    ["INCR", f"{tag}:counter"], ["GET", f"{tag}:{i}"],
                    ["SET", f"{tag}:new:{n}", "x"], ["INCR", "elsewhere:counter"]]).json()
                if answer[0].get("result") is not None:
                    increments += 1
                if answer[2] == {"result": "OK"}:
                    created.append(n)
                if answer[1] != {"result": str(i)} or any("error" in a for a in answer):
                    errors.append(repr(answer))

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        time.sleep(0.2)
        source_id = cluster.command(source, "CLUSTER", "MYID")
        target_id = cluster.command(target, "CLUSTER", "MYID")
        assert cluster.command(target, "CLUSTER", "SETSLOT", slot, "IMPORTING",
                               source_id) == b"OK"
        assert cluster.command(source, "CLUSTER", "SETSLOT", slot, "MIGRATING",
                               target_id) == b"OK"
        while True:
            keys = cluster.command(source, "CLUSTER", "GETKEYSINSLOT", slot, 20)
            assert isinstance(keys, list)
            if not keys:
                break
            moved = cluster.command(source, "MIGRATE", "127.0.0.1", target.port, "", 0, 5000,
                                    "KEYS", *keys)
            assert moved in (b"OK", b"NOKEY"), moved
            time.sleep(0.01)  # traffic meets the slot half moved: ASK
        for node in cluster.primaries():  # the slot is the target's now: MOVED
            cluster.command(node, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors[:5]
    assert increments > 20
    assert commandstats(target, cluster, "asking") > asking_before, "ASK was followed"
    with gw.client() as c:
        assert result(c, "GET", f"{tag}:counter") == str(increments)
        for start in range(0, len(created), 500):  # limits.max_commands per request
            exists = c.post("/pipeline", json=[["EXISTS", f"{tag}:new:{n}"]
                                               for n in created[start:start + 500]])
            assert all(a == {"result": 1} for a in exists.json()), exists.text[:300]
    assert cluster.command(target, "GET", f"{tag}:counter") == str(increments).encode()
    cluster.wait_ready()


def test_cluster_settings_defaults(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text('redis = "rediss://u:p@cfg.example.com:6379"\n[backends.default]\n'
                    'topology = "cluster"\nseeds = ["rediss://10.0.0.2:6379"]\n')
    backend = load(path, env={}).backends["default"]
    assert backend.topology == "cluster" and backend.replica_reads is False
    env = {"REDIS_GATEWAY_BACKENDS__DEFAULT__TOPOLOGY": "cluster",
           "REDIS_GATEWAY_BACKENDS__DEFAULT__READ_FROM_REPLICAS": "yes",
           "REDIS_GATEWAY_REDIS": "redis://10.0.0.1:7000"}
    assert load(env=env).backends["default"].replica_reads is True
