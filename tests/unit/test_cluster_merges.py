"""Commands on several cluster nodes: the routing tips read from COMMAND, keyless
fan-out merges, and multi-key commands split by slot and merged back. Pure functions;
tests/test_cluster_multikey.py checks the same against a real Redis."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redis_gateway.backends.cluster.fanout import FanOut, fan_outs, merge
from redis_gateway.backends.cluster.multikey import Part, Split, SplitBatch, split, splits
from redis_gateway.backends.cluster.multikey import merge as merge_parts
from redis_gateway.backends.cluster.tips import REDIS6_TIPS, Tips, command_tips
from redis_gateway.backends.slots import key_slot
from redis_gateway.commands import CommandTable
from redis_gateway.errors import RedisUnavailable
from redis_gateway.resp import ReplyError


def keys_spec(step: int = 1, flags: tuple[bytes, ...] = (b"RW",)) -> list[object]:
    return [b"flags", list(flags), b"begin_search", [b"type", b"index", b"spec", [b"index", 1]],
            b"find_keys", [b"type", b"range", b"spec",
                           [b"lastkey", -1, b"keystep", step, b"limit", 0]]]


def entry(name: str, flags: list[bytes], tips: list[bytes], specs: list[object],
          subcommands: list[object] | None = None, step: int = 1) -> list[object]:
    """One command as Redis 7's COMMAND describes it."""
    return [name.encode(), -2, flags, 1, -1, step, [b"@keyspace"], tips, specs,
            subcommands or []]


REDIS7 = [
    entry("mget", [b"readonly"], [b"request_policy:multi_shard"], [keys_spec()]),
    entry("mset", [b"write"], [b"request_policy:multi_shard", b"response_policy:all_succeeded"],
          [keys_spec(2)], step=2),
    entry("msetnx", [b"write"], [b"request_policy:multi_shard", b"response_policy:agg_min"],
          [keys_spec(2)], step=2),
    entry("del", [b"write"], [b"request_policy:multi_shard", b"response_policy:agg_sum"],
          [keys_spec()]),
    # A read-only command whose aggregate is exact, and one whose keys are not "to the end".
    entry("mcount", [b"readonly"], [b"request_policy:multi_shard", b"response_policy:agg_max"],
          [keys_spec()]),
    entry("sunionstore", [b"write"], [b"request_policy:multi_shard"],
          [keys_spec(), keys_spec()]),
    entry("dbsize", [b"readonly"], [b"request_policy:all_shards", b"response_policy:agg_sum"],
          []),
    entry("info", [], [b"request_policy:all_shards", b"response_policy:special"], []),
    entry("get", [b"readonly"], [], [keys_spec()]),
    entry("script", [], [], [], [
        entry("script|load", [], [b"request_policy:all_nodes",
                                  b"response_policy:all_succeeded"], []),
        entry("script|kill", [], [b"request_policy:all_shards",
                                  b"response_policy:one_succeeded"], [])]),
]
TABLE = CommandTable.from_command_info(REDIS7)


def test_tips_come_from_the_server_with_redis_6_defaults() -> None:
    tips = command_tips(REDIS7)
    assert tips["mset"] == Tips("multi_shard", "all_succeeded")
    assert tips["script|load"] == Tips("all_nodes", "all_succeeded")
    assert "get" not in tips  # routed by its key
    redis6 = [e[:7] for e in REDIS7]  # Redis 6 describes commands in 7 fields, no tips
    assert command_tips(redis6) == REDIS6_TIPS


def test_fan_outs_follow_the_request_policies() -> None:
    assert fan_outs(command_tips(REDIS7)) == {
        "dbsize": FanOut(False, "agg_sum"), "script|load": FanOut(True, "all_succeeded"),
        "script|kill": FanOut(False, "one_succeeded")}  # INFO (special) answers for one node


@pytest.mark.parametrize(("response", "replies", "merged"), [
    ("agg_sum", [3, 4, 0], 7),
    ("agg_min", [3, 4], 3),
    ("agg_logical_and", [[1, 0, 1], [1, 1, 1]], [1, 0, 1]),  # SCRIPT EXISTS, per script
    ("all_succeeded", [b"OK", b"OK"], b"OK"),
    ("all_succeeded", [b"OK", ReplyError("ERR no")], ReplyError("ERR no")),
    ("one_succeeded", [ReplyError("NOTBUSY"), b"OK"], b"OK"),
    ("one_succeeded", [ReplyError("NOTBUSY"), ReplyError("NOTBUSY")], ReplyError("NOTBUSY")),
    ("", [[b"a"], [], [b"b", b"c"]], [b"a", b"b", b"c"]),  # KEYS
    ("", [None, b"k", None], b"k"),  # RANDOMKEY: a key if any shard has one
    ("", [None, None], None),
])
def test_fan_out_replies_merge_as_the_policy_says(response: str, replies: list[Any],
                                                  merged: Any) -> None:
    got = merge(FanOut(False, response), replies)
    assert type(got) is type(merged) and (str(got) if isinstance(got, ReplyError) else got) \
        == (str(merged) if isinstance(merged, ReplyError) else merged)


