"""The real ``@upstash/redis`` npm SDK against the gateway (tests/js/sdk.test.mjs).

Install its dependencies once with ``npm ci --prefix tests/js``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support import GatewayProcess

JS_DIR = Path(__file__).parent / "js"
TIMEOUT = 120


def test_upstash_redis_js_sdk(gateway: GatewayProcess) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed; the @upstash/redis SDK test needs Node 20+")
    if not (JS_DIR / "node_modules" / "@upstash" / "redis").is_dir():
        pytest.skip("tests/js/node_modules is missing; run `npm ci --prefix tests/js` first")

    env = {
        **os.environ,
        "UPSTASH_REDIS_REST_URL": gateway.url,
        "UPSTASH_REDIS_REST_TOKEN": gateway.tokens["admin"],
        "UPSTASH_DISABLE_TELEMETRY": "1",
        "NO_COLOR": "1",
    }
    try:
        proc = subprocess.run(
            [node, "--test", "--test-reporter=spec", "sdk.test.mjs"],
            cwd=JS_DIR, env=env, capture_output=True, text=True, timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        out, err = (_text(exc.stdout), _text(exc.stderr))
        pytest.fail(f"node --test timed out after {TIMEOUT} s\n"
                    f"--- node stdout ---\n{out}\n--- node stderr ---\n{err}")
    code = proc.returncode
    if code != 0:
        print(f"--- node stdout ---\n{proc.stdout}\n--- node stderr ---\n{proc.stderr}")
        print(f"--- gateway log (tail) ---\n{gateway.log[-5000:]}")
    assert code == 0, f"node --test sdk.test.mjs exited {code}; its output is printed above"


def _text(data: str | bytes | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""
