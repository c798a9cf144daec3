"""The built-in server's HTTP/1.1 connection: an ``asyncio.Protocol`` on httptools.

One ``HttpConnection`` per client connection, one ``RequestState`` per request it has
read. It hands the app a whole ``Request`` and writes its ``Response`` in one write
(or streams a ``StreamingResponse``, ``http_streaming.py``); an upgrade to WebSocket is
handed to ``websocket.py``. What every connection of a server shares is its
``ServerState``; ``server.py`` listens, sweeps deadlines and drains.

The class is long for one reason: the parser's callbacks, back-pressure, refusals and
the serving loop all read and write the same few fields of one connection, and are
grouped and labelled below rather than spread over objects that would share them.

No client can make it hold unbounded time or memory (README, "Limits of the HTTP
server"): every request has deadlines for its head and its body, a connection whose
client does not read its responses stops being read, a connection queues a bounded
number of requests, the connections are capped, and what all of them hold beyond a
small allowance each shares one budget.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus

import httptools

from .http import JSON_TYPE, Request, Response, json_body, too_large, too_slow
from .http_streaming import StreamingResponse, close_stream, write_chunked
from .lifecycle import Handler
from .settings import LimitSettings

log = logging.getLogger("redis_gateway.server")

# What a request costs in memory beyond its bytes: the request object and its lists
# (per request), a header's tuple and bytes objects (per header line). Measured with
# tracemalloc on CPython 3.11; tests/unit/test_http_connection.py keeps them honest.
REQUEST_COST = 400
HEADER_COST = 100
# Data is parsed at most this many bytes at a time, so a connection that must stop (its
# queue is full) stops within this much of the request that filled it; the rest waits
# as bytes, compact, until the queue drains. The price is a parser call per 4 KiB of a
# large body: 6 ms to receive 10 MiB here, where orjson takes 22 ms to parse it.
PARSE_STEP = 4096
# After a last response (an error), how long the client has to read it before the
# connection is dropped. Closing at once, with the client's data still unread, sends a
# reset that can destroy the response before the client reads it.
LINGER_SECONDS = 2.0
# ... and how much of what it still sends meanwhile is read and dropped. A client that
# goes on sending a refused body (no Expect: 100-continue) is reset past this: otherwise
# a token refused by its head would still cost the reading of every byte it sends. Go's
# net/http draws the same line (256 KiB) for a body its handler did not read.
LINGER_BYTES = 256 * 1024

# A 429 is sent after the Retry-After it tells (at most this long), and the connection is
# not read meanwhile: a client that does not wait (pipelining on, or reconnecting at once
# after each refusal) costs one refusal per second per connection, not one per request,
# its requests waiting in its own socket buffer. One who honours Retry-After never notices.
MAX_HOLD_SECONDS = 1.0

_CLOSE = (b"connection", b"close")
_RETRY_SOON = (b"retry-after", b"1")
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_PHRASES = {status.value: status.phrase.encode() for status in HTTPStatus}


@dataclass(eq=False)
class ServerState:
    """What the connections of one server share."""

    app: Handler
    limits: LimitSettings
    connections: set[HttpConnection] = field(default_factory=set)
    # Bytes of requests received and not yet answered, beyond each connection's
    # own allowance (limits.max_header_bytes): bounded by max_pending_request_bytes.
    pending_bytes: int = 0
    stopping: bool = False
    # Set once stopping and the last connection is gone.
    all_closed: asyncio.Event = field(default_factory=asyncio.Event)


class RequestState:
    """One request from its first byte until it is answered: what the parser gave."""

    __slots__ = ("body", "body_charged", "content_length", "continue_due", "deadline",
                 "expect", "head_bytes", "headers", "held", "hold", "judged", "keep_alive",
                 "let_go", "method", "response", "url", "version")

    def __init__(self, deadline: float) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: bytes | bytearray = b""
        self.method = b""  # set when the head is complete
        self.version = "1.1"
        self.keep_alive = True
        self.content_length: bytes | None = None
        self.expect: bytes | None = None
        self.continue_due = False  # 100 Continue is owed once the responses before it are sent
        self.head_bytes = 0
        self.held = 0  # memory it holds, as counted against the limits: set when complete
        self.deadline = deadline  # for the rest of it to arrive
        self.response: bytes | None = None  # a refusal, sent instead of running the app
        self.body_charged = False  # see Request.body_charged
        self.let_go: Callable[[], None] | None = None  # see Request.let_go
        self.judged = False  # by the app, before its body was read (Handler.judge_body)
        self.hold = 0.0  # seconds before its refusal is sent (a 429: MAX_HOLD_SECONDS)

    def done(self) -> None:
        """Answered or dropped: what it held of its token's share is free."""
        if self.let_go is not None:
            self.let_go()
            self.let_go = None

    def size(self) -> int:
        """The memory it holds, as counted against the limits."""
        return REQUEST_COST + self.head_bytes + len(self.headers) * HEADER_COST + len(self.body)

    @classmethod
    def refusal(cls, response: bytes, hold: float = 0.0) -> RequestState:
        refused = cls(0.0)
        refused.response = response
        refused.hold = hold
        return refused


