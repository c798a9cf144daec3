"""The checks every command meets before it may run, read as Redis reads it.

In order: that the server knows the command (name and subcommand resolved as Redis
resolves them), that it can work on a request/response endpoint and where it may run
(``placement.py``), its arity, a read-only request's limits, the token's command rules,
the database the token is bound to, the channels and keys it touches, options that need
more than the keys (``SORT ... BY pattern``/``GET``), the cap on a blocking command's
timeout, and a reply that its arguments alone make larger than the gateway returns. Keys
that only the server can find cost a round trip; everything else is decided here without
one.

Where Redis enforces the token's rules too (ACL users, see ``acl.py``), these checks are the
fast path that explains itself; where it does not (enforcement "gateway"), whatever the
gateway cannot see into — scripts and functions — is refused for restricted tokens.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import NamedTuple

from .acl import SHARED_CODE, RedisUser
from .commands import READ_FLAGS, WRITE_FLAGS, CommandInfo, CommandTable
from .errors import BadRequest, Forbidden, GatewayError, ReplyTooLarge
from .placement import ALLOWED_IN_TRANSACTION, Placement, Where, placement
from .policy import Policy
from .redis_args import c_string, keyword, parse_long_double, parse_long_long
from .redis_types import Argv
from .settings import LimitSettings

Keys = list[tuple[bytes, frozenset[str]]]
# Asks the server for a command's keys and their flags (COMMAND GETKEYSANDFLAGS).
AskKeys = Callable[[Argv], Awaitable[Keys]]


class Prepared(NamedTuple):
    argv: Sequence[bytes]  # as sent, but for a capped timeout
    info: CommandInfo
    where: Placement


class Scope:
    """What a request is, besides its commands: who sends them and where they go.

    It also keeps, per command, what the checks decided without looking at the
    arguments (``Verdict``): one dict look-up per command afterwards. Executors keep one
    Scope per (rules, backend, kind of request), so the verdicts outlive a request.
    """

    __slots__ = ("db", "in_transaction", "policy", "read_only", "redis_enforces",
                 "repeat_cap", "unguarded", "user", "verdicts")

    def __init__(self, policy: Policy, db: int, redis_enforces: bool, read_only: bool = False,
                 in_transaction: bool = False, user: RedisUser | None = None,
                 reply_rate: float = 0.0, unguarded: bytes | None = None) -> None:
        self.policy = policy
        # Elements a negative count may have Redis make in one command, for a token with
        # this reply budget (0: none): one second's worth of it (see _check_repeated).
        self.repeat_cap = int(reply_rate // MIN_RESP_ELEMENT_BYTES) if reply_rate else -1
        self.user = user  # the Redis user its commands run as (None: the gateway's own)
        self.db = db  # the database of the token's backend
        self.redis_enforces = redis_enforces  # Redis checks the rules too (ACL users)
        # A key pattern with which its Redis user reaches the gateway's own keys
        # (Enforcement.unguarded_pattern): Redis cannot be trusted with its scripts.
        self.unguarded = unguarded
        self.read_only = read_only  # a GraphQL Query or a HEAD request: nothing may write
        self.in_transaction = in_transaction
        self.verdicts: dict[str, Verdict] = {}


class Verdict(NamedTuple):
    """What the checks say of a command before reading its arguments."""

    refused: tuple[type[GatewayError], str] | None  # before its arity is checked
    forbidden: tuple[type[GatewayError], str] | None  # after
    where: Placement
    by_arguments: bool  # more checks need the arguments (channels, SORT, COPY, timeouts)


# Categories of commands that may change data or the server even without the write flag
# (EVAL, FUNCTION, PUBLISH, CONFIG SET, ...).
_MAY_WRITE = frozenset({"write", "scripting", "admin", "dangerous", "pubsub"})
_SORTS = frozenset({"sort", "sort_ro"})
_OTHER_DATABASES = frozenset({"move", "swapdb", "select"})
_SHARED = Placement(Where.SHARED)


def check(scope: Scope, argv: Argv, table: CommandTable, limits: LimitSettings) -> Prepared:
    """Every check that needs no round trip: all of them for a token with allkeys."""
    if not argv:
        raise BadRequest("empty command: the first element must be a command name")
    info = table.lookup(argv)
    if info is None:
        raise BadRequest(_not_found(argv, table))
    verdict = scope.verdicts.get(info.name)
    if verdict is None:
        verdict = scope.verdicts[info.name] = _verdict(scope, info)
    if verdict.refused is not None:
        kind, message = verdict.refused
        raise kind(message)
    if not info.arity_ok(len(argv)):
        raise BadRequest(f"ERR wrong number of arguments for '{info.name}' command")
    if verdict.forbidden is not None:
        kind, message = verdict.forbidden
        raise kind(message)
    if verdict.by_arguments:
        return _by_arguments(scope, info, argv, verdict.where, limits)
    return Prepared(argv, info, verdict.where)


def _verdict(scope: Scope, info: CommandInfo) -> Verdict:
    where = placement(info)
    if where.where is Where.REFUSED and not (
        scope.in_transaction and info.name in ALLOWED_IN_TRANSACTION
    ):
        return Verdict((BadRequest, f"ERR {_display(info)} is not available here: "
                                    f"{where.reason}"), None, where, False)
    policy = scope.policy
    forbidden: tuple[type[GatewayError], str] | None = None
    if scope.read_only and not reads_only(info):
        forbidden = (BadRequest, f"'{info.name}' may write, and this request may only read (a "
                                 "GraphQL Query, a HEAD request); send it in a Mutation, or "
                                 "with GET or POST")
    elif not policy.allows_command(info):
        forbidden = (Forbidden, f"NOPERM this token has no permissions to run the "
                                f"'{info.name}' command")
    elif not policy.unrestricted and info.name in _OTHER_DATABASES:
        forbidden = (Forbidden, f"NOPERM this token is bound to database {scope.db}; "
                                f"{info.name.upper()} would reach another")
    elif not policy.unrestricted and info.name in SHARED_CODE:
        forbidden = (Forbidden, f"NOPERM {_display(info)} changes or stops code that other "
                                "tokens run (functions run with their caller's rights); only "
                                "an unrestricted token may")
    elif not policy.unrestricted and not scope.redis_enforces and \
            "scripting" in info.categories:
        forbidden = (Forbidden, f"NOPERM '{info.name}' runs code whose commands the gateway "
                                "cannot check, and this backend's Redis does not enforce token "
                                "rules itself (enforcement = \"gateway\"); use enforcement = "
                                "\"managed\" or \"mapped\" to allow scripts")
    elif not policy.unrestricted and scope.unguarded is not None and \
            "scripting" in info.categories:
        pattern = _text(scope.unguarded)
        forbidden = (Forbidden, f"NOPERM '{info.name}' runs code that only Redis checks, and "
                                f"this token's key pattern '{pattern}' would let its Redis user "
                                f"reach the gateway's own keys under "
                                f"'{_text(policy.reserved_prefix)}', which no Redis pattern "
                                "can exclude: scripts are refused to these rules; use key "
                                "patterns that cannot match those keys (e.g. 'app:*')")
    by_arguments = (info.name == "copy" and not policy.unrestricted) or \
        (info.pubsub and not policy.all_channels) or \
        (info.name in _SORTS and not policy.all_keys_readable) or \
        info.blocking or where.where is Where.RESERVED or info.name in _REPEATED_BY_COUNT
    return Verdict(None, forbidden, where, by_arguments)


def _by_arguments(scope: Scope, info: CommandInfo, argv: Argv, where: Placement,
                  limits: LimitSettings) -> Prepared:
    """The checks that read the arguments, for the commands whose verdict says so."""
    policy = scope.policy
    if info.name == "copy" and not policy.unrestricted:
        _check_copy(argv, scope.db)
    if info.pubsub and not policy.all_channels:
        channels, patterns = _channels(info.name, argv)
        denied = policy.denied_channel(channels, patterns=patterns)
        if denied is not None:
            raise Forbidden(f"NOPERM this token has no permissions to access the "
                            f"'{_text(denied)}' channel")
    if info.name in _SORTS and not policy.all_keys_readable and _sort_reads_patterns(argv):
        raise Forbidden("NOPERM SORT with BY <pattern> or GET reads keys the pattern names, "
                        "which needs read access to every key (~* or %R~*)")
    if info.name in _REPEATED_BY_COUNT:
        _check_repeated(info, argv, limits.max_reply_bytes, scope.repeat_cap)
    if info.blocking or where.where is Where.RESERVED:
        argv, where = cap_blocking(info, argv, where, limits.max_block_seconds)
    return Prepared(argv, info, where)


async def check_keys(policy: Policy, info: CommandInfo, argv: Argv, ask: AskKeys) -> None:
    """The keys the command touches, against the token's key patterns."""
    if info.keys_need_server:
        keys = await ask(argv)
    else:
        try:
            keys = info.keys(argv)
        except ValueError as exc:
            raise BadRequest(f"ERR {exc}") from None
    denied = policy.denied_key(keys)
    if denied is not None:
        raise Forbidden(
            f"NOPERM this token has no permissions to access the '{_text(denied)}' key")


