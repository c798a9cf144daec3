"""One Redis connection that many requests share, commands written back to back.

Replies come back in the order commands were sent, so each batch of commands
registers one waiter and the reader hands it the next ``count`` replies. A batch
whose waiter timed out keeps its place in the queue, so the replies that follow
still reach their owners.

Why not a connection pool per request: measured on this kind of machine, a
pooled client spends about 85 µs of CPU per request against 33 µs for a shared
connection parsed by hiredis (``DESIGN.md``), so sharing is what makes a Python
gateway fast. Commands that change a connection's state for everyone after them
(MULTI, blocking pops, SELECT) never run here: they get a connection of their own.

Each waiter has a byte budget for its replies (``limits.max_reply_bytes``), enforced
while they are read, so an oversized reply never gets built and the replies after it
on the shared connection still reach their owners:

- fast mode: hiredis parses everything. The chunks received since the last reply
  boundary (hiredis holds no partial reply) are kept, which is nearly free because
  Redis writes whole replies. When they pass a part of the head waiter's budget, or hiredis
  gives up (nesting past its limit), the connection goes to
- framed mode: ``resp.Framer`` reads the kept chunks again, skips the replies already
  delivered, and frames each following reply; a frame within budget is handed to a
  fresh hiredis reader, a frame past it is dropped as it streams by and its waiter
  fails with 413, a frame nested too deep becomes an error for that one reply. At
  the next boundary with nothing pending, back to fast mode.

Framing every reply would cost about 0.9 µs against hiredis's 0.26 µs, which is why
the framer only runs when a budget is at stake. The typed connections (``exact``)
already parse in Python, with ``resp.TypedReader``, which takes the budget itself.

Only a true desynchronisation — a reply nobody waits for, bytes no reader can read, a
RESP3 push nobody asked for — drops the connection: every request in flight on it
fails with 503, and none ever receives a reply meant for another.
"""

from __future__ import annotations

import asyncio
import sys
import typing
from collections import deque
from typing import Any

import hiredis

from .codec import reply_too_deep, reply_too_large
from .errors import CommandTimeout, RedisUnavailable
from .resp import NOT_ENOUGH_DATA, Dropped, ProtocolError, Push, ReplyError
from .resp_reader import Framer, TypedReader

_UNBOUNDED = sys.maxsize
# Fast mode hands a reply to the framer once the bytes kept for it pass this fraction of
# its waiter's budget. hiredis builds the reply as it reads, and small strings cost it
# about five times their wire size in Python objects: a quarter of the budget keeps the
# peak near 1.5x the budget (measured with bench/replies.py) where the whole budget let
# it reach 6.7x. Replies between a quarter and all of the budget are framed in Python
# first (bench/reader.py: a few times hiredis's time), a cost only large replies pay.
_FRAME_FROM = 4
# The default budget is never below this: the gateway's own metadata reads (COMMAND
# answers ~200 KB) name no budget of their own, and must work under any configured
# reply limit. The encoders (codec.py) still hold each response to the exact limit.
MIN_DEFAULT_BUDGET = 1 << 20
_PUSH = ord(">")


class _Waiter:
    __slots__ = ("budget", "count", "deadline", "future", "remaining", "replies", "timeout")

    def __init__(self, future: asyncio.Future[list[Any]], count: int, timeout: float,
                 deadline: float, budget: int | None) -> None:
        self.future = future
        self.count = count
        self.replies: list[Any] = []
        self.timeout = timeout
        self.deadline = deadline
        self.budget = budget  # bytes its replies may take on the wire; None: no bound
        self.remaining = _UNBOUNDED if budget is None else budget


def _hiredis_reader() -> hiredis.Reader:
    return hiredis.Reader(notEnoughData=NOT_ENOUGH_DATA)