class _Refused(Exception):
    """Raised in a parser callback to stop parsing at once: the request was refused.

    httptools hands it back from ``feed_data`` as an ``HttpParserCallbackError``.
    """


class HttpConnection(asyncio.Protocol):
    """One client connection: requests parsed as they arrive, run one at a time, in order."""

    def __init__(self, state: ServerState) -> None:
        self._state = state
        self._limits = state.limits
        # The app running this connection's request (a reload waits for it to be None).
        self.app_in_use: Handler | None = None
        # The limits read on every request.
        self._max_head = state.limits.max_header_bytes
        self._max_queue = state.limits.max_pipelined_requests
        # Below it an announced body needs no check: it fits the connection's allowance.
        self._small_body = min(state.limits.max_body_bytes, state.limits.max_header_bytes)
        self._parser = httptools.HttpRequestParser(self)
        # Set by connection_made, before any other call.
        self._transport: asyncio.Transport = None  # type: ignore[assignment]
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._current: RequestState | None = None  # the request being received
        self._queue: deque[RequestState] = deque()  # received, waiting for the app
        self._running = False  # the app has a request of this connection
        self._queued_bytes = 0  # the queue's requests' sizes
        self._running_bytes = 0  # the size of the request the app has, until answered
        self._charged = 0  # what this connection adds to state.pending_bytes
        self._unparsed = b""  # received while it had to wait: parsed when it may go on
        self._reading = True
        self._paused_at = 0.0
        self._write_paused = False
        self._write_mark = 0  # the write buffer's size when it last shrank
        self._write_deadline = 0.0
        self._idle_deadline = 0.0
        self._closing = False  # a last response is queued or sent: nothing more is parsed
        self._finished = False  # the last response is sent
        self._linger_deadline = 0.0
        self._dropped = 0  # bytes read and dropped after a last response
        self._hold: asyncio.TimerHandle | None = None  # before a 429: see MAX_HOLD_SECONDS
        self._lost = False
        self._wakeup: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._streaming = False  # a streaming response is being written
        self._upgraded = False  # handed to the WebSocket protocol

    # asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()
        limits = self._limits
        if len(self._state.connections) >= limits.max_connections:
            # Answered at once, before anything is read: the clients already connected
            # keep their share. Not counted, so it never holds a place under the cap.
            self._closing = True
            self._finish(error_response(
                503, f"the gateway has {limits.max_connections} open connections "
                     "(limits.max_connections); retry later", [_RETRY_SOON]))
            self._loop.call_later(LINGER_SECONDS, self._transport.abort)
            return
        self._state.connections.add(self)
        self._transport.set_write_buffer_limits(high=limits.write_buffer_bytes)
        # A new connection that sends nothing may idle only as long as a slow head takes.
        self._idle_deadline = self._loop.time() + limits.header_timeout
        self._task = self._loop.create_task(self._serve())

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = self._closing = True
        self._state.connections.discard(self)
        if self._state.stopping and not self._state.connections:
            self._state.all_closed.set()
        for request in (self._current, *self._queue):
            if request is not None:
                request.done()
        self._current = None
        self._queue.clear()
        self._queued_bytes = self._running_bytes = 0
        self._unparsed = b""
        self._settle(0)
        if self._hold is not None:
            self._hold.cancel()
        self._wake()
        if self._streaming and self._task is not None:
            self._task.cancel()  # the stream waits for its next event: end it now

    def data_received(self, data: bytes) -> None:
        if self._closing:  # after a last response: dropped until the client closes
            self._dropped += len(data)
            if self._dropped > LINGER_BYTES:
                self._transport.abort()
            return
        if self._unparsed:  # sent before reading paused: after what came first
            self._unparsed += data
        elif len(data) <= PARSE_STEP:  # the common case, in one step
            if self._parse(data) and (self._write_paused or self._charged or not self._reading
                                      or len(self._queue) >= self._max_queue):
                self._update_reading()
        else:
            self._receive(data)

    def pause_writing(self) -> None:
        self._write_paused = True
        self._write_mark = self._transport.get_write_buffer_size()
        self._write_deadline = self._loop.time() + self._limits.write_timeout
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()
        self._wake()

    # httptools callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._current = RequestState(self._loop.time() + self._limits.header_timeout)

    def on_url(self, url: bytes) -> None:
        request = self._current
        assert request is not None
        request.url += url
        request.head_bytes += len(url)
        if request.head_bytes > self._max_head:
            self._head_too_large()

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self._current
        assert request is not None
        name = name.lower()
        request.headers.append((name, value))
        if name == b"content-length":
            request.content_length = value
        elif name == b"expect":
            request.expect = value
        request.head_bytes += len(name) + len(value) + 4  # "name: value\r\n"
        if request.head_bytes > self._max_head:
            self._head_too_large()

    def on_headers_complete(self) -> None:
        request = self._current
        assert request is not None
        parser = self._parser
        request.method = parser.get_method()
        request.version = parser.get_http_version()
        request.keep_alive = parser.should_keep_alive()
        request.deadline = self._loop.time() + self._limits.body_timeout
        if request.expect is not None or (request.content_length is not None and
                                          int(request.content_length) > self._small_body):
            self._check_announced(request)

    def on_body(self, body: bytes) -> None:
        request = self._current
        assert request is not None
        if len(request.body) + len(body) > self._limits.max_body_bytes:
            self._refuse(413, too_large(self._limits.max_body_bytes).message)
        if not request.body:
            request.body = body
        else:
            if type(request.body) is bytes:  # a second chunk: grow in place from now on
                request.body = bytearray(request.body)
            request.body += body
        # A chunked body announced no length: judged once it outgrows the allowance.
        if not request.judged and len(request.body) > self._max_head:
            self._judge(request, None)

    def on_message_complete(self) -> None:
        request = self._current
        assert request is not None
        self._current = None
        request.held = request.size()
        self._queued_bytes += request.held
        self._queue.append(request)
        self._wake()

    # receiving ---------------------------------------------------------------------------
    def _receive(self, data: bytes) -> None:
        """Parse what arrived, a step at a time, until the connection must wait."""
        view = memoryview(data)
        for start in range(0, len(data), PARSE_STEP):
            if not self._parse(view[start:start + PARSE_STEP]):
                return
            if self._must_wait() and start + PARSE_STEP < len(data):
                self._unparsed = bytes(view[start + PARSE_STEP:])
                break
        self._update_reading()

    def _parse(self, data: bytes | memoryview) -> bool:
        """Parse one step; False if that ended the connection's requests (refused)."""
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Raised after on_message_complete queued the upgrade request: not run.
            request = self._queue.pop()
            self._queued_bytes -= request.held
            request.done()
            if self._queue or self._running or not self._upgrade(request):
                self._refuse_now(400, "upgrades are served only for WebSocket on /ws and "
                                      "/graphql, as a connection's first request")
            return False
        except httptools.HttpParserError as exc:
            if not self._closing:  # else a callback refused the request
                self._refuse_now(400, f"malformed HTTP request: {exc}")
            return False
        held = self._held()
        if held > self._max_head or self._charged:
            self._settle(held)
            if self._charged and self._over_budget() and not self._busy():
                self._refuse_now(503, f"the gateway holds {self._limits.max_pending_request_bytes}"
                                      " bytes of requests not yet answered "
                                      "(limits.max_pending_request_bytes); retry later",
                                 [_RETRY_SOON])
                return False
        return True

    def _head_too_large(self) -> None:
        self._refuse(431, f"the request's head is larger than {self._max_head} bytes "
                          "(limits.max_header_bytes)")

    def _check_announced(self, request: RequestState) -> None:
        """Refuse a body by its announced size before it is sent; then 100 Continue."""
        limits = self._limits
        length = int(request.content_length or 0)  # llhttp has checked it is a number
        if length > limits.max_body_bytes:
            self._refuse(413, too_large(limits.max_body_bytes).message)
        # What it may hold: its allowance and what is left of the shared budget. With
        # requests queued before it, it waits for room instead (see _must_wait).
        room = limits.max_header_bytes + max(
            0, limits.max_pending_request_bytes - self._state.pending_bytes)
        if length > room and not self._busy():
            self._refuse(503, f"the gateway holds too many bytes of requests not yet answered "
                              f"to take {length} more (limits.max_pending_request_bytes); "
                              "retry later", [_RETRY_SOON])
        if length > self._max_head:
            self._judge(request, length)
        if request.expect is None or request.version != "1.1":
            return  # HTTP/1.0 clients are sent no interim responses
        if request.expect.lower() != b"100-continue":
            self._refuse(417, "the only expectation served is 'Expect: 100-continue'")
        if self._queue or self._running:
            request.continue_due = True  # after the responses before it, in order
        else:
            self._transport.write(_CONTINUE)

    def _judge(self, request: RequestState, length: int | None) -> None:
        """The app judges a large body by its head before any of it is read: a token over
        its share is refused without the gateway reading what it sends."""
        request.judged = True
        head = self._request(request, b"")
        refused = self._state.app.judge_body(head, length)
        if refused is not None:
            self._refuse_with(_head(refused.status, [*refused.headers, _CLOSE],
                                    len(refused.body)) + refused.body,
                              _hold_for(refused) if refused.status == 429 else 0.0)
            raise _Refused
        request.body_charged = head.body_charged
        request.let_go = head.let_go

    def _held(self) -> int:
        """What this connection holds for requests not yet answered."""
        held = self._queued_bytes + self._running_bytes
        current = self._current
        return held if current is None else held + current.size()

    def _busy(self) -> bool:
        """Requests before the one being received hold memory that answering them frees:
        then that one waits for room instead of being refused."""
        return self._running or bool(self._queue)

    def _settle(self, held: int) -> None:
        """Count what this connection holds beyond its allowance in the shared total."""
        excess = held - self._max_head
        if excess < 0:
            excess = 0
        if excess != self._charged:
            self._state.pending_bytes += excess - self._charged
            self._charged = excess

    def _over_budget(self) -> bool:
        return self._state.pending_bytes > self._limits.max_pending_request_bytes

    def _must_wait(self) -> bool:
        """Stop taking requests: the client is not reading its responses, too many wait,
        or they hold more than the shared budget allows (until they are answered)."""
        return (self._write_paused or len(self._queue) >= self._max_queue
                or (self._charged > 0 and self._busy() and self._over_budget())
                or self._hold is not None)

    def _update_reading(self) -> None:
        """Read while the connection may take more; otherwise data waits in the socket."""
        if self._lost:
            return
        if self._unparsed and not self._closing and not self._must_wait():
            data, self._unparsed = self._unparsed, b""
            self._receive(data)  # ends in _update_reading again
            return
        # Held before a 429, not even a refused body is drained: a client sending one
        # waits on its own full socket buffer instead of being reset at once and back.
        want = self._hold is None and (self._closing or not (self._unparsed or
                                                             self._must_wait()))
        if want == self._reading:
            return
        self._reading = want
        if want:
            self._transport.resume_reading()
            if self._current is not None:  # its clock stopped while it could not be read
                self._current.deadline += self._loop.time() - self._paused_at
        else:
            self._transport.pause_reading()
            self._paused_at = self._loop.time()

    def _upgrade(self, request: RequestState) -> bool:
        """Hand the connection to the WebSocket protocol (``websocket.py``), if the app
        serves WebSocket at this path."""
        path = request.url.partition(b"?")[0]
        paths = (getattr(self._state.app, "websocket_path", None),
                 getattr(self._state.app, "graphql_websocket_path", None))
        if _decode_path(path) not in paths or not any(
                k == b"upgrade" and v.lower() == b"websocket" for k, v in request.headers):
            return False
        from .websocket import WebSocketConnection

        head = b"%b %b HTTP/1.1\r\n%b\r\n" % (request.method, request.url, b"".join(
            k + b": " + v + b"\r\n" for k, v in request.headers))
        self._upgraded = self._closing = True
        self._settle(0)
        protocol = WebSocketConnection(self._state.app,  # type: ignore[arg-type]
                                       lambda: self._state.connections.discard(self))
        if self._task is not None:
            self._task.cancel()  # it waits for requests this connection will never have
        self._transport.set_protocol(protocol)
        protocol.take_over(self._transport, head)
        if not self._reading:
            self._reading = True
            self._transport.resume_reading()
        return True

    # refusing --------------------------------------------------------------------------
    def _refuse(self, status: int, message: str,
                headers: list[tuple[bytes, bytes]] | None = None) -> None:
        """Refuse from a parser callback: stops the parser at once."""
        self._refuse_now(status, message, headers)
        raise _Refused

    def _refuse_now(self, status: int, message: str,
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
        """Answer the request being received with an error, after the responses to the
        requests before it, then close: the rest of the stream cannot be trusted."""
        self._refuse_with(error_response(status, message, headers))

    def _refuse_with(self, response: bytes, hold: float = 0.0) -> None:
        if self._current is not None:
            self._current.done()
        self._current = None
        self._unparsed = b""
        self._closing = True
        self._queue.append(RequestState.refusal(response, hold))
        self._settle(self._held())
        self._update_reading()  # read and drop what the client still sends
        self._wake()

    def _finish(self, response: bytes) -> None:
        """Send a last response and close ("lingering close"): the client's side stays
        open until it has read the response and closed, or the linger time passes."""
        transport = self._transport
        if transport.is_closing():
            return
        transport.write(response)
        self._finished = True
        self._linger_deadline = self._loop.time() + LINGER_SECONDS
        self._write_mark = transport.get_write_buffer_size()
        self._write_deadline = self._loop.time() + self._limits.write_timeout
        if transport.can_write_eof():
            transport.write_eof()  # sent once the buffer is flushed
        else:  # pragma: no cover - TCP transports can
            transport.close()

    # deadlines ---------------------------------------------------------------------------
    def expire(self, now: float) -> None:
        """Enforce the deadlines; ``serve`` calls it about once a second."""
        transport = self._transport
        if self._upgraded:
            return
        closing = transport.is_closing()
        if self._write_paused or ((self._finished or closing)
                                  and transport.get_write_buffer_size()):
            # The client is not reading: it must take some of it every write_timeout.
            size = transport.get_write_buffer_size()
            if size < self._write_mark:
                self._write_mark = size
                self._write_deadline = now + self._limits.write_timeout
            elif now > self._write_deadline:
                transport.abort()
            return
        if closing:
            return
        if self._finished:
            if now > self._linger_deadline:
                transport.abort()
            return
        if self._closing:
            return  # a refusal waits for the responses before it
        request = self._current
        if request is not None:
            if self._reading and now > request.deadline:
                self._refuse_now(408, self._late(request))
        elif not self._queue and not self._running and now > self._idle_deadline:
            transport.close()

    def _late(self, request: RequestState) -> str:
        if request.method:
            return too_slow(self._limits.body_timeout).message
        return (f"the request's head did not arrive within {self._limits.header_timeout:g} s "
                "(limits.header_timeout)")

    def close_if_idle(self) -> None:
        if self._upgraded:  # a WebSocket now: the app's drain ends it with a close frame
            return
        if self._finished or not (self._queue or self._current or self._running):
            self._transport.close()

    def _close_when_sent(self) -> None:
        """Close once what is written is sent; a client that reads none of it for
        write_timeout is dropped (``expire``), as on a connection kept alive."""
        self._write_mark = self._transport.get_write_buffer_size()
        self._write_deadline = self._loop.time() + self._limits.write_timeout
        self._transport.close()

    def abort(self) -> None:
        self._transport.abort()

    # serving -------------------------------------------------------------------------
    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _serve(self) -> None:
        while not self._lost:
            # A response is produced only when the client has read the ones before it
            # down to the high-water mark: an unread connection holds at most one more.
            if not self._queue or self._write_paused:
                self._wakeup = self._loop.create_future()
                await self._wakeup
                self._wakeup = None
                continue
            request = self._queue.popleft()
            self._queued_bytes -= request.held
            self._running_bytes = request.held  # still held, until it is answered
            self._running = True  # before reading on: a 100 Continue now would come too soon
            if not self._reading:
                self._update_reading()
            if request.response is not None:
                if request.hold:
                    await self._pause(request.hold)
                self._finish(request.response)
                return
            try:
                await self._run(request)
            finally:
                self._answered(request)
            self._running = False
            if not request.keep_alive or (self._state.stopping and not self._queue):
                self._close_when_sent()
                return
            if not self._queue:
                self._caught_up()

    def _answered(self, request: RequestState) -> None:
        """What the request held is free for the next (its token's share too); a streamed
        response lets go of it as it starts, its body read long before."""
        request.done()
        self._running_bytes = 0
        if self._charged:
            self._settle(self._held())
            if not self._reading:
                self._update_reading()

    def _caught_up(self) -> None:
        """Every request received is answered: a request waiting for 100 Continue gets it,
        and an idle connection starts its keep-alive clock."""
        self._idle_deadline = self._loop.time() + self._limits.keep_alive_timeout
        request = self._current
        if request is not None and request.continue_due:
            request.continue_due = False
            self._transport.write(_CONTINUE)

    @staticmethod
    def _request(incoming: RequestState, body: bytes) -> Request:
        path, _, query = incoming.url.partition(b"?")
        return Request(incoming.method.decode("ascii"), _decode_path(path), path, query,
                       incoming.headers, body)

    async def _run(self, incoming: RequestState) -> None:
        body = incoming.body
        if type(body) is not bytes:  # grown in place: one copy, and the buffer goes now
            body = bytes(body)
        incoming.body = b""
        request = self._request(incoming, body)
        request.body_charged = incoming.body_charged
        method = request.method
        app = self.app_in_use = self._state.app
        try:
            response = await app.handle(request)
        except Exception:  # handle() answers every error itself; this is a last resort
            log.exception("the gateway failed on %s %s", method, request.path)
            response = Response(500, json_body({"error": "internal gateway error; see the log"}),
                                [JSON_TYPE])
        finally:
            self.app_in_use = None
        if response.status == 429:
            await self._pause(_hold_for(response))
        if self._transport.is_closing():
            if type(response) is StreamingResponse:
                await close_stream(response.stream)
            return
        if type(response) is StreamingResponse:
            self._answered(incoming)
            await self._stream(response, incoming)
            return
        # Draining: the requests already received are answered; the last says so.
        last = not incoming.keep_alive or (self._state.stopping and not self._queue)
        extra = [_CLOSE] if last else []
        head = _head(response.status, [*response.headers, *extra], len(response.body),
                     incoming.version)
        # HEAD: the length of the body a GET would have had, and no body.
        self._transport.write(head if method == "HEAD" else head + response.body)

    async def _pause(self, seconds: float) -> None:
        """Before a 429: read nothing from this client for a while (MAX_HOLD_SECONDS)."""
        self._hold = self._loop.call_later(seconds, self._release)
        self._update_reading()
        while self._hold is not None and not self._lost:
            self._wakeup = self._loop.create_future()
            await self._wakeup
            self._wakeup = None

    def _release(self) -> None:
        self._hold = None
        self._update_reading()
        self._wake()

    async def _stream(self, response: StreamingResponse, incoming: RequestState) -> None:
        """A body written as it is produced; the connection closes after it."""
        chunked = incoming.version == "1.1"
        incoming.keep_alive = False
        headers = [*response.headers, _CLOSE]
        if chunked:
            headers.append((b"transfer-encoding", b"chunked"))
        lines = [b"HTTP/%s %d %s" % (incoming.version.encode(), response.status,
                                     _PHRASES.get(response.status, b""))]
        lines += [name + b": " + value for name, value in headers]
        self._transport.write(b"\r\n".join(lines) + b"\r\n\r\n")
        self._streaming = True
        try:
            await write_chunked(self._transport.write, self._writable, response.stream,
                                chunked)
        finally:
            self._streaming = False

    async def _writable(self) -> bool:
        """Wait while the client does not read; False once the connection is gone."""
        while self._write_paused and not self._lost:
            self._wakeup = self._loop.create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None
        return not self._lost and not self._transport.is_closing()


def error_response(status: int, message: str,
                   headers: list[tuple[bytes, bytes]] | None = None) -> bytes:
    """A whole response for a request the app never sees; the connection closes after it."""
    body = json_body({"error": message})
    return _head(status, [JSON_TYPE, _CLOSE, *(headers or [])], len(body)) + body


def _hold_for(refused: Response) -> float:
    """How long a 429 waits before it is sent: its Retry-After, at most MAX_HOLD_SECONDS."""
    wait = next((v for k, v in refused.headers if k == b"retry-after"), b"")
    return min(float(wait) if wait.isdigit() else MAX_HOLD_SECONDS, MAX_HOLD_SECONDS)


def _decode_path(raw: bytes) -> str:
    if b"%" not in raw:
        return raw.decode("latin-1")
    from urllib.parse import unquote

    return unquote(raw.decode("latin-1"))


def _head(status: int, headers: list[tuple[bytes, bytes]], length: int,
          version: str = "1.1") -> bytes:
    lines = [b"HTTP/%s %d %s" % (version.encode(), status, _PHRASES.get(status, b""))]
    lines += [name + b": " + value for name, value in headers]
    lines.append(b"content-length: %d" % length)
    return b"\r\n".join(lines) + b"\r\n\r\n"
