"""Streams on a Redis Cluster: SSUBSCRIBE on the primary that owns the channel's slot,
plain pub/sub on one node (a Cluster forwards PUBLISH to every node)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from test_sse import Events, auth

from support import GatewayProcess, RedisCluster

CONFIG = """
[limits]
command_timeout = 2
connect_timeout = 0.5

[backends.default]
topology = "cluster"
"""


@pytest.fixture(scope="module")
def gw(cluster: RedisCluster) -> Iterator[GatewayProcess]:
    g = GatewayProcess(cluster.url, rules={"rw": "read-write"}, config_extra=CONFIG).start()
    yield g
    g.stop()


def numshardsub(cluster: RedisCluster, channel: str) -> dict[int, int]:
    counts = {}
    for node in cluster.primaries():
        reply = cluster.command(node, "PUBSUB", "SHARDNUMSUB", channel)
        assert isinstance(reply, list)
        counts[node.port] = int(reply[1])
    return counts


@pytest.mark.parametrize("channel", ["orders:{a}", "orders:{b}", "orders:{c}"])
def test_shard_channels_on_their_primary(gw: GatewayProcess, cluster: RedisCluster,
                                         channel: str) -> None:
    owner = cluster.primary_for(channel)
    with httpx.stream("GET", gw.url + "/ssubscribe/" + channel.replace("{", "%7B").replace(
            "}", "%7D"), headers=auth(gw, "rw"), timeout=10) as response:
        events = Events(response)
        assert events.next() == [f"data: ssubscribe,{channel},1"]
        assert numshardsub(cluster, channel) == {
            node.port: int(node.port == owner.port) for node in cluster.primaries()}
        # Through the REST front door: SPUBLISH goes to the owner of its channel's slot.
        with gw.client("rw") as client:
            assert client.post("/", json=["SPUBLISH", channel, "hi"]).json() == {"result": 1}
        assert events.next() == [f"data: smessage,{channel},hi"]


def test_plain_channels_hear_every_node(gw: GatewayProcess, cluster: RedisCluster) -> None:
    with httpx.stream("GET", gw.url + "/subscribe/everywhere", headers=auth(gw, "rw"),
                      timeout=10) as response:
        events = Events(response)
        assert events.next() == ["data: subscribe,everywhere,1"]
        for node in cluster.primaries():  # published on any node, heard on the one
            cluster.command(node, "PUBLISH", "everywhere", str(node.port))
            assert events.next() == [f"data: message,everywhere,{node.port}"]
