"""Observability end to end: a gateway under load, scraped, its logs and audit trail read.

One gateway process (``observed``) serves the module: metrics behind their token, JSON
access logs, the audit trail in Redis, and a token ("limited") with a small rate so that
some requests get 429. The scrape is parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from redis_gateway.auth import hash_token

from support import GatewayProcess, RedisServer, _wait, free_port

METRICS_TOKEN = "rgw_metrics_" + "m" * 24
SECRET = "s3cr3t-value-7f1e"  # a value that must never reach a log line

# Every metric the gateway exports (docs/operations.md lists them).
METRICS = [
    "redis_gateway_requests", "redis_gateway_commands", "redis_gateway_token_requests",
    "redis_gateway_request_duration_seconds", "redis_gateway_redis_roundtrip_seconds",
    "redis_gateway_requests_in_flight", "redis_gateway_commands_queued",
    "redis_gateway_connections", "redis_gateway_pool_wait_seconds",
    "redis_gateway_backend_events", "redis_gateway_rate_limited",
    "redis_gateway_token_reloads", "redis_gateway_streams_open",
    "redis_gateway_audit_entries",
]


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    redis = RedisServer().start()
    gw = GatewayProcess(redis.url, rules={"admin": "admin", "alice": "read-write",
                                          "ro": "read-only"},
                        config_extra=(f'metrics_token = "{hash_token(METRICS_TOKEN)}"\n'
                                      'metrics_token_labels = 2\naccess_log = true\n'
                                      'log_format = "json"\naudit = "redis"\n'))
    gw.tokens["limited"] = "rgw_limited_" + "l" * 24
    gw.config_extra += gw.token_table("limited", "read-write", gw.tokens["limited"],
                                      "rate = 2\nburst = 1")
    try:
        gw.start()
        gw.redis = redis  # type: ignore[attr-defined]
        yield gw
    finally:
        gw.stop()
        redis.close()


def scrape(gw: GatewayProcess, url: str | None = None) -> dict[str, list[object]]:
    r = httpx.get(url or gw.url + "/metrics",
                  headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(r.text)}


def value(samples: list[object], name: str, **labels: str) -> float:
    return sum(s.value for s in samples  # type: ignore[attr-defined]
               if s.name == name and all(s.labels.get(k) == v  # type: ignore[attr-defined]
                                         for k, v in labels.items()))


def load(gw: GatewayProcess) -> dict[str, int]:
    """A few hundred requests of several kinds; how many of each status were seen."""
    statuses: dict[int, int] = {}

    def count(r: httpx.Response) -> None:
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

    with gw.client("alice") as alice, gw.client("ro") as ro, gw.client("limited") as lim:
        for i in range(60):
            count(alice.post("/", json=["SET", f"obs:{i}", SECRET]))
            count(alice.get(f"/get/obs:{i}"))
        count(alice.post("/pipeline", json=[["INCR", "obs:n"]] * 50 + [["GET", "obs:1"]]))
        count(alice.post("/multi-exec", json=[["SET", "obs:t", SECRET], ["DEL", "obs:t"]]))
        for _ in range(20):
            count(alice.post("/", json=["NOSUCHCOMMAND", "x"]))  # 400
            count(alice.post("/", json=["LPUSH", "obs:1", "x"]))  # WRONGTYPE: 400
            count(ro.post("/", json=["SET", "obs:ro", SECRET]))  # 403
            count(httpx.get(gw.url + "/get/x", headers={"Authorization": "Bearer rgw_nope"}))
        for _ in range(20):
            count(lim.get("/get/obs:1"))  # 2 a second: most are 429
        for i in range(20):
            count(alice.post("/graphql", json={"query": f'{{ get(key: "obs:{i}") }}'}))
        count(alice.post("/", json=["DEL", "obs:0"]))
    return statuses


def test_scrape_under_load_shows_every_metric(observed: GatewayProcess) -> None:
    statuses = load(observed)
    assert statuses.get(429, 0) >= 10 and statuses.get(400, 0) >= 40
    # A lost connection: Redis drops the gateway's clients, the next request reconnects.
    redis: RedisServer = observed.redis  # type: ignore[attr-defined]
    redis.cli("CLIENT", "KILL", "TYPE", "normal")
    with observed.client("alice") as alice:
        _wait(lambda: alice.get("/get/obs:1").status_code == 200, 10, "a reconnect")
    families = scrape(observed)
    missing = [m for m in METRICS if m not in families]
    assert not missing, missing
    req = families["redis_gateway_requests"]
    total = value(req, "redis_gateway_requests_total")
    assert total >= sum(statuses.values())
    assert value(req, "redis_gateway_requests_total", door="rest", status="429",
                 command="none") >= 10
    assert value(req, "redis_gateway_requests_total", door="rest", status="200",
                 command="get") >= 60
    assert value(req, "redis_gateway_requests_total", door="rest", command="batch") == 2
    assert value(req, "redis_gateway_requests_total", door="graphql", status="200") == 20
    commands = families["redis_gateway_commands"]
    assert value(commands, "redis_gateway_commands_total", command="incr") == 50
    assert value(commands, "redis_gateway_commands_total", command="get", door="graphql") == 20
    # Only command-table names: the unknown command is never a label.
    names = {s.labels["command"] for s in commands}  # type: ignore[attr-defined]
    assert "nosuchcommand" not in names and "NOSUCHCOMMAND" not in names
    # Token names are capped at 2 (metrics_token_labels), then "other".
    tokens = {s.labels["token"] for s in families["redis_gateway_token_requests"]}  # type: ignore[attr-defined]
    assert len(tokens - {"other"}) == 2 and "other" in tokens
    duration = families["redis_gateway_request_duration_seconds"]
    assert value(duration, "redis_gateway_request_duration_seconds_count", door="rest") >= 200
    assert 0 < value(duration, "redis_gateway_request_duration_seconds_sum", door="rest") < 60
    redis_rt = families["redis_gateway_redis_roundtrip_seconds"]
    assert value(redis_rt, "redis_gateway_redis_roundtrip_seconds_count",
                 backend="default") >= 150
    # The scrape itself is the one request in flight; nothing waits on Redis now.
    assert value(families["redis_gateway_requests_in_flight"],
                 "redis_gateway_requests_in_flight") == 1
    assert value(families["redis_gateway_commands_queued"], "redis_gateway_commands_queued") == 0
    conns = families["redis_gateway_connections"]
    # Alice's rule set has its own (the gateway's own reconnects at its next command).
    assert value(conns, "redis_gateway_connections", kind="shared") >= 1
    assert {s.labels["rule_set"] for s in conns} >= {"gateway"}  # type: ignore[attr-defined]
    assert value(conns, "redis_gateway_connections", kind="reserved") >= 1  # the multi-exec
    assert value(families["redis_gateway_backend_events"], "redis_gateway_backend_events_total",
                 event="reconnect") >= 1
    limited = families["redis_gateway_rate_limited"]
    assert value(limited, "redis_gateway_rate_limited_total", reason="rate") == \
        statuses[429]
    assert value(limited, "redis_gateway_rate_limited_total", reason="concurrency") == 0
    assert value(families["redis_gateway_streams_open"], "redis_gateway_streams_open") == 0
    # Audit entries are written off the request path: wait until they are.
    _wait(lambda: value(scrape(observed)["redis_gateway_audit_entries"],
                        "redis_gateway_audit_entries_total", outcome="written") >= 64,
          10, "the audit entries to be written")


def test_access_log_line_per_request_and_no_secrets(observed: GatewayProcess) -> None:
    with observed.client("alice") as alice:
        ids = [alice.post("/", json=["SET", "obs:log", SECRET]).headers["x-request-id"],
               alice.get(f"/set/obs:path/{SECRET}").headers["x-request-id"],
               alice.get(f"/get/obs:log?_token={observed.tokens['alice']}")
               .headers["x-request-id"]]
    lines = observed.log.splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    access = {r["request_id"]: r for r in records if r["logger"] == "redis_gateway.access"}
    for rid in ids:
        line = access[rid]
        assert line["token"] == "alice" and line["door"] == "rest" and line["status"] == 200
        assert line["duration_ms"] > 0 and line["bytes_out"] > 0
        assert {"time", "commands", "method", "bytes_in"} <= set(line)
    assert access[ids[1]]["commands"] == ["set"]
    secrets = [SECRET, METRICS_TOKEN, *observed.tokens.values()]
    for line in lines:
        for secret in secrets:
            assert secret not in line, line


def test_request_id_echoed_on_every_front_door(observed: GatewayProcess) -> None:
    url = observed.url
    for r in (httpx.get(url + "/healthz"), httpx.get(url + "/get/x"),  # 401
              httpx.post(url + "/graphql", json={"query": "{ get(key: \"a\") }"}),
              httpx.request("DELETE", url + "/x"), httpx.get(url + "/console/")):
        assert len(r.headers["x-request-id"]) >= 8
    assert httpx.get(url + "/healthz", headers={"x-request-id": "trace-42.a:b"}) \
        .headers["x-request-id"] == "trace-42.a:b"
    for bad in ("x" * 129, "a b", "<script>", "é"):
        got = httpx.get(url + "/healthz", headers={"x-request-id": bad.encode()}) \
            .headers["x-request-id"]
        assert got != bad and len(got) <= 128


def test_audit_records_a_del_with_the_token_name(observed: GatewayProcess) -> None:
    with observed.client("alice") as alice:
        assert alice.post("/", json=["SET", "audit:k", SECRET]).status_code == 200
        rid = alice.post("/", json=["DEL", "audit:k"]).headers["x-request-id"]
        alice.get("/get/audit:k")  # a read: not audited
    config = observed.dir / "gateway.toml"

    def entries() -> list[dict[str, object]]:
        out = subprocess.run([sys.executable, "-m", "redis_gateway", "audit", "--config",
                              str(config), "--key", "audit:*", "--since", "1h"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        return [json.loads(line) for line in out.splitlines()]

    _wait(lambda: any(e["command"] == "del" for e in entries()), 10, "the DEL's audit entry")
    found = entries()
    deleted = next(e for e in found if e["command"] == "del")
    assert deleted["token"] == "alice" and deleted["keys"] == ["audit:k"]
    assert deleted["outcome"] == "ok" and deleted["request_id"] == rid
    assert [e["command"] for e in found] == ["set", "del"]  # the GET is not there
    assert SECRET not in json.dumps(found)
    # Tokens cannot read or forge the trail: it is under the gateway's reserved prefix
    # (as everything, it is open to an unrestricted token, which could FLUSHALL anyway).
    with observed.client("alice") as alice:
        assert alice.post("/", json=["XLEN", "redis-gateway:audit"]).status_code == 403
        assert alice.post("/", json=["XADD", "redis-gateway:audit", "*", "token", "bob"]
                          ).status_code == 403


def test_metrics_token_required(observed: GatewayProcess) -> None:
    assert httpx.get(observed.url + "/metrics").status_code == 401
    assert httpx.get(observed.url + "/metrics", headers={
        "Authorization": f"Bearer {observed.tokens['admin']}"}).status_code == 401


def test_metrics_closed_by_default(gateway: GatewayProcess) -> None:
    r = httpx.get(gateway.url + "/metrics", headers={
        "Authorization": f"Bearer {gateway.tokens['admin']}"})
    assert r.status_code == 404 and "metrics_token" in r.json()["error"]


def test_metrics_listen_and_multiprocess(redis_server: RedisServer, tmp_path: object) -> None:
    """Two gateway processes sharing a metrics directory (as workers do): a scrape of
    either's own metrics address counts the requests both served."""
    directory = os.path.join(str(tmp_path), "metrics")
    os.mkdir(directory)
    env = {"PROMETHEUS_MULTIPROC_DIR": directory}
    ports = [free_port(), free_port()]
    gateways = [GatewayProcess(redis_server.url, env=env,
                               config_extra=f'metrics_listen = "127.0.0.1:{p}"\n')
                for p in ports]
    try:
        for gw in gateways:
            gw.start()
        for gw in gateways:
            with gw.client("admin") as admin:
                for _ in range(5):
                    assert admin.get("/get/mp").status_code == 200
        for port in ports:
            r = httpx.get(f"http://127.0.0.1:{port}/metrics")
            families = {f.name: f.samples for f in text_string_to_metric_families(r.text)}
            assert value(families["redis_gateway_requests"], "redis_gateway_requests_total",
                         command="get") == 10
        assert httpx.get(f"http://127.0.0.1:{ports[0]}/other").status_code == 404
        # Not on the main port: it has no metrics token.
        assert httpx.get(gateways[0].url + "/metrics").status_code == 404
    finally:
        for gw in gateways:
            gw.stop()