class Connection(asyncio.Protocol):
    def __init__(self, label: str, *, typed: bool = False,
                 reply_limit: int | None = None) -> None:
        self._label = label
        self._reply_limit = None if reply_limit is None else max(reply_limit,
                                                                 MIN_DEFAULT_BUDGET)
        self._pending: deque[_Waiter] = deque()
        self._transport: asyncio.Transport | None = None
        self._lost: str | None = None
        # Commands sent in one event-loop turn leave in one write: fewer system calls
        # here and in Redis when many requests arrive together.
        self._outgoing: list[bytes] = []
        # One timer per connection, set for the oldest command's deadline, rather than
        # one per command: replies come in order, so if the oldest has not timed out,
        # no later command has.
        self._watchdog: asyncio.TimerHandle | None = None
        self._typed = TypedReader() if typed else None
        self._reader = _hiredis_reader()
        # Fast mode: chunks since the last reply boundary, and replies delivered since.
        self._kept: list[bytes] = []
        self._kept_bytes = 0
        self._since_boundary = 0
        self._framer: Framer | None = None  # set in framed mode

    # asyncio.Protocol -------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = typing.cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._lost is not None:
            return
        try:
            if self._typed is not None:
                self._read_typed(data)
            elif self._framer is not None:
                self._read_framed(data)
            else:
                self._read_fast(data)
        except ProtocolError as exc:
            self._desync(f"unreadable reply: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"connection to Redis at {self._label} lost" + (f": {exc}" if exc else ""))

    # reading replies ------------------------------------------------------------
    def _read_fast(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        self._kept.append(data)
        self._kept_bytes += len(data)
        pending = self._pending
        delivered = 0
        # A boundary is where a whole reply ends with nothing buffered after it. Not
        # merely an empty buffer: hiredis consumes a partial reply's bytes as it builds it.
        boundary = False
        while True:
            if not reader.has_data():
                boundary = True
                break
            try:
                reply = reader.gets()
            except ProtocolError:  # e.g. nested past hiredis's limit: the framer decides
                self._since_boundary += delivered
                self._enter_framed()
                return
            if reply is NOT_ENOUGH_DATA:
                break
            if not pending:
                self._desync("a reply arrived that no command was waiting for")
                return
            delivered += 1
            size = len(reply) + 3 if type(reply) is bytes else _wire_floor(reply)
            waiter = pending[0]
            if size > waiter.remaining:
                self._deliver(reply, size)
                continue
            # _deliver's common case, inline: this loop is the hot path of every request
            waiter.remaining -= size
            replies = waiter.replies
            replies.append(reply)
            if len(replies) == waiter.count:
                pending.popleft()
                if not waiter.future.done():
                    waiter.future.set_result(replies)
        self._since_boundary += delivered
        if boundary:
            self._kept.clear()
            self._kept_bytes = 0
            self._since_boundary = 0
        elif not pending:
            self._desync("bytes arrived that no command was waiting for")
        elif self._kept_bytes > pending[0].remaining // _FRAME_FROM:
            self._enter_framed()

    def _enter_framed(self) -> None:
        framer = Framer()
        for chunk in self._kept:
            framer.feed(chunk)
        self._kept = []
        self._kept_bytes = 0
        # The old reader may hold a half-built reply: let it go with it.
        self._reader = _hiredis_reader()
        for _ in range(self._since_boundary):  # delivered already
            if framer.gets(-1) is NOT_ENOUGH_DATA:
                self._desync("hiredis and the framer disagree on where replies end")
                return
        self._since_boundary = 0
        self._framer = framer
        self._read_framed(b"")

    def _read_framed(self, data: bytes) -> None:
        framer = self._framer
        assert framer is not None
        framer.feed(data)
        pending = self._pending
        while pending:
            if not framer.pending:
                # A boundary with nothing buffered: hiredis reads alone again at once, not
                # only when the connection falls idle (under load it seldom does).
                self._framer = None
                return
            frame = framer.gets(pending[0].remaining)
            if frame is NOT_ENOUGH_DATA:
                return
            if isinstance(frame, Dropped):
                self._deliver_dropped(frame)
                continue
            if frame[0] == _PUSH:
                self._desync("a push message arrived on a connection that asked for none")
                return
            self._reader.feed(frame)
            reply = self._reader.gets()
            if reply is NOT_ENOUGH_DATA or self._reader.has_data():
                self._desync("hiredis and the framer disagree on where replies end")
                return
            self._deliver(reply, len(frame))
        if framer.pending:
            self._desync("bytes arrived that no command was waiting for")
        else:  # a boundary with nothing pending: hiredis reads alone again
            self._framer = None

    def _read_typed(self, data: bytes) -> None:
        reader = self._typed
        assert reader is not None
        reader.feed(data)
        pending = self._pending
        while pending:
            reply = reader.gets(pending[0].remaining)
            if reply is NOT_ENOUGH_DATA:
                return
            if isinstance(reply, Dropped):
                self._deliver_dropped(reply)
                continue
            if type(reply) is Push:
                self._desync("a push message arrived on a connection that asked for none")
                return
            self._deliver(reply, reader.last_size)
        if reader.pending:
            self._desync("bytes arrived that no command was waiting for")

    def _deliver_dropped(self, dropped: Dropped) -> None:
        if dropped.kind == _PUSH:
            self._desync("a push message arrived on a connection that asked for none")
        elif dropped.too_deep:  # an error for this reply alone
            self._deliver(reply_too_deep(), dropped.size)
        else:  # past the budget: _deliver fails the waiter
            self._deliver(None, dropped.size)

    def _deliver(self, reply: Any, size: int) -> None:
        """Hand the next reply, ``size`` bytes on the wire, to the oldest waiter."""
        waiter = self._pending[0]
        waiter.remaining -= size
        if waiter.remaining < 0 and waiter.budget is not None and not waiter.future.done():
            waiter.future.set_exception(reply_too_large(waiter.budget,
                                                        waiter.budget - waiter.remaining))
            waiter.replies = [None] * len(waiter.replies)  # let what it had go
        if waiter.future.done():  # failed, or given up by its request: keep nothing
            reply = None
        waiter.replies.append(reply)
        if len(waiter.replies) == waiter.count:
            self._pending.popleft()
            if not waiter.future.done():
                waiter.future.set_result(waiter.replies)

    def _desync(self, why: str) -> None:
        self.close(f"the replies from Redis at {self._label} went out of step ({why}); "
                   "the connection was dropped")

    # use ----------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._transport is not None and self._lost is None

    @property
    def lost_reason(self) -> str | None:
        return self._lost

    @property
    def load(self) -> int:
        return len(self._pending)

    def send(self, payload: bytes, count: int, timeout: float,
             budget: int | None = None) -> asyncio.Future[list[Any]]:
        """Write ``count`` packed commands; the future resolves to their ``count`` replies.

        ``budget`` bounds the bytes the replies may take together (the connection's
        ``reply_limit`` when not given); past it the future fails with LimitExceeded,
        the rest of the replies read and dropped unbuilt.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        if not self.alive or self._transport is None:
            future.set_exception(RedisUnavailable(self._lost or "not connected to Redis"))
            return future
        deadline = loop.time() + timeout
        self._pending.append(_Waiter(future, count, timeout, deadline,
                                     self._reply_limit if budget is None else budget))
        if not self._outgoing:
            loop.call_soon(self._flush)
        self._outgoing.append(payload)
        if self._watchdog is None:
            self._watchdog = loop.call_at(deadline, self._watch)
        return future

    def _flush(self) -> None:
        if self._transport is not None and self._lost is None:
            self._transport.write(b"".join(self._outgoing))
        self._outgoing.clear()

    def _watch(self) -> None:
        self._watchdog = None
        if not self._pending or self._lost is not None:
            return
        oldest = self._pending[0]
        loop = asyncio.get_running_loop()
        if oldest.deadline <= loop.time():
            self._expire(oldest)
        else:
            self._watchdog = loop.call_at(oldest.deadline, self._watch)

    async def call(self, *args: bytes | str | int, timeout: float) -> Any:
        replies = await self.send(hiredis.pack_command(args), 1, timeout)  # type: ignore[arg-type]
        return replies[0]

    def close(self, reason: str = "closed by the gateway") -> None:
        self._fail(reason)
        if self._transport is not None:
            self._transport.close()

    def _expire(self, waiter: _Waiter) -> None:
        if not waiter.future.done():
            waiter.future.set_exception(
                CommandTimeout(f"Redis did not answer within {waiter.timeout:g} s; "
                               "the command may still have run")
            )
        # Everything queued behind this command has waited as long: the server is
        # stuck or gone. Dropping the connection makes the next requests fail fast
        # on a reconnect instead of queueing behind it.
        self.close(f"Redis at {self._label} stopped answering")

    def _fail(self, reason: str) -> None:
        if self._lost is not None:
            return
        self._lost = reason
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self._pending:
            waiter = self._pending.popleft()
            if not waiter.future.done():
                waiter.future.set_exception(
                    RedisUnavailable(reason + "; a command sent before this may have run")
                )


def _wire_floor(reply: Any) -> int:
    """A lower bound of the bytes a hiredis reply took on the wire.

    Every RESP2 value takes at least three bytes besides its content (``+\r\n``), so
    this never exceeds the real size: a waiter is never refused for less than its
    budget. Flat lists of strings, the usual large reply, are summed at C speed.
    """
    if type(reply) is not list:
        if isinstance(reply, bytes | ReplyError):
            return len(reply if type(reply) is bytes else str(reply)) + 3
        return 3
    size = 0
    todo = [reply]
    while todo:
        items = todo.pop()
        size += 3 + 3 * len(items)
        if set(map(type, items)) <= {bytes}:
            size += sum(map(len, items))
            continue
        for item in items:
            if type(item) is bytes:
                size += len(item)
            elif type(item) is list:
                todo.append(item)
                size -= 3  # counted again as its own header
            elif isinstance(item, ReplyError):
                size += len(str(item))
    return size
