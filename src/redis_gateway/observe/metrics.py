"""Where the gateway reports what happens: a sink, a no-op until metrics are on.

Modules call ``metrics.sink.<event>(...)`` at the few places an event happens
(a reconnect, a redirect, a 429); the call costs a method call on a no-op object when
metrics are off, and ``prometheus_client`` is never imported then. ``install`` swaps in
the Prometheus sink (``prometheus.PrometheusSink``) for the whole process.

For the streaming front door: ``metrics.streams_open.inc("sse")`` when a stream opens
and ``metrics.streams_open.dec("sse")`` when it closes (the label is the kind of stream:
"sse", "websocket", ...; keep it to a handful of fixed words).
"""

from __future__ import annotations


class Sink:
    """Every event the gateway reports; this base class drops them all."""

    def request(self, door: str, status: int, command: str, token: str | None,
                seconds: float) -> None:
        """One HTTP request answered (``command``: its one command name, "batch" or "none")."""

    def commands(self, door: str, names: list[str]) -> None:
        """Commands a request ran, by their names in the command table."""

    def in_flight(self, delta: int) -> None:
        """Requests being handled now."""

    def redis_call(self, backend: str, commands: int, seconds: float) -> None:
        """One round trip to Redis: ``commands`` written, their replies read."""

    def queued(self, backend: str, delta: int) -> None:
        """Commands written to Redis whose replies have not been read yet."""

    def pool_wait(self, backend: str, seconds: float) -> None:
        """A request waited for a reserved connection (all were in use)."""

    def backend_event(self, node: str, event: str) -> None:
        """At Redis node ``node`` (host:port): "reconnect", "redirect" (it answered MOVED
        or ASK) or "failover" (Sentinel made it the primary)."""

    def rate_limited(self, reason: str) -> None:
        """A request refused with 429: "concurrency", "rate", "reply_rate", "body_rate",
        "redis_time", "reserved", "bodies_held"."""

    def token_reload(self, source: str) -> None:
        """Tokens read again: "file" (the tokens file changed) or "redis" (a cache miss)."""

    def streams(self, kind: str, delta: int) -> None:
        """Streams (SSE, WebSocket) open now."""

    def audit(self, outcome: str, count: int = 1) -> None:
        """Audit entries "written" or "dropped" (the queue was full or the store failed)."""


sink: Sink = Sink()


def install(new: Sink) -> None:
    """Make ``new`` the process's sink (the gateway does so when metrics are on)."""
    global sink
    sink = new


def reset() -> None:
    """Back to the no-op sink (a gateway that closes; tests)."""
    install(Sink())


class _StreamsOpen:
    """``streams_open.inc(kind)`` / ``.dec(kind)``: a gauge the streaming code can call."""

    def inc(self, kind: str = "sse") -> None:
        sink.streams(kind, 1)

    def dec(self, kind: str = "sse") -> None:
        sink.streams(kind, -1)


streams_open = _StreamsOpen()
