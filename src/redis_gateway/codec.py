"""Replies to JSON values, the way the Upstash SDKs read them.

RESP2 shapes: integers stay numbers, strings become JSON strings (or base64 when
the client asks), nil becomes null, arrays stay arrays. A JSON float, boolean or
object would break the Python SDK's base64 decoder, so none is ever produced,
except ``{"error": ...}`` for an error nested in an array, which has no other
JSON shape.

Without base64, bytes that are not UTF-8 are replaced by U+FFFD: JSON has no way
to carry them. Clients that store binary values ask for base64 (both SDKs do by
default) or for raw RESP.
"""

from __future__ import annotations

import binascii
from typing import Any

from hiredis import ReplyError

from .errors import GatewayError, LimitExceeded
from .resp import NULL_ARRAY, BigNumber, Double, Map, Push, Set, Status, Verbatim

_OK = b"OK"


class Encoder:
    """Converts one response's replies, counting bytes against the reply limit."""

    __slots__ = ("base64", "budget", "limit")

    def __init__(self, base64: bool, limit: int) -> None:
        self.base64 = base64
        self.limit = limit
        self.budget = limit

    def value(self, reply: Any) -> Any:
        if type(reply) is bytes:  # the common case first, without the subclass checks
            self.charge(len(reply))
            if self.base64 and reply != _OK:
                return binascii.b2a_base64(reply, newline=False).decode("ascii")
            return reply.decode("utf-8", "replace")
        if isinstance(reply, bytes):
            self.charge(len(reply))
            if self.base64 and reply != _OK and not isinstance(reply, Double):
                return binascii.b2a_base64(reply, newline=False).decode("ascii")
            return reply.decode("utf-8", "replace")
        if isinstance(reply, bool):  # RESP3 boolean, as RESP2 scripts see it
            return 1 if reply else None
        if isinstance(reply, int) or reply is None:
            return reply
        if isinstance(reply, Map):
            flat: list[Any] = []
            for key, val in reply:
                flat += (self.value(key), self.value(val))
            return flat
        if isinstance(reply, list):
            self.charge(len(reply))
            return [self.value(item) for item in reply]
        if isinstance(reply, ReplyError):
            return {"error": str(reply)}
        if reply is NULL_ARRAY:
            return None
        raise TypeError(f"unexpected reply type {type(reply).__name__}")  # pragma: no cover

    def item(self, reply: Any) -> dict[str, Any]:
        """One entry of a pipeline or transaction answer."""
        if isinstance(reply, ReplyError):
            return {"error": str(reply)}
        if isinstance(reply, GatewayError):
            return {"error": reply.message}
        return {"result": self.value(reply)}

    def charge(self, size: int) -> None:
        """Count ``size`` bytes of reply; raise once the total passes the limit."""
        self.budget -= size
        if self.budget >= 0:
            return
        raise LimitExceeded(
            f"the reply is larger than {self.limit} bytes (limits.max_reply_bytes); "
            "ask for less, e.g. with SCAN/HSCAN or a range"
        )


class TypedEncoder:
    """Replies as JSON that loses nothing redis-cli shows: every RESP type and every byte.

    ``{"type": "status"|"error"|"integer"|"bulk"|"null"|"null-array"|"array"|"map"|"set"|
    "push"|"double"|"boolean"|"bignumber"|"verbatim", "value": ...}``. Integers, doubles
    and big numbers are strings (their exact text: JavaScript numbers lose 64-bit
    integers). A bulk string that is not UTF-8 carries ``"base64"`` instead of ``"value"``.
    Only replies read by ``resp.TypedReader`` have these types.
    """

    def __init__(self, limit: int) -> None:
        self._budget = Encoder(base64=False, limit=limit)

    def value(self, reply: Any) -> dict[str, Any]:
        kind = _TYPED_KINDS.get(type(reply))
        if kind is not None:  # Status, Double, BigNumber, Verbatim
            self._budget.charge(len(reply))
            out: dict[str, Any] = {"type": kind, "value": reply.decode("utf-8", "replace")}
            if isinstance(reply, Verbatim):
                out["format"] = reply.format
            return out
        if isinstance(reply, bytes):
            self._budget.charge(len(reply))
            try:
                return {"type": "bulk", "value": reply.decode("utf-8")}
            except UnicodeDecodeError:
                return {"type": "bulk", "base64": binascii.b2a_base64(
                    reply, newline=False).decode("ascii")}
        if isinstance(reply, bool):
            return {"type": "boolean", "value": reply}
        if isinstance(reply, int):
            return {"type": "integer", "value": str(reply)}
        if reply is None:
            return {"type": "null"}
        if reply is NULL_ARRAY:
            return {"type": "null-array"}
        if isinstance(reply, ReplyError):
            return {"type": "error", "value": str(reply)}
        if isinstance(reply, GatewayError):
            return {"type": "error", "value": reply.message}
        if isinstance(reply, Map):
            return {"type": "map", "value": [[self.value(k), self.value(v)] for k, v in reply]}
        if isinstance(reply, list):
            self._budget.charge(len(reply))
            kind = "set" if isinstance(reply, Set) else "push" if isinstance(reply, Push) \
                else "array"
            return {"type": kind, "value": [self.value(item) for item in reply]}
        raise TypeError(f"unexpected reply type {type(reply).__name__}")  # pragma: no cover


_TYPED_KINDS: dict[type, str] = {
    Status: "status", Double: "double", BigNumber: "bignumber", Verbatim: "verbatim",
}
