from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import support
from support import GatewayProcess, RedisCluster, RedisServer


@pytest.fixture(scope="session", autouse=True)
def _scratch_root() -> Iterator[None]:
    """One directory for what the tests' processes leave behind, removed at the end."""
    support.SCRATCH_ROOT = Path(tempfile.mkdtemp(prefix="rg-tests-"))
    yield
    shutil.rmtree(support.SCRATCH_ROOT, ignore_errors=True)
    support.SCRATCH_ROOT = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    """A redis-server of the module's own: its pub/sub counts, ACL users and settings are
    no other module's (a module may name another fixture ``redis``)."""
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def gateway(redis_server: RedisServer) -> Iterator[GatewayProcess]:
    """A gateway on the session's Redis, with tokens 'admin', 'rw' and 'ro'."""
    gw = GatewayProcess(redis_server.url, rules={
        "admin": "admin",
        "rw": "read-write",
        "ro": "read-only",
        "scoped": "read-write resetkeys ~app:* %R~shared:*",
        "nohash": "read-write -@hash",
        "configget": "+@all -@admin +config|get allkeys",
    }).start()
    yield gw
    gw.stop()


@pytest.fixture
def admin(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with gateway.client("admin") as client:
        yield client


@pytest.fixture(scope="session")
def cluster() -> Iterator[RedisCluster]:
    """A 3-primary/3-replica Redis Cluster, shared by the modules that do not break it
    (the failover tests start their own)."""
    c = RedisCluster(primaries=3, replicas=1).start()
    yield c
    c.close()
