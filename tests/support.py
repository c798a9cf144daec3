"""Real processes for the tests: redis-server on free loopback ports, and the gateway.

Nothing here touches the machine's shared Redis on 6379.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from redis_gateway.auth import hash_token, new_token


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: object, timeout: float, what: str, poll: float = 0.02) -> None:
    """Until ``check()`` is true; a test failure naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(poll)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def _wait(check: object, timeout: float, what: str) -> None:
    """``wait_for`` for a server starting: a RuntimeError, which starters clean up after."""
    try:
        wait_for(check, timeout, what, poll=0.05)
    except AssertionError:
        raise RuntimeError(f"{what} did not come up within {timeout} s") from None


def numsub(redis: RedisServer, channel: str) -> int:
    """How many clients of ``redis`` are subscribed to ``channel`` (PUBSUB NUMSUB)."""
    reply = redis_command(redis.port, "PUBSUB", "NUMSUB", channel)
    assert isinstance(reply, list)
    return int(reply[1])


# Set by conftest for the session: what test processes leave behind (Redis and gateway
# directories, a CLI's home) goes here, and the whole of it is removed when the session ends.
SCRATCH_ROOT: Path | None = None


def scratch_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir=SCRATCH_ROOT))


class RedisServer:
    """A private redis-server; ``extra`` are more command-line options."""

    def __init__(self, *extra: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.extra = list(extra)
        self.dir = scratch_dir("rg-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            _wait(self._answers, 10, f"redis-server on {self.port}")
        except RuntimeError:
            self.stop()  # never leave a half-started server behind
            raise
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                reply = sock.recv(64)
                return reply.startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def cli(self, *args: str) -> str:
        out = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait()

    def pause(self) -> None:
        assert self.process
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process
        self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class GatewayProcess:
    """``redis-gateway serve`` in a child process, with a token per rule set."""

    redis_url: str
    rules: dict[str, str] = field(default_factory=lambda: {
        "admin": "admin", "rw": "read-write", "ro": "read-only",
    })
    config_extra: str = ""
    env: dict[str, str] = field(default_factory=dict)
    base_path: str = ""
    port: int = field(default_factory=free_port)
    tokens: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    # Kept after stop (tests read the log), removed with the session's scratch root.
    dir: Path = field(default_factory=lambda: scratch_dir("rg-gw-"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return (self.dir / "gateway.log").read_text()

    def token_table(self, name: str, rules: str, token: str, extra: str = "") -> str:
        return (f'[[tokens]]\nname = "{name}"\nhash = "{hash_token(token)}"\n'
                f'rules = "{rules}"\n{extra}\n')

    def write_config(self) -> Path:
        lines = [f'redis = "{self.redis_url}"', f"port = {self.port}",
                 f'base_path = "{self.base_path}"',
                 f'tokens_file = "{self.dir / "tokens.json"}"', self.config_extra]
        for name, rules in self.rules.items():
            self.tokens.setdefault(name, new_token())
            lines.append(self.token_table(name, rules, self.tokens[name]))
        path = self.dir / "gateway.toml"
        path.write_text("\n".join(lines))
        return path

    def start(self) -> GatewayProcess:
        config = self.write_config()
        env = {**os.environ, **self.env}
        log = open(self.dir / "gateway.log", "wb")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "redis_gateway", "serve", "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        try:
            _wait(self._healthy, 15, "the gateway")
        except RuntimeError:
            self.stop()  # never leave a half-started gateway behind
            raise
        return self

    def _healthy(self) -> bool:
        if self.process and self.process.poll() is not None:
            raise RuntimeError(f"gateway exited:\n{self.log}")
        try:
            return httpx.get(self.url + self.base_path + "/healthz", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def client(self, token: str = "admin", **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={
            "Authorization": f"Bearer {self.tokens[token]}"}, timeout=30, **kwargs)  # type: ignore[arg-type]

    def memory(self, *, peak: bool = False) -> int:
        """The gateway process's resident memory in bytes, from /proc: now (VmRSS), or the
        most it has had (VmHWM)."""
        assert self.process is not None
        field = "VmHWM:" if peak else "VmRSS:"
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(x for x in status.splitlines() if x.startswith(field)).split()[1]) * 1024

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# Topologies: Redis Cluster, Sentinel ---------------------------------------------------
def redis_command(port: int, *args: str | bytes | int, auth: tuple[str, str] | None = None,
                  timeout: float = 5.0) -> object:
    """One command on a plain-text port, its reply parsed by hiredis (errors returned)."""
    return redis_commands(port, [args], auth=auth, timeout=timeout)[-1]


def redis_commands(port: int, commands: list[tuple[str | bytes | int, ...]],
                   auth: tuple[str, str] | None = None, timeout: float = 5.0) -> list[object]:
    """Commands on one connection, in order; their replies."""
    import hiredis

    reader = hiredis.Reader()
    commands = [("AUTH", *auth), *commands] if auth else list(commands)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"".join(hiredis.pack_command(c) for c in commands))
        replies: list[object] = []
        while len(replies) < len(commands):
            data = sock.recv(1 << 16)
            if not data:
                raise ConnectionError(f"redis on {port} closed the connection")
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                replies.append(reply)
    return replies[1:] if auth else replies


def replicated(primary: int, replicas: int) -> bool:
    """Whether ``replicas`` replicas acknowledge a write made now. A replica streams
    writes only after its first acknowledgement following a full sync (up to a second,
    while INFO already says its link is up); WAIT asks for that acknowledgement."""
    _, acked = redis_commands(primary, [("SET", "test:replicated", "1"),
                                        ("WAIT", replicas, 1000)])
    return isinstance(acked, int) and acked >= replicas


class RedisCluster:
    """A Redis Cluster made by ``redis-cli --cluster create`` from fresh servers.

    ``node_timeout`` (ms) is how soon a silent primary is failed over: short for failover
    tests, long enough elsewhere that a busy CI machine causes none. Nodes also wait that
    long (0.5 to 5 s) before serving after they meet, so it is the cluster's start-up time.
    With ``certs`` every node also listens with TLS (clients, replication and the cluster
    bus); with ``user`` the default user is off and ``user`` is the only ACL user.
    """

    def __init__(self, primaries: int = 3, replicas: int = 1, *, node_timeout: int = 2000,
                 certs: Path | None = None, user: tuple[str, str] | None = None) -> None:
        self.replicas = replicas
        self.certs = certs
        self.user = user
        self.tls_ports: dict[int, int] = {}
        self.nodes: list[RedisServer] = []
        for _ in range(primaries * (1 + replicas)):
            extra = ["--cluster-enabled", "yes", "--cluster-port", str(free_port()),
                     "--cluster-node-timeout", str(node_timeout),
                     # Fail over whatever the replica's lag; keep replicas where they are.
                     "--cluster-replica-validity-factor", "0",
                     "--cluster-allow-replica-migration", "no",
                     "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
                     # CLUSTER SHARDS calls a replica "loading" until its replication
                     # offset moves: the primary's pings move it within a second.
                     "--repl-ping-replica-period", "1"]
            port = free_port()
            if certs is not None:
                self.tls_ports[port] = free_port()
                extra += ["--tls-port", str(self.tls_ports[port]), "--tls-cluster", "yes",
                          "--tls-replication", "yes", "--tls-auth-clients", "optional",
                          "--tls-cert-file", str(certs / "server.crt"),
                          "--tls-key-file", str(certs / "server.key"),
                          "--tls-ca-cert-file", str(certs / "ca.crt")]
            if user is not None:
                # One argument per word: redis-server quotes an argument with spaces.
                extra += ["--user", user[0], "on", f">{user[1]}", "~*", "&*", "+@all",
                          "--user", "default", "off",
                          "--masteruser", user[0], "--masterauth", user[1]]
            self.nodes.append(RedisServer(*extra, port=port))

    @property
    def url(self) -> str:
        """A seed URL, as a gateway is configured with."""
        first = self.nodes[0]
        scheme, port = ("rediss", self.tls_ports[first.port]) if self.certs else \
            ("redis", first.port)
        auth = f"{self.user[0]}:{self.user[1]}@" if self.user else ""
        return f"{scheme}://{auth}127.0.0.1:{port}"

    def command(self, node: RedisServer, *args: str | bytes | int) -> object:
        return redis_command(node.port, *args, auth=self.user)

    def start(self) -> RedisCluster:
        try:
            for node in self.nodes:
                node.start()
            cli = ["redis-cli"]
            if self.user:
                cli += ["--user", self.user[0], "--pass", self.user[1]]
            if self.certs:
                cli += ["--tls", "--cacert", str(self.certs / "ca.crt")]
            ports = [self.tls_ports.get(n.port, n.port) for n in self.nodes]
            subprocess.run([*cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                            "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                           check=True, capture_output=True, timeout=60)
            self.wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def running(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.process and n.process.poll() is None]

    def layout(self, node: RedisServer) -> dict[tuple[int, int], list[tuple[int, str]]]:
        """One node's view: slot range -> [(port, health)], the primary first."""
        view: dict[tuple[int, int], list[tuple[int, str]]] = {}
        shards = self.command(node, "CLUSTER", "SHARDS")
        assert isinstance(shards, list), shards
        for shard in shards:
            fields = dict(zip(shard[::2], shard[1::2], strict=True))
            nodes = [dict(zip(n[::2], n[1::2], strict=True)) for n in fields[b"nodes"]]
            nodes.sort(key=lambda n: (n[b"role"] != b"master", int(n[b"port"])))
            bounds = fields[b"slots"]
            for start, end in zip(bounds[::2], bounds[1::2], strict=True):
                view[(int(start), int(end))] = [(int(n[b"port"]), n[b"health"].decode())
                                                for n in nodes]
        return view

    def wait_ready(self, timeout: float = 30) -> None:
        """Until every running node says the cluster is ok and they agree on who serves
        what, with every replica of a running node online."""
        alive = {n.port for n in self.running()}

        def ready() -> bool:
            views = []
            for node in self.running():
                info = self.command(node, "CLUSTER", "INFO")
                if not isinstance(info, bytes) or b"cluster_state:ok" not in info:
                    return False
                views.append(self.layout(node))
            if any(v != views[0] for v in views) or \
                    sum(e - s + 1 for s, e in views[0]) != 16384:
                return False
            return all(health == "online" for nodes in views[0].values()
                       for port, health in nodes if port in alive)

        _wait(ready, timeout, "the Redis Cluster")

    def primary_for(self, key: str) -> RedisServer:
        slot = self.command(self.running()[0], "CLUSTER", "KEYSLOT", key)
        assert isinstance(slot, int)
        return self.primary_of_slot(slot)

    def primary_of_slot(self, slot: int) -> RedisServer:
        for (start, end), nodes in self.layout(self.running()[0]).items():
            if start <= slot <= end:
                return self.node(nodes[0][0])
        raise LookupError(f"no node serves slot {slot}")

    def replicas_of(self, primary: RedisServer) -> list[RedisServer]:
        for nodes in self.layout(primary).values():
            if nodes[0][0] == primary.port:
                return [self.node(port) for port, _ in nodes[1:]]
        return []

    def primaries(self) -> list[RedisServer]:
        ports = {nodes[0][0] for nodes in self.layout(self.running()[0]).values()}
        return [self.node(port) for port in sorted(ports)]

    def node(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    def close(self) -> None:
        for node in self.nodes:
            node.close()


class SentinelServer(RedisServer):
    """``redis-server sentinel.conf --sentinel``; Sentinel rewrites its file as it goes."""

    def __init__(self, config: str, port: int) -> None:
        super().__init__(port=port)
        self.config = config

    def start(self) -> SentinelServer:
        path = self.dir / "sentinel.conf"
        if not path.exists():
            path.write_text(self.config)
        self.process = subprocess.Popen(["redis-server", str(path), "--sentinel"],
                                        cwd=self.dir, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        _wait(self._answers, 10, f"redis-sentinel on {self.port}")
        return self


class SentinelGroup:
    """``count`` Sentinels watching ``primary`` as ``master`` (quorum 2), that know each
    other and the replicas from the start (no wait for their hello messages)."""

    def __init__(self, primary: RedisServer, replicas: list[RedisServer], count: int = 3,
                 master: str = "mymaster", down_after_ms: int = 1000) -> None:
        self.master = master
        ports = [free_port() for _ in range(count)]
        ids = [os.urandom(20).hex() for _ in ports]
        self.sentinels = []
        for port, myid in zip(ports, ids, strict=True):
            lines = [f"port {port}", "bind 127.0.0.1", f"sentinel myid {myid}",
                     "logfile sentinel.log",
                     f"sentinel monitor {master} 127.0.0.1 {primary.port} 2",
                     f"sentinel down-after-milliseconds {master} {down_after_ms}",
                     f"sentinel failover-timeout {master} 10000",
                     f"sentinel parallel-syncs {master} 1"]
            lines += [f"sentinel known-sentinel {master} 127.0.0.1 {p} {i}"
                      for p, i in zip(ports, ids, strict=True) if p != port]
            lines += [f"sentinel known-replica {master} 127.0.0.1 {r.port}" for r in replicas]
            self.sentinels.append(SentinelServer("\n".join(lines) + "\n", port))

    @property
    def urls(self) -> list[str]:
        return [f"redis://127.0.0.1:{s.port}" for s in self.sentinels]

    def start(self) -> SentinelGroup:
        try:
            for sentinel in self.sentinels:
                sentinel.start()
        except BaseException:
            self.close()
            raise
        return self

    def primary_port(self) -> int | None:
        """The primary's port once every Sentinel names the same one (around a failover
        they disagree for a moment), else None."""
        ports = set()
        for sentinel in self.sentinels:
            try:
                reply = redis_command(sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME",
                                      self.master, timeout=1)
            except OSError:
                return None
            if not isinstance(reply, list):
                return None
            ports.add(int(reply[1]))
        return ports.pop() if len(ports) == 1 else None

    def agreed_primary(self, timeout: float = 30) -> int:
        """The primary's port, waiting until the Sentinels agree on it."""
        deadline = time.monotonic() + timeout
        while (port := self.primary_port()) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Sentinels did not agree on a primary in {timeout} s")
            time.sleep(0.05)
        return port

    def close(self) -> None:
        for sentinel in self.sentinels:
            sentinel.close()


class WriteProbe:
    """Writes ``<prefix>N = N`` through a gateway one after another, in a thread, noting
    each answer's status and timing: what a client sees while a primary fails over."""

    def __init__(self, gateway: GatewayProcess, prefix: str) -> None:
        self.gateway = gateway
        self.prefix = prefix
        self.answers: list[tuple[float, float, int, int, str]] = []  # start, end, n, status, body
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, daemon=True)

    def __enter__(self) -> WriteProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _write(self) -> None:
        n = 0
        with self.gateway.client() as client:
            while not self._stop.is_set():
                n += 1
                started = time.monotonic()
                try:
                    response = client.post("/", json=["SET", f"{self.prefix}{n}", str(n)],
                                           timeout=10)
                    status, body = response.status_code, response.text
                except httpx.HTTPError as exc:
                    status, body = 0, repr(exc)
                self.answers.append((started, time.monotonic(), n, status, body))
                if status != 200:
                    time.sleep(0.01)  # a client retrying in a tight loop, but not spinning

    def acked(self) -> list[int]:
        return [n for _, _, n, status, _ in self.answers if status == 200]

    def wait_success_after(self, moment: float, timeout: float) -> float:
        """Seconds from ``moment`` to the end of the first success of a request sent after it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for started, ended, _, status, _ in list(self.answers):
                if started >= moment and status == 200:
                    return ended - moment
            time.sleep(0.02)
        raise AssertionError(f"no success within {timeout} s of the failure; last answers: "
                             f"{self.answers[-3:]}")

    def failures(self) -> list[tuple[float, float, int, int, str]]:
        return [a for a in self.answers if a[3] != 200]

    def report(self, what: str, recovery: float) -> str:
        failed = self.failures()
        slowest = max((end - start for start, end, *_ in failed), default=0.0)
        statuses = sorted({a[3] for a in failed})
        return (f"{what}: recovered in {recovery:.2f} s; {len(failed)} requests failed "
                f"meanwhile with {statuses}, the slowest in {slowest:.2f} s")


def command_calls(port: int, command: str, auth: tuple[str, str] | None = None) -> int:
    """How many times a server ran ``command`` (INFO commandstats): where did it go?"""
    info = redis_command(port, "INFO", "commandstats", auth=auth)
    assert isinstance(info, bytes)
    for line in info.decode().splitlines():
        if line.startswith(f"cmdstat_{command}:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def record_runs(backend: Any) -> list[int]:
    """Wrap a live backend's ``run``: the list it returns gets each call's command count,
    so a test can count round trips to Redis."""
    calls: list[int] = []
    real_run = backend.run

    async def counting_run(commands: Any, **kwargs: Any) -> Any:
        calls.append(len(commands))
        return await real_run(commands, **kwargs)

    backend.run = counting_run
    return calls
