"""The Redis protocol's reply types, and RESP2 written back exactly as Redis sent it.

The hot path parses replies with hiredis, which returns plain ``bytes`` for both
simple and bulk strings. That loses nothing for JSON, but a byte-exact RESP answer
(``Upstash-Response-Format: resp2``) and the console's typed format must know a
status ``+OK`` from a bulk ``$2 OK`` and a null array from a null bulk string: the
types here keep those distinctions (and RESP3's), as ``resp_reader.TypedReader`` builds
them.
"""

from __future__ import annotations

from typing import Any, Final

from hiredis import ProtocolError, ReplyError

__all__ = [
    "MAX_DEPTH",
    "NOT_ENOUGH_DATA",
    "NULL_ARRAY",
    "BigNumber",
    "Double",
    "Dropped",
    "Map",
    "ProtocolError",
    "Push",
    "Reply",
    "ReplyError",
    "Set",
    "Status",
    "Verbatim",
    "encode_resp2",
]

# A reply as the hot path sees it: bytes, int, None, ReplyError or a list of replies.
# The typed reader also returns the subclasses and markers below.
Reply = Any

# The deepest nesting a reader builds. hiredis refuses anything deeper than 1024 levels
# (a limit compiled into it), so the typed reader and the framer stop at the same depth:
# every connection treats a reply alike, and a frame the framer passes on is one hiredis
# can read. Redis can send deeper replies (a Lua script returning nested tables).
MAX_DEPTH: Final = 1024


class Status(bytes):
    """A simple string (``+OK``)."""


class Double(bytes):
    """A RESP3 double, kept as the server's exact text (``,3.14``)."""


class BigNumber(bytes):
    """A RESP3 big number, as its decimal text."""


class Verbatim(bytes):
    """A RESP3 verbatim string; ``format`` is its three-letter type such as ``txt``."""

    format: str

    def __new__(cls, data: bytes, format: str) -> Verbatim:
        self = super().__new__(cls, data)
        self.format = format
        return self


class Map(list[tuple[Any, Any]]):
    """A RESP3 map, as (key, value) pairs in the server's order."""


class Set(list[Any]):
    """A RESP3 set."""


class Push(list[Any]):
    """A RESP3 out-of-band push message."""


class _NullArray:
    """RESP2's ``*-1``: what BLPOP returns on timeout, distinct from a null bulk string."""

    _instance: _NullArray | None = None

    def __new__(cls) -> _NullArray:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NULL_ARRAY"

    def __bool__(self) -> bool:
        return False


NULL_ARRAY: Final = _NullArray()

# What a reader's gets() returns until a whole reply has arrived. Not False: RESP3 has a
# boolean false reply, which must not be mistaken for "wait for more data".
NOT_ENOUGH_DATA: Final = object()


class Dropped:
    """A reply that was read to its end but neither built nor kept.

    ``size`` is its length on the wire; ``too_deep`` says it nested deeper than
    ``MAX_DEPTH``, else it passed its byte budget; ``kind`` is its RESP type byte.
    """

    __slots__ = ("kind", "size", "too_deep")

    def __init__(self, size: int, too_deep: bool, kind: int) -> None:
        self.size, self.too_deep, self.kind = size, too_deep, kind

    def __repr__(self) -> str:
        why = "too deep" if self.too_deep else "too large"
        return f"Dropped({self.size} bytes, {why})"


def encode_resp2(reply: Any) -> bytes:
    """Serialize a typed reply back to RESP2 bytes, exactly as Redis sent it.

    Iterative, like the readers: a reply may nest ``MAX_DEPTH`` levels, more than
    Python's recursion limit allows.
    """
    out = bytearray()
    todo: list[Any] = [reply]
    while todo:
        item = todo.pop()
        if isinstance(item, Status):
            out += b"+" + item + b"\r\n"
        elif isinstance(item, ReplyError):
            out += b"-" + str(item).encode() + b"\r\n"
        elif isinstance(item, bool):
            out += b":1\r\n" if item else b"$-1\r\n"
        elif isinstance(item, int):
            out += b":%d\r\n" % item
        elif isinstance(item, bytes):
            out += b"$%d\r\n" % len(item) + item + b"\r\n"
        elif item is None:
            out += b"$-1\r\n"
        elif item is NULL_ARRAY:
            out += b"*-1\r\n"
        elif isinstance(item, Map):
            out += b"*%d\r\n" % (2 * len(item))
            todo.extend(value for pair in reversed(item) for value in reversed(pair))
        elif isinstance(item, list):
            out += b"*%d\r\n" % len(item)
            todo.extend(reversed(item))
        else:  # pragma: no cover - the reader produces nothing else
            raise TypeError(f"cannot encode {type(item).__name__} as RESP2")
    return bytes(out)
