"""The built-in server's HTTP connection, driven through a fake transport in milliseconds.

The transport records what the connection writes and whether it reads; a small app
answers with what it was sent and can hold a request until the test lets it go. The
responses are read back with httptools' own response parser.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httptools
import pytest

from redis_gateway.errors import LimitExceeded, RequestTimeout
from redis_gateway.http import JSON_TYPE, Request, Response, json_body, read_body
from redis_gateway.http_connection import (
    HEADER_COST,
    LINGER_BYTES,
    MAX_HOLD_SECONDS,
    PARSE_STEP,
    REQUEST_COST,
    HttpConnection,
    ServerState,
)
from redis_gateway.http_streaming import StreamingResponse
from redis_gateway.settings import LimitSettings


class FakeTransport:
    """What HttpConnection uses of an asyncio transport; nothing is sent anywhere."""

    def __init__(self) -> None:
        self.sent = bytearray()
        self.reading = True
        self.buffered = 0  # what the test says the kernel has not taken yet
        self.high = 0
        self.eof = False
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        assert not (self.eof or self.closed or self.aborted), "written after the end"
        self.sent += data

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high = high or 0

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class EchoApp:
    """Answers each request with its method, path and body; ``hold`` keeps a path waiting."""

    def __init__(self) -> None:
        self.seen: list[Request] = []
        self.held: dict[str, asyncio.Event] = {}
        self.judged: list[tuple[str, int]] = []
        self.holding: dict[str, int] = {}  # bodies judged by their head and not let go

    def hold(self, path: str) -> asyncio.Event:
        self.held[path] = asyncio.Event()
        return self.held[path]

    async def handle(self, request: Request) -> Response:
        self.seen.append(request)
        gate = self.held.get(request.path)
        if gate is not None:
            await gate.wait()
        if request.path == "/limited":  # as a token over its rate
            return Response(429, json_body({"error": "over its rate"}),
                            [JSON_TYPE, (b"retry-after", b"1")])
        return Response(200, json_body({"method": request.method, "path": request.path,
                                        "body": request.body.decode()}), [JSON_TYPE])

    def judge_body(self, request: Request, length: int | None) -> Response | None:
        """Large bodies to /refused are refused by their head (as a token over its share);
        the others are held (``let_go``) until answered, as the gateway holds a token's."""
        self.judged.append((request.path, length))
        if request.path == "/refused":
            return Response(429, json_body({"error": "over its share"}),
                            [JSON_TYPE, (b"retry-after", b"2")])
        self.holding[request.path] = self.holding.get(request.path, 0) + 1

        def let_go(path: str = request.path) -> None:
            self.holding[path] -= 1
        request.let_go = let_go
        return None

    async def warm_up(self) -> None:
        pass

    async def close(self) -> None:
        pass


@dataclasses.dataclass
class Parsed:
    status: int
    headers: dict[bytes, bytes]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def responses(data: bytes) -> list[Parsed]:
    """Every complete response in ``data``; 1xx interim responses included."""
    out: list[Parsed] = []

    class Collect:
        headers: dict[bytes, bytes]
        body: bytes

        def on_message_begin(self) -> None:
            self.headers, self.body = {}, b""

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers[name.lower()] = value

        def on_body(self, body: bytes) -> None:
            self.body += body

        def on_message_complete(self) -> None:
            out.append(Parsed(parser.get_status_code(), self.headers, self.body))

    collect = Collect()
    parser = httptools.HttpResponseParser(collect)
    # A 100 Continue has no body: a parser per interim response keeps llhttp in step.
    for part in data.split(b"HTTP/1.1 100 Continue\r\n\r\n"):
        if part:
            parser = httptools.HttpResponseParser(collect)
            parser.feed_data(part)
        out.append(Parsed(100, {}, b""))
    out.pop()
    return out


Make = Callable[..., tuple[HttpConnection, FakeTransport]]


@pytest.fixture
def app() -> EchoApp:
    return EchoApp()


