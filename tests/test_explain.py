"""`redis-gateway token explain` agrees with what a real request gets.

Generated commands (Hypothesis) for tokens with different rules, on a managed backend and
on one where the gateway alone enforces: whatever ``explain`` says, a real request through
a running gateway gets the same (allowed: not refused; refused: the same status).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redis_gateway import settings as settings_mod
from redis_gateway.app import Gateway
from redis_gateway.explain import Explanation, explain

from support import GatewayProcess, RedisServer

RULES = {
    "ro": "read-only",
    "scoped": "read-write resetkeys ~app:* %R~shared:*",
    "nohash": "read-write -@hash",
    "writeonly": "+@all -@dangerous resetkeys %W~w:* ~app:*",
    "channels": "read-write resetchannels &news:*",
    "scripts": "read-write +@scripting resetkeys ~app:*",
}
# The same rules on a backend where only the gateway checks them.
GATEWAY_ONLY = {f"{name}-gw": rules for name, rules in RULES.items()}


@pytest.fixture(scope="module")
def gateway(redis: RedisServer) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(redis.url, rules={**RULES, **GATEWAY_ONLY}, config_extra=f"""
[backends.plain]
url = "{redis.url}"
enforcement = "gateway"
""")
    config = gw.write_config()
    text = config.read_text()
    for name in GATEWAY_ONLY:  # their tokens aim at the "plain" backend
        text = text.replace(f'name = "{name}"\n', f'name = "{name}"\nbackend = "plain"\n')
    gw.write_config = lambda: (config.write_text(text), config)[1]  # type: ignore[method-assign]
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def explainer(gateway: GatewayProcess, loop: asyncio.AbstractEventLoop) -> Iterator[Gateway]:
    app = Gateway(settings_mod.load(gateway.dir / "gateway.toml", env={}))
    yield app
    loop.run_until_complete(app.close())


PREFIXES = ["app:", "shared:", "w:", "other:", "redis-gateway:"]
key = st.sampled_from(PREFIXES)


def _commands() -> st.SearchStrategy[list[str]]:
    # Keys are named by their type, so no command meets a key of another type.
    return st.one_of(
        key.map(lambda p: ["GET", f"{p}str"]),
        key.map(lambda p: ["SET", f"{p}str", "v"]),
        st.tuples(key, key).map(lambda ks: ["MGET", f"{ks[0]}str", f"{ks[1]}str"]),
        st.tuples(key, key).map(lambda ks: ["DEL", f"{ks[0]}x", f"{ks[1]}y"]),
        st.tuples(key, key).map(lambda ks: ["COPY", f"{ks[0]}str", f"{ks[1]}copy",
                                            "REPLACE"]),
        key.map(lambda p: ["HSET", f"{p}hash", "f", "v"]),
        key.map(lambda p: ["HGET", f"{p}hash", "f"]),
        key.map(lambda p: ["LPUSH", f"{p}list", "v"]),
        key.map(lambda p: ["BLPOP", f"{p}list", "0.01"]),
        key.map(lambda p: ["XADD", f"{p}stream", "*", "f", "v"]),
        key.map(lambda p: ["OBJECT", "ENCODING", f"{p}str"]),
        key.map(lambda p: ["SORT", f"{p}list", "BY", "nosort"]),
        key.map(lambda p: ["SORT", f"{p}list", "BY", f"{p}w_*"]),
        key.map(lambda p: ["EVAL", "return redis.call('GET', KEYS[1])", "1", f"{p}str"]),
        st.just(["EVAL", "return 1", "0"]),
        st.sampled_from(["news:a", "sport:b"]).map(lambda c: ["PUBLISH", c, "m"]),
        st.sampled_from([["PING"], ["DBSIZE"], ["CONFIG", "GET", "maxmemory"],
                         ["KEYS", "app:*"], ["SUBSCRIBE", "news:a"], ["CLIENT", "ID"],
                         ["MULTI"], ["SELECT", "1"], ["NOSUCH", "x"], ["GET"],
                         ["FLUSHALL"], ["SWAPDB", "0", "1"]]),
    )


def real_status(gateway: GatewayProcess, name: str, argv: list[str]) -> httpx.Response:
    with gateway.client(name) as client:
        return client.post("/", json=argv)


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted({**RULES, **GATEWAY_ONLY})), argv=_commands())
def test_explain_agrees_with_a_real_request(gateway: GatewayProcess, explainer: Gateway,
                                           loop: asyncio.AbstractEventLoop, name: str,
                                           argv: list[str]) -> None:
    answer: Explanation = loop.run_until_complete(
        explain(explainer, name, [a.encode() for a in argv]))
    response = real_status(gateway, name, argv)
    detail: Any = (argv, name, answer.text(), response.status_code, response.text)
    if answer.allowed:
        assert response.status_code not in (401, 403), detail
        if response.status_code == 400:  # Redis's own error reply, not a refusal
            assert "NOPERM" not in response.text, detail
    else:
        assert response.status_code == answer.status, detail
        assert response.json()["error"] == answer.reasons[0] or answer.status == 403, detail


def test_explain_says_why(gateway: GatewayProcess, explainer: Gateway,
                          loop: asyncio.AbstractEventLoop) -> None:
    answer = loop.run_until_complete(explain(explainer, "scoped", [b"GET", b"shared:1"]))
    assert answer.allowed
    text = answer.text()
    assert "'+@all' allows GET (the last rule of" in text
    assert "keys: 'shared:1' by 'shared:*'" in text
    assert "runs on a shared connection" in text
    assert "Redis agrees: ACL DRYRUN as 'rgw-" in text
    answer = loop.run_until_complete(explain(explainer, "nohash", [b"HSET", b"h", b"f", b"v"]))
    assert not answer.allowed and answer.status == 403
    assert "'-@hash' denies HSET" in answer.text()
    answer = loop.run_until_complete(explain(explainer, "scripts-gw", [b"EVAL", b"return 1",
                                                                      b"0"]))
    assert not answer.allowed and "enforcement = \"gateway\"" in answer.text()


def test_the_command_line(gateway: GatewayProcess) -> None:
    base = [sys.executable, "-m", "redis_gateway", "token", "explain", "--config",
            str(gateway.dir / "gateway.toml")]
    allowed = subprocess.run([*base, "ro", "GET", "k"], capture_output=True, text=True)
    assert allowed.returncode == 0 and allowed.stdout.startswith("ALLOWED"), allowed
    refused = subprocess.run([*base, "ro", "SET", "k", "v"], capture_output=True, text=True)
    assert refused.returncode == 1 and refused.stdout.startswith("REFUSED (403)"), refused
    unknown = subprocess.run([*base, "nobody", "GET", "k"], capture_output=True, text=True)
    assert unknown.returncode == 1 and "no token named 'nobody'" in unknown.stderr
