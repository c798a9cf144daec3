"""Each token's commands on shared connections of its own (``token_connections``).

Tokens with the same rules run as the same Redis user; each still gets its own shared
connections (a lane), so one token's replies, however large, never come before another
token's on a socket they share. What Redis itself lists (``CLIENT LIST``) is the check;
bench/flood.py measures what it is worth to a victim.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from support import GatewayProcess, RedisServer, wait_for


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    s = RedisServer().start()
    yield s
    s.close()


def gateway(server: RedisServer, extra: str = "") -> GatewayProcess:
    return GatewayProcess(server.url, rules={"a": "read-write", "b": "read-write",
                                             "c": "read-write"}, config_extra=extra).start()


def get(gw: GatewayProcess, token: str, *argv: str) -> httpx.Response:
    response = httpx.post(gw.url, json=list(argv), timeout=30,
                          headers={"Authorization": f"Bearer {gw.tokens[token]}"})
    assert response.status_code == 200, response.text
    return response


def shared_connections(server: RedisServer) -> int:
    """Connections of the read-write rule set's managed user, not reserved ones (none
    here: every command below runs on shared connections)."""
    return server.cli("CLIENT", "LIST").count("user=rgw-")


def test_tokens_of_one_rule_set_get_connections_of_their_own(server: RedisServer) -> None:
    gw = gateway(server)
    try:
        for token in ("a", "b", "c"):
            get(gw, token, "SET", f"app:{token}", "1")
        wait_for(lambda: shared_connections(server) == 3, 5, "one connection per token")
    finally:
        gw.stop()
    wait_for(lambda: shared_connections(server) == 0, 5, "the gateway's connections closed")
    gw = gateway(server, "[backends.default]\ntoken_connections = false\n")
    try:
        for token in ("a", "b", "c"):
            get(gw, token, "GET", f"app:{token}")
        assert shared_connections(server) == 1
    finally:
        gw.stop()


def test_past_max_user_groups_tokens_share_their_rule_set_connections(
        server: RedisServer) -> None:
    wait_for(lambda: shared_connections(server) == 0, 5, "earlier gateways' connections closed")
    gw = gateway(server, "[backends.default]\nmax_user_groups = 1\n")
    try:
        get(gw, "a", "GET", "app:a")  # the one group a node may keep: a's own
        get(gw, "b", "GET", "app:b")  # no room: the rule set's, and a's idle lane goes
        get(gw, "a", "GET", "app:a")  # no room for a lane again: the rule set's too
        wait_for(lambda: shared_connections(server) == 1, 5, "one group for both tokens")
    finally:
        gw.stop()
