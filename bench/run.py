"""Benchmark: redis-gateway against webdis, both in front of one redis-server, same run.

    /work/venv/bin/python bench/run.py [--duration 10] [--warmup 2] [--connections 50]

Everything runs on loopback: a throwaway redis-server on a free port (never the machine's
6379), the gateway (one process) and webdis on free ports, and wrk as the load generator.
Workloads, each with a warm-up then a fixed duration:

1. single GET: gateway ``POST / ["GET","bench:k"]`` vs webdis ``GET /GET/bench:k``
2. single SET: gateway ``POST / ["SET","bench:k",v]`` vs webdis ``GET /SET/bench:k/v``
3. batches: gateway ``POST /pipeline`` with 100 GETs (commands/s = req/s x 100) vs webdis's
   best commands/s: the better of its single GET and HTTP/1.1 pipelining of 100 GETs per
   write (webdis has no batch endpoint).

Prints a table with the ratios next to the targets, writes bench/results/<timestamp>.json,
and stops every process it started, also on Ctrl-C or error.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import hiredis

from redis_gateway.auth import hash_token, new_token

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
KEY = "bench:k"
VALUE = "bench-value-0123456789abcdefghij"  # 32 bytes, nothing to escape in a URL or JSON

# From the issue; the SET rows are shown against the same bars for information.
TARGET_RPS_RATIO = 0.4  # gateway single GET req/s >= 0.4 x webdis
TARGET_P99_RATIO = 2.5  # gateway single GET p99 <= 2.5 x webdis
TARGET_PIPELINE_RATIO = 4.0  # gateway /pipeline cmd/s >= 4 x webdis's best cmd/s


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    missing = [tool for tool in ("redis-server", "webdis", "wrk") if not shutil.which(tool)]
    if missing:
        print(f"bench: not found on PATH: {', '.join(missing)}\n"
              "  install with: apt-get update && apt-get install -y redis-server webdis wrk",
              file=sys.stderr)
        return 2
    # Stop cleanly (the finally blocks below) when asked to by a signal, not only Ctrl-C.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("\nbench: interrupted; everything it started has been stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--duration", type=int, default=10, help="seconds measured per workload")
    p.add_argument("--warmup", type=int, default=2,
                   help="seconds of unmeasured load before each workload (0: none)")
    p.add_argument("--connections", type=int, default=50, help="wrk connections")
    p.add_argument("--wrk-threads", type=int, default=2, help="wrk threads")
    p.add_argument("--webdis-threads", type=int, default=2,
                   help="webdis HTTP threads (one per core on the 2-core reference machine)")
    p.add_argument("--webdis-pool-size", type=int, default=2,
                   help="webdis Redis connections per thread (2 is its built-in default)")
    p.add_argument("--pipeline-size", type=int, default=100,
                   help="commands per gateway /pipeline request")
    p.add_argument("--webdis-pipeline-depth", type=int, default=None,
                   help="GETs per write when HTTP-pipelining webdis (default: --pipeline-size)")
    p.add_argument("--no-webdis-pipelining", action="store_true",
                   help="skip the webdis HTTP-pipelining run")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when a target is missed or any request failed")
    p.add_argument("--keep-tmp", action="store_true",
                   help="keep the temporary directory with configs and server logs")
    return p


class BenchError(Exception):
    pass


def _exit_on_signal(signum: int, _frame: object) -> None:
    print(f"\nbench: {signal.Signals(signum).name}; stopping everything it started",
          file=sys.stderr)
    raise SystemExit(128 + signum)


# Processes ------------------------------------------------------------------------
@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log_file: BinaryIO

    def log_tail(self, lines: int = 20) -> str:
        self.log_file.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def cpu_seconds(self) -> float:
        """User + system CPU of the process, all its threads included."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Services:
    """Starts processes in their own session (a terminal's Ctrl-C reaches only this script
    and wrk) and stops them in reverse order; a child also gets SIGTERM if we die."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[Service] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Service:
        log_path = self.workdir / f"{name}.log"
        log_file = log_path.open("wb")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file,
                                stderr=subprocess.STDOUT, cwd=self.workdir, env=env,
                                start_new_session=True, preexec_fn=_die_with_parent)
        service = Service(name, proc, log_path, log_file)
        self.started.append(service)
        return service

    def stop_all(self) -> None:
        for service in reversed(self.started):
            proc = service.proc
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            service.log_file.close()
        self.started.clear()


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port(taken: set[int]) -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port != 6379 and port not in taken:
            taken.add(port)
            return port


def wait_until(service: Service, ready: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            raise BenchError(f"{service.name} exited with {service.proc.returncode} before "
                             f"answering; its log:\n{service.log_tail()}")
        try:
            if ready():
                return
        except (OSError, ValueError, hiredis.ProtocolError) as exc:
            last = exc
        time.sleep(0.1)
    raise BenchError(f"{service.name} did not answer {what} within {timeout:.0f}s "
                     f"(last: {last!r}); its log:\n{service.log_tail()}")


# Clients used for set-up and checks (the load itself is wrk's) --------------------
def redis_call(port: int, *argv: str) -> Any:
    reader = hiredis.Reader()
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(hiredis.pack_command(tuple(argv)))  # type: ignore[arg-type]  # stub: 1-tuple
        while True:
            reply = reader.gets()
            if reply is not False:
                return reply
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("connection closed")
            reader.feed(chunk)


def http_json(url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if data:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def expect(what: str, got: tuple[int, Any], want: Any) -> None:
    if got != (200, want):
        raise BenchError(f"{what}: expected 200 {want!r}, got {got[0]} {got[1]!r}")


def check_http_pipelining(port: int, path: str, depth: int, want: bytes) -> None:
    """Whether webdis answers `depth` requests sent in one write, before measuring it."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request * depth)
        deadline = time.monotonic() + 10
        while received.count(want) < depth and time.monotonic() < deadline:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            received += chunk
    if received.count(want) != depth or received.count(b"HTTP/1.1 200 ") != depth:
        raise BenchError(f"webdis answered {received.count(want)} of {depth} pipelined "
                         "requests correctly; use --no-webdis-pipelining or a lower "
                         "--webdis-pipeline-depth")


