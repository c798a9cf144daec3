"""The Guild's graphql-ws and graphql-sse npm clients against /graphql (tests/js/graphql.test.mjs).

Install them once with ``npm ci --prefix tests/js``.
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


@pytest.fixture(scope="module", params=["builtin", "uvicorn"])
def gw(request: pytest.FixtureRequest) -> Iterator[GatewayProcess]:
    redis = RedisServer().start()
    gateway = GatewayProcess(redis.url, rules={"admin": "admin"},
                             config_extra=f'server = "{request.param}"\n')
    try:
        yield gateway.start()
    finally:
        gateway.stop()
        redis.close()


def test_graphql_ws_and_graphql_sse_clients(gw: GatewayProcess) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    if not (JS_DIR / "node_modules" / "graphql-ws").is_dir():
        pytest.skip("tests/js/node_modules is missing; run `npm ci --prefix tests/js` first")
    env = {**os.environ, "GATEWAY_URL": gw.url, "GATEWAY_TOKEN": gw.tokens["admin"],
           "NO_COLOR": "1"}
    proc = subprocess.run([node, "--test", "--test-reporter=spec", "graphql.test.mjs"],
                          cwd=JS_DIR, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:] + gw.log[-2000:]
