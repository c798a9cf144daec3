"""The Upstash SDK tests, unchanged, against a gateway in front of a Redis Cluster.

Every ``test_*`` of ``test_sdk_python`` runs here with this module's ``gateway`` (a
3-primary/3-replica cluster) and a ``prefix`` with a hash tag, so that the commands
that take several keys (MGET, DEL) find them in one slot, as Redis Cluster requires.
The JS SDK test runs the same way on a copy whose key prefix carries a hash tag.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_sdk_js
import test_sdk_python
from test_sdk_python import redis  # noqa: F401 - the SDK client fixture, on this gateway

from support import GatewayProcess, RedisCluster

globals().update({name: test for name, test in vars(test_sdk_python).items()
                  if name.startswith("test_")})

CONFIG = '[backends.default]\ntopology = "cluster"\n'


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    c = RedisCluster(primaries=3, replicas=1).start()
    yield c
    c.close()


@pytest.fixture(scope="module")
def gateway(cluster: RedisCluster) -> Iterator[GatewayProcess]:
    g = GatewayProcess(cluster.url, config_extra=CONFIG).start()
    yield g
    g.stop()


@pytest.fixture
def prefix() -> str:
    return f"py:{{{uuid.uuid4().hex[:8]}}}:"


def test_keys_of_the_sdk_tests_spread_over_the_cluster(gateway: GatewayProcess,
                                                       cluster: RedisCluster) -> None:
    """The prefixes above are random: over a few tests, several shards serve them."""
    with gateway.client() as c:
        assert c.post("/", json=["DBSIZE"]).json()["result"] > 0
    sizes = [cluster.command(p, "DBSIZE") for p in cluster.primaries()]
    assert sum(1 for n in sizes if n) >= 2, sizes


# The one line of tests/js/sdk.test.mjs that changes here: a hash tag around the run's id.
JS_PREFIX = "const prefix = `js:${Date.now()}:${process.pid}:`;"
JS_TAGGED = "const prefix = `js:{${Date.now()}:${process.pid}}:`;"


def test_upstash_redis_js_sdk_on_cluster(gateway: GatewayProcess, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/js/sdk.test.mjs with its per-run key prefix in a hash tag: its MGET and its
    final DEL of every key it made need their keys in one slot."""
    text = (test_sdk_js.JS_DIR / "sdk.test.mjs").read_text()
    if JS_TAGGED not in text:
        assert JS_PREFIX in text, "sdk.test.mjs changed its key prefix: update JS_PREFIX"
        text = text.replace(JS_PREFIX, JS_TAGGED)
    (tmp_path / "sdk.test.mjs").write_text(text)
    modules = test_sdk_js.JS_DIR / "node_modules"
    if modules.is_dir():
        (tmp_path / "node_modules").symlink_to(modules)
    monkeypatch.setattr(test_sdk_js, "JS_DIR", tmp_path)  # where its test runs node
    test_sdk_js.test_upstash_redis_js_sdk(gateway)
