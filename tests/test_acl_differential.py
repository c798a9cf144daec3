"""Proof by difference: whatever the gateway allows, Redis's own ACL allows.

Hypothesis generates rule sets (presets, categories, commands, subcommands, key and channel
patterns) and commands (odd case, NUL bytes, repeated keywords, scripts, keys inside and
outside the patterns); for each pair the gateway's decision (the same checks every request
meets, keys found locally or by COMMAND GETKEYSANDFLAGS) is compared with ``ACL DRYRUN`` on a
real redis-server for a user carrying the same rules. Two more properties keep the ACL users
of managed mode honest: the user the gateway creates for a rule set never allows what the
rules themselves do not, and it allows everything the gateway's check lets through.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import hiredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redis_gateway.acl import acl_rules
from redis_gateway.checks import Scope, check, check_keys, repeated_elements
from redis_gateway.commands import CommandTable
from redis_gateway.errors import GatewayError
from redis_gateway.policy import PRESETS, Policy, RuleError, parse
from redis_gateway.redis_args import parse_long_double, parse_long_long
from redis_gateway.redis_glob import glob_match
from redis_gateway.settings import LimitSettings

from support import RedisServer

EXAMPLES = 1500
LIMITS = LimitSettings(max_block_seconds=10.0)
RESERVED = b"redis-gateway:"


class Oracle:
    """One connection to a private redis-server, used synchronously."""

    def __init__(self, server: RedisServer) -> None:
        self._sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self._reader = hiredis.Reader()
        commands = self.call(b"COMMAND")
        self.table = CommandTable.from_command_info(commands)
        self.names = sorted(self.table.commands)
        self.subcommands = sorted(s for i in self.table.commands.values() for s in i.subcommands)
        # Commands without subcommands, and a few containers alone (an unknown subcommand).
        self.plain = [n for n in self.names if not self.table.commands[n].subcommands]
        self.plain += ["config", "client", "xinfo"]
        self.categories = sorted({c for n in self.names for c in self.table.commands[n].categories})
        self._users: dict[tuple[str, ...], bool] = {}

    def call(self, *args: bytes) -> Any:
        self._sock.sendall(hiredis.pack_command(args))
        while (reply := self._reader.gets()) is False:
            self._reader.feed(self._sock.recv(1 << 20))
        return reply

    def user(self, name: str, rules: tuple[str, ...]) -> bool:
        """Make ``name`` carry exactly ``rules``; False if Redis refuses them."""
        reply = self.call(b"ACL", b"SETUSER", name.encode(), b"reset", b"on", b"nopass",
                          *(r.encode("latin-1") for r in rules))
        return reply == b"OK"

    def allows(self, user: str, argv: list[bytes]) -> bool:
        return self.call(b"ACL", b"DRYRUN", user.encode(), *argv) == b"OK"

    def keys(self, argv: list[bytes]) -> list[tuple[bytes, frozenset[str]]]:
        reply = self.call(b"COMMAND", b"GETKEYSANDFLAGS", *argv)
        if isinstance(reply, hiredis.ReplyError):
            if "no key arguments" in str(reply).lower():
                return []
            raise GatewayError(str(reply))
        return [(k, frozenset(f.decode().lower() for f in flags)) for k, flags in reply]


@pytest.fixture(scope="module")
def oracle() -> Iterator[Oracle]:
    server = RedisServer().start()
    try:
        yield Oracle(server)
    finally:
        server.close()


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


# what is generated --------------------------------------------------------------------------
KEYS = [b"app:1", b"app:", b"secret:x", b"redis-gateway:tokens", b"a", b"", b"a]b", b"[x",
        b"k*", b"\\", b"APP:1", b"app:\x00x"]
WORDS = [b"STORE", b"STOREDIST", b"STREAMS", b"BY", b"GET", b"DB", b"BLOCK", b"COUNT", b"KEYS",
         b"store", b"streams\x00", b"Store\x00x", b"GET\x00d", b"nosort", b"pat:*", b"#",
         b"REPLACE", b"LIMIT", b"ALPHA", b"GROUP", b"NOACK", b"WITHSCORES", b"0", b"1", b"2",
         b"3", b"-1", b"0x10", b"5", b"$", b">", b"*", b"return 1",
         b"return redis.call('get', KEYS[1])", b"\x00", b"ch:1", b"news.*"]
PATTERNS = ["*", "app:*", "secret:*", "a", "a?", "[a-c]*", "[^a]*", "a\\]b", "\\[x", "k\\*",
            "[z-a]", "a[b", "[]", "*:1", "redis-gateway:*", "APP:*", "app:\\*"]
CHANNELS = ["*", "ch:*", "news.*", "ch:1"]


def rule_words(oracle: Oracle) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(list(PRESETS)),
        st.sampled_from(["allcommands", "nocommands", "allkeys", "resetkeys", "allchannels",
                         "resetchannels", "+@all", "-@all"]),
        st.builds(lambda s, c: f"{s}@{c.lstrip('@')}", st.sampled_from("+-"),
                  st.sampled_from(oracle.categories)),
        st.builds(lambda s, c: f"{s}{c}", st.sampled_from("+-"),
                  st.sampled_from(oracle.names + oracle.subcommands)),
        st.builds(lambda r, k, p: f"{r}{k}{p}", st.sampled_from(["", "resetkeys "]),
                  st.sampled_from(["~", "%R~", "%W~", "%RW~"]), st.sampled_from(PATTERNS)),
        st.builds(lambda r, p: f"{r}&{p}", st.sampled_from(["", "resetchannels "]),
                  st.sampled_from(CHANNELS)),
    )


def rule_sets(oracle: Oracle) -> st.SearchStrategy[str]:
    """A base that grants much (as real tokens do), then changes to it, or random words."""
    bases = st.sampled_from(["admin", "read-write", "read-only", "+@all allkeys",
                             "+@all ~app:* %R~secret:* &ch:*", "read-write resetkeys ~a*",
                             "+@read +@write ~* allchannels"])
    changes = st.lists(rule_words(oracle), max_size=5).map(" ".join)
    based = st.builds(lambda b, c: f"{b} {c}".strip(), bases, changes)
    return st.one_of(based, based, based, changes.filter(bool))


def odd_case(draw: st.DrawFn, name: str) -> bytes:
    raw = name.encode()
    flips = draw(st.lists(st.booleans(), min_size=len(raw), max_size=len(raw)))
    return bytes(c ^ 0x20 if flip and chr(c).isalpha() else c for c, flip in zip(raw, flips,
                                                                                 strict=True))


@st.composite
def commands(draw: st.DrawFn, oracle: Oracle) -> list[bytes]:
    full = draw(st.sampled_from(oracle.plain + oracle.subcommands))
    container, _, sub = full.partition("|")
    info = oracle.table.commands[container]
    if sub:
        info = info.subcommands[full]
    argv = [odd_case(draw, container)] + ([odd_case(draw, sub)] if sub else [])
    if draw(st.sampled_from(range(30))) == 29:  # a NUL inside a name
        where = draw(st.integers(0, len(argv) - 1))
        argv[where] += b"\x00" + draw(st.sampled_from([b"", b"x", b"d", b"v"]))
    count = info.arity if info.arity > 0 else -info.arity + draw(st.integers(0, 5))
    pool = st.one_of(st.sampled_from(KEYS), st.sampled_from(WORDS),
                     st.binary(max_size=4))
    argv += draw(st.lists(pool, min_size=max(count - len(argv), 0),
                          max_size=max(count - len(argv), 0)))
    return argv


# the gateway's decision ---------------------------------------------------------------------
def gateway_allows(oracle: Oracle, loop: asyncio.AbstractEventLoop, policy: Policy,
                   argv: list[bytes]) -> bool:
    scope = Scope(policy, db=0, redis_enforces=True)
    try:
        prepared = check(scope, argv, oracle.table, LIMITS)
        if not policy.all_keys:
            async def ask(a: Any) -> Any:
                return oracle.keys(list(a))

            loop.run_until_complete(check_keys(policy, prepared.info, argv, ask))
    except GatewayError:
        return False
    return True


def as_written(rules: str) -> tuple[str, ...]:
    """The rules as ACL SETUSER arguments, presets expanded."""
    return tuple(" ".join(PRESETS.get(w.lower(), w) for w in rules.split()).split())


def compiled(text: str) -> Policy | None:
    try:
        return parse(text)
    except RuleError:
        return None


PROFILE = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                   suppress_health_check=list(HealthCheck))
# For the parsers alone (a round trip or two per case, no rule sets).
PARSERS = settings(PROFILE, max_examples=1000)


def test_whatever_the_gateway_allows_redis_allows(oracle: Oracle,
                                                  loop: asyncio.AbstractEventLoop) -> None:
    checked = []

    @PROFILE
    @given(rules=rule_sets(oracle), argv=commands(oracle))
    def prop(rules: str, argv: list[bytes]) -> None:
        policy = compiled(rules)
        if policy is None:
            return
        # The token's rules as written (presets expanded), on a user of their own.
        if not oracle.user("dry", as_written(rules)):
            return
        if gateway_allows(oracle, loop, policy, argv):
            checked.append(argv)
            assert oracle.allows("dry", argv), (rules, argv)

    prop()
    assert len(checked) > EXAMPLES // 10  # the property was exercised, not vacuous


def test_managed_users_grant_no_more_than_the_rules(oracle: Oracle) -> None:
    """What the ACL user of a rule set allows, the rules allow (scripts run as this user)."""
    compared = []

    @PROFILE
    @given(rules=rule_sets(oracle), argv=commands(oracle), guard=st.booleans())
    def prop(rules: str, argv: list[bytes], guard: bool) -> None:
        policy = compiled(rules)
        if policy is None:
            return
        if guard:
            policy = policy.guarding(RESERVED)
        if not oracle.user("raw", as_written(rules)) or \
                not oracle.user("managed", acl_rules(policy, 0)):
            return
        if oracle.allows("managed", argv):
            compared.append(argv)
            assert oracle.allows("raw", argv), (rules, argv)
            keys = [k for k in argv[1:] if k.startswith(RESERVED)]
            if guard and keys and not policy.unrestricted:
                # Redis finds the keys itself; a key under the guard never passes.
                found = [k for k, _ in _safe_keys(oracle, argv)]
                assert not any(k.startswith(RESERVED) for k in found), (rules, argv)

    prop()
    assert len(compared) > EXAMPLES // 10


def test_managed_users_allow_what_the_gateway_lets_through(
        oracle: Oracle, loop: asyncio.AbstractEventLoop) -> None:
    """Else Redis would refuse, with NOPERM, commands the gateway's check explained as fine."""
    checked = []

    @PROFILE
    @given(rules=rule_sets(oracle), argv=commands(oracle), guard=st.booleans())
    def prop(rules: str, argv: list[bytes], guard: bool) -> None:
        policy = compiled(rules)
        if policy is None:
            return
        if guard:
            policy = policy.guarding(RESERVED)
        if not oracle.user("managed", acl_rules(policy, 0)):
            return
        if gateway_allows(oracle, loop, policy, argv):
            checked.append(argv)
            assert oracle.allows("managed", argv), (rules, argv, acl_rules(policy, 0))

    prop()
    assert len(checked) > EXAMPLES // 10


