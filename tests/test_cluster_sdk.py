"""The Upstash SDK tests, unchanged, against a gateway in front of a Redis Cluster.

Every ``test_*`` of ``test_sdk_python`` runs here with this module's ``gateway`` (a
3-primary/3-replica cluster) and its own key prefixes, without a hash tag: the commands
that take several keys (MGET, DEL) are split by slot (``test_cluster_multikey.py``), and
each transaction's keys share one slot. The JS SDK test runs unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import test_sdk_js
import test_sdk_python
from test_sdk_python import prefix, redis  # noqa: F401 - their fixtures, on this gateway

from support import GatewayProcess, RedisCluster

globals().update({name: test for name, test in vars(test_sdk_python).items()
                  if name.startswith("test_")})

CONFIG = '[backends.default]\ntopology = "cluster"\n'


@pytest.fixture(scope="module")
def gateway(cluster: RedisCluster) -> Iterator[GatewayProcess]:
    g = GatewayProcess(cluster.url, config_extra=CONFIG).start()
    yield g
    g.stop()


def test_keys_of_the_sdk_tests_spread_over_the_cluster(gateway: GatewayProcess,
                                                       cluster: RedisCluster) -> None:
    """The keys of the tests above spread over several shards."""
    with gateway.client() as c:
        assert c.post("/", json=["DBSIZE"]).json()["result"] > 0
    sizes = [cluster.command(p, "DBSIZE") for p in cluster.primaries()]
    assert sum(1 for n in sizes if n) >= 2, sizes


def test_upstash_redis_js_sdk_on_cluster(gateway: GatewayProcess) -> None:
    """tests/js/sdk.test.mjs as it is: its keys carry the run's id as a hash tag."""
    test_sdk_js.test_upstash_redis_js_sdk(gateway)
