"""Observability: metrics, request ids and logs, the audit trail and tracing.

Nothing here imports ``prometheus_client`` or ``opentelemetry`` until a setting asks for
it, so a gateway (or a Lambda) that watches nothing pays neither their import time nor
their per-request cost.

- ``metrics``: the event sink every module reports to (a no-op until installed), and
  ``streams_open`` for the streaming front door.
- ``prometheus``: the Prometheus sink and the exposition (single or multi-process).
- ``context``: one ``RequestRecord`` per request, reachable from the executor.
- ``observer``: builds the above from settings; the gateway's hooks call it.
- ``logs``: JSON or text logs, levels per logger, the access log line.
- ``audit``: who wrote what, to a Redis Stream or a JSONL file, off the request path.
- ``tracing``: OpenTelemetry spans, only when an endpoint is configured.
"""