def _safe_keys(oracle: Oracle, argv: list[bytes]) -> list[tuple[bytes, frozenset[str]]]:
    try:
        return oracle.keys(argv)
    except GatewayError:
        return []



def test_glob_matches_as_redis_matches(oracle: Oracle) -> None:
    """Key patterns: the gateway's glob against Redis's own (a user with only that pattern)."""
    alphabet = st.sampled_from([*b"ab*?[]^-\\z:", 0x7F, 0x80, 0xFF, 0x00])
    text = st.lists(alphabet, max_size=7).map(bytes)

    @PARSERS
    @given(pattern=text.filter(bool), key=text)
    def prop(pattern: bytes, key: bytes) -> None:
        reply = oracle.call(b"ACL", b"SETUSER", b"glob", b"reset", b"on", b"nopass", b"+get",
                            b"%R~" + pattern)
        if reply != b"OK":
            return
        assert glob_match(pattern, key) == oracle.allows("glob", [b"GET", key]), (pattern, key)

    prop()


def test_keys_found_locally_include_what_redis_finds(oracle: Oracle) -> None:
    """Where the gateway finds keys itself (key specs), it finds every key COMMAND
    GETKEYSANDFLAGS finds, with at least the permissions Redis's ACL would ask for."""
    compared = []

    @PROFILE
    @given(argv=commands(oracle))
    def prop(argv: list[bytes]) -> None:
        info = oracle.table.lookup(argv)
        if info is None or info.keys_need_server or not info.arity_ok(len(argv)):
            return
        try:
            ours = info.keys(argv)
        except ValueError:
            return  # a malformed numkeys: refused before anything runs
        try:
            theirs = oracle.keys(argv)
        except GatewayError:
            return
        compared.append(argv)
        for key, flags in theirs:
            assert any(k == key and _needs(f) >= _needs(flags) for k, f in ours), \
                (argv, theirs, ours)

    prop()
    assert len(compared) > EXAMPLES // 10


