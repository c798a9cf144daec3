"""A Redis Cluster primary dies (SIGKILL) or freezes (SIGSTOP) under traffic: requests
fail fast (503/504) during the failover and succeed again without a gateway restart;
no acknowledged write is lost. The recovery time is measured and printed.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from support import GatewayProcess, RedisCluster, WriteProbe

# command_timeout bounds how long a request waits on a frozen node; connect_timeout and
# the back-off how long reconnecting to it may take.
CONFIG = """
[limits]
command_timeout = 1
connect_timeout = 0.5
reconnect_backoff = 0.2

[backends.default]
topology = "cluster"
"""
# The slowest a failing request may take: a command timeout, then one connect.
FAIL_FAST = 1.0 + 0.5 + 0.5


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    c = RedisCluster(primaries=3, replicas=1, node_timeout=1000).start()
    yield c
    c.close()


@pytest.fixture(scope="module")
def gw(cluster: RedisCluster) -> Iterator[GatewayProcess]:
    g = GatewayProcess(cluster.url, config_extra=CONFIG).start()
    yield g
    g.stop()


def check_failover(gw: GatewayProcess, cluster: RedisCluster, capsys: pytest.CaptureFixture[str],
                   how: str) -> None:
    tag = f"{{failover-{how}}}"
    primary = cluster.primary_for(tag)
    replica = cluster.replicas_of(primary)[0]
    assert primary.process is not None
    with WriteProbe(gw, f"{tag}:") as probe:
        time.sleep(0.3)  # some writes acknowledged before the failure
        failed_at = time.monotonic()
        if how == "kill":
            primary.stop()
        else:
            primary.process.send_signal(signal.SIGSTOP)
        recovery = probe.wait_success_after(failed_at, timeout=30)
        time.sleep(0.2)  # and some after
    with capsys.disabled():
        print(f"\n  {probe.report(f'cluster failover ({how})', recovery)}")
    assert probe.failures(), "the failure was noticed"
    for started, ended, n, status, body in probe.failures():
        assert status in (503, 504), body
        assert ended - started < FAIL_FAST, (n, status, body)
    assert cluster.primary_for(tag).port == replica.port, "the replica took over"
    acked = probe.acked()
    with gw.client() as c:  # nothing acknowledged is lost
        values = c.post("/", json=["MGET", *(f"{tag}:{n}" for n in acked)]).json()["result"]
    assert values == [str(n) for n in acked]
    # The old primary comes back as a replica of the new one.
    if how == "kill":
        primary.start()
    else:
        primary.process.send_signal(signal.SIGCONT)
    cluster.wait_ready()
    assert primary.port in {r.port for r in cluster.replicas_of(replica)}


def test_primary_killed(gw: GatewayProcess, cluster: RedisCluster,
                        capsys: pytest.CaptureFixture[str]) -> None:
    check_failover(gw, cluster, capsys, "kill")


def test_primary_frozen(gw: GatewayProcess, cluster: RedisCluster,
                        capsys: pytest.CaptureFixture[str]) -> None:
    check_failover(gw, cluster, capsys, "sigstop")


def test_manual_failover_loses_nothing(gw: GatewayProcess, cluster: RedisCluster,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """CLUSTER FAILOVER on a replica pauses the primary until the replica has caught up:
    the gateway follows the MOVED replies that come after, and nothing is lost."""
    tag = "{failover-manual}"
    primary = cluster.primary_for(tag)
    replica = cluster.replicas_of(primary)[0]
    with WriteProbe(gw, f"{tag}:") as probe:
        time.sleep(0.3)
        started = time.monotonic()
        assert cluster.command(replica, "CLUSTER", "FAILOVER") == b"OK"
        deadline = time.monotonic() + 10
        while cluster.primary_for(tag).port != replica.port:
            assert time.monotonic() < deadline, "the replica did not take over"
            time.sleep(0.02)
        switched = time.monotonic() - started
        time.sleep(0.3)
    with capsys.disabled():
        print(f"\n  {probe.report('cluster manual failover', switched)}")
    assert not probe.failures(), probe.failures()[:3]
    acked = probe.acked()
    with gw.client() as c:
        values = c.post("/", json=["MGET", *(f"{tag}:{n}" for n in acked)]).json()["result"]
    assert values == [str(n) for n in acked]
    cluster.wait_ready()


def test_ready_again_after_failovers(gw: GatewayProcess) -> None:
    with gw.client() as c:
        assert c.get("/readyz").status_code == 200
        assert c.post("/", json=["DBSIZE"]).json()["result"] > 0
