"""Oversized and deep replies: the gateway's peak memory and a victim's latency.

For each reproduction of issue 10 (items 4 and 5), starts a fresh gateway (so its peak
RSS, VmHWM, belongs to that reproduction alone) on a private redis-server, runs the
attacker's request while a victim reads its own key in a loop on the same shared
connection, and prints the attacker's status and time, how much the gateway's peak RSS
grew, and the victim's answers. ``--src`` runs another checkout's gateway (e.g. the
main branch exported with ``git archive``) for a before/after comparison in one run.

    .venv/bin/python bench/replies.py [--limit 16777216] [--src path/to/src]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support import GatewayProcess, RedisServer, redis_command

DEEP = "local t = {7}; for i = 2, 3000 do t = {t} end; return t"
REPRODUCTIONS: list[tuple[str, str, Any, dict[str, str]]] = [
    ("SRANDMEMBER -3000000, JSON", "/", ["SRANDMEMBER", "app:one", "-3000000"], {}),
    ("SRANDMEMBER -600000, typed-resp3", "/", ["SRANDMEMBER", "app:one", "-600000"],
     {"Redis-Reply-Format": "typed-resp3"}),
    ("GET 20 MB, resp2", "/", ["GET", "app:big"], {"Upstash-Response-Format": "resp2"}),
    ("3 x GET 20 MB pipeline, resp2", "/pipeline", [["GET", "app:big"]] * 3,
     {"Upstash-Response-Format": "resp2"}),
    ("EVAL reply nested 3000 deep", "/", ["EVAL", DEEP, "0"], {}),
]


def peak_rss(gateway: GatewayProcess) -> int:
    assert gateway.process is not None
    for line in Path(f"/proc/{gateway.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def run_one(redis: RedisServer, limit: int, env: dict[str, str], path: str, body: Any,
            headers: dict[str, str]) -> dict[str, Any]:
    gateway = GatewayProcess(redis.url, rules={"admin": "admin", "victim": "read-write"},
                             config_extra=f"[limits]\nmax_reply_bytes = {limit}\n", env=env)
    gateway.start()
    try:
        victim_times: list[float] = []
        victim_wrong: list[str] = []
        stop = threading.Event()

        def victim() -> None:
            with gateway.client("victim") as c:
                while not stop.is_set():
                    started = time.perf_counter()
                    r = c.post("/", json=["GET", "app:victim"])
                    victim_times.append(time.perf_counter() - started)
                    if r.status_code != 200 or r.json() != {"result": "mine"}:
                        victim_wrong.append(f"{r.status_code} {r.text[:80]}")

        with gateway.client() as c:
            c.post("/", json=["PING"])  # command table loaded, connection up
            baseline: list[float] = []
            for _ in range(50):
                started = time.perf_counter()
                c.post("/", json=["GET", "app:victim"])
                baseline.append(time.perf_counter() - started)
            before = peak_rss(gateway)
            thread = threading.Thread(target=victim)
            thread.start()
            started = time.perf_counter()
            try:
                response = c.post(path, json=body, headers=headers, timeout=120)
                status, text = response.status_code, response.text[:90]
            except httpx.HTTPError as exc:
                status, text = 0, repr(exc)[:90]
            elapsed = time.perf_counter() - started
            stop.set()
            thread.join()
        return {"status": status, "text": text, "seconds": elapsed,
                "rss_growth": peak_rss(gateway) - before,
                "victim_n": len(victim_times), "victim_wrong": victim_wrong,
                "victim_max": max(victim_times, default=0.0),
                "baseline_max": max(baseline)}
    finally:
        gateway.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=16 * 1024 * 1024,
                        help="limits.max_reply_bytes")
    parser.add_argument("--src", action="append", default=[],
                        help="a src/ directory to run the gateway from (repeatable); "
                        "default: this checkout")
    args = parser.parse_args()
    sources = args.src or [str(Path(__file__).resolve().parent.parent / "src")]
    redis = RedisServer().start()
    try:
        redis_command(redis.port, "SADD", "app:one", "member")
        redis_command(redis.port, "SET", "app:big", b"b" * (20 << 20))
        redis_command(redis.port, "SET", "app:victim", "mine")
        print(f"max_reply_bytes = {args.limit:,}")
        for src in sources:
            env = {"PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
            print(f"\n== gateway from {src}")
            print(f"{'reproduction':<34} {'status':>6} {'time':>7} {'peak RSS +':>11} "
                  f"{'x limit':>7}  victim: n, wrong, max latency (no attack: max)")
            for label, path, body, headers in REPRODUCTIONS:
                r = run_one(redis, args.limit, env, path, body, headers)
                print(f"{label:<34} {r['status']:>6} {r['seconds']:>6.2f}s "
                      f"{r['rss_growth'] / 2**20:>8.1f} MB {r['rss_growth'] / args.limit:>7.1f}"
                      f"  {r['victim_n']}, {len(r['victim_wrong'])}, "
                      f"{r['victim_max'] * 1e3:.0f} ms ({r['baseline_max'] * 1e3:.0f} ms)"
                      + (f"  e.g. {r['victim_wrong'][0]}" if r["victim_wrong"] else ""))
    finally:
        redis.close()


if __name__ == "__main__":
    main()