def _needs(flags: frozenset[str]) -> set[str]:
    """The permissions a key with these flags needs, as Redis's ACLSelectorCheckKey asks."""
    return ({"read"} if flags & {"access"} else set()) | \
        ({"write"} if flags & {"insert", "delete", "update"} else set())


NUMBERS = st.one_of(
    st.sampled_from([b"0", b"-0", b"00", b"01", b"+1", b" 1", b"1 ", b"1\x00", b"1\x002",
                     b"0x10", b"0X1p3", b"0x1.8p1", b"inf", b"-Infinity", b"nan", b"1e3",
                     b"1E-3", b".5", b"5.", b"-.5e1", b"1e", b"", b"9223372036854775807",
                     b"9223372036854775808", b"-9223372036854775808", b"1e4932", b"1e-4950",
                     b"1e-5000", b"0x", b"0x.8"]),
    st.from_regex(rb"\A[-+]?[0-9]{0,3}(\.[0-9]{0,3})?([eE][-+]?[0-9]{1,4})?\Z"),
    st.from_regex(rb"\A[-+]?0[xX][0-9a-fA-F]{0,3}(\.[0-9a-fA-F]{0,2})?([pP][-+]?[0-9]{1,3})?\Z"),
    st.binary(max_size=6),
)


def test_numbers_read_as_redis_reads_them(oracle: Oracle) -> None:
    """Integers as INCRBY reads them (string2ll), floats as INCRBYFLOAT does (string2ld)."""
    @PARSERS
    @given(arg=NUMBERS)
    def prop(arg: bytes) -> None:
        oracle.call(b"DEL", b"n")
        integer = oracle.call(b"INCRBY", b"n", arg)
        assert (parse_long_long(arg) is not None) == isinstance(integer, int), arg
        oracle.call(b"DEL", b"n")
        number = oracle.call(b"INCRBYFLOAT", b"n", arg)
        ours = parse_long_double(arg)
        if isinstance(number, bytes):
            assert ours is not None and ours.is_finite(), arg
            theirs = Decimal(number.decode())
            assert abs(theirs - ours) <= Decimal("1e-9") * max(Decimal(1), abs(ours)), arg
        elif "NaN or Infinity" not in str(number):  # Redis read it, then refused the sum
            assert ours is None, (arg, number)

    prop()


