"""The Prometheus sink: the gateway's events as metrics, and their exposition.

Imported only when metrics are on. One process: the metrics live in this process's
registry. Several (``workers > 1``): ``prometheus_client``'s multi-process mode, where
every process writes its values to files in ``PROMETHEUS_MULTIPROC_DIR`` and a scrape
of any process adds them up; the supervisor gives each run a fresh directory
(``prepare_multiprocess_dir``) before it starts the workers, and calls
``worker_exited(pid)`` when one dies so its live gauges stop counting.

The label sets are bounded: front doors and statuses are a handful, command names come
from the server's command table (a refused, unknown command is never named), token
names are configuration and are capped (``metrics_token_labels``; past it "other").
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .metrics import Sink

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST.encode()

# Seconds. A GET answers in well under a millisecond here; the top buckets catch
# blocking commands and timeouts (limits.command_timeout defaults to 10 s).
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)
REDIS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                 0.25, 1.0, 5.0)

DOORS = ("rest", "graphql", "health", "console", "metrics", "other")
RATE_LIMIT_REASONS = ("concurrency", "rate", "reply_rate", "body_rate", "redis_time",
                      "reserved", "bodies_held")
BACKEND_EVENTS = ("reconnect", "redirect", "failover")
STREAM_KINDS = ("sse", "websocket")


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def prepare_multiprocess_dir(path: str | os.PathLike[str]) -> Path:
    """For a supervisor, before it starts workers: an empty directory for this run's
    metric files, named in the environment the workers inherit.

    Files of an earlier run would be added to this one's counts: the directory is emptied.
    """
    directory = Path(path)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, mode=0o700)
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory


def worker_exited(pid: int) -> None:
    """For a supervisor: a worker died; its live gauges (in flight, queued) stop counting."""
    from prometheus_client import multiprocess as mp

    if multiprocess():
        mp.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class PrometheusSink(Sink):
    def __init__(self, backends: Iterable[str], nodes: Iterable[str] = (), *,
                 token_labels: int = 0,
                 connections: Callable[[], Iterator[tuple[str, str, str, int]]] | None = None
                 ) -> None:
        """``connections()`` yields (backend, kind, rule set, count) at each scrape."""
        # With multi-process mode, values go to files whatever the registry; the
        # registry is this process's view otherwise. A registry per sink: several
        # gateways in one process (tests) do not collide.
        # The *_created series double the exposition and nothing here graphs them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._requests = Counter("redis_gateway_requests", "HTTP requests answered",
                                 ["door", "status", "command"], registry=r)
        self._commands = Counter("redis_gateway_commands", "Redis commands run, by name",
                                 ["door", "command"], registry=r)
        self._token_limit = token_labels
        self._token_names: set[str] = set()
        self._token_requests = Counter(
            "redis_gateway_token_requests", "HTTP requests by token name (names capped by "
            "metrics_token_labels, then 'other')", ["token", "status"], registry=r,
        ) if token_labels else None
        self._duration = Histogram("redis_gateway_request_duration_seconds",
                                   "Time from a request's arrival to its response",
                                   ["door"], buckets=REQUEST_BUCKETS, registry=r)
        self._redis = Histogram("redis_gateway_redis_roundtrip_seconds",
                                "Time from writing a request's commands to Redis to reading "
                                "their replies", ["backend"], buckets=REDIS_BUCKETS, registry=r)
        # In flight and queued change twice per request: plain integers, read at scrape
        # time (a Gauge's locked update costs ~1 µs each; this, ~50 ns).
        self.requests_in_flight = 0
        self.commands_queued: dict[str, int] = {}
        self._pool_wait = Histogram("redis_gateway_pool_wait_seconds",
                                    "Waits for a reserved connection (transactions, blocking "
                                    "commands) when all were in use", ["backend"],
                                    buckets=REQUEST_BUCKETS, registry=r)
        self._events = Counter("redis_gateway_backend_events",
                               "Reconnects, cluster redirects (MOVED/ASK) and Sentinel "
                               "failovers, by the Redis node (host:port) concerned",
                               ["node", "event"], registry=r)
        self._limited = Counter("redis_gateway_rate_limited",
                                "Requests refused with 429, by the limit they passed",
                                ["reason"], registry=r)
        self._reloads = Counter("redis_gateway_token_reloads",
                                "Token records read again: the tokens file changed, or a "
                                "token was looked up in Redis", ["source"], registry=r)
        self._streams = Gauge("redis_gateway_streams_open", "Streams (SSE, WebSocket) open",
                              ["kind"], registry=r, multiprocess_mode="livesum")
        self._audit = Counter("redis_gateway_audit_entries",
                              "Audit entries written, or dropped (queue full, store failing)",
                              ["outcome"], registry=r)
        # Every fixed label value exists from the start: a rate() over a counter that
        # appears only at its first event misses that event, and alerts see a series.
        for backend in backends:
            self.commands_queued[backend] = 0
            self._redis.labels(backend)
            self._pool_wait.labels(backend)
        for node in nodes:  # those known at the start; others appear at their first event
            for event in BACKEND_EVENTS:
                self._events.labels(node, event)
        for door in DOORS:
            self._duration.labels(door)
        for reason in RATE_LIMIT_REASONS:
            self._limited.labels(reason)
        for source in ("file", "redis"):
            self._reloads.labels(source)
        for kind in STREAM_KINDS:
            self._streams.labels(kind)
        for outcome in ("written", "dropped"):
            self._audit.labels(outcome)
        # labels() validates and locks on every call: the hot path keeps the children.
        self._children: dict[tuple[Any, ...], Any] = {}
        self._connections = connections
        r.register(_Live(self))
        if connections is not None:
            r.register(_Connections(connections))

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            if len(self._children) > 100_000:  # bounded label sets; a guard all the same
                self._children.clear()
            child = self._children[key] = metric.labels(*labels)
        return child

    # events -----------------------------------------------------------------------
    def request(self, door: str, status: int, command: str, token: str | None,
                seconds: float) -> None:
        self._child(self._requests, door, _STATUS.get(status) or str(status), command).inc()
        self._child(self._duration, door).observe(seconds)
        if self._token_requests is not None and token is not None:
            if token not in self._token_names:
                if len(self._token_names) >= self._token_limit:
                    token = "other"
                else:
                    self._token_names.add(token)
            self._child(self._token_requests, token, _STATUS.get(status) or str(status)).inc()

    def commands(self, door: str, names: list[str]) -> None:
        if len(names) == 1:
            self._child(self._commands, door, names[0]).inc()
            return
        counts: dict[str, int] = {}
        for name in names:
            counts[name] = counts.get(name, 0) + 1
        for name, count in counts.items():
            self._child(self._commands, door, name).inc(count)

    def in_flight(self, delta: int) -> None:
        self.requests_in_flight += delta

    def redis_call(self, backend: str, commands: int, seconds: float) -> None:
        self._child(self._redis, backend).observe(seconds)

    def queued(self, backend: str, delta: int) -> None:
        self.commands_queued[backend] = self.commands_queued.get(backend, 0) + delta

    def pool_wait(self, backend: str, seconds: float) -> None:
        self._child(self._pool_wait, backend).observe(seconds)

    def backend_event(self, node: str, event: str) -> None:
        self._child(self._events, node, event).inc()

    def rate_limited(self, reason: str) -> None:
        self._child(self._limited, reason).inc()

    def token_reload(self, source: str) -> None:
        self._child(self._reloads, source).inc()

    def streams(self, kind: str, delta: int) -> None:
        self._child(self._streams, kind).inc(delta)

    def audit(self, outcome: str, count: int = 1) -> None:
        self._child(self._audit, outcome).inc(count)

    # exposition -------------------------------------------------------------------
    def render(self) -> bytes:
        """The text exposition: this process's metrics, or every worker's added up."""
        if not multiprocess():
            return generate_latest(self.registry)
        from prometheus_client import multiprocess as mp

        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(_Live(self))
        if self._connections is not None:
            registry.register(_Connections(self._connections))
        return generate_latest(registry)


class _Live(Collector):
    """Requests in flight and commands queued, as this process counts them now."""

    def __init__(self, sink: PrometheusSink) -> None:
        self._sink = sink

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily("redis_gateway_requests_in_flight",
                                "Requests being handled now (this process)",
                                value=self._sink.requests_in_flight)
        queued = GaugeMetricFamily("redis_gateway_commands_queued",
                                   "Commands sent to Redis and waiting for their replies "
                                   "(this process)", labels=["backend"])
        for backend, count in sorted(self._sink.commands_queued.items()):
            queued.add_metric([backend], count)
        yield queued


class _Connections(Collector):
    """Open connections to Redis, read from the backends at scrape time (no cost per
    request). With several workers this is the answering worker's own view."""

    def __init__(self, source: Callable[[], Iterator[tuple[str, str, str, int]]]) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "redis_gateway_connections", "Open connections to Redis (this process), by "
            "kind (shared, reserved) and rule set ('gateway' for its own)",
            labels=["backend", "kind", "rule_set"])
        totals: dict[tuple[str, str, str], int] = {}
        for backend, kind, rule_set, count in self._source():
            key = (backend, kind, rule_set)
            totals[key] = totals.get(key, 0) + count
        for labels, count in sorted(totals.items()):
            family.add_metric(list(labels), count)
        yield family


_STATUS: Mapping[int, str] = {code: str(code) for code in range(100, 600)}