def test_nothing_observed_imports_nothing() -> None:
    code = ("import sys, redis_gateway.app, redis_gateway.cli, redis_gateway.aws_lambda;"
            "print([m for m in sys.modules if m.startswith(('opentelemetry', 'prometheus'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]"


def test_settings_are_checked() -> None:
    from redis_gateway.settings import SettingsError, load

    for bad, message in (({"metrics_token": "rgw_plain"}, "metrics_token"),
                         ({"metrics_listen": "9108"}, "metrics_listen"),
                         ({"audit": "yes"}, "audit"), ({"audit": "file"}, "audit_file"),
                         ({"log_format": "xml"}, "log_format"),
                         ({"log_levels": {"redis_gateway": "loud"}}, "log_levels")):
        with pytest.raises(SettingsError, match=message):
            load(env={}, overrides=bad)


def test_audit_cli_when_off(tmp_path: object) -> None:
    r = subprocess.run([sys.executable, "-m", "redis_gateway", "audit"], capture_output=True,
                       text=True, timeout=30, env={**os.environ, "REDIS_GATEWAY_REDIS":
                                                   "redis://127.0.0.1:1/0"})
    assert r.returncode == 1 and "audit trail is off" in r.stderr



def test_dashboard_and_alerts_use_only_exported_metrics(observed: GatewayProcess) -> None:
    import re
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parent.parent / "deploy" / "observability"
    rules = yaml.safe_load((root / "alerts.yml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert all(rule["alert"] and rule["labels"]["severity"]
               for group in rules["groups"] for rule in group["rules"])
    dashboard = json.loads((root / "grafana-dashboard.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"redis_gateway_[a-z_]+", e)}
    with observed.client("alice") as alice:  # at least one of each kind of series
        alice.get("/get/x")
    exported = {s.name for samples in scrape(observed).values() for s in samples}  # type: ignore[attr-defined]
    assert used and used <= exported, used - exported
