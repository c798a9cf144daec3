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
from .resp import NULL_ARRAY, Double, Map

_OK = b"OK"


class Encoder:
    """Converts one response's replies, counting bytes against the reply limit."""

    __slots__ = ("base64", "budget", "limit")

    def __init__(self, base64: bool, limit: int) -> None:
        self.base64 = base64
        self.limit = limit
        self.budget = limit

    def value(self, reply: Any) -> Any:
        if isinstance(reply, bytes):
            self.budget -= len(reply)
            if self.budget < 0:
                self._too_large()
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
            self.budget -= len(reply)
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

    def _too_large(self) -> None:
        raise LimitExceeded(
            f"the reply is larger than {self.limit} bytes (limits.max_reply_bytes); "
            "ask for less, e.g. with SCAN/HSCAN or a range"
        )
