"""What the gateway observes of each request, built from settings.

``Gateway.handle`` calls ``begin`` when a request arrives and ``end`` with its
response; the executor's Redis calls pass through ``watch`` (``context.watch``). Each
part is on only when its setting is: the access log (``access_log``), metrics
(``metrics_token`` or ``metrics_listen``), the audit trail (``audit``), tracing
(``otel_endpoint``). Request ids are always on: one is echoed in every response.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..auth import hash_token
from ..errors import NotFound, Unauthorized
from ..http import Request, Response, bearer_token
from . import metrics
from .audit import AuditEntry, AuditWriter, audited, key_names, outcome
from .context import RequestIds, RequestRecord, current
from .logs import ACCESS_LOGGER, access_fields

if TYPE_CHECKING:
    from ..auth import Principal
    from ..backends import Backend
    from ..checks import Prepared
    from ..settings import LimitSettings, Settings
    from .prometheus import PrometheusSink
    from .tracing import Tracer

access_log = logging.getLogger(ACCESS_LOGGER)

REQUEST_ID = b"x-request-id"
_METHODS = frozenset({"GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE", "PATCH"})


def door_of(path: str) -> str:
    """The front door a path (below the base path) belongs to: a metric label."""
    if path == "/graphql":
        return "graphql"
    if path in ("/healthz", "/readyz"):
        return "health"
    if path == "/metrics":
        return "metrics"
    if path.startswith("/console") or path == "/openapi.json":
        return "console"
    return "rest"


def otel_endpoint(settings: Settings) -> str:
    return settings.otel_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")


class Observer:
    def __init__(self, settings: Settings, backends: Mapping[str, Backend], *,
                 tracer: Tracer | None = None) -> None:
        self._settings = settings
        self._backends = backends
        self.ids = RequestIds()
        self._access = settings.access_log
        self.sink: PrometheusSink | None = None
        if settings.metrics_token or settings.metrics_listen:
            from .prometheus import PrometheusSink

            nodes = [n.label for b in backends.values() for n in b.nodes()]
            self.sink = PrometheusSink(backends, nodes,
                                       token_labels=settings.metrics_token_labels,
                                       connections=self._connections)
            metrics.install(self.sink)
        self.audit: AuditWriter | None = None
        if settings.audit != "off":
            from .audit import AuditStore, FileAuditStore, RedisAuditStore

            store: AuditStore = (RedisAuditStore(backends["default"], settings.audit_max_entries)
                                 if settings.audit == "redis" else
                                 FileAuditStore(settings.audit_file))
            self.audit = AuditWriter(store, settings.audit_queue)
        if tracer is None and otel_endpoint(settings):
            from .tracing import Tracer, provider

            tracer = Tracer(provider(otel_endpoint(settings)))
        self.tracer = tracer
        # Anything that needs each Redis call timed or its commands' outcomes.
        self._watching = bool(self.sink or self.audit or self.tracer)
        # Anything that needs to know what a request did (its record reachable from the
        # executor through the context variable); off, a request costs its id only.
        self._recording = self._watching or self._access
        self._audited: dict[str, bool] = {}
        self._listener: asyncio.Server | None = None

    # a request ------------------------------------------------------------------
    def begin(self, request: Request) -> RequestRecord:
        record = RequestRecord(self, self.ids.take(request.header(REQUEST_ID)),
                               time.perf_counter())
        if not self._recording:  # the request id is all there is to do (the default)
            return record
        record.reset = current.set(record)
        if self.sink is not None:
            self.sink.in_flight(1)
        if self.tracer is not None:
            record.span = self.tracer.request(_method(request.method), time.time_ns())
        return record

    def end(self, record: RequestRecord, request: Request, path: str,
            response: Response) -> None:
        response.headers.append((REQUEST_ID, record.request_id))
        if not self._recording:
            return
        current.reset(record.reset)
        seconds = time.perf_counter() - record.start
        door = door_of(path)
        commands = record.commands
        status = response.status
        if self.sink is not None:
            self.sink.in_flight(-1)
            command = commands[0] if len(commands) == 1 else "batch" if commands else "none"
            self.sink.request(door, status, command, record.token, seconds)
            if commands:
                self.sink.commands(door, commands)
        if self._access:
            access_log.info("request", extra={"fields": access_fields(
                record.request_id, record.token, door, _method(request.method), commands,
                status, seconds, len(request.body), len(response.body))})
        if record.span is not None:
            span = record.span
            span.set_attribute("http.response.status_code", status)
            span.set_attribute("redis_gateway.door", door)
            span.set_attribute("redis_gateway.request_id", record.request_id.decode())
            if record.token is not None:
                span.set_attribute("redis_gateway.token", record.token)
            if status >= 500:
                from opentelemetry.trace import Status, StatusCode

                span.set_status(Status(StatusCode.ERROR))
            span.end()

    # a Redis call ---------------------------------------------------------------
    def watch(self, record: RequestRecord, call: Awaitable[list[Any]], principal: Principal,
              prepared: Sequence[Prepared]) -> Awaitable[list[Any]]:
        record.token = principal.name
        record.commands += [p.info.name for p in prepared]
        if not self._watching:
            return call
        return self._watched(record, call, principal, prepared)

    async def _watched(self, record: RequestRecord, call: Awaitable[list[Any]],
                       principal: Principal, prepared: Sequence[Prepared]) -> list[Any]:
        backend = principal.backend
        count = len(prepared)
        span = None
        if self.tracer is not None and record.span is not None:
            now_ns = time.time_ns()
            policy = self.tracer.child(record.span, "redis-gateway policy",
                                       record.span.start_time)
            policy.end(now_ns)
            span = self.tracer.child(record.span, "redis-gateway redis", now_ns)
            span.set_attribute("db.system.name", "redis")
            span.set_attribute("db.operation.name", " ".join(p.info.name for p in prepared))
            span.set_attribute("redis_gateway.backend", backend)
        sink = self.sink
        if sink is not None:
            sink.queued(backend, count)
        started = time.perf_counter()
        replies: list[Any] | None = None
        failure: BaseException | None = None
        try:
            replies = await call
            return replies
        except BaseException as exc:
            failure = exc
            raise
        finally:
            if sink is not None:
                sink.queued(backend, -count)
                sink.redis_call(backend, count, time.perf_counter() - started)
            if span is not None:
                if failure is not None:
                    span.record_exception(failure)
                span.end()
            if self.audit is not None:
                self._audit(record, principal, prepared, replies, failure)

    def _audit(self, record: RequestRecord, principal: Principal,
               prepared: Sequence[Prepared], replies: list[Any] | None,
               failure: BaseException | None) -> None:
        assert self.audit is not None
        results = _results(prepared, replies, failure)
        when = time.time()
        for p, result in zip(prepared, results, strict=True):
            name = p.info.name
            wanted = self._audited.get(name)
            if wanted is None:
                wanted = self._audited[name] = audited(p.info)
            if wanted:
                self.audit.add(AuditEntry(when, record.request_id.decode(), principal.name,
                                          principal.backend, name,
                                          key_names(p.info, p.argv), outcome(result)))

    # /metrics -------------------------------------------------------------------
    def metrics_response(self, request: Request) -> Response:
        """``GET /metrics`` on the main port: only with ``metrics_token``, else 404."""
        expected = self._settings.metrics_token
        if self.sink is None or not expected:
            raise NotFound("no such path (metrics are served with metrics_token set, or on "
                           "metrics_listen)")
        token = bearer_token(request)
        if token is None or not hmac.compare_digest(hash_token(token), expected):
            raise Unauthorized("/metrics needs the metrics token (metrics_token): "
                               "'Authorization: Bearer <token>'")
        return self.exposition()

    def exposition(self) -> Response:
        from .prometheus import CONTENT_TYPE

        assert self.sink is not None
        return Response(200, self.sink.render(), [(b"content-type", CONTENT_TYPE)])

    def _connections(self) -> Iterator[tuple[str, str, str, int]]:
        for name, backend in self._backends.items():
            for node in backend.nodes():
                for rule_set, shared, reserved in node.connection_counts():
                    yield name, "shared", rule_set, shared
                    yield name, "reserved", rule_set, reserved

    async def start(self, limits: LimitSettings) -> None:
        """Open the metrics address (``metrics_listen``), if one is set."""
        address = self._settings.metrics_listen
        if address and self.sink is not None and self._listener is None:
            from .listener import listen

            self._listener = await listen(self, address, limits)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self.audit is not None:
            await self.audit.close()
        if self.tracer is not None:
            self.tracer.close()
        if self.sink is not None and metrics.sink is self.sink:
            metrics.reset()


def _method(method: str) -> str:
    return method if method in _METHODS else "other"


def _results(prepared: Sequence[Prepared], replies: list[Any] | None,
             failure: BaseException | None) -> list[Any]:
    """Each command's reply (or what stopped it), from a call's replies."""
    if replies is None:
        return [failure] * len(prepared)
    if len(replies) == len(prepared):
        return replies
    # A transaction: MULTI, QUEUED..., EXEC's reply (a list, or why it was discarded).
    executed = replies[-1] if replies else None
    if isinstance(executed, list) and len(executed) == len(prepared):
        return executed
    return [executed if executed is not None else failure] * len(prepared)
