"""Rules in ACL syntax, judged against the command table of a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from redis_gateway.backends.node import StandaloneBackend
from redis_gateway.commands import CommandTable
from redis_gateway.policy import RuleError, parse
from redis_gateway.settings import BackendSettings, LimitSettings

from support import RedisServer


@pytest.fixture
async def table(redis_server: RedisServer) -> AsyncIterator[CommandTable]:
    backend = StandaloneBackend("t", BackendSettings(url=redis_server.url), LimitSettings())
    yield await backend.command_table()
    await backend.close()


def info(table: CommandTable, *argv: str):  # type: ignore[no-untyped-def]
    found = table.lookup([a.encode() for a in argv])
    assert found is not None
    return found


async def test_table_has_flags_categories_and_subcommands(table: CommandTable) -> None:
    get = info(table, "GET", "k")
    assert "readonly" in get.flags and {"read", "string", "fast"} <= get.categories
    assert info(table, "config", "get", "x").name == "config|get"
    assert info(table, "CLIENT", "KILL", "x").name == "client|kill"
    assert info(table, "gEt", "k").name == "get"
    # As Redis: an unknown subcommand is no command; a NUL byte in a name is never
    # resolved (Redis compares with strcasecmp, which stops there); case folds ASCII only.
    assert table.lookup([b"config", b"nosuchsub"]) is None
    assert table.lookup([b"nosuch"]) is None
    assert table.lookup([b"GET\0x", b"k"]) is None
    assert table.lookup([b"CONFIG", b"GET\0d", b"*"]) is None
    assert table.lookup(["\u212aeys".encode(), b"*"]) is None  # KELVIN SIGN lowers to 'k'


async def test_key_positions_from_key_specs(table: CommandTable) -> None:
    def keys(*argv: str) -> list[str]:
        args = [a.encode() for a in argv]
        return [k.decode() for k, _ in info(table, *argv).keys(args)]

    assert keys("GET", "a") == ["a"]
    assert keys("MSET", "a", "1", "b", "2") == ["a", "b"]
    assert keys("MGET", "a", "b", "c") == ["a", "b", "c"]
    assert keys("ZUNIONSTORE", "dst", "2", "x", "y", "WEIGHTS", "1", "2") == ["dst", "x", "y"]
    assert keys("XREAD", "COUNT", "2", "STREAMS", "s1", "s2", "0", "0") == ["s1", "s2"]
    assert keys("LMOVE", "src", "dst", "LEFT", "RIGHT") == ["src", "dst"]
    assert keys("PING") == []
    assert info(table, "SORT", "k").keys_need_server
    assert not info(table, "GET", "k").keys_need_server
    access = dict(info(table, "LMOVE", "a", "b", "LEFT", "LEFT").keys(
        [b"LMOVE", b"a", b"b", b"LEFT", b"LEFT"]))
    assert "access" in access[b"a"] and "insert" in access[b"b"]
    with pytest.raises(ValueError, match="numkeys"):
        info(table, "EVAL").keys([b"EVAL", b"return 1", b"5", b"k"])


async def test_presets(table: CommandTable) -> None:
    ro, rw, admin = parse("read-only"), parse("read-write"), parse("admin")
    for name in ("GET", "HGETALL", "ZRANGE", "PING", "SCAN"):
        assert ro.allows_command(info(table, name)), name
    for name in ("SET", "DEL", "EVAL", "KEYS", "FLUSHDB", "CONFIG"):
        assert not ro.allows_command(info(table, name, "GET")), name
    assert rw.allows_command(info(table, "SET")) and rw.allows_command(info(table, "EVAL"))
    for argv in (["FLUSHALL"], ["KEYS", "*"], ["CONFIG", "SET", "a", "b"], ["DEBUG", "SLEEP"],
                 ["SHUTDOWN"], ["CLIENT", "KILL", "x"]):
        assert not rw.allows_command(info(table, *argv)), argv
        assert admin.allows_command(info(table, *argv)), argv


async def test_last_matching_rule_wins(table: CommandTable) -> None:
    policy = parse("+@all -config +config|get -@hash +hget")
    assert policy.allows_command(info(table, "CONFIG", "GET", "x"))
    assert not policy.allows_command(info(table, "CONFIG", "SET", "x", "y"))
    assert policy.allows_command(info(table, "HGET", "h", "f"))
    assert not policy.allows_command(info(table, "HSET", "h", "f", "v"))
    assert not parse("nocommands").allows_command(info(table, "PING"))
    assert parse("-@all +ping").allows_command(info(table, "PING"))


def test_key_and_channel_patterns() -> None:
    policy = parse("+@all ~app:* %R~ro:* %W~wo:* &news.*")
    read, write = frozenset({"access"}), frozenset({"update"})
    assert policy.denied_key([(b"app:1", read | write)]) is None
    assert policy.denied_key([(b"ro:1", read)]) is None
    assert policy.denied_key([(b"ro:1", write)]) == b"ro:1"
    assert policy.denied_key([(b"wo:1", write)]) is None
    assert policy.denied_key([(b"wo:1", read)]) == b"wo:1"
    assert policy.denied_key([(b"other", read)]) == b"other"
    assert policy.denied_key([(b"ro:x", frozenset())]) is None  # EXISTS-like: either will do
    assert policy.denied_channel([b"news.tech"]) is None
    assert policy.denied_channel([b"sport"]) == b"sport"
    # A pattern subscription needs that very pattern in the rules, as in Redis.
    assert policy.denied_channel([b"news.*"], patterns=True) is None
    assert policy.denied_channel([b"news.t*"], patterns=True) == b"news.t*"
    # As Redis: one pattern must grant both permissions a key needs.
    split = parse("+@all %R~a* %W~a*")
    assert split.denied_key([(b"ab", read | write)]) == b"ab"
    assert split.denied_key([(b"ab", read)]) is None
    glob = parse("+@all ~user:[0-9]? ~a\\*b ~x[^y]z")
    assert glob.denied_key([(b"user:1a", read)]) is None
    assert glob.denied_key([(b"user:a1", read)]) == b"user:a1"
    assert glob.denied_key([(b"a*b", read)]) is None
    assert glob.denied_key([(b"axb", read)]) == b"axb"
    assert glob.denied_key([(b"xaz", read)]) is None
    assert glob.denied_key([(b"xyz", read)]) == b"xyz"
    assert parse("read-write resetkeys ~only:*").denied_key([(b"k", read)]) == b"k"


@pytest.mark.parametrize("rules", ["", "+@read banana", "%X~a", "%R~", "~", "%RR~a",
                                   "allkeys ~app:*", "~* %R~x", "allchannels &a"])
def test_bad_rules(rules: str) -> None:
    with pytest.raises(RuleError):
        parse(rules)
