"""Readers of the Redis protocol that keep every type distinct, or only find reply ends.

The ``TypedReader`` builds every RESP2/RESP3 type (``resp.py``), at the cost of being
pure Python, so it is used only on the connections that need it. The ``Framer`` finds
where each reply ends without building it: the hiredis connections fall back on it when
a reply may pass its budget or hiredis gives up (``connection.py``).

Both keep their place between chunks (a reply is never parsed twice), hold no Python
recursion (any depth), and can be given a byte budget per reply: a reply that passes it,
or nests deeper than ``MAX_DEPTH``, is read to its end without being built or kept, its
bytes dropped as they arrive, and reported as ``Dropped``.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any, Final

from .resp import (
    MAX_DEPTH,
    NOT_ENOUGH_DATA,
    NULL_ARRAY,
    BigNumber,
    Double,
    Dropped,
    Map,
    ProtocolError,
    Push,
    ReplyError,
    Set,
    Status,
    Verbatim,
)

# RESP type bytes.
_BLOBS: Final = frozenset(b"$!=")  # a length line, then that many bytes and CRLF
_AGGREGATES: Final = frozenset(b"*%~>|")  # a count line, then that many replies
_PAIRS: Final = frozenset(b"%|")  # maps and attributes count pairs
_SCALARS: Final = frozenset(b"+-:_,#(")  # one line
_ATTRIBUTE: Final = ord("|")
_PUSH: Final = ord(">")
# Redis writes lengths and counts in at most 20 digits: a longer header line is garbage.
_MAX_HEADER: Final = 32

# How the reply in progress is read: kept (built, or framed), or dropped, and why.
_KEEPING, _TOO_LARGE, _TOO_DEEP = 0, 1, 2
# Returned inside the reader when it switches from building to dropping.
_SWITCH: Final = object()


class _Scanner:
    """The RESP state machine behind both readers: ``feed`` bytes, ``gets`` replies.

    Fed chunks wait in a queue and join the buffer only once the token in progress can
    complete, so a large string arriving in many chunks is copied once, not once per
    chunk. Building (the typed reader) keeps a stack of the aggregates being filled;
    framing and dropping need only how many replies each open aggregate still expects.
    """

    def __init__(self, build: bool) -> None:
        self._build = build
        self._buf = b""
        self._pos = 0
        self._more: deque[bytes] = deque()
        self._more_len = 0
        self._need = 0  # the buffer length the token in progress needs to complete
        # The reply in progress.
        self._active = False
        self._budget: int | None = None
        self._start = 0  # where its bytes still held in the buffer begin
        self._counted = 0  # its bytes consumed before _start
        self._kind = 0  # its type byte
        self._mode = _KEEPING
        self._stack: list[list[Any]] = []  # building: [items, replies still expected, type]
        self._counts: list[int] = []  # framing or dropping: replies still expected
        self._held: list[bytes] = []  # framing: the reply's bytes before _start
        self._skip = 0  # bytes of a dropped blob still to come, CRLF included
        self._line = False  # inside a dropped line whose CRLF has not arrived
        self._ready = False  # a dropped blob or line has just ended
        self.last_size = 0  # wire length of the last reply gets() returned

    def feed(self, data: bytes) -> None:
        if data:
            self._more.append(data)
            self._more_len += len(data)

    @property
    def pending(self) -> bool:
        """Whether a reply has begun, or bytes are waiting to be read."""
        return self._active or self._pos < len(self._buf) or self._more_len > 0

    def gets(self, budget: int | None = None) -> Any:
        """The next reply, ``Dropped``, or ``NOT_ENOUGH_DATA``.

        ``budget`` bounds the wire length of a reply that begins with this call; a
        reply already begun keeps the budget it began with.
        """
        if (self._more_len or self._skip) and not self._refill():
            return NOT_ENOUGH_DATA
        if not self._active:
            if self._pos >= len(self._buf):
                self._buf, self._pos = b"", 0  # let a large last chunk go
                return NOT_ENOUGH_DATA
            self._begin(budget)
        try:
            if self._mode == _KEEPING and self._build:
                result = self._read()
                if result is not _SWITCH:
                    return result
            return self._skim()
        except ValueError:  # int() of a malformed length or count
            raise ProtocolError("malformed RESP length or count") from None

    # the reply in progress ----------------------------------------------------------------
    def _begin(self, budget: int | None) -> None:
        self._active = True
        self._budget = budget
        self._start = self._pos
        self._counted = 0
        self._kind = self._buf[self._pos]
        self._mode = _KEEPING
        if self._build:
            self._stack = [[None, 1, 0]]  # the reply itself: one value expected
        else:
            self._counts = [1]

    def _finish(self, pos: int, value: Any) -> Any:
        size = self._counted + pos - self._start
        self.last_size = size
        self._active = False
        self._pos = pos
        self._need = 0
        self._stack = []
        held, self._held = self._held, []
        if self._mode != _KEEPING:
            return Dropped(size, self._mode == _TOO_DEEP, self._kind)
        if self._budget is not None and size > self._budget:
            return Dropped(size, False, self._kind)
        if self._build:
            return value
        frame = self._buf[self._start : pos]
        return b"".join([*held, frame]) if held else frame

    def _drop(self, mode: int) -> None:
        """From now on read the reply to its end without building or keeping it."""
        self._mode = mode
        self._held = []
        if self._build:
            # Only how many replies each open aggregate expects is needed now; an open
            # attribute is one more reply its parent must skip.
            counts: list[int] = []
            for _, expected, kind in self._stack:
                if kind == _ATTRIBUTE:
                    counts[-1] += 1
                counts.append(expected)
            self._counts = counts
            self._stack = []

    def _over_budget(self, end: int) -> bool:
        """Whether the reply would pass its budget by the buffer position ``end``."""
        return self._budget is not None and self._counted + end - self._start > self._budget

    # waiting for bytes --------------------------------------------------------------------
    def _wait_line(self, pos: int) -> Any:
        """No CRLF after ``pos``: wait for it, or drop the line's bytes as they come."""
        buf = self._buf
        if self._mode == _KEEPING and self._over_budget(len(buf)):
            self._drop(_TOO_LARGE)
        if pos >= len(buf):
            self._pos = pos
            self._need = pos + 1
            return NOT_ENOUGH_DATA
        kind = buf[pos]
        if kind not in _SCALARS:
            if kind not in _BLOBS and kind not in _AGGREGATES:
                raise ProtocolError(f"unknown RESP type byte {bytes([kind])!r}")
            if len(buf) - pos > _MAX_HEADER:
                raise ProtocolError(f"RESP header line longer than {_MAX_HEADER} bytes")
        if self._mode != _KEEPING and kind in _SCALARS and len(buf) - pos > 1:
            # A long simple string or error being dropped: keep only its last byte, which
            # may be the CR of the CRLF that ends it.
            self._line = True
            pos = len(buf) - 1
        self._pos = pos
        self._need = len(buf) + 1
        return NOT_ENOUGH_DATA

    def _wait_blob(self, pos: int, stop: int) -> Any:
        """The blob from ``pos`` ends at ``stop``, past the buffer: wait, or drop it."""
        if self._mode == _KEEPING and self._over_budget(stop):
            self._drop(_TOO_LARGE)
        if self._mode == _KEEPING:
            self._pos = pos  # its header is read again once the whole blob is here
            self._need = stop
        else:
            self._skip = stop - len(self._buf)
            self._pos = len(self._buf)
            self._need = 0
        return NOT_ENOUGH_DATA

    def _refill(self) -> bool:
        """Move fed chunks into the buffer; False while the reply cannot move on."""
        more = self._more
        if self._skip:  # a dropped blob: its bytes are counted and let go as they come
            while more and self._skip:
                chunk = more.popleft()
                self._more_len -= len(chunk)
                taken = min(len(chunk), self._skip)
                self._skip -= taken
                self._counted += taken
                if taken < len(chunk):
                    more.appendleft(chunk[taken:])
                    self._more_len += len(chunk) - taken
            if self._skip:
                return False
            self._ready = True
        if not more:
            return self._ready or self._pos < len(self._buf)
        buf = self._buf
        if len(buf) + self._more_len < self._need:
            return False
        keep = self._pos
        if self._active:
            if not self._build and self._mode == _KEEPING:  # the framer returns the bytes
                self._held.append(buf[self._start : keep])
            self._counted += keep - self._start
            self._start = keep
        if keep == len(buf) and len(more) == 1:
            self._buf = more.popleft()
        else:
            more.appendleft(buf[keep:])
            self._buf = b"".join(more)
            more.clear()
        self._more_len = 0
        self._pos -= keep
        self._start -= keep
        self._need = 0
        return True

    # the two loops ---------------------------------------------------------------------------
    def _read(self) -> Any:
        """Build the reply, keeping every RESP type (the typed reader)."""
        buf = self._buf
        pos = self._pos
        stack = self._stack
        frame = stack[-1]
        value: Any
        while True:
            if frame[1] >= _RUN_MIN and frame[2] and pos < len(buf) and buf[pos] == 36:
                values, pos = _bulk_run(buf, pos, frame[1] - 1)
                if values:
                    frame[0] += values
                    frame[1] -= len(values)
            end = buf.find(b"\r\n", pos)
            if end < 0:
                return self._wait_line(pos)
            kind = buf[pos]
            if kind in _BLOBS:
                n = int(buf[pos + 1 : end])
                if n < 0:
                    value = None
                    pos = end + 2
                else:
                    stop = end + 2 + n
                    if stop + 2 > len(buf):
                        return self._wait_blob(pos, stop + 2)
                    if buf[stop : stop + 2] != b"\r\n":
                        raise ProtocolError("a RESP string does not end with CRLF")
                    value = buf[end + 2 : stop]
                    if kind != 36:  # ! blob error, = verbatim string ($ is plain bytes)
                        value = _blob(kind, value)
                    pos = stop + 2
            elif kind in _AGGREGATES:
                n = int(buf[pos + 1 : end])
                pos = end + 2
                if n > 0:
                    if len(stack) > MAX_DEPTH:
                        self._pos = pos
                        self._drop(_TOO_DEEP)
                        if kind == _ATTRIBUTE:
                            self._counts[-1] += 1
                        self._counts.append(2 * n if kind in _PAIRS else n)
                        return _SWITCH
                    frame = [[], 2 * n if kind in _PAIRS else n, kind]
                    stack.append(frame)
                    continue
                if kind == _ATTRIBUTE:
                    continue
                value = _empty(kind, n)
            elif kind in _SCALARS:
                value = _scalar(kind, buf[pos + 1 : end])
                pos = end + 2
            else:
                raise ProtocolError(f"unknown RESP type byte {bytes([kind])!r}")
            # A value is complete: it fills its aggregate, which may complete in turn.
            while True:
                items = frame[0]
                if items is not None:
                    items.append(value)
                frame[1] -= 1
                if frame[1]:
                    break
                stack.pop()
                kind = frame[2]
                if not kind:
                    self._buf = buf
                    return self._finish(pos, value)
                value = _aggregate(kind, items)
                frame = stack[-1]
                if kind == _ATTRIBUTE:  # it describes the next value, which takes its place
                    break

    def _skim(self) -> Any:
        """Find the reply's end without building it (framing, or dropping)."""
        buf = self._buf
        pos = self._pos
        counts = self._counts
        framing = self._mode == _KEEPING
        while True:
            if self._ready:  # a dropped blob or line ended in _refill
                self._ready = False
            elif self._line:
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    self._pos = len(buf) - 1
                    self._need = len(buf) + 1
                    return NOT_ENOUGH_DATA
                self._line = False
                pos = end + 2
            else:
                if counts[-1] >= _RUN_MIN and len(counts) > 1 and pos < len(buf) \
                        and buf[pos] == 36:
                    values, pos = _bulk_run(buf, pos, counts[-1] - 1)
                    counts[-1] -= len(values)
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    return self._wait_line(pos)
                kind = buf[pos]
                if kind in _BLOBS:
                    n = int(buf[pos + 1 : end])
                    if n < 0:
                        pos = end + 2
                    else:
                        stop = end + 4 + n
                        if stop > len(buf):
                            return self._wait_blob(pos, stop)
                        if buf[stop - 2 : stop] != b"\r\n":
                            raise ProtocolError("a bulk string does not end with CRLF")
                        pos = stop
                elif kind in _AGGREGATES:
                    run = _ARRAY_RUN.match(buf, pos) if kind == _ARRAY else None
                    if run is not None:  # arrays in arrays: every level in one step
                        counts += map(int, buf[pos + 1 : run.end() - 2].split(b"\r\n*"))
                        pos = run.end()
                        if framing and len(counts) > MAX_DEPTH + 1:
                            self._drop(_TOO_DEEP)
                            framing = False
                        continue
                    n = int(buf[pos + 1 : end])
                    pos = end + 2
                    if n > 0:
                        if kind == _ATTRIBUTE:
                            counts[-1] += 1
                        counts.append(2 * n if kind in _PAIRS else n)
                        if framing and len(counts) > MAX_DEPTH + 1:
                            self._drop(_TOO_DEEP)
                            framing = False
                        continue
                    if kind == _ATTRIBUTE:
                        continue
                elif kind in _SCALARS:
                    pos = end + 2
                else:
                    raise ProtocolError(f"unknown RESP type byte {bytes([kind])!r}")
            while True:
                counts[-1] -= 1
                if counts[-1]:
                    break
                counts.pop()
                if not counts:
                    self._buf = buf
                    return self._finish(pos, None)

