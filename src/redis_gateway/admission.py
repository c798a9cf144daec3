"""Each token's fair share: requests in flight, request rate, reserved connections, bytes
of request bodies and of replies per second, and seconds of Redis per second.

One token cannot take the gateway from the others: past its share it gets 429 with
``Retry-After``, and nobody else notices. The rates are GCRAs (generic cell rate
algorithm: one timestamp per token, no timers), kept in this process; the request rate
may be kept in the default Redis instead (``limits.shared_rate``) so that every gateway
process draws from one budget.

A large body is judged before it is read (``refusal``): a token over its share costs the
gateway a few microseconds per request, not the reading and parsing of megabytes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass

from .errors import TooManyRequests
from .observe import metrics
from .settings import LimitSettings


@dataclass(frozen=True)
class Share:
    """What one token may use at once. 0 means no limit."""

    concurrency: int = 0  # requests in flight
    reserved: int = 0  # reserved connections held (blocking commands, transactions)
    rate: float = 0.0  # requests per second, sustained
    burst: int = 0  # requests allowed at once; 0: one second's worth of the rate
    reply_rate: float = 0.0  # bytes of replies per second, sustained
    body_rate: float = 0.0  # bytes of request bodies per second, sustained
    redis_time: float = 0.0  # seconds of Redis answering its commands per second

    @classmethod
    def of(cls, limits: LimitSettings, *, concurrency: int | None = None,
           reserved: int | None = None, rate: float | None = None,
           burst: int | None = None, reply_rate: float | None = None,
           body_rate: float | None = None, redis_time: float | None = None) -> Share:
        """A token's own values, else the [limits] defaults."""
        return cls(
            concurrency if concurrency is not None else limits.token_concurrency,
            reserved or 0,  # 0: the default fraction of the backend's reserved connections
            rate if rate is not None else limits.token_rate,
            burst if burst is not None else limits.token_burst,
            reply_rate if reply_rate is not None else limits.token_reply_rate,
            body_rate if body_rate is not None else limits.token_body_rate,
            redis_time if redis_time is not None else limits.token_redis_time,
        )


class _Gate:
    """One token's reserved connections: a semaphore, and how many requests use it."""

    __slots__ = ("slots", "users")

    def __init__(self, limit: int) -> None:
        self.slots = asyncio.Semaphore(limit)
        self.users = 0