@pytest.fixture
def make(app: EchoApp) -> Iterator[Make]:
    """Connections on one ServerState, with limits changed by keyword; all lost at the end."""
    made: list[HttpConnection] = []
    states: dict[str, ServerState] = {}

    def connect(**limits: Any) -> tuple[HttpConnection, FakeTransport]:
        if "state" not in states:
            states["state"] = ServerState(app, dataclasses.replace(LimitSettings(), **limits))
        conn = HttpConnection(states["state"])
        transport = FakeTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        made.append(conn)
        return conn, transport

    yield connect
    for conn in made:
        conn.connection_lost(None)


async def until(condition: Callable[[], object], turns: int = 50) -> None:
    """Let the event loop run the connection's task until ``condition`` holds."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


async def settle(turns: int = 20) -> None:
    """Let the event loop run whatever is ready (before the test moves the clock)."""
    for _ in range(turns):
        await asyncio.sleep(0)


class Clock:
    """The event loop's clock, moved forward by the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        loop = asyncio.get_running_loop()
        self.now = loop.time()
        monkeypatch.setattr(loop, "time", lambda: self.now)

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@pytest.fixture
async def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


def post(path: str, body: bytes, extra: bytes = b"") -> bytes:
    return (b"POST %s HTTP/1.1\r\nHost: gw\r\n%sContent-Length: %d\r\n\r\n"
            % (path.encode(), extra, len(body)) + body)


def get(path: str, version: bytes = b"1.1") -> bytes:
    return b"GET %s HTTP/%s\r\nHost: gw\r\n\r\n" % (path.encode(), version)


# parsing and serving ---------------------------------------------------------------------
async def test_a_request_is_answered_with_a_status_line_and_length(make: Make) -> None:
    conn, transport = make()
    conn.data_received(get("/some%20where?x=1"))
    await until(lambda: transport.sent)
    assert transport.sent.startswith(b"HTTP/1.1 200 OK\r\n")
    (response,) = responses(bytes(transport.sent))
    assert response.headers[b"content-length"] == b"%d" % len(response.body)
    assert response.json() == {"method": "GET", "path": "/some where", "body": ""}
    assert not transport.closed


async def test_keep_alive_serves_requests_in_turn_and_http_1_0_closes(make: Make) -> None:
    conn, transport = make()
    conn.data_received(get("/one"))
    await until(lambda: len(responses(bytes(transport.sent))) == 1)
    conn.data_received(get("/two", b"1.0"))
    await until(lambda: transport.closed)
    first, second = responses(bytes(transport.sent))
    assert [first.json()["path"], second.json()["path"]] == ["/one", "/two"]
    assert b"HTTP/1.0 200 OK" in transport.sent
    assert second.headers[b"connection"] == b"close"


async def test_pipelined_requests_are_answered_in_the_order_sent(make: Make,
                                                                 app: EchoApp) -> None:
    conn, transport = make()
    slow = app.hold("/slow")
    conn.data_received(get("/slow") + post("/fast", b"[1]") + get("/last"))
    await until(lambda: len(app.seen) == 1)
    assert transport.sent == b""  # nothing overtakes the held request
    slow.set()
    await until(lambda: len(responses(bytes(transport.sent))) == 3)
    assert [r.json()["path"] for r in responses(bytes(transport.sent))] == [
        "/slow", "/fast", "/last"]


