"""OpenTelemetry spans: the request, then its policy checks, then its Redis round trip.

Imported only when ``otel_endpoint`` (or ``OTEL_EXPORTER_OTLP_ENDPOINT``) is set; needs
the ``[otel]`` extra. Spans go to the collector over OTLP/HTTP in batches, off the
request's path. Span attributes hold names (token, commands, backend), never values.

- ``redis-gateway request`` (server span): ``http.request.method``,
  ``http.response.status_code``, ``redis_gateway.door``, ``redis_gateway.request_id``,
  ``redis_gateway.token``.
- ``redis-gateway policy``: from the request's arrival to its first Redis call (reading
  the request, the token, the checks).
- ``redis-gateway redis``: the round trip; ``db.system.name`` = redis,
  ``db.operation.name`` = the command names, ``redis_gateway.backend``.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter


def provider(endpoint: str | None, exporter: SpanExporter | None = None) -> TracerProvider:
    """A provider exporting to ``endpoint`` (OTLP/HTTP), or to ``exporter`` (tests)."""
    made = TracerProvider(resource=Resource.create({"service.name": "redis-gateway"}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        traces = endpoint.rstrip("/") + "/v1/traces" if endpoint else None
        exporter = OTLPSpanExporter(endpoint=traces)
    made.add_span_processor(BatchSpanProcessor(exporter))
    return made


class Tracer:
    def __init__(self, tracer_provider: TracerProvider) -> None:
        self.provider = tracer_provider
        self._tracer = tracer_provider.get_tracer("redis_gateway")

    def request(self, method: str, start_ns: int) -> Any:
        return self._tracer.start_span("redis-gateway request", kind=trace.SpanKind.SERVER,
                                       start_time=start_ns,
                                       attributes={"http.request.method": method})

    def child(self, parent: Any, name: str, start_ns: int) -> Any:
        return self._tracer.start_span(name, context=trace.set_span_in_context(parent),
                                       start_time=start_ns)

    def close(self) -> None:
        self.provider.shutdown()