class TypedReader(_Scanner):
    """An incremental RESP2/RESP3 parser with the ``feed``/``gets`` shape of hiredis,
    that keeps every RESP type (``Status``, ``NULL_ARRAY``, ``Map``, ...)."""

    def __init__(self) -> None:
        super().__init__(build=True)


class Framer(_Scanner):
    """Splits a RESP stream into replies: ``gets`` returns each reply's raw bytes."""

    def __init__(self) -> None:
        super().__init__(build=False)


# Arrays nested in arrays, header after header (a script returning {{{...}}}): read as
# one run, a regular expression and a split instead of a Python turn for each level: a
# reply 3,000 deep is skimmed in 0.5 ms instead of 1.4 ms here (about what Redis spends
# making it). Two headers at least; counts of zero or with a sign are left to the loop.
_ARRAY: Final = ord("*")
_ARRAY_RUN: Final = re.compile(rb"(?:\*[1-9][0-9]{0,9}\r\n){2,}")

# Runs of bulk strings (LRANGE, SMEMBERS, HGETALL, ...) are most of the elements Redis
# sends. Measured (bench/reader.py), a token-at-a-time Python loop spends about 1 µs
# on each; splitting a window of the buffer on CRLF and checking every piece against
# its header with C-level list operations reads them several times faster. A string
# holding CRLF, a null, or another type ends the run; the loop reads that element.
_RUN_MIN: Final = 16  # elements still expected before a run is worth trying
_RUN_WINDOW: Final = 1 << 16  # bytes split at a time, so a run never copies much


