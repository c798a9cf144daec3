"""Benchmark: the gateway at 1 and at 2 workers (``workers = N``), same run, same Redis.

    .venv/bin/python bench/workers.py [--workers 1,2] [--duration 10] [--warmup 2]

For each worker count it starts ``redis-gateway serve --workers N`` in front of one
throwaway redis-server, then measures with wrk (``-t2 -c50`` by default) the single GET
(``POST / ["GET",k]``) and a ``/pipeline`` of 100 GETs. The gateway's CPU is summed over the
supervisor and its workers. Uses bench/run.py's process handling and wrk scripts; stops
everything it started, also on Ctrl-C or error.

On a 2-core machine wrk, Redis and the gateway share the cores: a second worker can only
use what the others leave, so read the ratio, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from run import (
    KEY,
    VALUE,
    BenchError,
    Service,
    Services,
    Workload,
    _exit_on_signal,
    expect,
    free_port,
    http_json,
    measure,
    redis_call,
    wait_until,
)

from redis_gateway.auth import hash_token, new_token


class Gateway:
    """The supervisor and its workers, whose CPU counts as the gateway's."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def cpu_seconds(self) -> float:
        pids = [self.service.proc.pid]
        out = subprocess.run(["pgrep", "-P", str(pids[0])], capture_output=True, text=True)
        pids += [int(p) for p in out.stdout.split()]
        total = 0.0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--wrk-threads", type=int, default=2)
    p.add_argument("--pipeline-size", type=int, default=100)
    args = p.parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _exit_on_signal)
    counts = [int(n) for n in args.workers.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="redis-gateway-bench-workers-"))
    services = Services(tmp)
    rows: list[dict[str, Any]] = []
    try:
        ports: set[int] = set()
        redis_port = free_port(ports)
        redis = services.start("redis", [
            "redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(tmp)])
        wait_until(redis, lambda: redis_call(redis_port, "PING") == b"PONG", "PING")
        redis_call(redis_port, "SET", KEY, VALUE)
        token = new_token()
        batch = [["GET", KEY]] * args.pipeline_size
        env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_GATEWAY_")}
        for count in counts:
            port = free_port(ports)
            config = tmp / f"gateway-{count}.toml"
            config.write_text(
                f'redis = "redis://127.0.0.1:{redis_port}"\nport = {port}\n'
                f'log_level = "warning"\nworkers = {count}\n'
                f'tokens_file = "{tmp / "tokens.json"}"\n\n[[tokens]]\nname = "bench"\n'
                f'hash = "{hash_token(token)}"\nrules = "admin"\n')
            service = services.start(f"gateway-{count}", [
                sys.executable, "-m", "redis_gateway", "serve", "--config", str(config)],
                env=env)
            url = f"http://127.0.0.1:{port}"
            wait_until(service, lambda s=service, u=url: "listening on" in s.log_tail(50)  # type: ignore[misc]
                       and http_json(u + "/", ["PING"], token) == (200, {"result": "PONG"}),
                       "the banner and POST / PING")
            expect("GET", http_json(url + "/", ["GET", KEY], token), {"result": VALUE})
            auth = {"BENCH_TOKEN": token}
            cpu_of: dict[str, Any] = {"server": Gateway(service), "redis": redis}
            for workload in (
                Workload(f"get.{count}", "single GET", f"{count} worker(s)", url + "/",
                         "gateway.lua", {**auth, "BENCH_BODY": json.dumps(["GET", KEY])}),
                Workload(f"pipeline.{count}", f"/pipeline of {args.pipeline_size} GETs",
                         f"{count} worker(s)", url + "/pipeline", "gateway.lua",
                         {**auth, "BENCH_BODY": json.dumps(batch)},
                         commands_per_request=args.pipeline_size),
            ):
                result = measure(args, workload, cpu_of)
                rows.append({"workers": count, **result})
            service.proc.send_signal(signal.SIGTERM)
            if service.proc.wait(60) != 0:
                raise BenchError(f"gateway with {count} workers did not stop cleanly:\n"
                                 f"{service.log_tail()}")
    finally:
        services.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(rows, counts)
    return 0


def print_table(rows: list[dict[str, Any]], counts: list[int]) -> None:
    base = {r["title"]: r for r in rows if r["workers"] == counts[0]}
    print(f"\n| workload | workers | req/s | commands/s | p99 | vs {counts[0]} worker(s) "
          "| gateway CPU µs/cmd | gateway cores busy |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = r["commands_per_s"] / base[r["title"]]["commands_per_s"]
        failed = sum(r["errors"][k] for k in ("status", "connect", "read", "write", "timeout"))
        print(f"| {r['title']} | {r['workers']} | {r['requests_per_s']:,.0f} | "
              f"{r['commands_per_s']:,.0f} | {r['latency_us']['p99'] / 1000:.2f} ms | "
              f"{ratio:.2f}x | {r['cpu_us_per_command']['server']:.1f} | "
              f"{r['cpu_cores_busy']['server']:.2f} |"
              + (f" {failed} failed" if failed else ""))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        sys.exit(1)
