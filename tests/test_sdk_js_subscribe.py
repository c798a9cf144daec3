"""The ``@upstash/redis`` SDK's own subscribe and psubscribe tests, unchanged, against the
gateway's SSE endpoints (tests/js/upstash-sdk, run by Bun).

Install the dependencies once with ``npm ci --prefix tests/js`` (Bun comes from npm).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import GatewayProcess, RedisServer

JS_DIR = Path(__file__).parent / "js"
SDK_TESTS = JS_DIR / "upstash-sdk"
TIMEOUT = 180


def bun() -> str | None:
    for candidate in (JS_DIR / "node_modules" / "bun" / "bin" / "bun.exe",
                      JS_DIR / "node_modules" / ".bin" / "bun"):
        if candidate.exists() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("bun")


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    # A Redis of its own: the tests use fixed channel names (user:123, chat:*), and a
    # publish elsewhere in the suite must not reach them.
    server = RedisServer().start()
    gw = GatewayProcess(server.url).start()
    yield gw
    gw.stop()
    server.close()


def test_upstash_sdk_subscribe_tests(gateway: GatewayProcess) -> None:
    runner = bun()
    if runner is None:
        pytest.skip("bun is not installed; run `npm ci --prefix tests/js`")
    if not (JS_DIR / "node_modules" / "@upstash" / "redis").is_dir():
        pytest.skip("tests/js/node_modules is missing; run `npm ci --prefix tests/js` first")
    env = {**os.environ, "UPSTASH_REDIS_REST_URL": gateway.url,
           "UPSTASH_REDIS_REST_TOKEN": gateway.tokens["admin"],
           "UPSTASH_DISABLE_TELEMETRY": "1", "NO_COLOR": "1"}
    proc = subprocess.run(
        [runner, "test", "--timeout", "20000", "pkg/commands/subscribe.test.ts",
         "pkg/commands/psubscribe.test.ts"],
        cwd=SDK_TESTS, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        print(output)
        print(f"--- gateway log (tail) ---\n{gateway.log[-3000:]}")
    assert proc.returncode == 0, "bun test failed; its output is printed above"
    assert " 13 pass" in output and " 0 fail" in output, output