def _bulk_run(buf: bytes, pos: int, limit: int) -> tuple[list[bytes], int]:
    """Up to ``limit`` whole bulk strings from ``pos``: their values and the end position."""
    parts = buf[pos : pos + _RUN_WINDOW].split(b"\r\n", 2 * limit)
    count = min(limit, (len(parts) - 1) // 2)  # the last piece may be cut short: left
    headers = parts[0 : 2 * count : 2]
    values = parts[1 : 2 * count : 2]
    lengths = list(map(len, values))
    if list(map(_HEADER_LENGTHS.get, headers)) != lengths:
        good = 0
        for header, length in zip(headers, lengths, strict=True):
            if _HEADER_LENGTHS.get(header) != length:
                if header != b"$%d" % length:
                    break  # a string holding CRLF, or not a bulk string: the loop reads it
                if length < _CACHED_LENGTHS:
                    _HEADER_LENGTHS[header] = length
            good += 1
        del values[good:]
        del headers[good:]
        del lengths[good:]
    return values, pos + sum(map(len, headers)) + sum(lengths) + 4 * len(values)


# b"$12" -> 12, filled as lengths are met: a dict look-up is much cheaper than int().
_HEADER_LENGTHS: dict[bytes, int] = {}
_CACHED_LENGTHS: Final = 4096


def _scalar(kind: int, text: bytes) -> Any:
    if kind == 43:  # +
        return Status(text)
    if kind == 58:  # :
        return int(text)
    if kind == 45:  # -
        return ReplyError(text.decode("utf-8", "replace"))
    if kind == 95:  # _
        return None
    if kind == 44:  # ,
        return Double(text)
    if kind == 35:  # #
        return text == b"t"
    return BigNumber(text)  # (


def _blob(kind: int, data: bytes) -> Any:
    if kind == 33:  # !
        return ReplyError(data.decode("utf-8", "replace"))
    return Verbatim(data[4:], data[:3].decode("ascii", "replace"))  # =


def _empty(kind: int, n: int) -> Any:
    if n < 0:
        return NULL_ARRAY if kind == 42 else None
    return _aggregate(kind, [])


def _aggregate(kind: int, items: list[Any]) -> Any:
    if kind == 42:  # *
        return items
    if kind == 37:  # %
        return Map(zip(items[::2], items[1::2], strict=True))
    if kind == 126:  # ~
        return Set(items)
    if kind == _PUSH:
        return Push(items)
    return None  # | an attribute: read, then left out (nothing we serve uses them)