def reads_only(info: CommandInfo) -> bool:
    """True for commands the server marks read-only, or that touch no data at all (PING)."""
    if "readonly" in info.flags:
        return True
    return "write" not in info.flags and not info.categories & _MAY_WRITE


def both_ways(keys: list[bytes]) -> Keys:
    """Keys whose use is unknown (Redis 6's COMMAND GETKEYS): read and written."""
    return [(k, READ_FLAGS | WRITE_FLAGS) for k in keys]


def _channels(name: str, argv: Argv) -> tuple[Argv, bool]:
    """The channels a command names, and whether they are patterns (PSUBSCRIBE)."""
    if name in ("publish", "spublish"):
        return argv[1:2], False
    if name in ("subscribe", "ssubscribe", "psubscribe"):
        return argv[1:], name == "psubscribe"
    return (), False


# the database boundary --------------------------------------------------------------------
def _check_copy(argv: Argv, db: int) -> None:
    """COPY src dst [DB n] [REPLACE]: each DB is read (the last wins), as Redis does; a
    restricted token stays in its backend's database (its ACL user cannot SELECT another,
    but Redis's ACL cannot see COPY's DB argument)."""
    i = 3
    while i < len(argv):
        if keyword(argv[i]) == b"db" and i + 1 < len(argv):
            target = parse_long_long(argv[i + 1])
            if target is not None and target != db:
                raise Forbidden(f"NOPERM this token is bound to database {db}; "
                                f"COPY ... DB {target} would reach another")
            i += 1
        i += 1


