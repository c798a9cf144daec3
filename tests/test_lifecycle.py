"""Stopping, reloading and supervising a running gateway: SIGTERM, SIGHUP, workers.

The HTTP here is spoken over raw sockets, so that "a full reply" and "closed before any
byte" can be told apart exactly: an answer cut in the middle fails the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from redis_gateway.auth import TokenRecord, hash_token, new_token, write_tokens_file

from support import GatewayProcess, RedisServer, free_port, redis_command, redis_commands, wait_for


class NoReply(Exception):
    """The connection closed (or was refused or reset) before any byte of a response."""


class CutReply(AssertionError):
    """Part of a response arrived, then the connection ended: never acceptable."""


def exchange(sock: socket.socket, method: str, path: str, token: str = "",
             body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    head = f"{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n"
    if token:
        head += f"authorization: Bearer {token}\r\n"
    try:
        sock.sendall(head.encode() + b"\r\n" + body)
    except OSError as exc:
        raise NoReply(str(exc)) from None
    return read_response(sock)


# What a read took past the response it parsed: the start of the next one on the socket
# (two responses may arrive in one segment).
_unread: weakref.WeakKeyDictionary[socket.socket, bytes] = weakref.WeakKeyDictionary()


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = _unread.pop(sock, b"")
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            if data:
                raise CutReply(f"the response ended in its head: {data!r}")
            raise NoReply("closed before any byte")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise CutReply(f"the body ended after {len(rest)} of {length} bytes")
        rest += chunk
    if len(rest) > length:
        _unread[sock] = rest[length:]
    return int(lines[0].split()[1]), headers, rest[:length]


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=30)


class Load(threading.Thread):
    """Keep-alive clients writing a new key per request until the gateway is gone."""

    def __init__(self, port: int, token: str, prefix: str, argv: list[str] | None = None
                 ) -> None:
        super().__init__(daemon=True)
        self.port, self.token, self.prefix, self.argv = port, token, prefix, argv
        self.acked: list[str] = []
        self.finished_at: list[float] = []  # when each 200 arrived
        self.failures: list[str] = []

    def run(self) -> None:
        i = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                sock = connect(self.port)
            except OSError:
                return  # refused: the gateway has stopped listening
            with sock:
                while True:
                    key = f"{self.prefix}:{i}"
                    i += 1
                    argv = self.argv or ["SET", key, "1"]
                    try:
                        status, headers, body = exchange(sock, "POST", "/", self.token,
                                                         json.dumps(argv).encode())
                    except NoReply:
                        break  # not acknowledged: fine
                    except (CutReply, OSError) as exc:
                        self.failures.append(repr(exc))
                        return
                    if status != 200:
                        self.failures.append(f"{status} {body!r}")
                        return
                    self.acked.append(key)
                    self.finished_at.append(time.monotonic())
                    if headers.get("connection") == "close":
                        break


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def gateway_with(redis: RedisServer) -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for gw in started:
        workers = children(gw.process.pid) if gw.process else []
        gw.stop()
        kill_all(workers)  # a failed test leaves no worker behind


def start(made: list[GatewayProcess], redis: RedisServer, extra: str = "") -> GatewayProcess:
    gw = GatewayProcess(redis.url, rules={"rw": "read-write"},
                        config_extra=f"drain_timeout = 20\n{extra}")
    made.append(gw)
    return gw.start()


def workers_of(gw: GatewayProcess, count: int) -> list[int]:
    assert gw.process
    wait_for(lambda: len(children(gw.process.pid)) == count, 15, f"{count} workers")  # type: ignore[union-attr]
    return children(gw.process.pid)


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_under_load_loses_no_acknowledged_request(
        redis: RedisServer, gateway_with: list[GatewayProcess], workers: int) -> None:
    gw = start(gateway_with, redis, f"workers = {workers}")
    token = gw.tokens["rw"]
    if workers > 1:
        workers_of(gw, workers)
    prefix = f"drain{workers}:{os.getpid()}"
    writers = [Load(gw.port, token, f"{prefix}:{n}") for n in range(4)]
    # Requests that take a second each: some are in flight when the signal comes.
    slow = [Load(gw.port, token, f"{prefix}:slow{n}", ["BLPOP", f"{prefix}:absent", "1"])
            for n in range(2)]
    for load in [*writers, *slow]:
        load.start()
    wait_for(lambda: sum(len(w.acked) for w in writers) >= 200, 30, "200 acknowledged writes")
    wait_for(lambda: b"cmd=blpop" in redis_command(redis.port, "CLIENT", "LIST"),  # type: ignore[operator]
             10, "a BLPOP in flight")
    assert gw.process
    signalled = time.monotonic()
    gw.process.send_signal(signal.SIGTERM)
    for load in [*writers, *slow]:
        load.join(60)
        assert not load.is_alive()
    assert gw.process.wait(30) == 0, gw.log
    failures = [f for load in [*writers, *slow] for f in load.failures]
    assert not failures, failures
    # A request in flight when SIGTERM came was answered, after it.
    assert any(t > signalled for load in slow for t in load.finished_at)
    acked = [key for w in writers for key in w.acked]
    present = redis_commands(redis.port, [("EXISTS", key) for key in acked])
    assert present == [1] * len(acked)


def test_readyz_turns_503_when_the_drain_starts(
        redis: RedisServer, gateway_with: list[GatewayProcess]) -> None:
    gw = start(gateway_with, redis)
    token = gw.tokens["rw"]
    with connect(gw.port) as sock:
        # A request that takes 2 s, and a readiness check queued behind it on the same
        # connection: the check is answered during the drain.
        blpop = json.dumps(["BLPOP", "ready:absent", "2"]).encode()
        sock.sendall(f"POST / HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n"
                     f"content-length: {len(blpop)}\r\n\r\n".encode() + blpop +
                     b"GET /readyz HTTP/1.1\r\nhost: x\r\n\r\n")
        wait_for(lambda: b"cmd=blpop" in redis_command(redis.port, "CLIENT", "LIST"),  # type: ignore[operator]
                 10, "the BLPOP in flight")
        assert gw.process
        gw.process.send_signal(signal.SIGTERM)
        status, headers, body = read_response(sock)
        assert (status, json.loads(body)) == (200, {"result": None})
        status, headers, body = read_response(sock)
        assert status == 503 and "stopping" in json.loads(body)["error"]
        assert headers["connection"] == "close"
    assert gw.process.wait(30) == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_reloads_tokens_on_open_connections(
        redis: RedisServer, gateway_with: list[GatewayProcess], tmp_path: Path,
        workers: int) -> None:
    gw = start(gateway_with, redis, f"workers = {workers}")
    if workers > 1:
        workers_of(gw, workers)
    old = gw.tokens["rw"]
    fresh = new_token()
    tokens_file = tmp_path / "new-tokens.json"
    write_tokens_file(tokens_file, [TokenRecord("fresh", hash_token(fresh), "read-only")])
    with connect(gw.port) as sock:
        assert exchange(sock, "GET", "/get/k", old)[0] == 200
        assert exchange(sock, "GET", "/get/k", fresh)[0] == 401
        # The configuration now names another tokens file and no longer has 'rw'.
        config = gw.dir / "gateway.toml"
        text = re.sub(r"tokens_file = .*", f'tokens_file = "{tokens_file}"', config.read_text())
        config.write_text(text.split("[[tokens]]")[0])
        assert gw.process
        gw.process.send_signal(signal.SIGHUP)
        wait_for(lambda: exchange(sock, "GET", "/get/k", fresh)[0] == 200, 15,
                 "the new token accepted on the same connection")
        assert exchange(sock, "GET", "/get/k", old)[0] == 401
        assert exchange(sock, "POST", "/set/k/v", fresh)[0] == 403  # read-only
    # The supervisor passes the signal on: every worker has reloaded, whichever a new
    # connection lands on.
    wait_for(lambda: gw.log.count("reloaded") == workers, 15, "every worker reloaded")
    for _ in range(20):
        with connect(gw.port) as sock:
            assert exchange(sock, "GET", "/get/k", fresh)[0] == 200
            assert exchange(sock, "GET", "/get/k", old)[0] == 401


def test_sighup_with_a_broken_configuration_keeps_serving(
        redis: RedisServer, gateway_with: list[GatewayProcess]) -> None:
    gw = start(gateway_with, redis)
    config = gw.dir / "gateway.toml"
    config.write_text(config.read_text() + "\nno_such_setting = 1\n")
    assert gw.process
    gw.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "not reloaded" in gw.log, 15, "the refusal logged")
    assert "no_such_setting" in gw.log
    with connect(gw.port) as sock:
        assert exchange(sock, "GET", "/get/k", gw.tokens["rw"])[0] == 200


def test_a_killed_worker_is_replaced(
        redis: RedisServer, gateway_with: list[GatewayProcess]) -> None:
    gw = start(gateway_with, redis, "workers = 2")
    first = workers_of(gw, 2)
    os.kill(first[0], signal.SIGKILL)
    assert gw.process
    wait_for(lambda: len(set(children(gw.process.pid)) - set(first)) == 1  # type: ignore[union-attr]
             and len(children(gw.process.pid)) == 2, 15, "a new worker")  # type: ignore[union-attr]
    wait_for(lambda: "starting a new one" in gw.log, 5, "the restart logged")
    assert "signal SIGKILL" in gw.log
    for _ in range(20):  # both workers answer (the kernel spreads connections over them)
        with connect(gw.port) as sock:
            assert exchange(sock, "GET", "/get/k", gw.tokens["rw"])[0] == 200
    gw.stop()
    assert gw.process.returncode == 0, gw.log


def test_the_supervisor_gives_up_on_workers_that_die_at_once(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as blocker:  # the port is taken, without SO_REUSEPORT
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        env = {**os.environ, "XDG_DATA_HOME": str(tmp_path)}
        process = subprocess.Popen(
            [sys.executable, "-m", "redis_gateway", "serve", "--port", str(port),
             "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=env)
        try:
            output = process.communicate(timeout=60)[0]
        finally:
            kill_all(children(process.pid))
            process.kill()
    assert process.returncode == 1, output
    assert "gives up" in output and "cannot listen on" in output
    assert "Traceback" not in output
    assert "listening on" not in output


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_of_the_gateway_leaves_no_embedded_redis(tmp_path: Path, workers: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_GATEWAY_")}
    env["XDG_DATA_HOME"] = str(tmp_path)
    # A killed gateway cannot remove its embedded Redis's directory: it is left here.
    env["TMPDIR"] = str(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "redis_gateway", "serve", "--port", str(free_port()),
         "--workers", str(workers)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=env)
    assert process.stdout
    spawned: list[int] = []
    try:
        for line in process.stdout:
            if "try: curl" in line:
                break
        spawned = children(process.pid)
        names = [Path(f"/proc/{p}/comm").read_text().strip() for p in spawned]
        assert names.count("redis-server") == 1, names
        assert len(spawned) == 1 + (workers if workers > 1 else 0)
        process.kill()
        process.wait()
        wait_for(lambda: not any(alive(p) for p in spawned), 15,
                 "the embedded Redis and the workers gone")
    finally:
        kill_all(spawned)
        process.kill()
        process.wait()


def test_workers_metrics_add_up_in_one_scrape(
        redis: RedisServer, gateway_with: list[GatewayProcess]) -> None:
    """The supervisor gives its workers one metrics directory of this run's own: a scrape,
    whichever worker answers it, counts the requests of both, also after one is replaced."""
    from prometheus_client.parser import text_string_to_metric_families

    metrics_port = free_port()
    gw = start(gateway_with, redis, f'workers = 2\nmetrics_listen = "127.0.0.1:{metrics_port}"')
    first = workers_of(gw, 2)

    def served() -> float:
        with connect(metrics_port) as sock:
            status, _, body = exchange(sock, "GET", "/metrics")
        assert status == 200
        return sum(sample.value for family in text_string_to_metric_families(body.decode())
                   for sample in family.samples
                   if sample.name == "redis_gateway_requests_total"
                   and sample.labels.get("command") == "get")

    for _ in range(30):  # new connections: the kernel spreads them over both workers
        with connect(gw.port) as sock:
            assert exchange(sock, "GET", "/get/k", gw.tokens["rw"])[0] == 200
    assert served() == 30
    os.kill(first[0], signal.SIGKILL)
    assert gw.process
    wait_for(lambda: len(set(children(gw.process.pid)) - set(first)) == 1  # type: ignore[union-attr]
             and len(children(gw.process.pid)) == 2, 15, "a new worker")  # type: ignore[union-attr]
    # Counters of a dead worker stay counted (Prometheus counters never go down).
    assert served() == 30
    gw.stop()
    assert gw.process.returncode == 0, gw.log


def open_stream(port: int, path: str, token: str) -> socket.socket:
    """An SSE stream, read until Redis confirmed the subscription."""
    sock = connect(port)
    sock.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n"
                 "accept: text/event-stream\r\n\r\n".encode())
    data = b""
    while b"data: subscribe," not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the stream ended before it was confirmed: {data!r}"
        data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data
    return sock


def read_to_end(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_sigterm_tells_open_streams_to_reconnect(
        redis: RedisServer, gateway_with: list[GatewayProcess]) -> None:
    """A stream is not a request that finishes: the drain ends it with a last event telling
    its client to reconnect, and the gateway stops long before drain_timeout (20 s)."""
    gw = start(gateway_with, redis)
    with open_stream(gw.port, "/subscribe/news", gw.tokens["rw"]) as sock:
        assert gw.process
        gw.process.send_signal(signal.SIGTERM)
        rest = read_to_end(sock)
    assert b"event: reconnect" in rest and b"reconnect,draining," in rest, rest
    assert rest.endswith(b"0\r\n\r\n"), rest  # the chunked body ended properly
    gw.process.wait(timeout=15)
    assert gw.process.returncode == 0, gw.log


def test_sighup_sends_open_streams_to_the_new_configuration(
        redis: RedisServer, gateway_with: list[GatewayProcess]) -> None:
    gw = start(gateway_with, redis)
    with open_stream(gw.port, "/subscribe/news", gw.tokens["rw"]) as sock:
        assert gw.process
        gw.process.send_signal(signal.SIGHUP)
        rest = read_to_end(sock)
    assert b"reconnect,draining," in rest, rest
    with open_stream(gw.port, "/subscribe/news", gw.tokens["rw"]):  # the new app streams
        pass


def test_sigterm_tells_an_idle_websocket_to_reconnect(
        redis: RedisServer, gateway_with: list[GatewayProcess]) -> None:
    """A /ws session with no subscription is a stream too: the drain pushes 'reconnect'
    and closes it with 1012 (service restart), not a dropped connection."""
    import asyncio

    import websockets

    gw = start(gateway_with, redis)

    async def session() -> tuple[list[str], int | None]:
        async with websockets.connect(f"ws://127.0.0.1:{gw.port}/ws?_token={gw.tokens['rw']}"
                                      ) as ws:
            await ws.send(json.dumps(["PING"]))
            seen = [await asyncio.wait_for(ws.recv(), 10)]
            assert gw.process
            gw.process.send_signal(signal.SIGTERM)
            try:
                while True:
                    seen.append(await asyncio.wait_for(ws.recv(), 15))
            except websockets.ConnectionClosed as closed:
                return [str(m) for m in seen], closed.rcvd.code if closed.rcvd else None

    seen, code = asyncio.run(session())
    assert json.loads(seen[0]) == {"result": "PONG"}
    assert json.loads(seen[-1])["push"][:2] == ["reconnect", "draining"], seen
    assert code == 1012
    assert gw.process
    gw.process.wait(timeout=15)
    assert gw.process.returncode == 0, gw.log