async def test_chunked_bodies_and_bodies_split_over_many_reads(make: Make,
                                                               app: EchoApp) -> None:
    conn, _ = make()
    chunked = (b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
    for byte in chunked:  # one byte per read: the worst a client can do
        conn.data_received(bytes([byte]))
    large = b"x" * (PARSE_STEP * 5 + 123)
    conn.data_received(post("/big", large))  # more than a parsing step in one read
    await until(lambda: len(app.seen) == 2)
    assert [r.body for r in app.seen] == [b"abcdefg", large]
    assert all(type(r.body) is bytes for r in app.seen)


async def test_a_malformed_request_is_400_after_the_responses_before_it(make: Make) -> None:
    conn, transport = make()
    conn.data_received(get("/ok") + b"NOT HTTP AT ALL\r\n\r\n")
    await until(lambda: transport.eof)
    ok, bad = responses(bytes(transport.sent))
    assert ok.status == 200
    assert bad.status == 400 and "malformed HTTP request" in bad.json()["error"]
    assert bad.headers[b"connection"] == b"close"
    conn.data_received(get("/after"))  # read and dropped: the stream is not trusted
    assert len(responses(bytes(transport.sent))) == 2


async def test_an_upgrade_is_refused(make: Make, app: EchoApp) -> None:
    conn, transport = make()
    conn.data_received(b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    await until(lambda: transport.eof)
    (response,) = responses(bytes(transport.sent))
    assert response.status == 400 and "upgrades" in response.json()["error"]
    assert app.seen == []


# limits ----------------------------------------------------------------------------------
async def test_a_head_over_max_header_bytes_is_431(make: Make, app: EchoApp) -> None:
    conn, transport = make(max_header_bytes=1000)
    conn.data_received(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 1000 + b"\r\n\r\n")
    await until(lambda: transport.eof)
    (response,) = responses(bytes(transport.sent))
    assert response.status == 431
    assert "limits.max_header_bytes" in response.json()["error"]
    assert app.seen == []


async def test_a_body_over_the_limit_is_413_before_it_is_sent(make: Make, app: EchoApp) -> None:
    conn, transport = make(max_body_bytes=100)
    conn.data_received(b"POST / HTTP/1.1\r\nContent-Length: 101\r\n"
                       b"Expect: 100-continue\r\n\r\n")
    await until(lambda: transport.eof)
    assert not transport.sent.startswith(b"HTTP/1.1 100")  # no 100 Continue first
    (response,) = responses(bytes(transport.sent))
    assert response.status == 413 and "limits.max_body_bytes" in response.json()["error"]


async def test_a_chunked_body_over_the_limit_is_413(make: Make, app: EchoApp) -> None:
    conn, transport = make(max_body_bytes=100)
    conn.data_received(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"40\r\n" + b"a" * 64 + b"\r\n")
    assert not transport.eof
    conn.data_received(b"40\r\n" + b"a" * 64 + b"\r\n")
    await until(lambda: transport.eof)
    (response,) = responses(bytes(transport.sent))
    assert response.status == 413
    assert app.seen == []


async def test_100_continue_only_after_the_checks_and_the_responses_before_it(
        make: Make, app: EchoApp) -> None:
    conn, transport = make()
    held = app.hold("/first")
    conn.data_received(get("/first") + b"POST /second HTTP/1.1\r\nContent-Length: 2\r\n"
                                       b"Expect: 100-continue\r\n\r\n")
    await until(lambda: app.seen)
    assert transport.sent == b""  # not before /first's response
    held.set()
    await until(lambda: b"100 Continue" in transport.sent)
    first, interim = responses(bytes(transport.sent))
    assert (first.status, interim.status) == (200, 100)
    conn.data_received(b"{}")
    await until(lambda: len(responses(bytes(transport.sent))) == 3)
    assert responses(bytes(transport.sent))[2].json()["body"] == "{}"


async def test_unknown_expectations_are_417(make: Make) -> None:
    conn, transport = make()
    conn.data_received(b"POST / HTTP/1.1\r\nContent-Length: 2\r\nExpect: magic\r\n\r\n")
    await until(lambda: transport.eof)
    assert responses(bytes(transport.sent))[0].status == 417


# back-pressure ---------------------------------------------------------------------------
async def test_a_client_that_does_not_read_stops_being_read(make: Make, app: EchoApp) -> None:
    conn, transport = make(write_buffer_bytes=1000)
    assert transport.high == 1000
    conn.data_received(get("/a"))
    await until(lambda: transport.sent)
    transport.buffered = 5000  # the client reads nothing: the transport says so
    conn.pause_writing()
    assert not transport.reading
    conn.data_received(get("/b"))  # already on its way when reading stopped
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert [r.path for r in app.seen] == ["/a"]  # no response is made while it cannot go
    transport.buffered = 0
    conn.resume_writing()
    assert transport.reading
    await until(lambda: len(app.seen) == 2)


async def test_queued_requests_are_bounded_and_the_rest_waits_unparsed(
        make: Make, app: EchoApp) -> None:
    conn, transport = make(max_pipelined_requests=4)
    held = app.hold("/0")
    for i in range(5):  # one per read: the first runs, four wait
        conn.data_received(get(f"/{i}"))
        await until(lambda: app.seen)
    assert not transport.reading
    # A client that sent many more in one go: parsing stops within a step of the cap.
    flood = b"".join(get(f"/{i}") for i in range(5, 2000))
    conn.data_received(flood)
    queued = conn._queue  # what the connection holds, parsed
    assert len(queued) <= 4 + PARSE_STEP // len(get("/0")) + 1
    assert len(queued) < 1000
    held.set()
    await until(lambda: len(app.seen) == 2000, turns=20000)
    assert [r.path for r in app.seen] == [f"/{i}" for i in range(2000)]
    assert transport.reading


async def test_held_bytes_share_one_budget(make: Make, app: EchoApp) -> None:
    budget = 200_000
    slow, slow_transport = make(max_pending_request_bytes=budget)
    victim, victim_transport = make()
    # Chunked: no length announced, so it is refused as it arrives, not from its head.
    slow.data_received(b"POST /big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(10):  # it arrives and never completes
        slow.data_received(b"7530\r\n" + b"x" * 30_000 + b"\r\n")
    await until(lambda: slow_transport.eof)
    (refused,) = responses(bytes(slow_transport.sent))
    assert refused.status == 503 and refused.headers[b"retry-after"] == b"1"
    assert "limits.max_pending_request_bytes" in refused.json()["error"]
    assert slow._state.pending_bytes == 0  # what it held is let go at once
    victim.data_received(post("/small", b"[1]"))  # within its own allowance
    await until(lambda: victim_transport.sent)
    assert responses(bytes(victim_transport.sent))[0].status == 200
    assert app.seen[0].path == "/small"


async def test_pipelined_requests_over_the_budget_wait_instead(make: Make,
                                                               app: EchoApp) -> None:
    conn, transport = make(max_pending_request_bytes=100_000, max_header_bytes=10_000)
    held = app.hold("/0")
    conn.data_received(post("/0", b"a"))
    await until(lambda: app.seen)
    for i in range(1, 4):  # each complete, together past the budget
        conn.data_received(post(f"/{i}", b"x" * 60_000))
    assert not transport.reading and not transport.eof
    assert conn._state.pending_bytes > 100_000
    held.set()
    await until(lambda: len(app.seen) == 4)
    assert transport.reading and conn._state.pending_bytes == 0


async def test_a_request_holds_its_bytes_until_it_is_answered(make: Make,
                                                              app: EchoApp) -> None:
    """Taken by the app is not yet freed: a body being handled (parsed, copied into a
    command, written to Redis) still counts, or one client could have any number of them
    in memory at once, each taken as soon as it arrives."""
    first, _ = make(max_pending_request_bytes=200_000, max_header_bytes=10_000)
    held = app.hold("/first")
    first.data_received(post("/first", b"x" * 150_000))
    await until(lambda: app.seen)
    assert first._state.pending_bytes > 140_000  # the app has it, and it still counts
    other, other_transport = make()
    other.data_received(post("/other", b"y" * 150_000))
    await until(lambda: other_transport.eof)
    (refused,) = responses(bytes(other_transport.sent))
    assert refused.status == 503 and [r.path for r in app.seen] == ["/first"]
    held.set()
    await until(lambda: first._state.pending_bytes == 0)  # answered: free again
    again, again_transport = make()
    again.data_received(post("/again", b"z" * 150_000))
    await until(lambda: again_transport.sent)
    assert responses(bytes(again_transport.sent))[0].status == 200


async def test_a_pipelined_request_waits_for_the_one_the_app_has(make: Make,
                                                                 app: EchoApp) -> None:
    conn, transport = make(max_pending_request_bytes=200_000, max_header_bytes=10_000)
    held = app.hold("/0")
    conn.data_received(post("/0", b"x" * 150_000))
    await until(lambda: app.seen)
    conn.data_received(post("/1", b"y" * 150_000))  # no room while /0 is handled: it waits
    assert not transport.reading and not transport.eof
    held.set()
    await until(lambda: len(app.seen) == 2)
    assert [r.status for r in responses(bytes(transport.sent))] == [200, 200]
    assert transport.reading and conn._state.pending_bytes == 0


async def test_an_announced_body_that_cannot_fit_is_refused_before_100_continue(
        make: Make) -> None:
    conn, transport = make(max_pending_request_bytes=100_000)
    conn.data_received(b"POST / HTTP/1.1\r\nContent-Length: 5000000\r\n"
                       b"Expect: 100-continue\r\n\r\n")
    await until(lambda: transport.eof)
    assert [r.status for r in responses(bytes(transport.sent))] == [503]


async def test_the_app_judges_a_large_body_by_its_head_before_it_is_read(
        make: Make, app: EchoApp, clock: Clock) -> None:
    conn, transport = make(max_header_bytes=1000)
    conn.data_received(b"POST /refused HTTP/1.1\r\nContent-Length: 5000\r\n"
                       b"Expect: 100-continue\r\n\r\n")
    await settle()
    assert app.judged and transport.sent == b""  # a 429 waits for its Retry-After,
    assert not transport.reading  # and not even its refused body is read meanwhile
    clock.advance(MAX_HOLD_SECONDS)
    await until(lambda: transport.eof)
    (refused,) = responses(bytes(transport.sent))  # no 100 Continue before it
    assert refused.status == 429 and refused.headers[b"retry-after"] == b"2"
    assert refused.headers[b"connection"] == b"close"
    assert app.judged == [("/refused", 5000)] and not app.seen
    # A body within the connection's own allowance is not judged before it is read.
    conn, transport = make(max_header_bytes=1000)
    conn.data_received(post("/refused", b"x" * 900))
    await until(lambda: transport.sent)
    assert responses(bytes(transport.sent))[0].status == 200
    assert app.judged == [("/refused", 5000)]


async def test_what_a_judged_body_holds_is_let_go_once_however_its_request_ends(
        make: Make, app: EchoApp, clock: Clock) -> None:
    """A token's large bodies count as its own until answered (``Request.let_go``): every
    way a request can end lets go exactly once, or a token would be refused for ever."""
    big = b"x" * 5000

    def announce(path: str) -> bytes:
        return b"POST %b HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (path.encode(), len(big))

    conn, transport = make(max_header_bytes=1000, max_body_bytes=10_000)
    held = app.hold("/answered")
    conn.data_received(announce("/answered") + big)
    await until(lambda: app.seen)
    assert app.holding == {"/answered": 1}  # while the app has it
    held.set()
    await until(lambda: transport.sent)
    assert app.holding == {"/answered": 0}
    # The body never comes: 408 at its deadline.
    conn, transport = make()
    conn.data_received(announce("/late") + big[:10])
    assert app.holding["/late"] == 1
    clock.advance(60)
    conn.expire(clock.now)
    assert app.holding["/late"] == 0
    # The client goes away mid-body, and with a request queued behind a running one.
    conn, transport = make()
    conn.data_received(announce("/gone") + big[:10])
    conn.connection_lost(None)
    assert app.holding["/gone"] == 0
    conn, transport = make()
    app.hold("/first")
    conn.data_received(announce("/first") + big + announce("/second") + big)
    await until(lambda: app.seen[-1].path == "/first")
    assert app.holding["/first"] == app.holding["/second"] == 1
    conn.connection_lost(None)
    await settle()
    assert app.holding["/second"] == 0
    app.held["/first"].set()
    await until(lambda: app.holding["/first"] == 0)
    # Judged, then refused for what else its head says (417): let go at once.
    conn, transport = make()
    conn.data_received(announce("/odd")[:-2] + b"Expect: something\r\n\r\n")
    await until(lambda: transport.eof)
    assert [r.status for r in responses(bytes(transport.sent))] == [417]
    assert app.holding["/odd"] == 0


async def test_a_chunked_body_is_judged_once_it_outgrows_the_allowance(
        make: Make, app: EchoApp, clock: Clock) -> None:
    """No Content-Length to judge by its head: a chunked body is judged (by its token's
    share, ``length`` None) as soon as it holds more than the connection's allowance, and
    refused then without the rest being read (found by a red-team pass: chunked uploads
    went around token_body_share)."""
    conn, transport = make(max_header_bytes=1000)
    conn.data_received(b"POST /refused HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"320\r\n" + b"x" * 800 + b"\r\n")
    assert app.judged == []  # within the allowance: not yet
    conn.data_received(b"320\r\n" + b"x" * 800 + b"\r\n")
    await settle()
    assert app.judged == [("/refused", None)] and not transport.reading
    clock.advance(MAX_HOLD_SECONDS)
    await until(lambda: transport.eof)
    assert [r.status for r in responses(bytes(transport.sent))] == [429]
    # Allowed: held as the token's until answered, judged once however long it goes on.
    conn, transport = make()
    conn.data_received(b"POST /chunked HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(5):
        conn.data_received(b"320\r\n" + b"y" * 800 + b"\r\n")
    assert app.judged[-1] == ("/chunked", None) and app.holding["/chunked"] == 1
    conn.data_received(b"0\r\n\r\n")
    await until(lambda: transport.sent)
    assert app.holding["/chunked"] == 0 and len(app.judged) == 2


async def test_memory_estimates_cover_what_queued_requests_take(make: Make,
                                                                app: EchoApp) -> None:
    for headers in (0, 1, 20):
        conn, _ = make(max_pipelined_requests=10**6, max_pending_request_bytes=10**12)
        app.hold("/")
        one = b"GET / HTTP/1.1\r\n" + b"".join(b"h%d:v\r\n" % i for i in range(headers))
        one += b"\r\n"
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(50):
                conn.data_received(one * 20)
            used = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        estimate = sum(r.held for r in conn._queue)
        assert estimate >= used * 0.9, (headers, estimate, used)
        assert estimate <= used * 3  # not so high that honest clients are refused
        assert REQUEST_COST + headers * HEADER_COST < conn._queue[0].held


# deadlines -------------------------------------------------------------------------------
async def test_a_slow_head_is_408_and_an_idle_connection_is_closed(make: Make,
                                                                   clock: Clock) -> None:
    conn, transport = make(header_timeout=5, keep_alive_timeout=50)
    conn.data_received(b"GET / HTTP/1.1\r\n")
    conn.expire(clock.advance(4))
    assert not transport.sent
    conn.expire(clock.advance(2))
    await until(lambda: transport.eof)
    (response,) = responses(bytes(transport.sent))
    assert response.status == 408 and "limits.header_timeout" in response.json()["error"]

    conn, transport = make()
    conn.expire(clock.advance(6))  # connected and silent: as long as a head may take
    assert transport.closed and not transport.sent

    conn, transport = make()
    conn.data_received(get("/"))
    await until(lambda: transport.sent)
    conn.expire(clock.advance(49))
    assert not transport.closed
    conn.expire(clock.advance(2))
    assert transport.closed


async def test_a_body_must_arrive_within_body_timeout(make: Make, app: EchoApp,
                                                      clock: Clock) -> None:
    conn, transport = make(body_timeout=30, header_timeout=5)
    conn.data_received(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n12345")
    conn.expire(clock.advance(29))
    assert not transport.sent
    conn.expire(clock.advance(2))
    await until(lambda: transport.eof)
    (response,) = responses(bytes(transport.sent))
    assert response.status == 408
    assert response.json()["error"] == ("the request body did not arrive within 30 s "
                                        "(limits.body_timeout)")
    assert app.seen == []


async def test_the_clock_stops_while_the_server_is_not_reading(make: Make,
                                                               clock: Clock) -> None:
    conn, transport = make(body_timeout=30, write_timeout=1000)
    conn.data_received(get("/a"))
    await until(lambda: transport.sent)
    conn.data_received(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n12345")
    clock.advance(10)
    conn.pause_writing()  # the server stops reading: the client cannot be late
    conn.expire(clock.advance(100))
    assert not transport.eof
    conn.resume_writing()  # 20 s of its 30 are left
    conn.expire(clock.advance(19))
    assert not transport.eof
    conn.expire(clock.advance(2))
    await until(lambda: transport.eof)
    assert responses(bytes(transport.sent))[1].status == 408


async def test_a_client_that_reads_nothing_for_write_timeout_is_dropped(
        make: Make, clock: Clock) -> None:
    conn, transport = make(write_timeout=10)
    conn.data_received(get("/a"))
    await until(lambda: transport.sent)
    transport.buffered = 100_000
    conn.pause_writing()
    conn.expire(clock.advance(9))
    transport.buffered = 90_000  # it reads a little: its clock starts again
    conn.expire(clock.advance(9))
    assert not transport.aborted
    conn.expire(clock.advance(9))
    assert not transport.aborted
    conn.expire(clock.advance(2))
    assert transport.aborted


async def test_a_refused_connection_lingers_then_is_dropped(make: Make, clock: Clock) -> None:
    conn, transport = make()
    conn.data_received(b"BAD\r\n\r\n")
    await until(lambda: transport.eof)
    conn.expire(clock.advance(1))
    assert not transport.aborted  # the client has time to read its answer
    conn.expire(clock.advance(2))
    assert transport.aborted


async def test_a_429_is_sent_after_its_retry_after_and_nothing_is_read_meanwhile(
        make: Make, app: EchoApp, clock: Clock) -> None:
    """A client pipelining past its share costs one refusal per Retry-After, not one per
    request: what it sends meanwhile waits, unread."""
    conn, transport = make()
    conn.data_received(get("/limited") + get("/next"))
    await settle()
    assert [r.path for r in app.seen] == ["/limited"] and transport.sent == b""
    assert not transport.reading
    clock.advance(MAX_HOLD_SECONDS)
    await until(lambda: len(responses(bytes(transport.sent))) == 2)
    assert [r.status for r in responses(bytes(transport.sent))] == [429, 200]
    assert [r.path for r in app.seen] == ["/limited", "/next"] and transport.reading


async def test_a_refused_client_that_keeps_sending_is_reset(make: Make, app: EchoApp,
                                                           clock: Clock) -> None:
    """What comes after a refusal is read and dropped only up to LINGER_BYTES: a client
    sending a refused body anyway does not make the gateway read all of it."""
    conn, transport = make(max_header_bytes=1000)
    conn.data_received(b"POST /refused HTTP/1.1\r\nContent-Length: 5000000\r\n\r\n")
    await settle()
    clock.advance(MAX_HOLD_SECONDS)
    await until(lambda: transport.eof)
    chunk = b"x" * 65536
    for _ in range(LINGER_BYTES // len(chunk)):
        conn.data_received(chunk)
    assert not transport.aborted  # within the linger allowance: the client may read the 429
    conn.data_received(chunk)
    assert transport.aborted and not app.seen


async def test_connections_past_the_cap_get_503_and_the_others_are_served(
        make: Make) -> None:
    first, first_transport = make(max_connections=2)
    second, _ = make()
    third, third_transport = make()
    (refused,) = responses(bytes(third_transport.sent))
    assert refused.status == 503 and "limits.max_connections" in refused.json()["error"]
    assert third_transport.eof and third not in first._state.connections
    third.data_received(get("/"))  # dropped
    first.data_received(get("/"))
    await until(lambda: first_transport.sent)
    assert responses(bytes(first_transport.sent))[0].status == 200
    second.connection_lost(None)
    fourth, fourth_transport = make()  # a place is free again
    assert not fourth_transport.sent and fourth in first._state.connections


# the ASGI path's body reader (uvicorn, Mangum) --------------------------------------------
async def test_read_body_joins_the_messages_and_refuses_past_the_limit() -> None:
    parts = iter([b"ab", b"cd", b""])

    async def receive() -> dict[str, Any]:
        body = next(parts)
        return {"type": "http.request", "body": body, "more_body": bool(body)}

    assert await read_body(receive, None, 10, 5.0) == b"abcd"
    with pytest.raises(LimitExceeded, match=r"limits\.max_body_bytes"):
        await read_body(receive, 11, 10, 5.0)


async def test_read_body_that_never_comes_is_a_408_and_other_cancels_pass() -> None:
    async def never() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    with pytest.raises(RequestTimeout, match=r"within 0\.05 s \(limits\.body_timeout\)"):
        await read_body(never, None, 10, 0.05)
    current = asyncio.current_task()
    assert current is not None and current.cancelling() == 0  # nothing left behind

    reader = asyncio.ensure_future(read_body(never, None, 10, 60))
    await asyncio.sleep(0)
    reader.cancel()  # a cancel from elsewhere (shutdown) stays a cancel
    with pytest.raises(asyncio.CancelledError):
        await reader


# the server ------------------------------------------------------------------------------
@pytest.mark.parametrize(("soft", "hard", "raised", "warned"), [
    (1024, 4096, 1256, False),  # raised to fit the cap
    (1024, 1100, 1100, True),  # as far as the hard limit allows, and said
    (65536, 65536, None, False),  # enough already: left alone
])
def test_the_open_file_limit_is_raised_to_fit_the_connection_cap(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        soft: int, hard: int, raised: int | None, warned: bool) -> None:
    import resource

    from redis_gateway import server

    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(resource, "getrlimit", lambda which: (soft, hard))
    monkeypatch.setattr(resource, "setrlimit", lambda which, limits: calls.append(limits))
    server._allow_open_files(1000)
    assert calls == ([] if raised is None else [(raised, hard)])
    assert ("limits.max_connections is 1000" in caplog.text) == warned


# streaming responses (http_streaming.py) -----------------------------------------------------
class StreamApp(EchoApp):
    """Answers with a stream of the chunks put in ``feed``; records when the stream closes."""

    def __init__(self) -> None:
        super().__init__()
        self.feed: asyncio.Queue[bytes] = asyncio.Queue()
        self.closed = False

    async def handle(self, request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            try:
                while True:
                    chunk = await self.feed.get()
                    if not chunk:
                        return
                    yield chunk
            finally:
                self.closed = True

        return StreamingResponse(200, [(b"content-type", b"text/event-stream")], chunks())


@pytest.fixture
def stream_app() -> StreamApp:
    return StreamApp()


async def test_stream_is_chunked_and_ends(stream_app: StreamApp) -> None:
    conn = HttpConnection(ServerState(stream_app, LimitSettings()))
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n")
    await until(lambda: b"\r\n\r\n" in transport.sent)
    assert b"transfer-encoding: chunked" in transport.sent
    assert b"content-length" not in transport.sent
    stream_app.feed.put_nowait(b"data: 1\n\n")
    await until(lambda: transport.sent.endswith(b"9\r\ndata: 1\n\n\r\n"))
    stream_app.feed.put_nowait(b"")
    await until(lambda: transport.closed)
    assert transport.sent.endswith(b"0\r\n\r\n") and stream_app.closed
    (parsed,) = responses(bytes(transport.sent))
    assert parsed.body == b"data: 1\n\n"


async def test_a_last_response_left_unread_is_dropped_after_write_timeout(
        make: Make, clock: Clock) -> None:
    """HTTP/1.0 or Connection: close: the connection closes once its response is sent; a
    client that reads none of it is dropped after write_timeout, as on a kept-alive one
    (found by a red-team pass: such connections stayed, holding their responses)."""
    conn, transport = make(write_timeout=5)
    transport.buffered = 100_000  # what the kernel has not taken of the response
    conn.data_received(b"GET /last HTTP/1.0\r\n\r\n")
    await until(lambda: transport.closed)
    conn.expire(clock.advance(4))  # none of it taken yet
    assert not transport.aborted
    transport.buffered = 90_000  # some: its clock starts again
    conn.expire(clock.advance(4))
    assert not transport.aborted
    conn.expire(clock.advance(6))
    assert transport.aborted


async def test_a_stream_lets_go_of_its_request_body_as_it_starts(stream_app: StreamApp) -> None:
    """A POST that opens a stream (SSE subscriptions, GraphQL over SSE) was read long
    before: its body must not hold the shared budget for as long as the stream lasts
    (found by a red-team pass)."""
    state = ServerState(stream_app, dataclasses.replace(
        LimitSettings(), max_header_bytes=1000, max_pending_request_bytes=100_000))
    conn = HttpConnection(state)
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(post("/s", b"x" * 50_000))
    await until(lambda: b"\r\n\r\n" in transport.sent)
    assert state.pending_bytes == 0  # streaming, and nothing held for it
    stream_app.feed.put_nowait(b"")
    await until(lambda: transport.closed)


async def test_stream_waits_for_a_slow_client_and_closes_when_it_goes(
        stream_app: StreamApp) -> None:
    conn = HttpConnection(ServerState(stream_app, LimitSettings()))
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n")
    await until(lambda: b"\r\n\r\n" in transport.sent)
    conn.pause_writing()  # the client stopped reading
    stream_app.feed.put_nowait(b"held")
    for _ in range(20):
        await asyncio.sleep(0)
    assert b"held" not in transport.sent  # taken from the stream, not written yet
    conn.resume_writing()
    await until(lambda: b"held" in transport.sent)
    conn.connection_lost(None)  # the client went away while the stream waits
    await until(lambda: stream_app.closed)
