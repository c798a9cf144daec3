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
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from redis_gateway.auth import hash_token, new_token


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up within {timeout} s")


class RedisServer:
    """A private redis-server; ``extra`` are more command-line options."""

    def __init__(self, *extra: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.extra = list(extra)
        self.dir = Path(tempfile.mkdtemp(prefix="rg-redis-"))
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
        _wait(self._answers, 10, f"redis-server on {self.port}")
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
    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rg-gw-")))

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
        _wait(self._healthy, 15, "the gateway")
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

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