class Admitted:
    """One admitted request (a class, not a generator-based context manager: this is on
    every request's path); its front door sets ``reply_bytes``, what its replies took,
    and the executor adds to ``redis_seconds`` how long Redis took to answer it."""

    __slots__ = ("_admission", "_body", "_name", "_reset", "_share", "redis_seconds",
                 "reply_bytes")

    def __init__(self, admission: Admission, name: str, share: Share, body: int) -> None:
        self._admission, self._name, self._share = admission, name, share
        self._body = body
        self._reset: Token[Admitted | None] | None = None
        self.reply_bytes = 0
        self.redis_seconds = 0.0

    async def __aenter__(self) -> Admitted:
        admission, share = self._admission, self._share
        if share.rate and admission.shares_rate:
            await admission._take_shared_rate(self._name, share)
        admission._enter(self._name, share, self._body)
        if share.redis_time:
            self._reset = timed.set(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reset is not None:
            timed.reset(self._reset)
        self._admission._leave(self._name, self._share, self.reply_bytes,
                               self.redis_seconds)


# The request being served, while its token has a budget of Redis time: the executor adds
# how long Redis took to answer its commands on shared connections (never the wait of a
# blocking command: those run on reserved connections, bounded by their own share).
timed: ContextVar[Admitted | None] = ContextVar("redis_gateway_timed", default=None)


# async: (token name, emission interval in ms, tolerance in ms) -> ms to wait (0: allowed)
SharedRate = Callable[[str, int, int], Awaitable[int]]


class Admission:
    def __init__(self, limits: LimitSettings, shared_rate: SharedRate | None = None) -> None:
        self._limits = limits
        self._shared_rate = shared_rate
        self._in_flight: dict[str, int] = {}
        self._bodies_held: dict[str, int] = {}  # bytes of large bodies not yet answered
        self._reserved: dict[str, _Gate] = {}
        self._tat: dict[str, float] = {}  # GCRA: each token's theoretical arrival time
        # Redis's work grows with what it sends; the gateway's reading and parsing with
        # what arrives; and Redis runs one command at a time, so what one token's take,
        # everyone waits for. Replies and Redis time are charged when a request ends
        # (known only then), bodies as they start.
        self._replies = _Budget("bytes of replies", "reply_rate")
        self._bodies = _Budget("bytes of request bodies", "body_rate")
        self._redis = _Budget("seconds of Redis", "redis_time")

    def request(self, name: str, share: Share, body: int = 0) -> Admitted:
        """``async with`` it: one request of token ``name`` admitted, or 429 raised;
        ``body``: the bytes of its body not charged yet (see ``refusal``)."""
        return Admitted(self, name, share, body)

    @property
    def shares_rate(self) -> bool:
        """Rates are counted in Redis, for every gateway process (limits.shared_rate)."""
        return self._shared_rate is not None

    def refusal(self, name: str, share: Share, body: int, held: int | None = None
                ) -> TooManyRequests | None:
        """Before a large body is read: the 429 the request would get now, if any; else
        its ``body`` bytes are charged to the token's body budget at once, so that one
        token's uploads started together are counted as they start, not once each is in.

        Only judges (the request is admitted later, with its body): a token that is
        refused here costs no reading and no parsing of what it sends.
        """
        try:
            if share.reply_rate:
                self._replies.check(name, share.reply_rate)
            if share.redis_time:
                self._redis.check(name, share.redis_time)
            if share.rate and self._shared_rate is None and \
                    (wait := self._rate_wait(name, share)[1]) > 0:
                raise _over_rate(name, share, wait)
            if share.concurrency:
                self._check_concurrency(name, share, self._in_flight.get(name, 0))
            self._check_bodies_held(name, body if held is None else held)
            if share.body_rate:
                self._take_body(name, share, body)
        except TooManyRequests as refused:
            return refused
        return None

    def _check_bodies_held(self, name: str, body: int) -> None:
        """A token's large bodies may hold its part of the memory for requests
        (limits.token_body_share of max_pending_request_bytes), so that one token's uploads
        cannot take it from the others'. One body alone always may: the server's own
        budget then decides."""
        held = self._bodies_held.get(name, 0)
        limits = self._limits
        limit = int(limits.max_pending_request_bytes * limits.token_body_share)
        if held and held + body > limit:
            raise _limited(TooManyRequests(
                f"token '{name}' holds {held} bytes of request bodies not yet answered, and "
                f"{body} more would pass its part of the gateway's memory for requests "
                f"({limit} bytes: limits.token_body_share of max_pending_request_bytes); "
                "retry shortly", reason="bodies_held"))

    def hold_body(self, name: str, body: int) -> Callable[[], None]:
        """Count a large body judged by its head (``refusal``) as the token's until its
        request is answered; the callable lets go of it (once)."""
        held = self._bodies_held
        held[name] = held.get(name, 0) + body

        def let_go() -> None:
            nonlocal body
            if body:
                left = held[name] - body
                body = 0
                if left:
                    held[name] = left
                else:
                    del held[name]
        return let_go

    def _enter(self, name: str, share: Share, body: int) -> None:
        if share.reply_rate:
            self._replies.check(name, share.reply_rate)
        if share.redis_time:
            self._redis.check(name, share.redis_time)
        if share.body_rate and body:
            self._take_body(name, share, body)
        if share.rate and self._shared_rate is None:
            self._take_rate(name, share)
        count = self._in_flight.get(name, 0)
        if share.concurrency:
            self._check_concurrency(name, share, count)
        self._in_flight[name] = count + 1

    @staticmethod
    def _check_concurrency(name: str, share: Share, count: int) -> None:
        if count >= share.concurrency:
            raise _limited(TooManyRequests(
                f"token '{name}' has {count} requests in flight, its limit "
                f"(limits.token_concurrency, or the token's concurrency); retry shortly"))

    def _leave(self, name: str, share: Share, reply_bytes: int, redis_seconds: float) -> None:
        if share.reply_rate:
            self._replies.charge(name, share.reply_rate, reply_bytes)
        if share.redis_time:
            self._redis.charge(name, share.redis_time, redis_seconds)
        left = self._in_flight[name] - 1
        if left:
            self._in_flight[name] = left
        else:
            del self._in_flight[name]

    @asynccontextmanager
    async def reserved(self, name: str, share: Share, backend_reserved: int,
                       wait: float, backend: str = "default") -> AsyncIterator[None]:
        """Hold one of a backend's reserved connections for token ``name``.

        Past its share the token's request waits for one of its own (up to ``wait``
        seconds, then 429): a burst of transactions queues behind its own kind while
        other tokens still find connections free.
        """
        limit = share.reserved or max(1, int(backend_reserved * self._limits.token_reserved_share))
        gate = self._reserved.get(name)
        if gate is None:
            gate = self._reserved[name] = _Gate(limit)
        gate.users += 1
        try:
            waited = time.perf_counter() if gate.slots.locked() else None
            try:
                async with asyncio.timeout(wait):
                    await gate.slots.acquire()
            except TimeoutError:
                raise _limited(TooManyRequests(
                    f"token '{name}' holds {limit} reserved connections (blocking commands, "
                    f"transactions), its share of {backend_reserved} (limits."
                    "token_reserved_share, or the token's reserved), and none came free "
                    f"within {wait:g} s; retry shortly", reason="reserved")) from None
            if waited is not None:
                metrics.sink.pool_wait(backend, time.perf_counter() - waited)
            try:
                yield
            finally:
                gate.slots.release()
        finally:
            gate.users -= 1
            if not gate.users:
                del self._reserved[name]

    def _take_body(self, name: str, share: Share, size: int) -> None:
        """Charged as a body starts (judged by its head), or, for one that was not,
        when its request is admitted."""
        self._bodies.check(name, share.body_rate)
        self._bodies.charge(name, share.body_rate, size)

    def _rate_wait(self, name: str, share: Share) -> tuple[float, float]:
        """(the token's next theoretical arrival time, seconds to wait before one more)."""
        interval, tolerance = _gcra(share)
        now = time.monotonic()
        tat = max(self._tat.get(name, now), now)
        return tat + interval, tat - tolerance - now

    def _take_rate(self, name: str, share: Share) -> None:
        tat, wait = self._rate_wait(name, share)
        if wait > 0:
            raise _over_rate(name, share, wait)
        self._tat[name] = tat
        if len(self._tat) > 100_000:  # tokens gone quiet: their entries are stale
            now = time.monotonic()
            self._tat = {k: v for k, v in self._tat.items() if v > now}

    async def _take_shared_rate(self, name: str, share: Share) -> None:
        assert self._shared_rate is not None
        interval, tolerance = _gcra(share)
        wait = await self._shared_rate(name, math.ceil(interval * 1000),
                                       math.ceil(tolerance * 1000)) / 1000
        if wait > 0:
            raise _over_rate(name, share, wait)


class _Budget:
    """An amount per second per token (bytes, seconds), as a GCRA: one timestamp per
    token. A token may run into debt once (one second's worth is the burst), then waits
    until the debt is paid off."""

    __slots__ = ("_reason", "_tat", "_what")

    def __init__(self, what: str, reason: str) -> None:
        self._what = what  # "bytes of replies"
        self._reason = reason  # the share's field and the metric label: "reply_rate"
        self._tat: dict[str, float] = {}

    def check(self, name: str, rate: float) -> None:
        wait = self._tat.get(name, 0.0) - time.monotonic() - 1.0
        if wait > 0:
            raise _limited(TooManyRequests(
                f"token '{name}' is over its budget of {rate:g} {self._what} per second "
                f"(limits.token_{self._reason}, or the token's {self._reason}); retry in "
                f"{wait:.3f} s", retry_after=wait, reason=self._reason))

    def charge(self, name: str, rate: float, amount: float) -> None:
        now = time.monotonic()
        self._tat[name] = max(self._tat.get(name, now), now) + amount / rate
        if len(self._tat) > 100_000:  # tokens gone quiet: their entries are stale
            self._tat = {k: v for k, v in self._tat.items() if v > now}


def _gcra(share: Share) -> tuple[float, float]:
    """(emission interval, tolerance) in seconds for a share's rate and burst."""
    interval = 1.0 / share.rate
    # Unset, the burst is one second's worth: a batch of AppSync items or a page's
    # parallel requests is not refused for arriving together.
    return interval, interval * max(_burst(share) - 1, 0)


def _burst(share: Share) -> int:
    return share.burst or math.ceil(share.rate)


def _over_rate(name: str, share: Share, wait: float) -> TooManyRequests:
    return _limited(TooManyRequests(
        f"token '{name}' is over its rate of {share.rate:g} requests per second "
        f"(burst {max(_burst(share), 1)}); retry in {wait:.3f} s", retry_after=wait,
        reason="rate"))


def _limited(refusal: TooManyRequests) -> TooManyRequests:
    metrics.sink.rate_limited(refusal.reason)
    return refusal


# GCRA in Redis, for limits.shared_rate: KEYS[1] the token's key, ARGV the emission interval
# and the tolerance in milliseconds. Redis's clock, so gateway processes need not agree.
GCRA_SCRIPT = b"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait > 0 then return wait end
redis.call('SET', KEYS[1], tat + interval, 'PX', tolerance + interval + 1000)
return 0
"""
