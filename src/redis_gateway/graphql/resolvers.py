"""Field resolvers: each builds Redis commands from its arguments and shapes the reply.

A resolver is ``async (ctx, args) -> value`` with plain dicts and lists for object
types, so the same table serves the local GraphQL server (through graphql-core) and
AppSync's direct Lambda resolver events, where AppSync picks sub-fields itself.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..auth import Principal
from ..codec import Encoder
from ..errors import BadRequest, GatewayError, LimitExceeded
from ..executor import Executor
from ..resp import ReplyError
from .batch import Batch
from .counting import holds_more_than


class LiveFeeds(Protocol):
    """What resolvers tell the streaming side (``subscriptions.Live``)."""

    def put_redis_done(self, principal: Principal, result: str) -> None: ...


@dataclass
class Context:
    principal: Principal
    executor: Executor
    batch: Batch
    max_reply_bytes: int
    # None where graphql-core does not complete the lists (AppSync's Lambda resolvers).
    max_list_items: int | None = None
    # Subscriptions and onPutRedis; None where nothing streams (AppSync's Lambda resolvers).
    live: LiveFeeds | None = None
    # Checks the token again (streams end when it expires or is revoked): its principal.
    recheck: Callable[[], Awaitable[Principal]] | None = None

    async def read(self, *argv: bytes | str | int | float) -> Any:
        return await self.batch.run(_argv(argv), read_only=True)

    async def read_list(self, *argv: bytes | str | int | float) -> Any:
        """A reply that becomes a typed GraphQL list: graphql-core completes it item by
        item, at 2.5-9 µs an element on the event loop, so its elements are bounded."""
        reply = await self.read(*argv)
        limit = self.max_list_items
        if limit is not None and isinstance(reply, list) and holds_more_than(reply, limit):
            raise LimitExceeded(
                f"the reply has more than {limit} elements (graphql.max_list_items): ask for "
                "fewer (count, start/stop, a narrower range) or use the command field, "
                "which returns the reply as one AWSJSON value")
        return reply

    async def write(self, *argv: bytes | str | int | float) -> Any:
        return await self.batch.run(_argv(argv), read_only=False)

    def json_value(self, reply: Any, encoding: str) -> Any:
        return Encoder(encoding == "BASE64", self.max_reply_bytes).value(reply)


Resolver = Callable[[Context, dict[str, Any]], Awaitable[Any]]
RESOLVERS: dict[tuple[str, str], Resolver] = {}


def resolver(type_name: str, field: str | None = None) -> Callable[[Resolver], Resolver]:
    def register(fn: Resolver) -> Resolver:
        RESOLVERS[(type_name, field or fn.__name__.rstrip("_"))] = fn
        return fn

    return register


def _argv(parts: Sequence[bytes | str | int | float]) -> list[bytes]:
    out = []
    for part in parts:
        if isinstance(part, bytes):
            out.append(part)
        elif isinstance(part, str):
            out.append(part.encode())
        else:
            out.append(repr(part).encode() if isinstance(part, float) else b"%d" % part)
    return out


def opt(args: dict[str, Any], name: str, default: Any) -> Any:
    """An optional argument: AppSync sends null (or nothing) where graphql-core fills defaults."""
    value = args.get(name)
    return default if value is None else value


def encoding_of(args: dict[str, Any]) -> str:
    """The field's ``encoding`` argument: UTF8 unless BASE64 was asked for."""
    return str(opt(args, "encoding", "UTF8"))


def decode_input(value: str, encoding: str) -> bytes:
    """A value argument as bytes: its UTF-8, or its base64 decoded."""
    if encoding != "BASE64":
        return value.encode()
    try:
        return binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise BadRequest(f"'{value[:40]}' is not valid base64 (encoding: BASE64)") from None


def encode_output(value: Any, encoding: str) -> str | None:
    if value is None:
        return None
    data = value if isinstance(value, bytes) else str(value).encode()
    if encoding == "BASE64":
        return binascii.b2a_base64(data, newline=False).decode("ascii")
    return data.decode("utf-8", "replace")


def _args(values: Sequence[str]) -> list[bytes]:
    if not values:
        raise BadRequest("the command is empty: the first element must be a command name")
    return [v.encode() for v in values]


def _pairs(flat: list[Any], encoding: str) -> list[dict[str, Any]]:
    return [{"field": encode_output(flat[i], encoding), "value": encode_output(flat[i + 1],
                                                                               encoding)}
            for i in range(0, len(flat) - 1, 2)]


