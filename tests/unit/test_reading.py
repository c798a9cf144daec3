"""Reading a command as Redis reads it, without a server: key specs (keywords compared as
strcasecmp, every occurrence, numkeys parsed strictly), blocking timeouts, placement, the
policy's key check and the ACL users made from rules. Pure and fast; the same decisions are
compared with a real Redis in tests/test_acl_differential.py.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from redis_gateway.acl import acl_rules, acl_user, everything_but
from redis_gateway.checks import Scope, cap_blocking, check
from redis_gateway.commands import CommandInfo, CommandTable, KeySpec
from redis_gateway.errors import BadRequest, Forbidden
from redis_gateway.placement import Where, placement
from redis_gateway.policy import parse
from redis_gateway.redis_args import keyword, parse_long_double, parse_long_long
from redis_gateway.redis_glob import glob_match
from redis_gateway.settings import LimitSettings

ACCESS, UPDATE = frozenset({"access"}), frozenset({"update"})


def info(name: str, arity: int, specs: tuple[KeySpec, ...] = (), *, flags: frozenset[str] =
         frozenset(), categories: frozenset[str] = frozenset({"read"})) -> CommandInfo:
    return CommandInfo(name=name, arity=arity, flags=flags, categories=categories, first=0,
                       last=0, step=0, key_specs=specs)


XREAD = info("xread", -4, (KeySpec(ACCESS, ("keyword", b"STREAMS", 1),
                                   ("range", -1, 1, 2)),),
             flags=frozenset({"readonly", "blocking"}), categories=frozenset({"read",
                                                                                "blocking"}))
GEORADIUS = info("georadius", -6, (
    KeySpec(ACCESS, ("index", 1), ("range", 0, 1, 0)),
    KeySpec(UPDATE, ("keyword", b"STORE", 6), ("range", 0, 1, 0)),
    KeySpec(UPDATE, ("keyword", b"STOREDIST", 6), ("range", 0, 1, 0))))
EVAL = info("eval", -3, (KeySpec(ACCESS, ("index", 2), ("keynum", 0, 1, 1)),),
            flags=frozenset({"noscript"}), categories=frozenset({"scripting"}))
GET = info("get", 2, (KeySpec(ACCESS, ("index", 1), ("range", 0, 1, 0)),),
           flags=frozenset({"readonly"}))
TABLE = CommandTable({"xread": XREAD, "georadius": GEORADIUS, "eval": EVAL, "get": GET})


def keys(command: CommandInfo, *argv: bytes) -> list[bytes]:
    return [k for k, _ in command.keys(list(argv))]


def test_keywords_compare_as_strcasecmp_and_count_at_every_occurrence() -> None:
    assert keys(XREAD, b"XREAD", b"STREAMS\x00", b"a", b"0") == [b"a"]
    assert keys(XREAD, b"XREAD", b"sTrEaMs", b"a", b"b", b"0", b"0") == [b"a", b"b"]
    assert keyword(b"BLOCK\x00x") == b"block"
    # Redis's GEORADIUS stores into the last STORE; both are keys to check.
    argv = [b"GEORADIUS", b"g", b"0", b"0", b"1", b"km", b"STORE", b"a", b"STORE", b"b"]
    assert keys(GEORADIUS, *argv) == [b"g", b"a", b"b"]


def test_numkeys_is_read_as_string2ll() -> None:
    assert keys(EVAL, b"EVAL", b"s", b"1", b"k") == [b"k"]
    for bad in (b"+1", b" 1", b"01", b"1\x00", b"0x1"):
        with pytest.raises(ValueError):
            EVAL.keys([b"EVAL", b"s", bad, b"k"])


@pytest.mark.parametrize(("text", "value"), [
    (b"0", 0), (b"-5", -5), (b"9223372036854775807", 2**63 - 1), (b"01", None),
    (b"-0", None), (b"+1", None), (b"1 ", None), (b"9223372036854775808", None), (b"", None)])
def test_integers(text: bytes, value: int | None) -> None:
    assert parse_long_long(text) == value


@pytest.mark.parametrize(("text", "value"), [
    (b"1.5", Decimal("1.5")), (b"0x1p20", Decimal(2**20)), (b"-.5e1", Decimal("-5")),
    (b"inf", Decimal("Infinity")), (b"nan", None), (b" 1", None), (b"1\x00", None),
    (b"1e", None), (b"1e5000", None)])
def test_floats(text: bytes, value: Decimal | None) -> None:
    assert parse_long_double(text) == value


def test_blocking_timeouts_are_capped_and_only_they_are_rewritten() -> None:
    blpop = info("blpop", -3, categories=frozenset({"blocking"}))
    where = placement(blpop)
    assert where.where is Where.RESERVED
    for sent, expected in ((b"0", b"10.0005"), (b"0x1p20", b"10.0005"), (b"2", b"2.0005"),
                           (b"0.0001", b"10.0005"), (b"-0.0004", b"10.0005")):
        argv, _ = cap_blocking(blpop, [b"BLPOP", b"k", sent], where, 10)
        assert argv == [b"BLPOP", b"k", expected], sent
    with pytest.raises(BadRequest, match="negative"):
        cap_blocking(blpop, [b"BLPOP", b"k", b"-1"], where, 10)
    # XREAD: BLOCK options before STREAMS, each read; a stream named "block" is no option.
    argv, placed = cap_blocking(XREAD, [b"XREAD", b"BLOCK", b"0", b"BLOCK\x00", b"50",
                                        b"STREAMS", b"block", b"0"], placement(XREAD), 10)
    assert argv == [b"XREAD", b"BLOCK", b"10000", b"BLOCK\x00", b"50", b"STREAMS", b"block",
                    b"0"]
    assert placed.where is Where.RESERVED
    argv, placed = cap_blocking(XREAD, [b"XREAD", b"STREAMS", b"block", b"0"],
                                placement(XREAD), 10)
    assert argv == [b"XREAD", b"STREAMS", b"block", b"0"] and placed.where is Where.SHARED


def test_names_with_nul_and_unknown_subcommands_never_resolve() -> None:
    scope = Scope(parse("admin"), db=0, redis_enforces=True)
    for argv, words in (([b"GET\x00x", b"k"], "NUL"), ([b"gEt", b"k"], None),
                        ([b"\xe2\x84\xaaEYS"], "unknown command")):
        if words is None:
            assert check(scope, argv, TABLE, LimitSettings()).info is GET
        else:
            with pytest.raises(BadRequest, match=words):
                check(scope, argv, TABLE, LimitSettings())


def test_scripts_need_redis_to_enforce_for_restricted_tokens() -> None:
    restricted = Scope(parse("read-write"), db=0, redis_enforces=False)
    with pytest.raises(Forbidden, match="enforcement"):
        check(restricted, [b"EVAL", b"return 1", b"0"], TABLE, LimitSettings())
    enforced = Scope(parse("read-write"), db=0, redis_enforces=True)
    assert check(enforced, [b"EVAL", b"return 1", b"0"], TABLE, LimitSettings()).info is EVAL
    admin = Scope(parse("admin"), db=0, redis_enforces=False)
    assert check(admin, [b"EVAL", b"return 1", b"0"], TABLE, LimitSettings()).info is EVAL


def test_guarded_policies_and_their_acl_users() -> None:
    guarded = parse("read-write").guarding(b"redis-gateway:")
    assert guarded.denied_key([(b"redis-gateway:tokens", ACCESS)]) == b"redis-gateway:tokens"
    assert guarded.denied_key([(b"app:1", ACCESS)]) is None
    patterns = everything_but(b"rg:")
    for key in (b"", b"r", b"rg", b"rx", b"a", b"rg;", b"r:g"):
        assert any(glob_match(p, key) for p in patterns), key
    assert not any(glob_match(p, b"rg:x") for p in patterns)
    rules = acl_rules(guarded, 3)
    assert "allkeys" not in rules and "+select|3" in rules and "-move" in rules
    assert acl_rules(parse("admin").guarding(b"rg:"), 3) == ("+@all", "allkeys", "allchannels")
    # Same rules, same user name and password, whichever process computes them.
    assert acl_user(guarded, 3, b"s") == acl_user(parse("read-write").guarding(
        b"redis-gateway:"), 3, b"s")
    assert acl_user(guarded, 3, b"s").password != acl_user(guarded, 3, b"t").password
