"""Flood benchmark: one token attacks the gateway while another runs the single-GET load.

    .venv/bin/python bench/flood.py [--duration 10] [--connections 20] [--attackers 24]

Everything on loopback: a throwaway redis-server, one gateway process, wrk for the victim
(``POST / ["GET","flood:k"]`` with the victim's token) and an attacker process that, with a
token of its own, keeps up the worst of issue 10's reproductions at once:

- commands that wait: ``WAIT 1 3000``, ``XREAD BLOCK\\0 0``, ``BLPOP k 0x1p20``, many
  ``XREAD BLOCK`` at a time (reserved connections);
- replies too large for the limit: ``SRANDMEMBER k -3000000`` in JSON, resp2 and typed, and
  the largest count the gateway sends on (1,398,101: Redis builds 17 MB for it, ~0.14 s);
  a reply nested 3,000 deep;
- GraphQL: the 22-fragment bomb and a 4 MB document;
- slow clients: bodies that never finish; 300 pipelined GETs of a 1 MB value on a socket
  that never reads.

The victim runs four times in one run: alone, under the attack from a token with a strict
share as an operator would give an untrusted token (2 requests in flight, 10 requests,
500 kB of replies, 500 kB of request bodies and 5 ms of Redis per second), from one with
five times that, and from one with the defaults. The attacker runs at the lowest CPU
priority (``nice 19``): on a real deployment it is on other machines, and on this one its
own CPU would otherwise be part of what the victim measures (``--no-nice`` keeps it at
normal priority). Printed:
the victim's req/s, p50, p99 for each, the ratios to the quiet run, the gateway's peak RSS,
and what the attacker's requests got. ``--only`` runs some attacks alone, to see which costs
what. Runaway scripts are not in the mix: Redis answers nobody while one runs, until its
busy-reply-threshold, so no gateway can keep a victim's latency then (tests/test_stalls.py
shows the script stopped and everyone back within a second of the kill).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from redis_gateway.auth import hash_token, new_token

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (  # bench/ is not a package
    BENCH_DIR,
    BenchError,
    Service,
    Services,
    Workload,
    free_port,
    redis_call,
    run_wrk,
    wait_until,
)

MB = 1 << 20
# The attacker's token, three ways: a share for a token one does not trust, the same
# five times larger, and the defaults (no rate or byte budget).
SHARES = {
    "strict": ("attacker with a strict share", "concurrency = 2\nrate = 10\n"
               "reply_rate = 500000\nbody_rate = 500000\nredis_time = 0.005\n"),
    "shared": ("attacker with a share x5", "concurrency = 2\nrate = 50\n"
               "reply_rate = 2000000\nbody_rate = 2000000\nredis_time = 0.02\n"),
    "defaults": ("attacker with the defaults", ""),
}
BOMB = "query { ...F0 }\n" + "".join(
    f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}\n" for i in range(22)) + \
    "fragment F22 on Query { __typename }\n"
DEEP = "local t = {} local c = t for i = 1, 3000 do local n = {} c[1] = n c = n end return t"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=20)
    p.add_argument("--attackers", type=int, default=24, help="concurrent attack tasks")
    p.add_argument("--only", choices=sorted(KINDS), action="append",
                   help="run only these attacks (to see which one costs what)")
    p.add_argument("--share", choices=sorted(SHARES), action="append",
                   help="attack only with these tokens' shares (all three by default)")
    p.add_argument("--twin", action="store_true",
                   help="the attacker floods a second gateway and Redis (the control for "
                        "what the attack costs the machine itself)")
    p.add_argument("--no-nice", dest="nice", action="store_false",
                   help="run the attacker at normal priority, competing for CPU")
    p.add_argument("--attack", metavar="URL", help=argparse.SUPPRESS)  # the attacker process
    p.add_argument("--token", help=argparse.SUPPRESS)
    p.add_argument("--until", type=float, help=argparse.SUPPRESS)
    p.add_argument("--report", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.attack:
        kinds = [KINDS[k] for k in args.only] if args.only else list(ATTACKS.values())
        outcome = asyncio.run(attack(args.attack, args.token, args.until, args.attackers,
                                     kinds))
        Path(args.report).write_text(json.dumps(outcome))
        return 0
    try:
        return run(args)
    except BenchError as exc:
        print(f"flood: {exc}", file=sys.stderr)
        return 1


def run(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="redis-gateway-flood-"))
    services = Services(tmp)
    try:
        ports: set[int] = set()
        tokens = {name: new_token() for name in ("victim", *SHARES)}
        gateway, url = _stack(services, tmp, "", ports, tokens)
        # --twin: the attacker floods a second gateway and Redis of its own, so what the
        # victim then loses is what the attack costs this machine, not this gateway.
        target, target_url = _stack(services, tmp, "twin-", ports, tokens) if args.twin \
            else (gateway, url)

        victim = Workload("get", "single GET (victim)", "gateway", url + "/", "gateway.lua",
                          env={"BENCH_BODY": '["GET","flood:k"]', "BENCH_TOKEN":
                               tokens["victim"]})
        wrk_args = argparse.Namespace(wrk_threads=2, connections=args.connections)
        run_wrk(wrk_args, victim, 2)  # warm-up
        quiet_cpu = gateway.cpu_seconds()
        results: dict[str, Any] = {"quiet": run_wrk(wrk_args, victim, args.duration)}
        # The gateway's CPU over each phase: what the victim alone takes, against what the
        # victim and an attack take together.
        attacks: dict[str, Any] = {"nobody": {
            "gateway CPU s": round(gateway.cpu_seconds() - quiet_cpu, 1)}}
        for attacker in args.share or SHARES:
            report = tmp / f"attack-{attacker}.json"
            until = time.time() + args.duration + 3
            only = [f"--only={k}" for k in args.only or []]
            # At the lowest priority: the attacker stands for clients on other machines, so
            # its own CPU should not be what slows the victim on this one (--no-nice to see).
            nice = ["nice", "-n", "19"] if args.nice else []
            cpu = gateway.cpu_seconds(), target.cpu_seconds()
            proc = subprocess.Popen([*nice, sys.executable, __file__, "--attack", target_url,
                                     "--token", tokens[attacker], "--until", str(until),
                                     "--attackers", str(args.attackers), "--report",
                                     str(report), *only])
            try:
                time.sleep(2)  # the attack reaches full strength before the victim starts
                results[attacker] = run_wrk(wrk_args, victim, args.duration)
                proc.wait(timeout=args.duration + 60)
            finally:
                if proc.poll() is None:
                    proc.kill()
            attacks[attacker] = json.loads(report.read_text())
            attacks[attacker]["gateway CPU s"] = round(gateway.cpu_seconds() - cpu[0], 1)
            if args.twin:
                attacks[attacker]["twin CPU s"] = round(target.cpu_seconds() - cpu[1], 1)
            wait_until(target, lambda: _ready(target_url), "/readyz after the attack")
        # Alone again: on a shared machine the quiet p99 itself moves between runs, so the
        # ratios are to the mean of the two quiet runs, and both are printed.
        results["quiet again"] = run_wrk(wrk_args, victim, args.duration)
        rss = _peak_rss(gateway.proc.pid)
        print_report(results, attacks, rss)
        out = BENCH_DIR / "results"
        out.mkdir(exist_ok=True)
        (out / f"flood-{int(time.time())}.json").write_text(json.dumps(
            {"victim": results, "attacks": attacks, "gateway_peak_rss": rss}, indent=2))
        return 0
    finally:
        services.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def _stack(services: Services, tmp: Path, prefix: str, ports: set[int],
           tokens: dict[str, str]) -> tuple[Service, str]:
    """A throwaway redis-server with the keys the workloads use, and a gateway in front of
    it that knows every token; its Service and its URL."""
    redis_port, gateway_port = free_port(ports), free_port(ports)
    redis = services.start(prefix + "redis", [
        "redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", str(tmp), "--dbfilename", prefix + "dump.rdb"])
    wait_until(redis, lambda: redis_call(redis_port, "PING") == b"PONG", "PING")
    redis_call(redis_port, "SET", "flood:k", "v" * 32)
    redis_call(redis_port, "SADD", "flood:one", "member")
    redis_call(redis_port, "SET", "flood:big", "b" * MB)
    config = [f'redis = "redis://127.0.0.1:{redis_port}"', f"port = {gateway_port}",
              'log_level = "warning"', f'tokens_file = "{tmp / (prefix + "tokens.json")}"',
              "[limits]", "max_reply_bytes = 4194304", "command_timeout = 5",
              "max_block_seconds = 5"]
    shares = {"victim": "", **{name: share for name, (_, share) in SHARES.items()}}
    for name, token in tokens.items():
        config += ["[[tokens]]", f'name = "{name}"', f'hash = "{hash_token(token)}"',
                   'rules = "read-write"', shares[name]]
    (tmp / f"{prefix}gateway.toml").write_text("\n".join(config) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_GATEWAY_")}
    gateway = services.start(prefix + "gateway", [
        sys.executable, "-m", "redis_gateway", "serve", "--config",
        str(tmp / f"{prefix}gateway.toml")], env=env)
    url = f"http://127.0.0.1:{gateway_port}"
    wait_until(gateway, lambda: _ready(url), "/readyz")
    return gateway, url


def print_report(results: dict[str, Any], attacks: dict[str, Any], rss: int) -> None:
    def rate(r: dict[str, Any]) -> float:
        return float(r["requests"] / (r["duration_us"] / 1e6))

    quiet = [results["quiet"], results["quiet again"]]
    quiet_p99 = sum(r["latency_us"]["p99"] for r in quiet) / 2
    quiet_rps = sum(rate(r) for r in quiet) / 2
    print(f"\n{'victim single GET':<34} {'req/s':>10} {'p50':>9} {'p99':>9}  vs quiet")
    for name, title in (("quiet", "alone"), *((k, t) for k, (t, _) in SHARES.items()
                                              if k in results), ("quiet again", "alone again")):
        r = results[name]
        rps = rate(r)
        p50, p99 = r["latency_us"]["p50"], r["latency_us"]["p99"]
        ratio = "" if name.startswith("quiet") else \
            f"  p99 x{p99 / quiet_p99:.2f}, req/s x{rps / quiet_rps:.2f}"
        bad = sum(r["errors"].values())
        print(f"  {title:<32} {rps:>10,.0f} {p50 / 1000:>7.2f}ms {p99 / 1000:>7.2f}ms{ratio}"
              + (f"  ({bad} errors)" if bad else ""))
    print(f"gateway peak RSS: {rss / MB:.0f} MiB")
    for name, outcome in attacks.items():
        print(f"attacker ({name}): " + ", ".join(f"{k} {v}" for k, v in
                                                  sorted(outcome.items())))


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def _peak_rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("VmHWM:")).split()[1]) * 1024


# the attacker -------------------------------------------------------------------------------
async def attack(url: str, token: str, until: float, tasks: int, kinds: list[Any]
                 ) -> dict[str, int]:
    outcomes: Counter[str] = Counter()
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=tasks * 2, max_keepalive_connections=tasks)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30,
                                 limits=limits) as client:
        await asyncio.gather(*(_loop(kinds[i % len(kinds)], client, url, token, until,
                                     outcomes) for i in range(tasks)))
    return dict(outcomes)


async def _loop(kind: Any, client: httpx.AsyncClient, url: str, token: str, until: float,
                outcomes: Counter[str]) -> None:
    while time.time() < until:
        try:
            for status in await kind(client, url, token):
                outcomes[f"{kind.__name__.strip('_')}:{status}"] += 1
        except (httpx.HTTPError, OSError) as exc:
            outcomes[f"{kind.__name__.strip('_')}:{type(exc).__name__}"] += 1


async def _waits(client: httpx.AsyncClient, _url: str, _token: str) -> list[int]:
    bodies = [["WAIT", "1", "3000"], ["XREAD", "BLOCK\x00", "0", "STREAMS", "flood:s", "$"],
              ["BLPOP", "flood:empty", "0x1p20"],
              ["XREAD", "BLOCK", "10000", "STREAMS", "flood:s2", "$"]]
    replies = await asyncio.gather(*(client.post("/", json=b) for b in bodies))
    return [r.status_code for r in replies]


# The largest negative count the gateway sends on with max_reply_bytes = 4 MiB (3 bytes an
# element at least): an attacker who knows the check asks for just that many.
LARGEST_SENT = 4 * MB // 3


async def _big_replies(client: httpx.AsyncClient, _url: str, _token: str) -> list[int]:
    formats = [{}, {"Upstash-Response-Format": "resp2"}, {"Redis-Reply-Format": "typed-resp3"}]
    replies = [await client.post("/", json=["SRANDMEMBER", "flood:one", str(-count)],
                                 headers=h)
               for h in formats for count in (3_000_000, LARGEST_SENT)]
    replies.append(await client.post("/pipeline", json=[["GET", "flood:big"]] * 8))
    return [r.status_code for r in replies]


# Made once: the attacker spends its CPU on sending, not on encoding.
BIG_DOCUMENT = json.dumps({"query": "{ " + "__typename " * (4 * MB // 11) + "}"}).encode()


async def _graphql(client: httpx.AsyncClient, _url: str, token: str) -> list[int]:
    headers = {"x-api-key": token}
    replies = [await client.post("/graphql", json={"query": BOMB}, headers=headers),
               await client.post("/graphql", content=BIG_DOCUMENT, headers=headers)]
    return [r.status_code for r in replies]


async def _deep(client: httpx.AsyncClient, _url: str, _token: str) -> list[int]:
    return [(await client.post("/", json=["EVAL", DEEP, "0"])).status_code]


async def _slow_bodies(_client: httpx.AsyncClient, url: str, token: str) -> list[int]:
    """A POST announcing 9 MB that sends a few bytes now and then, until the gateway hangs
    up (its body deadline)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                 f"Content-Length: {9 * MB}\r\n\r\n".encode())
    try:
        while True:
            writer.write(b"[" * 64)
            await writer.drain()
            data = await asyncio.wait_for(reader.read(1024), 1.0)
            if data or reader.at_eof():
                return [int(data.split(b" ")[1]) if data else 0]
    except (TimeoutError, ConnectionError):
        return [0]
    finally:
        writer.close()


async def _unread_pipeline(_client: httpx.AsyncClient, url: str, token: str) -> list[int]:
    """300 pipelined GETs of a 1 MB value on a socket that reads nothing for a while."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.setblocking(False)
    request = (f"GET /get/flood:big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}"
               "\r\n\r\n").encode()
    try:
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(sock, request * 300)
        await asyncio.sleep(5)
        return [1]
    finally:
        sock.close()


async def _nothing(_client: httpx.AsyncClient, _url: str, _token: str) -> list[int]:
    """The control (``--only nothing``, not in the mix): the attacker process runs and
    sends nothing, so what the victim's ratios then show is the machine, not an attack."""
    await asyncio.sleep(1)
    return []


ATTACKS = {"waits": _waits, "big-replies": _big_replies, "graphql": _graphql, "deep": _deep,
           "slow-bodies": _slow_bodies, "unread-pipeline": _unread_pipeline}
KINDS = {**ATTACKS, "nothing": _nothing}

if __name__ == "__main__":
    sys.exit(main())