# Load ------------------------------------------------------------------------------
@dataclass
class Workload:
    key: str  # e.g. "get.gateway"
    title: str
    system: str  # "gateway" or "webdis"
    url: str
    script: str
    env: dict[str, str] = field(default_factory=dict)
    commands_per_request: int = 1
    note: str = ""


def run_wrk(args: argparse.Namespace, w: Workload, seconds: int) -> dict[str, Any]:
    argv = ["wrk", f"-t{args.wrk_threads}", f"-c{args.connections}", f"-d{seconds}s",
            "--latency", "-s", str(BENCH_DIR / w.script), w.url]
    env = {**os.environ, "BENCH_LUA_DIR": str(BENCH_DIR), **w.env}
    done = subprocess.run(argv, env=env, capture_output=True, text=True,
                          timeout=seconds + 60)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise BenchError(f"wrk failed on {w.key} (exit {done.returncode}):\n"
                         f"{done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(line.split(" ", 1)[1])
    result["wrk_output"] = done.stdout.replace(line, "").strip()
    return result


def measure(args: argparse.Namespace, w: Workload, cpu_of: dict[str, Service]) -> dict[str, Any]:
    print(f"  {w.title:<34} {w.system:<8} ", end="", flush=True)
    if args.warmup > 0:
        run_wrk(args, w, args.warmup)
    before = {name: s.cpu_seconds() for name, s in cpu_of.items()}
    wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = run_wrk(args, w, args.duration)
    wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = {name: s.cpu_seconds() - before[name] for name, s in cpu_of.items()}
    cpu["wrk"] = (wrk_after.ru_utime + wrk_after.ru_stime
                  - wrk_before.ru_utime - wrk_before.ru_stime)
    seconds = result["duration_us"] / 1e6
    requests = result["requests"]
    commands = requests * w.commands_per_request
    result.update(
        workload=w.key, title=w.title, system=w.system, url=w.url, note=w.note,
        commands_per_request=w.commands_per_request,
        requests_per_s=requests / seconds,
        commands_per_s=commands / seconds,
        # CPU each process spent per command while this workload ran.
        cpu_us_per_command={name: (used * 1e6 / commands if commands else None)
                            for name, used in cpu.items()},
        cpu_cores_busy={name: used / seconds for name, used in cpu.items()},
    )
    errors = result["errors"]
    bad = errors["status"] + errors["connect"] + errors["read"] + errors["write"] \
        + errors["timeout"]
    print(f"{result['requests_per_s']:>10,.0f} req/s  p99 {_ms(result['latency_us']['p99'])}"
          + (f"  ({bad} failed)" if bad else ""), flush=True)
    return result


# The run ----------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    depth = args.webdis_pipeline_depth or args.pipeline_size
    started_at = dt.datetime.now(dt.UTC)
    tmp = Path(tempfile.mkdtemp(prefix="redis-gateway-bench-"))
    services = Services(tmp)
    try:
        ports: set[int] = set()
        redis_port, gateway_port, webdis_port = (free_port(ports) for _ in range(3))

        redis = services.start("redis", [
            "redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(tmp), "--daemonize", "no",
        ])
        wait_until(redis, lambda: redis_call(redis_port, "PING") == b"PONG", "PING")
        redis_call(redis_port, "SET", KEY, VALUE)

        token = new_token()
        (tmp / "gateway.toml").write_text(
            f'redis = "redis://127.0.0.1:{redis_port}"\n'
            'host = "127.0.0.1"\n'
            f"port = {gateway_port}\n"
            'log_level = "warning"\n'
            # A file of our own (absent), so the user's tokens file is never read.
            f'tokens_file = "{tmp / "tokens.json"}"\n'
            "\n[[tokens]]\n"
            'name = "bench"\n'
            f'hash = "{hash_token(token)}"\n'
            'rules = "admin"\n'
        )
        gateway_env = {k: v for k, v in os.environ.items()
                       if not k.startswith("REDIS_GATEWAY_")}
        gateway = services.start("gateway", [
            sys.executable, "-m", "redis_gateway", "serve", "--config", str(tmp / "gateway.toml"),
        ], env=gateway_env)
        gw = f"http://127.0.0.1:{gateway_port}"
        wait_until(gateway, lambda: http_json(gw + "/", ["PING"], token) == (200, {
            "result": "PONG"}), "POST / PING")

        webdis_config = {
            "redis_host": "127.0.0.1", "redis_port": redis_port,
            "http_host": "127.0.0.1", "http_port": webdis_port,
            "threads": args.webdis_threads, "pool_size": args.webdis_pool_size,
            "daemonize": False, "database": 0, "verbosity": 1,
            "logfile": str(tmp / "webdis-own.log"),
        }
        (tmp / "webdis.json").write_text(json.dumps(webdis_config, indent=2))
        webdis = services.start("webdis", ["webdis", str(tmp / "webdis.json")])
        wd = f"http://127.0.0.1:{webdis_port}"
        wait_until(webdis, lambda: http_json(wd + "/PING") == (200, {"PING": [True, "PONG"]}),
                   "GET /PING")

        # Each request shape answers what it should before it is measured.
        batch = [["GET", KEY]] * args.pipeline_size
        expect("gateway GET", http_json(gw + "/", ["GET", KEY], token), {"result": VALUE})
        expect("gateway SET", http_json(gw + "/", ["SET", KEY, VALUE], token), {"result": "OK"})
        expect("gateway /pipeline", http_json(gw + "/pipeline", batch, token),
               [{"result": VALUE}] * args.pipeline_size)
        expect("webdis GET", http_json(f"{wd}/GET/{KEY}"), {"GET": VALUE})
        expect("webdis SET", http_json(f"{wd}/SET/{KEY}/{VALUE}"), {"SET": [True, "OK"]})
        if not args.no_webdis_pipelining:
            check_http_pipelining(webdis_port, f"/GET/{KEY}", depth,
                                  json.dumps({"GET": VALUE}, separators=(",", ":")).encode())

        auth = {"BENCH_TOKEN": token}
        workloads = [
            Workload("get.gateway", "single GET", "gateway", gw + "/", "gateway.lua",
                     {**auth, "BENCH_BODY": json.dumps(["GET", KEY])}),
            Workload("get.webdis", "single GET", "webdis", f"{wd}/GET/{KEY}", "webdis.lua"),
            Workload("set.gateway", "single SET", "gateway", gw + "/", "gateway.lua",
                     {**auth, "BENCH_BODY": json.dumps(["SET", KEY, VALUE])}),
            Workload("set.webdis", "single SET", "webdis", f"{wd}/SET/{KEY}/{VALUE}",
                     "webdis.lua"),
            Workload("pipeline.gateway", f"/pipeline of {args.pipeline_size} GETs", "gateway",
                     gw + "/pipeline", "gateway.lua",
                     {**auth, "BENCH_BODY": json.dumps(batch)},
                     commands_per_request=args.pipeline_size),
        ]
        if not args.no_webdis_pipelining:
            workloads.append(Workload(
                "pipeline.webdis", f"HTTP pipelining, {depth} GETs/write", "webdis", wd + "/",
                "webdis_pipeline.lua", {"BENCH_DEPTH": str(depth), "BENCH_PATH": f"/GET/{KEY}"},
                note="wrk counts each pipelined response as a request; latency is per batch",
            ))

        load_before = os.getloadavg()
        print(f"bench: redis :{redis_port}, gateway :{gateway_port}, webdis :{webdis_port}; "
              f"wrk -t{args.wrk_threads} -c{args.connections}, {args.warmup:g}s warm-up + "
              f"{args.duration:g}s each", flush=True)
        results: dict[str, dict[str, Any]] = {}
        for w in workloads:
            server = gateway if w.system == "gateway" else webdis
            results[w.key] = measure(args, w, {"server": server, "redis": redis})
            if server.proc.poll() is not None:
                raise BenchError(f"{server.name} exited during {w.key}:\n{server.log_tail()}")

        # Still answering correctly after the load?
        expect("gateway GET after load", http_json(gw + "/", ["GET", KEY], token),
               {"result": VALUE})
        expect("webdis GET after load", http_json(f"{wd}/GET/{KEY}"), {"GET": VALUE})
        gateway_log = gateway.log_tail(200)
        report = build_report(args, results, depth, started_at, load_before,
                              {"redis": redis_call(redis_port, "INFO", "server").decode()},
                              webdis_config, gateway_log)
    finally:
        services.stop_all()
        if args.keep_tmp:
            print(f"bench: kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print_report(report)
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"{started_at.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nresults: {out.relative_to(BENCH_DIR.parent)}")
    failed = any(r["failed_requests"] for r in report["runs"].values())
    missed = any(t["met"] is False for t in report["targets"].values())
    return 1 if args.strict and (failed or missed) else 0


# Report ----------------------------------------------------------------------------
def build_report(args: argparse.Namespace, results: dict[str, dict[str, Any]], depth: int,
                 started_at: dt.datetime, load_before: tuple[float, float, float],
                 info: dict[str, str], webdis_config: dict[str, Any],
                 gateway_log: str) -> dict[str, Any]:
    for r in results.values():
        e = r["errors"]
        r["failed_requests"] = e["status"] + e["connect"] + e["read"] + e["write"] \
            + e["timeout"]

    def ratio(a: float, b: float) -> float | None:
        return a / b if b else None

    g, w = results["get.gateway"], results["get.webdis"]
    s_g, s_w = results["set.gateway"], results["set.webdis"]
    webdis_best_key = "get.webdis"
    piped = results.get("pipeline.webdis")
    if piped and piped["failed_requests"] == 0 and \
            piped["commands_per_s"] > w["commands_per_s"]:
        webdis_best_key = "pipeline.webdis"
    webdis_best = results[webdis_best_key]["commands_per_s"]
    pipe_g = results["pipeline.gateway"]

    def target(value: float | None, bar: float, higher: bool, applies: bool) -> dict[str, Any]:
        met = None if value is None else (value >= bar if higher else value <= bar)
        return {"ratio": value, "target": f"{'>=' if higher else '<='} {bar}x",
                "met": met if applies else None, "applies": applies}

    targets = {
        "get_rps": target(ratio(g["requests_per_s"], w["requests_per_s"]),
                          TARGET_RPS_RATIO, True, True),
        "get_p99": target(ratio(g["latency_us"]["p99"], w["latency_us"]["p99"]),
                          TARGET_P99_RATIO, False, True),
        "set_rps": target(ratio(s_g["requests_per_s"], s_w["requests_per_s"]),
                          TARGET_RPS_RATIO, True, False),
        "set_p99": target(ratio(s_g["latency_us"]["p99"], s_w["latency_us"]["p99"]),
                          TARGET_P99_RATIO, False, False),
        "pipeline_cmds": target(ratio(pipe_g["commands_per_s"], webdis_best),
                                TARGET_PIPELINE_RATIO, True, True),
    }
    targets["pipeline_cmds"]["webdis_best"] = {
        "workload": webdis_best_key, "commands_per_s": webdis_best}
    # The start-up banner goes to stdout too; keep what the logger wrote at warning or above.
    log_lines = [ln for ln in gateway_log.splitlines() if _LOGGED.search(ln)]
    return {
        "started_at": started_at.isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "versions": {
            "redis_gateway": _gateway_version(),
            "redis": next((ln.split(":", 1)[1].strip() for ln in info["redis"].splitlines()
                           if ln.startswith("redis_version:")), None),
            "webdis": _package_version("webdis"),
            "wrk": _package_version("wrk"),
        },
        "settings": {
            "duration_s": args.duration, "warmup_s": args.warmup,
            "connections": args.connections, "wrk_threads": args.wrk_threads,
            "pipeline_size": args.pipeline_size, "webdis_pipeline_depth": depth,
            "webdis_config": {k: v for k, v in webdis_config.items() if k != "logfile"},
            "gateway": "one process: uvicorn + uvloop + httptools, log_level warning",
            "key": KEY, "value_bytes": len(VALUE),
        },
        "targets": targets,
        "runs": results,
        "gateway_log": log_lines[-50:],
    }


def print_report(report: dict[str, Any]) -> None:
    runs, targets = report["runs"], report["targets"]
    m = report["machine"]
    print(f"\n{report['started_at']}  {m['cpus']} cores ({m['cpu_model']}), load before "
          f"{m['loadavg_before'][0]:.2f}; wrk -t{report['settings']['wrk_threads']} "
          f"-c{report['settings']['connections']}, {report['settings']['duration_s']:g}s per "
          "workload; wrk, the server and redis-server share the cores")
    header = (f"{'workload':<34} {'system':<8} {'req/s':>9} {'cmd/s':>10} {'p50':>9} "
              f"{'p99':>9} {'non-2xx':>7} {'sock err':>8} {'CPU µs/cmd':>10} "
              f"{'cores srv/redis/wrk':>19}")
    print("\n" + header + "\n" + "-" * len(header))
    for r in runs.values():
        e = r["errors"]
        sock = e["connect"] + e["read"] + e["write"] + e["timeout"]
        print(f"{r['title']:<34} {r['system']:<8} "
              f"{r['requests_per_s']:>9,.0f} {r['commands_per_s']:>10,.0f} "
              f"{_ms(r['latency_us']['p50']):>9} {_ms(r['latency_us']['p99']):>9} "
              f"{e['status']:>7} {sock:>8} {r['cpu_us_per_command']['server']:>10.1f} "
              f"{'/'.join(f'{busy:.2f}' for busy in r['cpu_cores_busy'].values()):>19}")
    if "pipeline.webdis" in runs:
        print("  (webdis pipelined: latency is per batch of "
              f"{report['settings']['webdis_pipeline_depth']}, and wrk's p99 is not usable "
              "there; gateway /pipeline latency is per request)")

    best = targets["pipeline_cmds"]["webdis_best"]
    rows = [
        ("single GET req/s", targets["get_rps"]),
        ("single GET p99", targets["get_p99"]),
        ("single SET req/s", targets["set_rps"]),
        ("single SET p99", targets["set_p99"]),
        (f"pipeline cmd/s vs webdis best ({'HTTP pipelining' if best['workload'] == 'pipeline.webdis' else 'single GET'}, "  # noqa: E501
         f"{best['commands_per_s']:,.0f})", targets["pipeline_cmds"]),
    ]
    print(f"\n{'gateway / webdis':<60} {'ratio':>7}  {'target':<9} result")
    print("-" * 86)
    for label, t in rows:
        value = "n/a" if t["ratio"] is None else f"{t['ratio']:.2f}x"
        verdict = ("met" if t["met"] else "MISSED") if t["applies"] and t["met"] is not None \
            else "(GET bar, for information)"
        print(f"{label:<60} {value:>7}  {t['target']:<9} {verdict}")
    failed = {k: r["failed_requests"] for k, r in runs.items() if r["failed_requests"]}
    if failed:
        print(f"\nWARNING: failed requests (non-2xx or socket errors): {failed}")
    if report["gateway_log"]:
        print(f"\ngateway log: {len(report['gateway_log'])} lines at warning or above, last:")
        for line in report["gateway_log"][-5:]:
            print(f"  {line}")
    else:
        print("\ngateway log: nothing at warning or above")


_LOGGED = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|^Traceback")


def _ms(us: float) -> str:
    # wrk's percentiles break down when it records one latency per pipelined batch.
    return f"{us / 1000:.2f}ms" if us > 0 else "n/a"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _package_version(name: str) -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(["dpkg-query", "-W", "-f=${Version}", name],
                              capture_output=True, text=True, timeout=10)
        if done.returncode == 0:
            return done.stdout.strip()
    return None


def _gateway_version() -> str:
    from redis_gateway import __version__

    with contextlib.suppress(OSError, subprocess.SubprocessError):
        repo = BENCH_DIR.parent
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--",
                                "src"], capture_output=True, text=True, timeout=10).stdout
        if head:
            return f"{__version__} ({head}{', src modified' if dirty.strip() else ''})"
    return __version__


if __name__ == "__main__":
    sys.exit(main())
