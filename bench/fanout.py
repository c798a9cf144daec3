"""Benchmark: pub/sub fan-out, redis-gateway (SSE and WebSocket) beside webdis (WebSocket
and chunked HTTP), same Redis, same run.

    .venv/bin/python bench/fanout.py [--subscribers 1000] [--rate 50] [--seconds 5]

For each way in, 1,000 subscribers (in --client-procs client processes) subscribe to one
channel; once every one is confirmed the server's memory is read (per idle subscriber:
the growth over its memory before, divided by the subscribers), then one publisher sends
--rate messages a second for --seconds straight to Redis (the same input for every
system), each message carrying its send time. Reported per way: deliveries a second
(messages received by all subscribers / time from the first send to the last receipt),
p50/p99/max delivery latency, messages lost, and the server's CPU seconds.

Everything is on loopback, clients included: on a 2-core machine the client processes take
CPU from the server under test, the same for every system. Compare within one run only.
Writes bench/results/fanout-<timestamp>.json and stops every process it started.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import select
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import hiredis
from run import (  # the wrk benchmark's process handling, shared
    BenchError,
    Services,
    free_port,
    redis_call,
    wait_until,
)

from redis_gateway.auth import hash_token, new_token

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
CHANNEL = "bench:fanout"
STOP = "stop"
WARM = "warm"  # published until every subscriber is ready; never counted
WAYS = ("gateway-sse", "gateway-ws", "gateway-graphql-sse", "gateway-graphql-ws", "webdis-ws",
        "webdis-chunked")


# --- client side: one process, many subscribers ------------------------------------------

class Tally:
    def __init__(self) -> None:
        self.latencies_us: list[int] = []
        self.last_ns = 0
        self.stopped = 0

    def payload(self, text: str) -> bool:
        """Counts one message; False once it is the stop marker."""
        if text == STOP:
            self.stopped += 1
            return False
        if text == WARM:
            return True
        now = time.time_ns()
        self.latencies_us.append((now - int(text)) // 1000)
        self.last_ns = max(self.last_ns, now)
        return True


async def _http_stream(host: str, port: int, request: bytes) -> tuple[
        asyncio.StreamReader, asyncio.StreamWriter, bool]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    if status != b"200":
        raise BenchError(f"subscription answered {head.decode(errors='replace')[:200]}")
    return reader, writer, b"transfer-encoding: chunked" in head.lower()


async def _chunks(reader: asyncio.StreamReader, chunked: bool) -> Any:
    while True:
        if not chunked:
            data = await reader.read(65536)
            if not data:
                return
            yield data
            continue
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            return
        data = await reader.readexactly(size + 2)
        yield data[:-2]


async def gateway_sse(url: str, token: str, tally: Tally, ready: asyncio.Event) -> None:
    host, port = url.split("//")[1].split(":")
    request = (f"POST /subscribe/{CHANNEL} HTTP/1.1\r\nHost: {host}\r\n"
               f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n"
               "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n[]").encode()
    reader, writer, chunked = await _http_stream(host, int(port), request)
    buffer = b""
    prefix = f"data: message,{CHANNEL},".encode()
    try:
        async for data in _chunks(reader, chunked):
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.startswith(b"data: subscribe,"):
                    ready.set()
                elif line.startswith(prefix) and not tally.payload(line[len(prefix):].decode()):
                    return
    finally:
        writer.close()


async def gateway_graphql_sse(url: str, token: str, tally: Tally,
                              ready: asyncio.Event) -> None:
    host, port = url.split("//")[1].split(":")
    body = json.dumps({"query": f'subscription {{ messages(channels: ["{CHANNEL}"]) '
                                '{ message } }'}).encode()
    request = (f"POST /graphql HTTP/1.1\r\nHost: {host}\r\nx-api-key: {token}\r\n"
               "Accept: text/event-stream\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    reader, writer, chunked = await _http_stream(host, int(port), request)
    buffer = b""
    try:
        async for data in _chunks(reader, chunked):
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line == b": subscribed":
                    ready.set()
                elif line.startswith(b"data: {"):
                    message = json.loads(line[6:])["data"]["messages"]["message"]
                    if not tally.payload(message):
                        return
    finally:
        writer.close()


async def webdis_chunked(url: str, _token: str, tally: Tally, ready: asyncio.Event) -> None:
    host, port = url.split("//")[1].split(":")
    request = f"GET /SUBSCRIBE/{CHANNEL} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    reader, writer, chunked = await _http_stream(host, int(port), request)
    try:
        async for data in _chunks(reader, chunked):
            for part in data.split(b"}")[:-1]:  # one JSON object a chunk, or several
                kind, _channel, payload = json.loads(part + b"}")["SUBSCRIBE"]
                if kind == "subscribe":
                    ready.set()
                elif kind == "message" and not tally.payload(payload):
                    return
    finally:
        writer.close()


async def _websocket(url: str, first: list[str], tally: Tally, ready: asyncio.Event,
                     message_of: Any, headers: dict[str, str] | None = None) -> None:
    import websockets

    # webdis 0.1.9 answers no handshake without an Origin header.
    async with websockets.connect(url, additional_headers=headers, max_queue=None,
                                  compression=None, origin="http://127.0.0.1",  # type: ignore[arg-type]
                                  open_timeout=30, ping_interval=None) as socket:
        for text in first:
            await socket.send(text)
        async for raw in socket:
            kind, payload = message_of(json.loads(raw))
            if kind == "subscribe":
                ready.set()
            elif kind == "message" and not tally.payload(payload):
                return


def _webdis_message(body: Any) -> tuple[str, str]:
    kind, _channel, payload = body["SUBSCRIBE"]
    return kind, payload


def _gateway_message(body: Any) -> tuple[str, str]:
    # The gateway's /ws pushes pub/sub messages as {"push": [kind, channel, payload]}
    # (JSON format); replies to commands as {"result": ...}.
    push = body.get("push") if isinstance(body, dict) else None
    if push is None:
        return "", ""
    return push[0], push[-1]


async def gateway_ws(url: str, token: str, tally: Tally, ready: asyncio.Event) -> None:
    ws = url.replace("http://", "ws://") + "/ws"
    await _websocket(ws, [json.dumps(["SUBSCRIBE", CHANNEL])], tally, ready, _gateway_message,
                     {"Authorization": f"Bearer {token}"})


def _graphql_ws_message(body: Any) -> tuple[str, str]:
    if body.get("type") == "connection_ack":
        return "subscribe", ""  # ready once acknowledged; the subscription follows at once
    if body.get("type") == "next":
        return "message", body["payload"]["data"]["messages"]["message"]
    return "", ""


async def gateway_graphql_ws(url: str, token: str, tally: Tally, ready: asyncio.Event) -> None:
    import websockets

    ws = url.replace("http://", "ws://") + "/graphql"
    query = f'subscription {{ messages(channels: ["{CHANNEL}"]) {{ message }} }}'
    async with websockets.connect(ws, subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                                  max_queue=None, compression=None, open_timeout=30,
                                  ping_interval=None) as socket:
        await socket.send(json.dumps({"type": "connection_init",
                                      "payload": {"x-api-key": token}}))
        await socket.recv()  # connection_ack
        await socket.send(json.dumps({"id": "1", "type": "subscribe",
                                      "payload": {"query": query}}))
        async for raw in socket:
            kind, payload = _graphql_ws_message(json.loads(raw))
            if kind == "message":
                if payload == WARM:  # the subscription is live
                    ready.set()
                elif not tally.payload(payload):
                    return


async def webdis_ws(url: str, _token: str, tally: Tally, ready: asyncio.Event) -> None:
    ws = url.replace("http://", "ws://") + "/.json"
    await _websocket(ws, [json.dumps(["SUBSCRIBE", CHANNEL])], tally, ready, _webdis_message)


CLIENTS = {"gateway-sse": gateway_sse, "gateway-ws": gateway_ws,
           "gateway-graphql-sse": gateway_graphql_sse,
           "gateway-graphql-ws": gateway_graphql_ws, "webdis-ws": webdis_ws,
           "webdis-chunked": webdis_chunked}


async def client_main(way: str, url: str, token: str, count: int) -> None:
    """Opens `count` subscribers, prints "ready" once all are confirmed, then a JSON tally
    once each has received the stop marker (or stdin closes)."""
    tally = Tally()
    readies = [asyncio.Event() for _ in range(count)]
    tasks = []
    for event in readies:  # a few at a time: a burst of 1,000 SYNs overflows the backlog
        tasks.append(asyncio.create_task(CLIENTS[way](url, token, tally, event)))
        if len(tasks) % 50 == 0:
            await asyncio.sleep(0.01)
    all_ready = asyncio.ensure_future(asyncio.gather(*(e.wait() for e in readies)))
    # Until every subscription is confirmed, or one fails (a subscriber task ends early).
    await asyncio.wait([all_ready, *tasks], return_when=asyncio.FIRST_COMPLETED, timeout=60)
    failed = [t for t in tasks if t.done() and t.exception()]
    if failed or not all(e.is_set() for e in readies):
        problem = failed[0].exception() if failed else "not every subscription was confirmed"
        print(json.dumps({"error": repr(problem)}), flush=True)
        return
    print("ready", flush=True)
    await asyncio.wait(tasks, timeout=120)
    errors = [repr(t.exception()) for t in tasks if t.done() and not t.cancelled()
              and t.exception()]
    for task in tasks:
        task.cancel()
    print(json.dumps({"latencies_us": tally.latencies_us, "last_ns": tally.last_ns,
                      "stopped": tally.stopped, "errors": len(errors),
                      "first_error": errors[0] if errors else None}), flush=True)


# --- driver ----------------------------------------------------------------------------

class Publisher:
    """PUBLISH on one connection of its own, straight to Redis: the same input for every
    system, at the rate asked (a connection per message would not keep up under load)."""

    def __init__(self, port: int) -> None:
        self._socket = socket.create_connection(("127.0.0.1", port), timeout=10)
        self._reader = hiredis.Reader()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._socket.close()

    def __call__(self, message: str) -> Any:
        self._socket.sendall(hiredis.pack_command(("PUBLISH", CHANNEL, message)))
        while (reply := self._reader.gets()) is False:
            chunk = self._socket.recv(65536)
            if not chunk:
                raise BenchError("Redis closed the publisher's connection")
            self._reader.feed(chunk)
        return reply


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no RSS for {pid}")


def percentile(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def measure(way: str, url: str, token: str, server: Any, redis_port: int,
            args: argparse.Namespace) -> dict[str, Any]:
    base_rss = rss_kib(server.proc.pid)
    procs = []
    per = [args.subscribers // args.client_procs + (i < args.subscribers % args.client_procs)
           for i in range(args.client_procs)]
    for count in per:
        procs.append(subprocess.Popen(
            [sys.executable, __file__, "--client", way, "--url", url, "--token", token,
             "--count", str(count)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True))
    try:
        # Until every client process says "ready", publish a warm-up message now and then:
        # a GraphQL subscription has no confirmation of its own, its first message is one.
        waiting = {proc.stdout.fileno(): proc for proc in procs if proc.stdout}
        deadline = time.monotonic() + 120
        with Publisher(redis_port) as publish:
            while waiting:
                if time.monotonic() > deadline:
                    raise BenchError(f"{way}: the subscribers were not all ready in time")
                publish(WARM)
                readable, _, _ = select.select(list(waiting), [], [], 0.1)
                for fd in readable:
                    line = os.read(fd, 65536).decode().strip()
                    if line != "ready":
                        raise BenchError(f"{way}: a client process said {line[:300]!r}")
                    del waiting[fd]
        numsub = redis_call(redis_port, "PUBSUB", "NUMSUB", CHANNEL)
        idle_rss = rss_kib(server.proc.pid)
        cpu_before = server.cpu_seconds()
        interval = 1 / args.rate
        sent = 0
        first_ns = time.time_ns()
        start = time.monotonic()
        with Publisher(redis_port) as publish:
            while time.monotonic() - start < args.seconds:
                publish(str(time.time_ns()))
                sent += 1
                time.sleep(max(0.0, start + sent * interval - time.monotonic()))
            publish(STOP)
        tallies = []
        for proc in procs:
            out, _ = proc.communicate(timeout=180)
            tallies.append(json.loads(out.strip().splitlines()[-1]))
        cpu = server.cpu_seconds() - cpu_before
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    latencies = [v for t in tallies for v in t["latencies_us"]]
    last_ns = max(t["last_ns"] for t in tallies)
    expected = sent * args.subscribers
    seconds = (last_ns - first_ns) / 1e9 if last_ns else float("nan")
    return {
        "way": way, "subscribers": args.subscribers,
        "redis_numsub": numsub[1] if isinstance(numsub, list) else numsub,
        "rss_idle_kib_per_subscriber": round((idle_rss - base_rss) / args.subscribers, 1),
        "sent": sent, "delivered": len(latencies), "lost": expected - len(latencies),
        "deliveries_per_s": round(len(latencies) / seconds) if latencies else 0,
        "p50_ms": percentile(latencies, 0.5) / 1000, "p99_ms": percentile(latencies, 0.99) / 1000,
        "max_ms": max(latencies, default=0) / 1000, "server_cpu_s": round(cpu, 2),
        # Subscribers whose connection failed mid-run (their missing messages are "lost").
        "dropped_subscribers": sum(t["errors"] for t in tallies),
        "first_error": next((t["first_error"] for t in tallies if t["first_error"]), None),
    }


def stop(service: Any) -> None:
    service.proc.terminate()
    try:
        service.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        service.proc.kill()
        service.proc.wait()


def start_gateway(services: Services, tmp: Path, redis_port: int, port: int,
                  token: str) -> tuple[Any, str]:
    (tmp / "gateway.toml").write_text(
        f'redis = "redis://127.0.0.1:{redis_port}"\nport = {port}\n'
        f'log_level = "warning"\ntokens_file = "{tmp / "tokens.json"}"\n'
        "[limits]\nmax_connections = 5000\n"
        "[streams]\nmax_streams_per_token = 5000\n"
        f'[[tokens]]\nname = "bench"\nhash = "{hash_token(token)}"\nrules = "admin"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_GATEWAY_")}
    gateway = services.start("gateway", [sys.executable, "-m", "redis_gateway", "serve",
                                         "--config", str(tmp / "gateway.toml")], env=env)
    url = f"http://127.0.0.1:{port}"
    wait_until(gateway, lambda: urllib.request.urlopen(url + "/healthz", timeout=1)
               .status == 200, "/healthz")
    return gateway, url


def start_webdis(services: Services, tmp: Path, redis_port: int, port: int) -> tuple[Any, str]:
    (tmp / "webdis.json").write_text(json.dumps({
        "redis_host": "127.0.0.1", "redis_port": redis_port, "http_host": "127.0.0.1",
        "http_port": port, "threads": 2, "pool_size": 2, "daemonize": False,
        "websockets": True, "database": 0, "verbosity": 1,
        "logfile": str(tmp / "webdis-own.log")}))
    webdis = services.start("webdis", ["webdis", str(tmp / "webdis.json")])
    url = f"http://127.0.0.1:{port}"
    wait_until(webdis, lambda: urllib.request.urlopen(url + "/PING", timeout=1)
               .status == 200, "/PING")
    return webdis, url


def run(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="redis-gateway-fanout-"))
    services = Services(tmp)
    started = dt.datetime.now(dt.UTC)
    results = []
    try:
        ports: set[int] = set()
        redis_port = free_port(ports)
        redis = services.start("redis", [
            "redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(tmp), "--daemonize", "no",
            "--maxclients", "10000"])
        wait_until(redis, lambda: redis_call(redis_port, "PING") == b"PONG", "PING")
        token = new_token()
        for way in args.ways:
            # A fresh server for each way: memory per idle subscriber from the same start.
            if way.startswith("gateway"):
                server, url = start_gateway(services, tmp, redis_port, free_port(ports), token)
            else:
                server, url = start_webdis(services, tmp, redis_port, free_port(ports))
            try:
                result = measure(way, url, token, server, redis_port, args)
            finally:
                stop(server)
            results.append(result)
            print(json.dumps(result), flush=True)
            # Every subscriber gone before the next way: nothing left subscribed in Redis.
            wait_until(redis, lambda: redis_call(redis_port, "PUBSUB", "NUMSUB",
                                                 CHANNEL)[1] == 0, "NUMSUB 0")
    finally:
        services.stop_all()
    report = {"date": started.isoformat(), "machine": platform.platform(),
              "cpus": os.cpu_count(), "args": vars(args), "results": results}
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"fanout-{started:%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(report, indent=2))
    print_table(results)
    print(f"written to {path}")
    return 0


def print_table(results: list[dict[str, Any]]) -> None:
    print(f"\n{'way':16} {'deliveries/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'lost':>6} "
          f"{'KiB/idle sub':>12} {'server CPU s':>12}")
    for r in results:
        print(f"{r['way']:16} {r['deliveries_per_s']:>12} {r['p50_ms']:>8.1f} "
              f"{r['p99_ms']:>8.1f} {r['lost']:>6} {r['rss_idle_kib_per_subscriber']:>12} "
              f"{r['server_cpu_s']:>12}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50, help="messages a second")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--ways", nargs="+", choices=WAYS, default=list(WAYS))
    # Internal: a client process.
    parser.add_argument("--client", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        asyncio.run(client_main(args.client, args.url, args.token, args.count))
        return 0
    try:
        return run(args)
    except BenchError as exc:
        print(f"fanout: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