def _score(raw: Any) -> float | None:
    return None if raw is None else float(raw)


def _entries(reply: list[Any], encoding: str) -> list[dict[str, Any]]:
    return [{"id": entry_id.decode(), "fields": _pairs(fields or [], encoding)}
            for entry_id, fields in reply]


# The seed sample's fields ---------------------------------------------------------
def _seed_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return json.dumps([_seed_text(v) for v in value])
    return str(value)


@resolver("Query")
async def getRedis(ctx: Context, args: dict[str, Any]) -> list[str | None]:
    """One command; a list reply becomes one string per element, anything else one string.

    Unlike the sample, an argument with spaces stays one argument, a command that
    writes is refused, and no timing value is appended.
    """
    reply = await ctx.read_list(*_args(args.get("Command") or []))
    if isinstance(reply, list):
        return [_seed_text(v) for v in reply]
    return [_seed_text(reply)]


@resolver("Mutation")
async def putRedis(ctx: Context, args: dict[str, Any]) -> str:
    """The commands as one MULTI/EXEC (the sample's redis-py pipeline was transactional)."""
    commands = [_args(c) for c in args.get("Command") or []]
    ctx.batch.charge(len(commands))
    replies = await ctx.executor.transaction(ctx.principal, commands)
    encoder = Encoder(False, ctx.max_reply_bytes)
    result = json.dumps([encoder.value(r) for r in replies])
    if ctx.live is not None:
        ctx.live.put_redis_done(ctx.principal, result)
    return result


# Generic commands -----------------------------------------------------------------------
@resolver("Query", "command")
async def query_command(ctx: Context, args: dict[str, Any]) -> Any:
    return ctx.json_value(await ctx.read(*_args(args["args"])), encoding_of(args))


@resolver("Mutation", "command")
async def mutation_command(ctx: Context, args: dict[str, Any]) -> Any:
    return ctx.json_value(await ctx.write(*_args(args["args"])), encoding_of(args))


@resolver("Mutation")
async def pipeline(ctx: Context, args: dict[str, Any]) -> list[dict[str, Any]]:
    commands = [_args(c) for c in args["commands"]]
    ctx.batch.charge(len(commands))
    if args.get("atomic"):
        replies = await ctx.executor.transaction(ctx.principal, commands)
    else:
        replies = await ctx.executor.pipeline(ctx.principal, commands)
    encoder = Encoder(args.get("encoding") == "BASE64", ctx.max_reply_bytes)
    results = []
    for reply in replies:
        if isinstance(reply, ReplyError):
            results.append({"result": None, "error": str(reply)})
        elif isinstance(reply, GatewayError):
            results.append({"result": None, "error": reply.message})
        else:
            results.append({"result": encoder.value(reply), "error": None})
    return results


# Strings and keys -----------------------------------------------------------------------
@resolver("Query")
async def get(ctx: Context, args: dict[str, Any]) -> str | None:
    return encode_output(await ctx.read("GET", args["key"]), encoding_of(args))


@resolver("Query")
async def mget(ctx: Context, args: dict[str, Any]) -> list[str | None]:
    reply = await ctx.read_list("MGET", *args["keys"])
    return [encode_output(v, encoding_of(args)) for v in reply]


@resolver("Query")
async def exists(ctx: Context, args: dict[str, Any]) -> int:
    return int(await ctx.read("EXISTS", *args["keys"]))


@resolver("Query")
async def type_(ctx: Context, args: dict[str, Any]) -> str:
    return bytes(await ctx.read("TYPE", args["key"])).decode()


@resolver("Query")
async def ttl(ctx: Context, args: dict[str, Any]) -> int:
    return int(await ctx.read("TTL", args["key"]))


