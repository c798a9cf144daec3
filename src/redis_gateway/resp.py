"""The Redis protocol: reply types, and a reader that keeps every type distinct.

The hot path parses replies with hiredis, which returns plain ``bytes`` for both
simple and bulk strings. That loses nothing for JSON, but a byte-exact RESP answer
(``Upstash-Response-Format: resp2``) and the console's typed format must know a
status ``+OK`` from a bulk ``$2 OK`` and a null array from a null bulk string. The
``TypedReader`` here keeps those distinctions (and RESP3's types), at the cost of
being pure Python, so it is used only on the connections that need it.
"""

from __future__ import annotations

from typing import Any, Final

from hiredis import ProtocolError, ReplyError

__all__ = [
    "NOT_ENOUGH_DATA",
    "NULL_ARRAY",
    "BigNumber",
    "Double",
    "Map",
    "ProtocolError",
    "Push",
    "Reply",
    "ReplyError",
    "Set",
    "Status",
    "TypedReader",
    "Verbatim",
]

# A reply as the hot path sees it: bytes, int, None, ReplyError or a list of replies.
# The typed reader also returns the subclasses and markers below.
Reply = Any


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


class _Incomplete(Exception):
    pass


# What a reader's gets() returns until a whole reply has arrived. Not False: RESP3 has a
# boolean false reply, which must not be mistaken for "wait for more data".
NOT_ENOUGH_DATA: Final = object()


class TypedReader:
    """An incremental RESP2/RESP3 parser with the same ``feed``/``gets`` shape as hiredis."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    def gets(self) -> Any:
        """The next complete reply, or ``NOT_ENOUGH_DATA`` when more data is needed."""
        start = self._pos
        try:
            reply = self._parse()
        except _Incomplete:
            self._pos = start
            return NOT_ENOUGH_DATA
        if self._pos > 65536:
            del self._buf[: self._pos]
            self._pos = 0
        return reply

    def _line(self) -> bytes:
        end = self._buf.find(b"\r\n", self._pos)
        if end < 0:
            raise _Incomplete
        line = bytes(self._buf[self._pos : end])
        self._pos = end + 2
        return line

    def _blob(self, length: int) -> bytes:
        end = self._pos + length
        if end + 2 > len(self._buf):
            raise _Incomplete
        data = bytes(self._buf[self._pos : end])
        self._pos = end + 2
        return data

    def _items(self, count: int) -> list[Any]:
        return [self._parse() for _ in range(count)]

    def _parse(self) -> Any:
        line = self._line()
        if not line:
            raise ProtocolError("empty RESP line")
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return Status(rest)
        if kind == b"-":
            return ReplyError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._blob(n)
        if kind == b"*":
            n = int(rest)
            return NULL_ARRAY if n < 0 else self._items(n)
        if kind == b"_":
            return None
        if kind == b",":
            return Double(rest)
        if kind == b"#":
            return rest == b"t"
        if kind == b"(":
            return BigNumber(rest)
        if kind == b"!":
            return ReplyError(self._blob(int(rest)).decode("utf-8", "replace"))
        if kind == b"=":
            data = self._blob(int(rest))
            return Verbatim(data[4:], data[:3].decode("ascii", "replace"))
        if kind == b"%":
            n = int(rest)
            return Map((self._parse(), self._parse()) for _ in range(n))
        if kind == b"~":
            return Set(self._items(int(rest)))
        if kind == b">":
            return Push(self._items(int(rest)))
        if kind == b"|":  # attributes describe the next reply; nothing we serve uses them
            for _ in range(int(rest) * 2):
                self._parse()
            return self._parse()
        raise ProtocolError(f"unknown RESP type byte {kind!r}")


def encode_resp2(reply: Any) -> bytes:
    """Serialize a typed reply back to RESP2 bytes, exactly as Redis sent it."""
    out = bytearray()
    _encode_into(reply, out)
    return bytes(out)


def _encode_into(reply: Any, out: bytearray) -> None:
    if isinstance(reply, Status):
        out += b"+" + reply + b"\r\n"
    elif isinstance(reply, ReplyError):
        out += b"-" + str(reply).encode() + b"\r\n"
    elif isinstance(reply, bool):
        out += b":1\r\n" if reply else b"$-1\r\n"
    elif isinstance(reply, int):
        out += b":%d\r\n" % reply
    elif isinstance(reply, bytes):
        out += b"$%d\r\n" % len(reply) + reply + b"\r\n"
    elif reply is None:
        out += b"$-1\r\n"
    elif reply is NULL_ARRAY:
        out += b"*-1\r\n"
    elif isinstance(reply, Map):
        out += b"*%d\r\n" % (2 * len(reply))
        for key, value in reply:
            _encode_into(key, out)
            _encode_into(value, out)
    elif isinstance(reply, list):
        out += b"*%d\r\n" % len(reply)
        for item in reply:
            _encode_into(item, out)
    else:  # pragma: no cover - the reader produces nothing else
        raise TypeError(f"cannot encode {type(reply).__name__} as RESP2")
