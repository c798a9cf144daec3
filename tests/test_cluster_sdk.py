"""The Upstash SDK tests, unchanged, against a gateway in front of a Redis Cluster.

Every ``test_*`` of ``test_sdk_python`` runs here with this module's ``gateway`` (a
3-primary/3-replica cluster) and a ``prefix`` with a hash tag, so that the commands
that take several keys (MGET, DEL) find them in one slot, as Redis Cluster requires.
The JS SDK test runs unchanged: its key prefix carries a hash tag.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import test_sdk_js
import test_sdk_python
from test_sdk_python import redis  # noqa: F401 - the SDK client fixture, on this gateway

from support import GatewayProcess, RedisCluster

globals().update({name: test for name, test in vars(test_sdk_python).items()
                  if name.startswith("test_")})

CONFIG = '[backends.default]\ntopology = "cluster"\n'


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


def test_upstash_redis_js_sdk_on_cluster(gateway: GatewayProcess) -> None:
    """tests/js/sdk.test.mjs as it is: its keys carry the run's id as a hash tag."""
    test_sdk_js.test_upstash_redis_js_sdk(gateway)