@resolver("Query")
async def scan(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    argv: list[bytes | str | int] = ["SCAN", opt(args, "cursor", "0")]
    for option in ("match", "count", "type"):
        if args.get(option) is not None:
            argv += [option.upper(), args[option]]
    cursor, keys = await ctx.read_list(*argv)
    return {"cursor": cursor.decode(), "keys": [k.decode("utf-8", "replace") for k in keys]}


@resolver("Mutation")
async def set_(ctx: Context, args: dict[str, Any]) -> str | None:
    encoding = encoding_of(args)
    argv: list[bytes | str | int] = ["SET", args["key"], decode_input(args["value"], encoding)]
    if args.get("nx"):
        argv.append("NX")
    if args.get("xx"):
        argv.append("XX")
    if args.get("get"):
        argv.append("GET")
    if args.get("ex") is not None:
        argv += ["EX", args["ex"]]
    if args.get("px") is not None:
        argv += ["PX", args["px"]]
    reply = await ctx.write(*argv)
    if reply == b"OK" and not args.get("get"):
        return "OK"
    return encode_output(reply, encoding)


@resolver("Mutation")
async def incr(ctx: Context, args: dict[str, Any]) -> int:
    return int(await ctx.write("INCRBY", args["key"], opt(args, "by", 1)))


@resolver("Mutation")
async def del_(ctx: Context, args: dict[str, Any]) -> int:
    return int(await ctx.write("DEL", *args["keys"]))


@resolver("Mutation")
async def expire(ctx: Context, args: dict[str, Any]) -> bool:
    return bool(await ctx.write("EXPIRE", args["key"], args["seconds"]))


@resolver("Mutation")
async def rename(ctx: Context, args: dict[str, Any]) -> bool:
    return bool(await ctx.write("RENAME", args["key"], args["newKey"]) == b"OK")


# Hashes -------------------------------------------------------------------------------------
@resolver("Query")
async def hget(ctx: Context, args: dict[str, Any]) -> str | None:
    encoding = encoding_of(args)
    reply = await ctx.read("HGET", args["key"], decode_input(args["field"], encoding))
    return encode_output(reply, encoding)


@resolver("Query")
async def hgetall(ctx: Context, args: dict[str, Any]) -> list[dict[str, Any]]:
    return _pairs(await ctx.read_list("HGETALL", args["key"]), encoding_of(args))


@resolver("Mutation")
async def hset(ctx: Context, args: dict[str, Any]) -> int:
    encoding = encoding_of(args)
    flat: list[bytes] = []
    for item in args["fields"]:
        flat += [decode_input(item["field"], encoding), decode_input(item["value"], encoding)]
    return int(await ctx.write("HSET", args["key"], *flat))


@resolver("Mutation")
async def hincrby(ctx: Context, args: dict[str, Any]) -> int:
    return int(await ctx.write("HINCRBY", args["key"], args["field"], opt(args, "by", 1)))


@resolver("Mutation")
async def hdel(ctx: Context, args: dict[str, Any]) -> int:
    return int(await ctx.write("HDEL", args["key"], *args["fields"]))


# Lists -------------------------------------------------------------------------------------
@resolver("Query")
async def lrange(ctx: Context, args: dict[str, Any]) -> list[str | None]:
    reply = await ctx.read_list("LRANGE", args["key"], opt(args, "start", 0),
                               opt(args, "stop", -1))
    return [encode_output(v, encoding_of(args)) for v in reply]


@resolver("Query")
async def llen(ctx: Context, args: dict[str, Any]) -> int:
    return int(await ctx.read("LLEN", args["key"]))


async def _write_values(ctx: Context, args: dict[str, Any], command: str, name: str) -> int:
    """COMMAND key value... with the values of argument ``name``; the integer reply."""
    values = [decode_input(v, encoding_of(args)) for v in args[name]]
    return int(await ctx.write(command, args["key"], *values))


@resolver("Mutation")
async def lpush(ctx: Context, args: dict[str, Any]) -> int:
    return await _write_values(ctx, args, "LPUSH", "values")


@resolver("Mutation")
async def rpush(ctx: Context, args: dict[str, Any]) -> int:
    return await _write_values(ctx, args, "RPUSH", "values")


@resolver("Mutation")
async def lpop(ctx: Context, args: dict[str, Any]) -> str | None:
    return encode_output(await ctx.write("LPOP", args["key"]), encoding_of(args))


@resolver("Mutation")
async def rpop(ctx: Context, args: dict[str, Any]) -> str | None:
    return encode_output(await ctx.write("RPOP", args["key"]), encoding_of(args))


# Sets ---------------------------------------------------------------------------------------
@resolver("Query")
async def smembers(ctx: Context, args: dict[str, Any]) -> list[str | None]:
    reply = await ctx.read_list("SMEMBERS", args["key"])
    return [encode_output(v, encoding_of(args)) for v in reply]


@resolver("Query")
async def sismember(ctx: Context, args: dict[str, Any]) -> bool:
    member = decode_input(args["member"], encoding_of(args))
    return bool(await ctx.read("SISMEMBER", args["key"], member))


@resolver("Query")
async def scard(ctx: Context, args: dict[str, Any]) -> int:
    return int(await ctx.read("SCARD", args["key"]))


@resolver("Mutation")
async def sadd(ctx: Context, args: dict[str, Any]) -> int:
    return await _write_values(ctx, args, "SADD", "members")


@resolver("Mutation")
async def srem(ctx: Context, args: dict[str, Any]) -> int:
    return await _write_values(ctx, args, "SREM", "members")


# Sorted sets ---------------------------------------------------------------------------------
@resolver("Query")
async def zrange(ctx: Context, args: dict[str, Any]) -> list[dict[str, Any]]:
    encoding = encoding_of(args)
    by = opt(args, "by", "RANK")
    argv: list[bytes | str | int] = ["ZRANGE", args["key"], opt(args, "start", "0"),
                                     opt(args, "stop", "-1")]
    if by != "RANK":
        argv.append("BY" + by)
    if args.get("rev"):
        argv.append("REV")
    if args.get("offset") is not None or args.get("count") is not None:
        argv += ["LIMIT", opt(args, "offset", 0), opt(args, "count", -1)]
    if by == "LEX":  # Redis has no WITHSCORES for lexicographic ranges
        return [{"member": encode_output(m, encoding), "score": None}
                for m in await ctx.read_list(*argv)]
    flat = await ctx.read_list(*argv, "WITHSCORES")
    return [{"member": encode_output(flat[i], encoding), "score": _score(flat[i + 1])}
            for i in range(0, len(flat) - 1, 2)]


@resolver("Query")
async def zscore(ctx: Context, args: dict[str, Any]) -> float | None:
    member = decode_input(args["member"], encoding_of(args))
    return _score(await ctx.read("ZSCORE", args["key"], member))


@resolver("Query")
async def zrank(ctx: Context, args: dict[str, Any]) -> int | None:
    member = decode_input(args["member"], encoding_of(args))
    reply = await ctx.read("ZRANK", args["key"], member)
    return None if reply is None else int(reply)


@resolver("Mutation")
async def zadd(ctx: Context, args: dict[str, Any]) -> int:
    encoding = encoding_of(args)
    argv: list[bytes | str | int | float] = ["ZADD", args["key"]]
    argv += [flag.upper() for flag in ("nx", "xx", "gt", "lt", "ch") if args.get(flag)]
    for item in args["members"]:
        argv += [float(item["score"]), decode_input(item["member"], encoding)]
    return int(await ctx.write(*argv))


@resolver("Mutation")
async def zincrby(ctx: Context, args: dict[str, Any]) -> float:
    member = decode_input(args["member"], encoding_of(args))
    return float(await ctx.write("ZINCRBY", args["key"], float(args["by"]), member))


@resolver("Mutation")
async def zrem(ctx: Context, args: dict[str, Any]) -> int:
    return await _write_values(ctx, args, "ZREM", "members")


# Streams ------------------------------------------------------------------------------------
async def _range(ctx: Context, args: dict[str, Any], command: str, first: str,
                 second: str) -> list[dict[str, Any]]:
    argv: list[bytes | str | int] = [command, args["key"], args[first], args[second]]
    if args.get("count") is not None:
        argv += ["COUNT", args["count"]]
    return _entries(await ctx.read_list(*argv), encoding_of(args))


@resolver("Query")
async def xrange(ctx: Context, args: dict[str, Any]) -> list[dict[str, Any]]:
    bounds = {"start": opt(args, "start", "-"), "end": opt(args, "end", "+")}
    return await _range(ctx, {**args, **bounds}, "XRANGE", "start", "end")


@resolver("Query")
async def xrevrange(ctx: Context, args: dict[str, Any]) -> list[dict[str, Any]]:
    bounds = {"start": opt(args, "start", "-"), "end": opt(args, "end", "+")}
    return await _range(ctx, {**args, **bounds}, "XREVRANGE", "end", "start")


@resolver("Query")
async def xlen(ctx: Context, args: dict[str, Any]) -> int:
    return int(await ctx.read("XLEN", args["key"]))


@resolver("Mutation")
async def xadd(ctx: Context, args: dict[str, Any]) -> str:
    encoding = encoding_of(args)
    argv: list[bytes | str | int] = ["XADD", args["key"]]
    if args.get("maxlen") is not None:
        argv += ["MAXLEN", args["maxlen"]]
    argv.append(opt(args, "id", "*"))
    for item in args["fields"]:
        argv += [decode_input(item["field"], encoding), decode_input(item["value"], encoding)]
    return bytes(await ctx.write(*argv)).decode()


@resolver("Mutation")
async def publish(ctx: Context, args: dict[str, Any]) -> int:
    return int(await ctx.write("PUBLISH", args["channel"], args["message"]))
