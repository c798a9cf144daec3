"""Tracing and the audit file, driven in-process through the ASGI app on a real Redis."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from redis_gateway import settings as settings_mod
from redis_gateway.app import Gateway
from redis_gateway.auth import TokenRecord, hash_token, new_token
from redis_gateway.observe import metrics
from redis_gateway.observe.audit import AuditEntry, AuditWriter, FileAuditStore
from redis_gateway.observe.observer import Observer
from redis_gateway.observe.tracing import Tracer, provider

from support import RedisServer


async def test_spans_request_policy_redis(redis_server: RedisServer) -> None:
    token = new_token()
    settings = settings_mod.load(env={}, overrides={"redis": redis_server.url})
    gateway = Gateway(settings, extra_tokens=[TokenRecord("tracy", hash_token(token),
                                                          "read-write")])
    exporter = InMemorySpanExporter()
    tracer = Tracer(provider(None, exporter))
    gateway.observer = Observer(settings, gateway.backends, tracer=tracer)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway),
                                     base_url="http://gw") as client:
            r = await client.post("/", json=["SET", "trace:k", "v"],
                                  headers={"Authorization": f"Bearer {token}",
                                           "X-Request-Id": "trace-1"})
            assert r.status_code == 200 and r.headers["x-request-id"] == "trace-1"
        tracer.provider.force_flush()
        spans = {s.name: s for s in exporter.get_finished_spans()}
        request = spans["redis-gateway request"]
        policy, redis = spans["redis-gateway policy"], spans["redis-gateway redis"]
        assert policy.parent.span_id == request.context.span_id
        assert redis.parent.span_id == request.context.span_id
        assert request.start_time <= policy.start_time <= policy.end_time <= redis.start_time
        assert redis.end_time <= request.end_time
        assert request.attributes["http.response.status_code"] == 200
        assert request.attributes["redis_gateway.token"] == "tracy"
        assert request.attributes["redis_gateway.request_id"] == "trace-1"
        assert redis.attributes["db.operation.name"] == "set"
        assert "v" not in json.dumps(dict(redis.attributes))  # names, never values
    finally:
        await gateway.close()


async def test_audit_file(redis_server: RedisServer, tmp_path: Path) -> None:
    token = new_token()
    path = tmp_path / "audit.jsonl"
    settings = settings_mod.load(env={}, overrides={
        "redis": redis_server.url, "audit": "file", "audit_file": str(path)})
    gateway = Gateway(settings, extra_tokens=[TokenRecord("alice", hash_token(token),
                                                          "read-write")])
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway),
                                     base_url="http://gw") as client:
            await client.post("/multi-exec", headers=headers,
                              json=[["SET", "af:1", "secret"], ["MSET", "af:2", "x", "af:3", "y"],
                                    ["GET", "af:1"]])
            await client.post("/pipeline", headers=headers,
                              json=[["DEL", "af:1"], ["LPUSH", "af:2", "z"]])
    finally:
        await gateway.close()  # writes what is queued
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(e["command"], e["keys"], e["outcome"]) for e in entries] == [
        ("set", ["af:1"], "ok"), ("mset", ["af:2", "af:3"], "ok"),
        ("del", ["af:1"], "ok"), ("lpush", ["af:2"], "WRONGTYPE")]
    assert {e["token"] for e in entries} == {"alice"}
    assert "secret" not in path.read_text()


class _Counting(metrics.Sink):
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def audit(self, outcome: str, count: int = 1) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + count


async def test_audit_queue_overflow_is_counted(tmp_path: Path, caplog: object) -> None:
    sink = _Counting()
    metrics.install(sink)
    try:
        writer = AuditWriter(FileAuditStore(str(tmp_path / "a.jsonl")), queue_size=3)
        for i in range(10):  # in one go: the writer task has not run yet
            writer.add(AuditEntry(0.0, f"r{i}", "t", "default", "del", [f"k{i}"], "ok"))
        await writer.close()
    finally:
        metrics.reset()
    assert sink.counts == {"dropped": 7, "written": 3}
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 3
    logged = [r for r in caplog.records if "audit queue is full" in r.getMessage()]  # type: ignore[attr-defined]
    assert len(logged) == 1  # once, not per entry
