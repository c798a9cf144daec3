"""Multi-key commands across slots on a Redis Cluster, split by slot and merged the way
cluster clients do it, with one Redis server as the oracle: the same commands through a
gateway on the session's standalone Redis must give the same answers, byte for byte,
in every reply format."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redis_gateway.backends.slots import key_slot

from support import GatewayProcess, RedisCluster, command_calls

CONFIG = '[backends.default]\ntopology = "cluster"\n'

# Names that spread over the slots (and so over the 3 primaries), and two that share a
# hash tag: a command's keys are sometimes in one slot, mostly in several.
NAMES = ["a", "b", "c", "d", "e", "f", "g", "{t}x", "{t}y"]
FORMATS: list[dict[str, str]] = [{}, {"Upstash-Encoding": "base64"},
                                 {"Upstash-Response-Format": "resp2"},
                                 {"Redis-Reply-Format": "typed-resp3"}]


@pytest.fixture(scope="module")
def gw(cluster: RedisCluster) -> Iterator[GatewayProcess]:
    g = GatewayProcess(cluster.url, config_extra=CONFIG).start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def clients(gw: GatewayProcess, gateway: GatewayProcess
            ) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """(the cluster's gateway, the oracle's: a gateway on one Redis server)"""
    with gw.client() as on_cluster, gateway.client() as on_one:
        yield on_cluster, on_one


names = st.lists(st.sampled_from(NAMES), min_size=1, max_size=6)
values = st.text(alphabet="xyz€\n", max_size=3)
commands = st.one_of(
    st.tuples(st.sampled_from(["MGET", "DEL", "UNLINK", "EXISTS", "TOUCH"]), names),
    st.tuples(st.just("MSET"), st.lists(st.tuples(st.sampled_from(NAMES), values),
                                        min_size=1, max_size=5)),
    st.tuples(st.sampled_from(["GET", "INCR"]), st.lists(st.sampled_from(NAMES),
                                                         min_size=1, max_size=1)),
)


def argv(command: tuple[str, list], prefix: str) -> list[str]:
    name, args = command
    if name == "MSET":
        return [name, *(part for k, v in args for part in (prefix + k, v))]
    return [name, *(prefix + k for k in args)]


@settings(max_examples=60, deadline=None)
@given(batch=st.lists(commands, min_size=1, max_size=8), headers=st.sampled_from(FORMATS))
def test_split_commands_answer_as_one_redis_does(
    clients: tuple[httpx.Client, httpx.Client], batch: list[tuple[str, list]],
    headers: dict[str, str],
) -> None:
    on_cluster, on_one = clients
    prefix = f"mk:{uuid.uuid4().hex[:8]}:"  # fresh keys in both, never a hash tag
    argvs = [argv(command, prefix) for command in batch]
    everything = ["MGET", *(prefix + name for name in NAMES)]
    for path, body in (("/pipeline", argvs), ("/", argvs[0]), ("/", everything)):
        got = on_cluster.post(path, json=body, headers=headers)
        want = on_one.post(path, json=body, headers=headers)
        assert (got.status_code, got.content) == (want.status_code, want.content), body


def test_keys_in_several_slots_are_split_by_slot(clients: tuple[httpx.Client, httpx.Client],
                                                 cluster: RedisCluster) -> None:
    on_cluster, _ = clients
    keys = [f"split:{i}" for i in range(30)]
    slots = {key_slot(k.encode()) for k in keys}
    primaries = cluster.primaries()
    before = {p.port: command_calls(p.port, "mset") for p in primaries}
    pairs = [part for i, k in enumerate(keys) for part in (k, str(i))]
    assert on_cluster.post("/", json=["MSET", *pairs]).json() == {"result": "OK"}
    after = {p.port: command_calls(p.port, "mset") for p in primaries}
    # One MSET per slot, on the slot's primary: every primary took its part.
    assert sum(after.values()) - sum(before.values()) == len(slots)
    assert all(after[port] > before[port] for port in before)
    for i, k in enumerate(keys):
        assert cluster.command(cluster.primary_of_slot(key_slot(k.encode())), "GET", k) == \
            str(i).encode()
    assert on_cluster.post("/", json=["MGET", *keys]).json() == {
        "result": [str(i) for i in range(30)]}
    assert on_cluster.post("/", json=["DEL", *keys, "split:none"]).json() == {"result": 30}


def test_commands_that_cannot_be_merged_exactly_keep_crossslot(
        clients: tuple[httpx.Client, httpx.Client]) -> None:
    on_cluster, _ = clients
    crossslot = {"error": "CROSSSLOT Keys in request don't hash to the same slot"}
    # MSETNX would set the keys of some slots and not others; the others are not split.
    for cmd in (["MSETNX", "nx:a", "1", "nx:b", "2"], ["EVAL", "return 1", "2", "a", "b"],
                ["SUNIONSTORE", "a", "b", "c"], ["RENAME", "a", "b"]):
        response = on_cluster.post("/", json=cmd)
        assert (response.status_code, response.json()) == (400, crossslot), cmd
    assert on_cluster.post("/", json=["EXISTS", "nx:a", "nx:b"]).json() == {"result": 0}
    # A transaction is never split: its keys must share a slot.
    refused = on_cluster.post("/multi-exec", json=[["MGET", "tx:a", "tx:b"]])
    assert refused.status_code == 400 and "transaction's keys must share" in refused.text