# replies that grow with a count ------------------------------------------------------------
COUNTS = st.one_of(
    st.integers(-(2 ** 64), 2 ** 64).map(lambda n: str(n).encode()),
    st.integers(-3000, 3000).map(lambda n: str(n).encode()),
    st.sampled_from([b"-9223372036854775807", b"-9223372036854775808", b"-4611686018427387903",
                     b"-4611686018427387904", b"-0", b"+5", b" -5", b"-5 ", b"-05", b"-1e3",
                     b"-0x10", b"-7\x00", b""]),
    st.binary(max_size=6),
)
WITH_WORDS = st.sampled_from([b"withscores", b"WITHSCORES", b"withvalues", b"WithValues",
                              b"withscores\x00x", b"withscore", b"x"])


def test_counts_that_repeat_elements_read_as_redis_reads_them(oracle: Oracle) -> None:
    """SRANDMEMBER/ZRANDMEMBER/HRANDFIELD with a negative count: the gateway counts the
    elements Redis would make exactly when Redis accepts the arguments, and that many
    arrive from a key that has members (checked where it is small enough to ask)."""
    oracle.call(b"DEL", b"s", b"z", b"h")
    oracle.call(b"SADD", b"s", b"a", b"b")
    oracle.call(b"ZADD", b"z", b"1", b"a", b"2", b"b")
    oracle.call(b"HSET", b"h", b"a", b"1", b"b", b"2")
    keys = {b"SRANDMEMBER": b"s", b"ZRANDMEMBER": b"z", b"HRANDFIELD": b"h"}

    @PARSERS
    @given(name=st.sampled_from(sorted(keys)), count=COUNTS,
           rest=st.lists(WITH_WORDS, max_size=2))
    def prop(name: bytes, count: bytes, rest: list[bytes]) -> None:
        args = [count, *rest]
        ours = repeated_elements(name.decode().lower(), [name, keys[name], *args])
        # On a key that does not exist Redis still reads every argument, then answers [].
        accepted = oracle.call(name, b"missing", *args) == []
        if ours:
            assert accepted, (name, args)
        if accepted and 0 < ours <= 3000:
            reply = oracle.call(name, keys[name], *args)
            assert len(reply) == ours * (2 if rest else 1), (name, args)
        elif accepted and not ours:  # a count of 0 or more: no more than the key holds
            assert len(oracle.call(name, keys[name], *args)) <= 4, (name, args)

    prop()
