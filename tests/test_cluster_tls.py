"""A Redis Cluster that takes TLS and an ACL user only: the gateway reaches every node
with the seed URL's TLS settings and credentials, never in clear."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from test_backend_security import certs  # noqa: F401 - the CA and certificates fixture

from redis_gateway.backends.slots import key_slot

from support import GatewayProcess, RedisCluster

USER = ("gateway", "s3cret@pass:x")  # needs escaping in a URL


@pytest.fixture(scope="module")
def tls_cluster(certs: Path) -> Iterator[RedisCluster]:  # noqa: F811
    c = RedisCluster(primaries=3, replicas=0, certs=certs, user=USER).start()
    yield c
    c.close()


def test_tls_and_acl_to_every_node(tls_cluster: RedisCluster, certs: Path) -> None:  # noqa: F811
    port = tls_cluster.tls_ports[tls_cluster.nodes[0].port]
    url = f"rediss://{USER[0]}:{quote(USER[1], safe='')}@127.0.0.1:{port}"
    gw = GatewayProcess(url, config_extra=(
        '[backends.default]\ntopology = "cluster"\n'
        f'tls_ca_file = "{certs / "ca.crt"}"\n'
        f'tls_cert_file = "{certs / "client.crt"}"\n'
        f'tls_key_file = "{certs / "client.key"}"\n'))
    gw.start()
    try:
        keys = [f"tls:{i}" for i in range(30)]
        with gw.client() as c:
            answer = c.post("/pipeline", json=[["SET", k, k] for k in keys]).json()
            assert answer == [{"result": "OK"}] * len(keys)
            assert c.post("/", json=["DBSIZE"]).json() == {"result": len(keys)}
            # Tokens run as the ACL user of their rules, which the gateway made as USER.
            assert c.post("/", json=["ACL", "WHOAMI"]).json()["result"].startswith("rgw-")
        primaries = tls_cluster.primaries()
        assert {tls_cluster.primary_of_slot(key_slot(k.encode())).port for k in keys} == \
            {p.port for p in primaries}
        for node in primaries:
            clients = tls_cluster.command(node, "CLIENT", "LIST")
            assert isinstance(clients, bytes)
            # The gateway's connections (its own and its tokens', not this one, made to
            # ask) on the TLS port only.
            ours = [line for line in clients.decode().splitlines()
                    if (f"user={USER[0]}" in line or "user=rgw-" in line)
                    and "cmd=client|list" not in line]
            assert any(f"user={USER[0]}" in line for line in ours), ours
            assert ours, f"no gateway connection to {node.port}"
            tls_port = tls_cluster.tls_ports[node.port]
            assert all(f"laddr=127.0.0.1:{tls_port} " in line for line in ours), ours
        assert "s3cret" not in gw.log
    finally:
        gw.stop()
