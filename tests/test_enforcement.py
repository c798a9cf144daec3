"""Redis enforces the tokens' rules: scripts, functions and whatever else the gateway cannot
see into are checked by Redis, command by command, as the token's own ACL user (issue 9).

Each reproduction runs in every mode (managed, mapped, gateway) on a single server, and in
managed mode on every topology (replicas, Sentinel, Cluster), where ACL users are not
replicated and the gateway must make them on each node, new ones included.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import httpx
import pytest

from redis_gateway.acl import acl_rules, acl_user
from redis_gateway.policy import parse

from support import (
    GatewayProcess,
    RedisCluster,
    RedisServer,
    SentinelGroup,
    redis_command,
    replicated,
)

PFX = "+@all -@dangerous -@admin ~app:*"
RULES = {"admin": "admin", "rw": "read-write", "pfx": PFX, "ro": "read-only"}
FLUSH = "return redis.call('flushall')"
LIBRARY = "#!lua name=wipe\nredis.register_function('wipe', function() " \
          "return redis.call('flushall') end)"


def post(gw: GatewayProcess, token: str, body: object, path: str = "/") -> httpx.Response:
    return httpx.post(gw.url + path, json=body, timeout=30,
                      headers={"Authorization": f"Bearer {gw.tokens[token]}"})


def forbidden(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 403, response.text
    for word in words:
        assert word in response.json()["error"], response.text


def seeded(server: RedisServer) -> None:
    server.cli("SET", "app:a", "1")
    server.cli("SET", "secret:a", "1")
    server.cli("DEL", "app:n", "secret:x")


def scripts_are_checked_by_redis(gw: GatewayProcess, server: RedisServer) -> None:
    """The reproductions with scripts, and their effect checked on the server itself."""
    seeded(server)
    forbidden(post(gw, "rw", ["EVAL", FLUSH, "0"]), "script")
    forbidden(post(gw, "pfx", ["EVAL", "return redis.call('set', 'secret:x', '1')", "0"]),
              "script")
    forbidden(post(gw, "pfx", ["EVAL", "return redis.call('get', KEYS[1]) .. "
                                       "redis.call('get', 'secret:a')", "1", "app:a"]),
              "script")
    forbidden(post(gw, "pfx", ["EVAL", "return redis.call('select', '3')", "0"]), "script")
    # A function, loaded by the only kind of token that may load one (unrestricted), runs
    # as the caller when called.
    assert post(gw, "admin", ["FUNCTION", "LOAD", "REPLACE", LIBRARY]).status_code == 200
    forbidden(post(gw, "rw", ["FCALL", "wipe", "0"]), "script")
    assert server.cli("EXISTS", "secret:x") == "0"
    assert server.cli("DBSIZE") != "0"
    # What the rules allow, scripts may do.
    assert post(gw, "pfx", ["EVAL", "return redis.call('incr', KEYS[1])", "1",
                            "app:n"]).json() == {"result": 1}
    assert post(gw, "admin", ["EVAL", "return redis.call('dbsize')", "0"]).status_code == 200
    post(gw, "admin", ["FUNCTION", "DELETE", "wipe"])


# single server, each mode ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    s = RedisServer().start()
    yield s
    s.close()


@contextlib.contextmanager
def gateway(url: str, extra: str = "") -> Iterator[GatewayProcess]:
    gw = GatewayProcess(url, rules=RULES, config_extra=extra)
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


def test_managed_mode_makes_a_user_per_rule_set(server: RedisServer) -> None:
    with gateway(server.url) as gw:
        scripts_are_checked_by_redis(gw, server)
        users = server.cli("ACL", "USERS").split()
        made = [u for u in users if u.startswith("rgw-")]
        assert len(made) == len(RULES), users  # one per rule set, made at start
        # Each carries exactly the rules the gateway computed for it.
        rules = server.cli("ACL", "GETUSER", made[0])
        assert "on" in rules and "nopass" not in rules
        assert "managed" in gw.log and "one ACL user per rule set" in gw.log


def test_stale_users_are_removed_and_others_kept(server: RedisServer) -> None:
    with gateway(server.url):
        pass
    before = {u for u in server.cli("ACL", "USERS").split() if u.startswith("rgw-")}
    assert len(before) >= len(RULES)
    server.cli("ACL", "SETUSER", "rgw-someone-elses", "on", ">their-password", "+ping")
    # A gateway whose tokens no longer include read-only removes that user, and only it.
    smaller = GatewayProcess(server.url, rules={k: v for k, v in RULES.items() if k != "ro"})
    smaller.start()
    try:
        after = {u for u in server.cli("ACL", "USERS").split() if u.startswith("rgw-")}
    finally:
        smaller.stop()
    assert after == (before - {acl_user_name(RULES["ro"])}) | {"rgw-someone-elses"}
    server.cli("ACL", "DELUSER", "rgw-someone-elses")


def test_a_user_another_gateway_is_connected_as_is_kept(server: RedisServer) -> None:
    """Two gateways with different tokens on one Redis: the second's start does not cut
    the first off (found by a red-team pass: users were removed at every restart)."""
    with gateway(server.url) as first:
        assert post(first, "ro", ["GET", "app:k"]).status_code == 200  # connected as it
        second = GatewayProcess(server.url, rules={k: v for k, v in RULES.items() if k != "ro"})
        second.start()
        try:
            assert acl_user_name(RULES["ro"]) in server.cli("ACL", "USERS").split()
            assert "clients are connected as it" in second.log
        finally:
            second.stop()
        assert post(first, "ro", ["GET", "app:k"]).status_code == 200


def acl_user_name(rules: str) -> str:
    return acl_user(parse(rules), 0, b":").name


def test_a_user_removed_behind_the_gateways_back_comes_back(server: RedisServer) -> None:
    with gateway(server.url) as gw:
        assert post(gw, "rw", ["SET", "app:k", "1"]).status_code == 200
        for user in server.cli("ACL", "USERS").split():
            if user.startswith("rgw-"):
                server.cli("ACL", "DELUSER", user)  # kills its connections too
        deadline = time.monotonic() + 5
        while (r := post(gw, "rw", ["SET", "app:k", "2"])).status_code != 200:
            assert time.monotonic() < deadline, r.text
            time.sleep(0.1)
        assert server.cli("GET", "app:k") == "2"


def test_mapped_mode_runs_tokens_as_existing_users(server: RedisServer) -> None:
    users = ""
    for name, rules in RULES.items():
        acl = acl_rules(parse(rules), 0)
        server.cli("ACL", "SETUSER", f"mapped-{name}", "reset", "on", f">pw-{name}", *acl)
        users += (f'[backends.default.users."{rules}"]\nusername = "mapped-{name}"\n'
                  f'password = "pw-{name}"\n')
    config = '[backends.default]\nenforcement = "mapped"\n' + users
    with gateway(server.url, config) as gw:
        scripts_are_checked_by_redis(gw, server)
        clients = server.cli("CLIENT", "LIST")
        assert "user=mapped-rw" in clients and "user=mapped-pfx" in clients
        assert "mapped" in gw.log
        # A token whose rules are not mapped is refused with the reason.
        extra = GatewayProcess(server.url, rules={"other": "+@read ~*"},
                               config_extra=config)
        extra.start()
        try:
            forbidden(post(extra, "other", ["GET", "app:a"]), "no Redis user is mapped")
        finally:
            extra.stop()


def test_gateway_mode_refuses_what_it_cannot_see(server: RedisServer) -> None:
    with gateway(server.url, '[backends.default]\nenforcement = "gateway"\n') as gw:
        seeded(server)
        for token in ("rw", "pfx"):
            forbidden(post(gw, token, ["EVAL", "return 1", "0"]), "managed")
            forbidden(post(gw, token, ["FCALL", "wipe", "0"]), "managed")
        assert post(gw, "admin", ["EVAL", "return 1", "0"]).json() == {"result": 1}
        assert server.cli("DBSIZE") != "0"
        assert "enforcement = \"gateway\"" in gw.log


def test_managed_mode_without_acl_rights_says_so_and_does_not_weaken(
        server: RedisServer) -> None:
    server.cli("ACL", "SETUSER", "limited-gw", "on", ">pw", "+@all", "-acl", "~*", "&*")
    try:
        gw = GatewayProcess(server.url.replace("redis://", "redis://limited-gw:pw@"),
                            rules={"rw": "read-write"})
        gw.start()
        try:
            response = post(gw, "rw", ["GET", "app:a"])
            assert response.status_code == 503, response.text
            assert "ACL SETUSER" in response.json()["error"]
            assert "no weaker mode" in gw.log
        finally:
            gw.stop()
    finally:
        server.cli("ACL", "DELUSER", "limited-gw")


# topologies, managed mode ----------------------------------------------------------------------
def test_replicas_get_the_users_too() -> None:
    primary = RedisServer("--repl-diskless-sync-delay", "0").start()
    replica = None
    try:
        replica = RedisServer("--replicaof", "127.0.0.1", str(primary.port)).start()
        deadline = time.monotonic() + 10
        while not replicated(primary.port, 1):
            assert time.monotonic() < deadline
        extra = f'[backends.default]\ntopology = "replicas"\nreplicas = ["{replica.url}"]\n'
        with gateway(primary.url, extra) as gw:
            scripts_are_checked_by_redis(gw, primary)
            primary.cli("SET", "app:r", "v")
            deadline = time.monotonic() + 5
            while post(gw, "ro", ["GET", "app:r"]).json() != {"result": "v"}:
                assert time.monotonic() < deadline
            # ACL users are not replicated: the gateway made them on the replica itself.
            assert any(u.startswith("rgw-") for u in replica.cli("ACL", "USERS").split())
            assert "user=rgw-" in replica.cli("CLIENT", "LIST")
    finally:
        if replica is not None:
            replica.close()
        primary.close()


def test_sentinel_primary_and_the_new_one_after_a_failover() -> None:
    nodes = [RedisServer("--repl-diskless-sync-delay", "0").start()]
    group = None
    try:
        nodes.append(RedisServer("--repl-diskless-sync-delay", "0", "--replicaof",
                                 "127.0.0.1", str(nodes[0].port)).start())
        deadline = time.monotonic() + 10
        while not replicated(nodes[0].port, 1):
            assert time.monotonic() < deadline
        group = SentinelGroup(nodes[0], nodes[1:]).start()
        urls = ", ".join(f'"{u}"' for u in group.urls)
        extra = f'[backends.default]\ntopology = "sentinel"\nsentinels = [{urls}]\n'
        with gateway(f"redis://{group.master}", extra) as gw:
            scripts_are_checked_by_redis(gw, nodes[0])
            old = group.agreed_primary()
            redis_command(group.sentinels[0].port, "SENTINEL", "FAILOVER", group.master)
            deadline = time.monotonic() + 30
            while (new := group.primary_port()) in (None, old):
                assert time.monotonic() < deadline, "the Sentinels did not fail over"
                time.sleep(0.1)
            promoted = next(n for n in nodes if n.port == new)
            deadline = time.monotonic() + 15
            while post(gw, "pfx", ["SET", "app:after", "1"]).status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            scripts_are_checked_by_redis(gw, promoted)
            assert any(u.startswith("rgw-") for u in promoted.cli("ACL", "USERS").split())
    finally:
        if group is not None:
            group.close()
        for node in nodes:
            node.close()


def test_every_cluster_node_gets_the_users(cluster: RedisCluster) -> None:
    extra = '[backends.default]\ntopology = "cluster"\n'
    with gateway(cluster.url, extra) as gw:
        keys = [f"app:{i}" for i in range(20)]  # spread over every shard
        for key in keys:
            forbidden(post(gw, "pfx", ["EVAL", "redis.call('get', KEYS[1]) "
                                       "return redis.call('flushall')", "1", key]), "script")
            assert post(gw, "pfx", ["EVAL", "return redis.call('incr', KEYS[1])", "1",
                                    key]).status_code == 200
        for node in cluster.primaries():
            assert any(u.startswith("rgw-") for u in node.cli("ACL", "USERS").split())
            assert node.cli("DBSIZE") != "0"
        forbidden(post(gw, "rw", ["EVAL", FLUSH, "0"]), "script")