def test_a_node_that_failed_fails_the_fan_out() -> None:
    down = RedisUnavailable("cannot reach Redis at redis://10.0.0.2:7002/0")
    assert merge(FanOut(False, "agg_sum"), [1, down, 2]) is down


def test_commands_split_where_the_merge_is_exact() -> None:
    assert splits(command_tips(REDIS7), TABLE) == {
        "mget": Split(1, 1, ""), "mset": Split(1, 2, "all_succeeded"),
        "del": Split(1, 1, "agg_sum"), "mcount": Split(1, 1, "agg_max")}
    # MSETNX (writes, agg_min) and SUNIONSTORE (two key specs) keep CROSSSLOT.


def test_split_by_slot_keeps_each_key_with_its_values() -> None:
    a, b = b"{a}1", b"{b}1"
    parts = split([b"MSET", a, b"1", b, b"2", b"{a}2", b"3"], Split(1, 2, "all_succeeded"))
    assert parts == [Part(key_slot(a), [b"MSET", a, b"1", b"{a}2", b"3"], [0, 2]),
                     Part(key_slot(b), [b"MSET", b, b"2"], [1])]
    assert split([b"MGET", b"{a}1", b"{a}2"], Split(1, 1, "")) is None  # one slot
    assert split([b"MSET", a, b"1", b], Split(1, 2, "all_succeeded")) is None  # no value
    assert split([b"MGET"], Split(1, 1, "")) is None


# A model of the server for the property below: each command as Redis defines it.
def model(store: dict[bytes, bytes], argv: list[bytes]) -> Any:
    name, args = argv[0], argv[1:]
    if name == b"MGET":
        return [store.get(k) for k in args]
    if name == b"MSET":
        store.update(zip(args[::2], args[1::2], strict=True))
        return b"OK"
    if name == b"EXISTS":
        return sum(k in store for k in args)
    return sum(store.pop(k, None) is not None for k in dict.fromkeys(args))  # DEL


HOW = {b"MGET": Split(1, 1, ""), b"MSET": Split(1, 2, "all_succeeded"),
       b"EXISTS": Split(1, 1, "agg_sum"), b"DEL": Split(1, 1, "agg_sum")}
names = st.lists(st.sampled_from([b"a", b"b", b"c", b"d", b"{a}x", b"e"]), min_size=1,
                 max_size=8)


@given(store=st.dictionaries(st.sampled_from([b"a", b"b", b"{a}x", b"e"]), st.binary(),
                             max_size=4),
       command=st.one_of(st.tuples(st.sampled_from([b"MGET", b"EXISTS", b"DEL"]), names),
                         st.tuples(st.just(b"MSET"), names)))
def test_parts_merged_answer_as_the_whole_command(store: dict[bytes, bytes],
                                                  command: tuple[bytes, list[bytes]]) -> None:
    name, keys = command
    argv = [name, *(part for k in keys for part in ((k, b"v" + k) if name == b"MSET" else (k,)))]
    whole_store, split_store = dict(store), dict(store)
    whole = model(whole_store, argv)
    how = HOW[name]
    parts = split(argv, how)
    if parts is None:
        assert len({key_slot(k) for k in keys}) == 1
        return
    assert merge_parts(how, parts, [model(split_store, p.argv) for p in parts]) == whole
    assert split_store == whole_store


def test_a_part_that_failed_fails_the_command() -> None:
    parts = split([b"DEL", b"{a}1", b"{b}1"], Split(1, 1, "agg_sum"))
    assert parts is not None
    down = RedisUnavailable("cannot reach Redis at redis://10.0.0.2:7002/0")
    assert merge_parts(Split(1, 1, "agg_sum"), parts, [1, down]) is down
    oom = ReplyError("OOM command not allowed")
    assert merge_parts(Split(1, 1, "agg_sum"), parts, [oom, 1]) is oom


def test_a_batch_sends_the_parts_and_answers_once_per_command() -> None:
    commands = [[b"GET", b"k"], [b"MGET", b"{a}1", b"{b}1", b"{a}2"], [b"PING"]]
    how = Split(1, 1, "")
    parts = split(commands[1], how)
    assert parts is not None
    batch = SplitBatch(commands, [7, key_slot(b"a"), -1], {1: (how, parts)})
    assert batch.argvs == [[b"GET", b"k"], [b"MGET", b"{a}1", b"{a}2"], [b"MGET", b"{b}1"],
                           [b"PING"]]
    assert batch.slots == [7, key_slot(b"a"), key_slot(b"b"), -1]
    assert batch.merge([b"v", [b"1", None], [b"2"], b"PONG"]) == [
        b"v", [b"1", b"2", None], b"PONG"]
