"""Benchmark: the gateway in front of a Redis Cluster of 1 and 3 shards, against the same
gateway in front of one redis-server, in the same run.

    /work/venv/bin/python bench/topology.py [--duration 5] [--warmup 1] [--connections 50]

Setups, each a fresh set of servers on free loopback ports (never 6379) and one gateway
process (uvicorn, uvloop, httptools; log_level warning):

- standalone: one redis-server, ``topology = "standalone"``: the baseline;
- cluster-1: a Redis Cluster whose one primary holds all 16384 slots;
- cluster-3: a Redis Cluster of three primaries (no replicas: this measures routing and
  throughput, not failover).

Workloads (wrk, through bench/run.py's runner, so the numbers are measured the same way):

- single GET: ``POST / ["GET","bench:<random 0..9999>"]``, keys over every shard;
- pipeline, one slot: ``POST /pipeline`` of 100 GETs of ``{bench}:<n>``: one node;
- pipeline, spread: ``POST /pipeline`` of 100 GETs over every shard: split by node, sent
  to all at once, put back in order.

Prints req/s, commands/s and p99 for each, with the ratio to the standalone baseline, and
writes bench/results/topology-<timestamp>.json. On a 2-core machine the gateway process,
wrk and the Redis servers share the cores: the ratios say what routing costs and what
spreading a pipeline buys, not how a cluster scales on its own hardware.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from run import (
    BENCH_DIR,
    RESULTS_DIR,
    BenchError,
    Service,
    Services,
    Workload,
    expect,
    free_port,
    http_json,
    measure,
    redis_call,
    wait_until,
)

from redis_gateway.auth import hash_token, new_token
from redis_gateway.backends.slots import SLOTS

KEYS = 10_000
PIPELINE = 100
SETUPS = {"standalone": 0, "cluster-1": 1, "cluster-3": 3}  # name -> cluster primaries


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=5, help="seconds measured per workload")
    p.add_argument("--warmup", type=int, default=1, help="seconds of load before each")
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--wrk-threads", type=int, default=2)
    p.add_argument("--setups", default=",".join(SETUPS), help="comma-separated subset")
    args = p.parse_args(argv)
    missing = [tool for tool in ("redis-server", "wrk") if not shutil.which(tool)]
    if missing:
        print(f"bench: not found on PATH: {', '.join(missing)}", file=sys.stderr)
        return 2
    started_at = dt.datetime.now(dt.UTC)
    results: dict[str, dict[str, Any]] = {}
    print(f"bench: wrk -t{args.wrk_threads} -c{args.connections}, {args.warmup}s warm-up + "
          f"{args.duration}s per workload", flush=True)
    try:
        for name in args.setups.split(","):
            results[name] = run_setup(args, name, SETUPS[name])
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print_table(results)
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"topology-{started_at.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps({"started_at": started_at.isoformat(), "args": vars(args),
                               "cpus": os.cpu_count(), "results": results}, indent=2) + "\n")
    print(f"\nresults: {out.relative_to(BENCH_DIR.parent)}")
    return 0


def run_setup(args: argparse.Namespace, name: str, primaries: int) -> dict[str, Any]:
    print(f"\n{name}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"redis-gateway-topology-{name}-"))
    services = Services(tmp)
    try:
        ports: set[int] = set()
        nodes = start_redis(services, tmp, ports, max(primaries, 1), cluster=primaries > 0)
        if primaries:
            make_cluster(nodes)
        gateway, url, token = start_gateway(services, tmp, ports, nodes[0][1], primaries > 0)
        load_keys(url, token)
        auth = {"BENCH_TOKEN": token}
        one_slot = [["GET", f"{{bench}}:{i}"] for i in range(PIPELINE)]
        spread = [["GET", f"bench:{i * (KEYS // PIPELINE)}"] for i in range(PIPELINE)]
        expect("pipeline, one slot", http_json(url + "/pipeline", one_slot, token),
               [{"result": str(i)} for i in range(PIPELINE)])
        workloads = [
            Workload(f"{name}.get", "single GET", name, url + "/", "topology_request.lua",
                     {**auth, "BENCH_KEYS": str(KEYS)}),
            Workload(f"{name}.pipeline_one_slot", "pipeline, one slot", name,
                     url + "/pipeline", "topology_request.lua",
                     {**auth, "BENCH_BODY": json.dumps(one_slot)},
                     commands_per_request=PIPELINE),
            Workload(f"{name}.pipeline_spread", "pipeline, spread", name, url + "/pipeline",
                     "topology_request.lua", {**auth, "BENCH_BODY": json.dumps(spread)},
                     commands_per_request=PIPELINE),
        ]
        cpu_of: dict[str, Service] = {"gateway": gateway}
        cpu_of.update({f"redis{i}": service for i, (service, _, _) in enumerate(nodes)})
        out = {}
        for w in workloads:
            result = measure(args, w, cpu_of)
            result.pop("wrk_output", None)
            out[w.title] = result
            if gateway.proc.poll() is not None:
                raise BenchError(f"the gateway exited during {w.key}:\n{gateway.log_tail()}")
        return out
    finally:
        services.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def start_redis(services: Services, tmp: Path, ports: set[int], count: int,
                cluster: bool) -> list[tuple[Service, int, int]]:
    """(process, port, cluster bus port) for each server."""
    nodes = []
    for i in range(count):
        port, bus = free_port(ports), free_port(ports)
        workdir = tmp / f"redis{i}"
        workdir.mkdir()
        extra = ["--cluster-enabled", "yes", "--cluster-port", str(bus)] if cluster else []
        service = services.start(f"redis{i}", [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir), *extra])
        wait_until(service, lambda p=port: redis_call(p, "PING") == b"PONG", "PING")
        nodes.append((service, port, bus))
    return nodes


def make_cluster(nodes: list[tuple[Service, int, int]]) -> None:
    """Equal slot ranges, then MEET: redis-cli --cluster create wants 3 primaries or more."""
    share = SLOTS // len(nodes)
    for i, (_, port, _) in enumerate(nodes):
        last = SLOTS - 1 if i == len(nodes) - 1 else (i + 1) * share - 1
        redis_call(port, "CLUSTER", "ADDSLOTSRANGE", str(i * share), str(last))
    _, first, first_bus = nodes[0]
    for _, port, _ in nodes[1:]:
        redis_call(port, "CLUSTER", "MEET", "127.0.0.1", str(first), str(first_bus))
    deadline = time.monotonic() + 30
    while not all(b"cluster_state:ok" in redis_call(port, "CLUSTER", "INFO") and
                  len(redis_call(port, "CLUSTER", "SLOTS")) == len(nodes)
                  for _, port, _ in nodes):
        if time.monotonic() > deadline:
            raise BenchError("the cluster did not form within 30 s")
        time.sleep(0.1)


def start_gateway(services: Services, tmp: Path, ports: set[int], redis_port: int,
                  cluster: bool) -> tuple[Service, str, str]:
    port = free_port(ports)
    token = new_token()
    (tmp / "gateway.toml").write_text(
        f'redis = "redis://127.0.0.1:{redis_port}"\nhost = "127.0.0.1"\nport = {port}\n'
        f'log_level = "warning"\ntokens_file = "{tmp / "tokens.json"}"\n'
        + ('\n[backends.default]\ntopology = "cluster"\n' if cluster else "")
        + f'\n[[tokens]]\nname = "bench"\nhash = "{hash_token(token)}"\nrules = "admin"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_GATEWAY_")}
    gateway = services.start("gateway", [sys.executable, "-m", "redis_gateway", "serve",
                                         "--config", str(tmp / "gateway.toml")], env=env)
    url = f"http://127.0.0.1:{port}"
    wait_until(gateway, lambda: http_json(url + "/", ["PING"], token) == (200, {
        "result": "PONG"}), "POST / PING")
    return gateway, url, token


def load_keys(url: str, token: str) -> None:
    """bench:0..9999 and {bench}:0..99, through the gateway so each lands on its node."""
    names = [f"bench:{i}" for i in range(KEYS)] + [f"{{bench}}:{i}" for i in range(PIPELINE)]
    for start in range(0, len(names), 1000):
        batch = [["SET", n, n.rsplit(":", 1)[1]] for n in names[start:start + 1000]]
        expect("loading keys", http_json(url + "/pipeline", batch, token),
               [{"result": "OK"}] * len(batch))


def print_table(results: dict[str, dict[str, Any]]) -> None:
    base = results.get("standalone", {})
    print(f"\n{'workload':<20} {'setup':<11} {'req/s':>9} {'cmd/s':>10} {'p99 ms':>7} "
          f"{'vs standalone':>13} {'gw CPU µs/cmd':>13}")
    for title in ("single GET", "pipeline, one slot", "pipeline, spread"):
        for setup, runs in results.items():
            r = runs[title]
            ratio = (f"{r['commands_per_s'] / base[title]['commands_per_s']:.2f}x"
                     if title in base else "")
            failed = sum(r["errors"].values())
            print(f"{title:<20} {setup:<11} {r['requests_per_s']:>9,.0f} "
                  f"{r['commands_per_s']:>10,.0f} {r['latency_us']['p99'] / 1000:>7.1f} "
                  f"{ratio:>13} {r['cpu_us_per_command']['gateway']:>13.1f}"
                  + (f"  {failed} failed" if failed else ""))


if __name__ == "__main__":
    sys.exit(main())