# SORT ---------------------------------------------------------------------------------
def _sort_reads_patterns(argv: Argv) -> bool:
    """True when SORT's options read keys named by patterns: BY with a '*', or GET.

    Parsed as Redis's sortCommandGeneric parses (strcasecmp, how many arguments each
    option takes); Redis itself refuses these options without full read access.
    """
    i = 2
    while i < len(argv):
        word, left = keyword(argv[i]), len(argv) - i - 1
        if word in (b"asc", b"desc", b"alpha"):
            i += 1
        elif word == b"limit" and left >= 2:
            i += 3
        elif word in (b"store", b"by", b"get") and left >= 1:
            if word == b"get" or (word == b"by" and b"*" in c_string(argv[i + 1])):
                return True
            i += 2
        else:
            return False  # a syntax error: Redis stops here too
    return False


# replies that grow with a count, not with the data ------------------------------------------
# With a negative count these return that many elements, repeats allowed, from a key of
# any size: SRANDMEMBER k -3000000 on a one-member set has Redis build three million (and
# -LONG_MAX, forever), every client of that Redis waiting meanwhile. The gateway would
# only drop a reply past max_reply_bytes: such a command is refused before it is sent.
_REPEATED_BY_COUNT = {"srandmember": None, "zrandmember": b"withscores",
                      "hrandfield": b"withvalues"}
# The fewest bytes one element takes in any output format: "" and a comma in JSON; and
# as Redis sends it, what a token's reply budget is charged: $0, CRLF, CRLF.
MIN_ELEMENT_BYTES = 3
MIN_RESP_ELEMENT_BYTES = 6
_LONG_MAX = (1 << 63) - 1


def _check_repeated(info: CommandInfo, argv: Argv, max_reply_bytes: int,
                    repeat_cap: int) -> None:
    """Refused before it is sent (nothing charged to the token's reply budget): a count
    whose reply cannot fit max_reply_bytes, or, for a token with a reply budget, that
    makes more than one second of it. Redis spends ~0.1 µs an element making such a
    reply, every client waiting: the budget bounds how long one command of the token's
    holds Redis, not only how often."""
    elements = repeated_elements(info.name, argv)
    if not elements:
        return
    what = f"{_display(info)} with a count of -{elements} returns {elements} elements " \
           "from any key that has one"
    if elements * MIN_ELEMENT_BYTES > max_reply_bytes:
        raise ReplyTooLarge(0, f"{what}, at least {elements * MIN_ELEMENT_BYTES} bytes: "
                               f"more than {max_reply_bytes} (limits.max_reply_bytes); "
                               "ask for fewer")
    if 0 <= repeat_cap < elements:
        raise ReplyTooLarge(0, f"{what}: more than {repeat_cap}, one second of this "
                               "token's budget of reply bytes (its reply_rate, or "
                               "limits.token_reply_rate); ask for fewer")


