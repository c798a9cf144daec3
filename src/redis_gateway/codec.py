"""Replies to JSON values, the way the Upstash SDKs read them, within the reply limit.

RESP2 shapes: integers stay numbers, strings become JSON strings (or base64 when
the client asks), nil becomes null, arrays stay arrays. A JSON float, boolean or
object would break the Python SDK's base64 decoder, so none is ever produced,
except ``{"error": ...}`` for an error nested in an array, which has no other
JSON shape.

Without base64, bytes that are not UTF-8 are replaced by U+FFFD: JSON has no way
to carry them. Clients that store binary values ask for base64 (both SDKs do by
default) or for raw RESP.

``limits.max_reply_bytes`` bounds a response's body. The connection already refused
replies longer than that on the wire (``connection.py``); the encoders here count,
as they go, a lower bound of the JSON they produce, so an oversized body fails
early and never with a false alarm, and ``json_body``/``resp2_body`` check the
finished body's real length, so the limit is exact.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence
from typing import Any, Final

import orjson

from .errors import GatewayError, LimitExceeded, ReplyTooLarge
from .resp import (
    MAX_DEPTH,
    NULL_ARRAY,
    BigNumber,
    Double,
    Map,
    Push,
    ReplyError,
    Set,
    Status,
    Verbatim,
    encode_resp2,
)

_OK = b"OK"

# orjson refuses to nest deeper than 254 levels; the REST envelope around a reply
# ([{"result": ...}]) takes two. Deeper replies fail with 413 rather than a 500.
MAX_JSON_DEPTH: Final = 252


def reply_too_large(limit: int, seen: int = 0) -> ReplyTooLarge:
    """``seen``: bytes Redis sent for it, where known (at least ``limit``)."""
    return ReplyTooLarge(max(seen, limit), f"the reply is larger than {limit} bytes "
                         "(limits.max_reply_bytes); ask for less, e.g. with SCAN/HSCAN or a "
                         "range")


def reply_too_deep() -> LimitExceeded:
    return LimitExceeded(
        f"the reply nests deeper than {MAX_DEPTH} levels, more than the gateway reads; "
        "return a flatter structure"
    )


def _json_too_deep() -> LimitExceeded:
    return LimitExceeded(
        f"the reply nests deeper than JSON output can carry ({MAX_JSON_DEPTH} levels); "
        "ask for Upstash-Response-Format: resp2, or return a flatter structure"
    )


def json_body(value: Any, limit: int) -> bytes:
    """``value`` as JSON, refused when the body is longer than ``limit`` bytes."""
    body = orjson.dumps(value)
    if len(body) > limit:
        raise reply_too_large(limit)
    return body


def resp2_body(replies: Sequence[Any], limit: int) -> bytes:
    """Replies as raw RESP2, one after another; a gateway refusal as an error line."""
    parts = []
    size = 0
    for reply in replies:
        if isinstance(reply, GatewayError):
            # An error line ends at CR LF, and messages quote the request: blank its line
            # breaks (as Redis does in its own errors), or a request could forge replies.
            line = reply.message.replace("\r", " ").replace("\n", " ")
            part = b"-" + line.encode() + b"\r\n"
        else:
            part = encode_resp2(reply)
        size += len(part)
        if size > limit:
            raise reply_too_large(limit)
        parts.append(part)
    return b"".join(parts)


class Encoder:
    """Converts one response's replies, counting bytes against the reply limit.

    Each value is charged a lower bound of its JSON text plus one separator: quotes,
    brackets and commas included, escapes and U+FFFD replacements not (they only add).
    """

    __slots__ = ("base64", "budget", "depth", "limit")

    def __init__(self, base64: bool, limit: int) -> None:
        self.base64 = base64
        self.limit = limit
        self.budget = limit
        self.depth = 0

    def value(self, reply: Any) -> Any:
        """One reply as JSON; a gateway error standing for a reply is raised."""
        if type(reply) is bytes:  # the common case first, without the subclass checks
            if self.base64 and reply != _OK:
                self.charge(4 * ((len(reply) + 2) // 3) + 3)
                return binascii.b2a_base64(reply, newline=False).decode("ascii")
            self.budget -= len(reply) + 3  # charge(), inline: once per string
            if self.budget < 0:
                raise reply_too_large(self.limit)
            return reply.decode("utf-8", "replace")
        if isinstance(reply, bytes):
            if self.base64 and reply != _OK and not isinstance(reply, Double):
                self.charge(4 * ((len(reply) + 2) // 3) + 3)
                return binascii.b2a_base64(reply, newline=False).decode("ascii")
            self.charge(len(reply) + 3)
            return reply.decode("utf-8", "replace")
        if isinstance(reply, bool):  # RESP3 boolean, as RESP2 scripts see it
            self.charge(2)
            return 1 if reply else None
        if isinstance(reply, int):
            self.charge(2)
            return reply
        if reply is None or reply is NULL_ARRAY:
            self.charge(5)
            return None
        if isinstance(reply, list):
            self.charge(2)
            self.depth += 1
            if self.depth > MAX_JSON_DEPTH:
                raise _json_too_deep()
            if isinstance(reply, Map):
                out = [self.value(v) for pair in reply for v in pair]
            else:
                out = [self.value(item) for item in reply]
            self.depth -= 1
            return out
        if isinstance(reply, ReplyError):
            text = str(reply)
            self.charge(len(text) + 13)
            return {"error": text}
        if isinstance(reply, GatewayError):
            raise reply
        raise TypeError(f"unexpected reply type {type(reply).__name__}")  # pragma: no cover

    def item(self, reply: Any) -> dict[str, Any]:
        """One entry of a pipeline or transaction answer."""
        if isinstance(reply, ReplyError):
            text = str(reply)
            self.charge(len(text) + 13)
            return {"error": text}
        if isinstance(reply, GatewayError):
            self.charge(len(reply.message) + 13)
            return {"error": reply.message}
        self.budget -= 12  # charge(), inline: once per item of a batch
        return {"result": self.value(reply)}

    def charge(self, size: int) -> None:
        """Count ``size`` bytes of output; raise once the total passes the limit."""
        self.budget -= size
        if self.budget < 0:
            raise reply_too_large(self.limit)


def _typed_size(kind: str, value: Any = "") -> int:
    """Bytes of a typed value of ``kind`` with empty content, plus a separator."""
    return len(orjson.dumps({"type": kind} if value is None else
                            {"type": kind, "value": value})) + 1


class TypedEncoder:
    """Replies as JSON that loses nothing redis-cli shows: every RESP type and every byte.

    ``{"type": "status"|"error"|"integer"|"bulk"|"null"|"null-array"|"array"|"map"|"set"|
    "push"|"double"|"boolean"|"bignumber"|"verbatim", "value": ...}``. Integers, doubles
    and big numbers are strings (their exact text: JavaScript numbers lose 64-bit
    integers). A bulk string that is not UTF-8 carries ``"base64"`` instead of ``"value"``.
    Only replies read by ``resp.TypedReader`` have these types. Sizes are charged as in
    ``Encoder``; every RESP level takes two JSON levels (a map three).
    """

    def __init__(self, limit: int) -> None:
        self._budget = Encoder(base64=False, limit=limit)

    def value(self, reply: Any) -> orjson.Fragment:
        """One reply's typed JSON, ready to be placed in a response by ``json_body``.

        Written out value by value rather than built as dicts: a dict per element costs
        about seven times its JSON in memory, which let an oversized reply reach ten
        times the limit before the limit was found passed (bench/replies.py).
        """
        return orjson.Fragment(self._text(reply))

    def _text(self, reply: Any) -> bytes:
        charge = self._budget.charge
        kind = _TYPED_KINDS.get(type(reply))
        if kind is not None:  # Status, Double, BigNumber, Verbatim
            charge(_TYPED_SIZES[kind] + len(reply))
            out: dict[str, Any] = {"type": kind, "value": reply.decode("utf-8", "replace")}
            if isinstance(reply, Verbatim):
                out["format"] = reply.format
            return orjson.dumps(out)
        if isinstance(reply, bytes):
            charge(_TYPED_SIZES["bulk"] + len(reply))
            try:
                return orjson.dumps({"type": "bulk", "value": reply.decode("utf-8")})
            except UnicodeDecodeError:
                return orjson.dumps({"type": "bulk", "base64": binascii.b2a_base64(
                    reply, newline=False).decode("ascii")})
        if isinstance(reply, bool):
            charge(_TYPED_SIZES["boolean"])
            return b'{"type":"boolean","value":true}' if reply else \
                b'{"type":"boolean","value":false}'
        if isinstance(reply, int):
            charge(_TYPED_SIZES["integer"] + 1)
            return b'{"type":"integer","value":"%d"}' % reply
        if reply is None:
            charge(_TYPED_SIZES["null"])
            return b'{"type":"null"}'
        if reply is NULL_ARRAY:
            charge(_TYPED_SIZES["null-array"])
            return b'{"type":"null-array"}'
        if isinstance(reply, ReplyError | GatewayError):
            text = reply.message if isinstance(reply, GatewayError) else str(reply)
            charge(_TYPED_SIZES["error"] + len(text))
            return orjson.dumps({"type": "error", "value": text})
        if isinstance(reply, list):
            return self._aggregate(reply)
        raise TypeError(f"unexpected reply type {type(reply).__name__}")  # pragma: no cover

    def _aggregate(self, reply: list[Any]) -> bytes:
        budget = self._budget
        pairs = isinstance(reply, Map)
        kind = "map" if pairs else "set" if isinstance(reply, Set) else \
            "push" if isinstance(reply, Push) else "array"
        budget.charge(_TYPED_SIZES[kind] + (3 * len(reply) if pairs else 0))
        levels = 3 if pairs else 2
        budget.depth += levels
        if budget.depth + 1 > MAX_JSON_DEPTH:  # + 1: the innermost value's own object
            raise _json_too_deep()
        text = self._text
        if pairs:
            items = b",".join([b"[%s,%s]" % (text(k), text(v)) for k, v in reply])
        else:
            items = b",".join([text(item) for item in reply])
        budget.depth -= levels
        return b'{"type":"%s","value":[%s]}' % (kind.encode(), items)


_TYPED_KINDS: dict[type, str] = {
    Status: "status", Double: "double", BigNumber: "bignumber", Verbatim: "verbatim",
}
_TYPED_SIZES: dict[str, int] = {
    **{kind: _typed_size(kind) for kind in
       ("status", "double", "bignumber", "bulk", "integer", "error")},
    "verbatim": _typed_size("verbatim") + len(',"format":"txt"'),
    "boolean": _typed_size("boolean", True),
    "null": _typed_size("null", None),
    "null-array": _typed_size("null-array", None),
    **{kind: _typed_size(kind, []) for kind in ("array", "set", "push", "map")},
}