def repeated_elements(name: str, argv: Argv) -> int:
    """How many elements the reply of ``name`` (one of _REPEATED_BY_COUNT) holds because
    of a negative count, if the key holds any; 0 where Redis would refuse the arguments
    (it answers its own error, as it parses them: getRangeLongFromObjectOrReply between
    -LONG_MAX and LONG_MAX, then the WITHSCORES/WITHVALUES word and its range)."""
    if len(argv) < 3:
        return 0
    count = parse_long_long(argv[2])
    if count is None or count >= 0 or count < -_LONG_MAX:
        return 0
    if len(argv) == 3:
        return -count
    word = _REPEATED_BY_COUNT[name]
    if len(argv) > 4 or word is None or keyword(argv[3]) != word or count < -(_LONG_MAX // 2):
        return 0
    return -count


# blocking commands ------------------------------------------------------------------------
_SECONDS_LAST = frozenset({"blpop", "brpop", "brpoplpush", "blmove", "bzpopmin", "bzpopmax"})
_SECONDS_FIRST = frozenset({"blmpop", "bzmpop"})
_MILLIS_AT = {"wait": 2, "waitaof": 3}
_STREAM_READS = frozenset({"xread", "xreadgroup"})


def cap_blocking(
    info: CommandInfo, argv: Argv, where: Placement, max_block_seconds: float
) -> tuple[Argv, Placement]:
    """Bound a blocking command's timeout, rewriting only the timeout argument.

    The timeout is read as Redis reads it: seconds as a long double truncated to whole
    milliseconds (so ``0.0001`` is 0, "block forever", as is ``-0.0004``), milliseconds as a
    strict integer. Forever and anything past the cap become the cap. A seconds timeout is
    always rewritten, in a form whose truncation no rounding can move, so the gateway and
    Redis cannot read it differently. A timeout Redis would refuse is refused here with
    Redis's words. XREAD without BLOCK does not block: it may share a connection.
    """
    cap_ms = int(max_block_seconds * 1000)
    name = info.name
    if name in _STREAM_READS:
        places = _stream_block_options(argv, name == "xreadgroup")
        if not places:
            return argv, _SHARED
        return _capped(argv, [(i, False) for i in places], cap_ms), where
    if name in _SECONDS_LAST or name in _SECONDS_FIRST:
        index = len(argv) - 1 if name in _SECONDS_LAST else 1
        return _capped(argv, [(index, True)], cap_ms), where
    if name in _MILLIS_AT and _MILLIS_AT[name] < len(argv):
        return _capped(argv, [(_MILLIS_AT[name], False)], cap_ms), where
    # A command the gateway knows no timeout of (a module's): it runs alone, and its
    # connection is dropped when the reserved connection's deadline passes.
    return argv, where


def _stream_block_options(argv: Argv, group: bool) -> list[int]:
    """Where XREAD/XREADGROUP's BLOCK values are: options before STREAMS, as Redis parses."""
    found: list[int] = []
    i = 1
    while i < len(argv):
        word, more = keyword(argv[i]), len(argv) - i - 1
        if word == b"block" and more:
            found.append(i + 1)
            i += 2
        elif word == b"count" and more:
            i += 2
        elif word == b"streams" and more:
            break
        elif group and word == b"group" and more >= 2:
            i += 3
        elif group and word == b"noack":
            i += 1
        else:
            break  # Redis answers a syntax error without blocking
    return found


def _capped(argv: Argv, places: list[tuple[int, bool]], cap_ms: int) -> Argv:
    out = list(argv)
    for index, seconds in places:
        millis = _timeout_ms(argv[index], seconds)
        if millis == 0 or millis > cap_ms:
            millis = cap_ms
        elif not seconds:
            continue  # an integer both read alike: leave it as sent
        # Seconds: millis + 0.5 ms, so truncating to whole milliseconds gives millis
        # however the last bits of the long double fall.
        out[index] = b"%d.%03d5" % divmod(millis, 1000) if seconds else b"%d" % millis
    return out


def _timeout_ms(arg: bytes, seconds: bool) -> int:
    if seconds:
        value = parse_long_double(arg)
        if value is None or not value.is_finite() or value * 1000 > Decimal(2**63 - 1):
            raise BadRequest("ERR timeout is not a float or out of range")
        millis = int(value * 1000)  # int() truncates toward zero, as the C cast does
    else:
        parsed = parse_long_long(arg)
        if parsed is None:
            raise BadRequest("ERR timeout is not an integer or out of range")
        millis = parsed
    if millis < 0:
        raise BadRequest("ERR timeout is negative")
    return millis


# messages -----------------------------------------------------------------------------
def _not_found(argv: Argv, table: CommandTable) -> str:
    name = argv[0]
    if b"\0" in name:
        return ("ERR the command name contains a NUL byte; Redis could read it as another "
                "command, so the gateway does not send it")
    container = table.lookup(argv[:1])
    if container is not None and container.subcommands and len(argv) > 1:
        if b"\0" in argv[1]:
            return (f"ERR the subcommand of '{container.name}' contains a NUL byte; Redis "
                    "could read it as another subcommand, so the gateway does not send it")
        return (f"ERR unknown subcommand '{_text(c_string(argv[1]))}'. "
                f"Try {container.name.upper()} HELP.")
    # Redis's own wording, a space after each quoted argument included.
    args = "".join(f"'{_text(a)}' " for a in argv[1:6])
    return f"ERR unknown command '{_text(name)}', with args beginning with: {args}"


def _display(info: CommandInfo) -> str:
    return info.name.replace("|", " ").upper()


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")
