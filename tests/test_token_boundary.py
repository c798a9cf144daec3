"""Issue 9's reproductions: the token rules are a boundary, whatever bytes are sent.

Tokens as in the README: RW = read-write, PFX = a key prefix with dangerous and admin
commands closed, ADMIN = everything. Each attack is tried through the front doors that
carry commands (REST body and path, GraphQL, the Lambda handler), and its effect on the
server is checked on the server itself, not only through the gateway's answer.
"""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support import GatewayProcess, RedisCluster, RedisServer

PFX = "+@all -@dangerous -@admin ~app:*"
# SORT is @dangerous: a prefix token that may sort.
SORTER = "+@all -@dangerous -@admin +sort +sort_ro ~app:*"


class Deployment:
    """A gateway in front of one server or a Cluster, and Redis itself to check effects."""

    def __init__(self, gw: GatewayProcess, nodes: list[RedisServer],
                 cluster: RedisCluster | None) -> None:
        self.gw, self.nodes, self.cluster = gw, nodes, cluster

    def cli(self, *args: str) -> str:
        """A command on the node that holds its key (args[1]), as redis-cli prints it."""
        node = self.cluster.primary_for(args[1]) if self.cluster else self.nodes[0]
        return node.cli(*args)


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    s = RedisServer().start()
    yield s
    s.close()


@pytest.fixture(scope="module", params=["standalone", "cluster"])
def deployment(request: pytest.FixtureRequest, server: RedisServer) -> Iterator[Deployment]:
    rules = {"admin": "admin", "rw": "read-write", "pfx": PFX, "sorter": SORTER}
    if request.param == "cluster":
        cluster: RedisCluster = request.getfixturevalue("cluster")
        g = GatewayProcess(cluster.url, rules=rules,
                           config_extra='[backends.default]\ntopology = "cluster"\n')
        made = Deployment(g, cluster.primaries(), cluster)
    else:
        g = GatewayProcess(server.url, rules=rules)
        made = Deployment(g, [server], None)
    g.start()
    yield made
    g.stop()


@pytest.fixture(scope="module")
def gw(deployment: Deployment) -> GatewayProcess:
    return deployment.gw


_clients: dict[tuple[str, str], httpx.Client] = {}


@pytest.fixture(scope="module", autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    for client in _clients.values():
        client.close()
    _clients.clear()


def run(gw: GatewayProcess, token: str, *argv: str) -> httpx.Response:
    """One command, on a kept-alive connection per token (thread-safe in httpx)."""
    client = _clients.get((gw.url, token))
    if client is None:
        client = _clients[(gw.url, token)] = gw.client(token)
    return client.post("/", json=list(argv))


def refused(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    message = response.json()["error"]
    for word in words:
        assert word in message, message


def acl_users(deployment: Deployment) -> set[str]:
    return {u for node in deployment.nodes for u in node.cli("ACL", "USERS").split()}


# names and subcommands ------------------------------------------------------------------------
def test_nul_in_a_subcommand_is_refused_on_every_front_door(gw: GatewayProcess) -> None:
    refused(run(gw, "pfx", "CONFIG", "GET\x00d", "*pass*"), 400, "NUL")
    # The path style: %00 inside a segment.
    response = httpx.get(gw.url + "/config/GET%00d/*pass*",
                         headers={"Authorization": f"Bearer {gw.tokens['pfx']}"})
    refused(response, 400, "NUL")
    # GraphQL's getRedis (the seed's field).
    query = 'query { getRedis(Command: ["CONFIG", "GET\\u0000d", "*pass*"]) }'
    response = httpx.post(gw.url + "/graphql", json={"query": query},
                          headers={"x-api-key": gw.tokens["pfx"]})
    body = response.json()
    assert body["data"]["getRedis"] is None
    assert body["errors"][0]["errorType"] == "BadRequest"
    assert "NUL" in body["errors"][0]["message"]


def test_nul_suffixes_never_reach_admin_commands(gw: GatewayProcess,
                                                deployment: Deployment) -> None:
    """Trying suffixes until Redis's hash table lands on CONFIG SET / ACL SETUSER."""
    before = acl_users(deployment)
    for i in range(200):
        suffix = f"\x00{i}"
        refused(run(gw, "rw", "CONFIG", "SET" + suffix, "maxmemory", "1"), 400, "NUL")
        refused(run(gw, "rw", "ACL", "SETUSER" + suffix, "intruder", "on", ">pw", "+@all",
                    "~*"), 400, "NUL")
        refused(run(gw, "rw", "FLUSHALL" + suffix), 400, "NUL")
    assert acl_users(deployment) == before
    for node in deployment.nodes:
        assert node.cli("CONFIG", "GET", "maxmemory").split()[-1] == "0"


def test_unknown_subcommands_and_case(gw: GatewayProcess) -> None:
    refused(run(gw, "admin", "CONFIG", "NOSUCH", "x"), 400,
            "unknown subcommand 'NOSUCH'. Try CONFIG HELP.")
    assert run(gw, "pfx", "gEt", "app:x").status_code == 200
    # Redis folds ASCII only: a KELVIN SIGN is not a 'k', so this is no KEYS.
    refused(run(gw, "admin", "\u212aEYS", "*"), 400, "unknown command")


# keywords ------------------------------------------------------------------------------------
def test_keywords_are_read_as_redis_reads_them(gw: GatewayProcess,
                                              deployment: Deployment) -> None:
    server = deployment
    server.cli("XADD", "secret:stream", "*", "f", "v")
    server.cli("GEOADD", "app:geo", "13.36", "38.11", "palermo")
    server.cli("RPUSH", "app:ids", "1", "2")
    server.cli("SET", "secret:1", "payroll")
    # strcasecmp stops at the NUL: Redis reads STREAMS, so does the gateway.
    refused(run(gw, "pfx", "XREAD", "STREAMS\x00", "secret:stream", "0"), 403,
            "secret:stream")
    # Redis's GEORADIUS stores into the last STORE; its ACL in 7.0 checks the first.
    refused(run(gw, "pfx", "GEORADIUS", "app:geo", "13", "38", "500", "km", "STORE", "app:ok",
                "STORE", "secret:x"), 403, "secret:x")
    assert server.cli("EXISTS", "secret:x") == "0"
    # SORT ... GET reads any key the pattern names.
    refused(run(gw, "sorter", "SORT", "app:ids", "BY", "nosort", "GET", "secret:*"), 403,
            "GET")
    refused(run(gw, "sorter", "SORT_RO", "app:ids", "BY", "secret:*"), 403, "BY")
    assert run(gw, "sorter", "SORT", "app:ids", "BY", "nosort").json() == \
        {"result": ["1", "2"]}


# the shared connection -----------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["CLIENT", "REPLY\x00v", "SKIP"], ["CLIENT", "REPLY", "OFF"], ["SCRIPT", "DEBUG", "YES"],
    ["CLIENT", "SETNAME", "x"], ["CLIENT", "TRACKING", "on"], ["CLIENT", "NO-EVICT", "on"],
    ["HELLO", "3"], ["RESET"], ["SELECT", "1"], ["AUTH", "x"], ["MONITOR"],
    ["SUBSCRIBE", "c"], ["READONLY"], ["ASKING"], ["MULTI"], ["WATCH", "k"], ["QUIT"],
])
def test_connection_state_commands_never_run(gw: GatewayProcess, argv: list[str]) -> None:
    response = run(gw, "rw", *argv)
    assert response.status_code == 400, response.text


def test_replies_reach_only_their_senders(gw: GatewayProcess, deployment: Deployment) -> None:
    server = deployment
    """The attacks on the reply stream, mixed with other tokens' reads, many at a time."""
    server.cli("SET", "secret:payroll", "admin-only")
    server.cli("SET", "app:mine", "rw-value")
    attacks = [["CLIENT", "REPLY\x00v", "SKIP"], ["CLIENT", "REPLY", "SKIP"],
               ["SCRIPT", "DEBUG", "YES"], ["CLIENT", "REPLY", "OFF"]]

    def one(i: int) -> tuple[str, Any]:
        if i % 3 == 0:
            return "attack", run(gw, "rw", *attacks[i % len(attacks)]).status_code
        if i % 3 == 1:
            return "admin", run(gw, "admin", "GET", "secret:payroll").json()
        return "rw", run(gw, "rw", "GET", "app:mine").json()

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(one, range(600)))
    for who, outcome in outcomes:
        expected = {"attack": 400, "admin": {"result": "admin-only"},
                    "rw": {"result": "rw-value"}}[who]
        assert outcome == expected, (who, outcome)
    # Writes still land after the debugger attempt.
    assert run(gw, "rw", "SET", "app:after", "1").json() == {"result": "OK"}
    assert server.cli("GET", "app:after") == "1"


# databases --------------------------------------------------------------------------------------
def test_a_restricted_token_stays_in_its_database(gw: GatewayProcess,
                                                 deployment: Deployment) -> None:
    deployment.cli("SET", "app:a", "1")
    response = httpx.post(gw.url + "/multi-exec", json=[["SELECT", "7"], ["SET", "app:x", "1"]],
                          headers={"Authorization": f"Bearer {gw.tokens['pfx']}"})
    refused(response, 403, "database 0")
    refused(run(gw, "pfx", "COPY", "app:a", "app:c", "DB", "3"), 403, "DB 3")
    refused(run(gw, "pfx", "COPY", "app:a", "app:c", "DB", "0", "DB", "3"), 403, "DB 3")
    refused(run(gw, "pfx", "MOVE", "app:a", "5"), 403, "MOVE")
    refused(run(gw, "rw", "SWAPDB", "0", "1"), 403)
    assert deployment.cli("GET", "app:a") == "1"
    if deployment.cluster is not None:
        return  # Redis Cluster has database 0 only: the refusals above are what counts
    server = deployment.nodes[0]
    for db in ("3", "5", "7"):
        assert server.cli("-n", db, "DBSIZE") == "0"
    # Within its own database COPY works; an unrestricted token may go anywhere.
    assert run(gw, "pfx", "COPY", "app:a", "app:b", "DB", "0").json() == {"result": 1}
    assert run(gw, "admin", "COPY", "app:a", "app:c", "DB", "3").json() == {"result": 1}
    assert server.cli("-n", "3", "GET", "app:c") == "1"
    server.cli("-n", "3", "FLUSHDB")


# the server's code ---------------------------------------------------------------------------
LIBRARY = ("#!lua name=boundary\nredis.register_function('readit', "
           "function(keys) return redis.call('GET', keys[1]) end)")
PLANTED = LIBRARY.replace("return redis.call('GET', keys[1])",
                          "redis.pcall('SET', 'app:loot', redis.pcall('GET', 'other:secret') "
                          "or 'none') return redis.call('GET', keys[1])")


def test_a_restricted_token_cannot_change_code_others_run(gw: GatewayProcess,
                                                          deployment: Deployment) -> None:
    """A function runs with the rights of whoever calls it: a token that could replace one
    would have the admin's next FCALL read keys for it (found by a red-team pass)."""
    for node in deployment.nodes:
        node.cli("FUNCTION", "FLUSH")
    deployment.cli("SET", "app:k", "v")
    deployment.cli("SET", "other:secret", "s")
    assert run(gw, "admin", "FUNCTION", "LOAD", LIBRARY).status_code == 200
    dump = run(gw, "admin", "FUNCTION", "DUMP").json()["result"]
    for token in ("rw", "pfx"):
        for argv in (["FUNCTION", "LOAD", "REPLACE", PLANTED], ["FUNCTION", "DELETE", "boundary"],
                     ["FUNCTION", "FLUSH"], ["FUNCTION", "RESTORE", dump, "REPLACE"],
                     ["FUNCTION", "KILL"], ["SCRIPT", "FLUSH"], ["SCRIPT", "KILL"],
                     ["function", "flush", "async"]):
            refused(run(gw, token, *argv), 403, argv[0].upper() + " " + argv[1].upper(),
                    "other tokens")
    # Calling the server's functions, and scripts of one's own, stay open to them.
    assert run(gw, "pfx", "FCALL", "readit", "1", "app:k").json() == {"result": "v"}
    assert run(gw, "rw", "EVAL", "return 1", "0").json() == {"result": 1}
    assert run(gw, "pfx", "SCRIPT", "LOAD", "return 2").status_code == 200
    assert run(gw, "admin", "FCALL", "readit", "1", "app:k").json() == {"result": "v"}
    assert deployment.cli("EXISTS", "app:loot") == "0"
    assert "readit" in deployment.nodes[0].cli("FUNCTION", "LIST")
    # Redis refuses them to the restricted tokens' users too: only the admin's may.
    node = deployment.nodes[0]
    users = [u for u in node.cli("ACL", "USERS").split() if u.startswith("rgw-")]
    allowing = [u for u in users if node.cli("ACL", "DRYRUN", u, "FUNCTION", "FLUSH") == "OK"]
    assert len(users) >= 3 and len(allowing) == 1, (users, allowing)
    assert run(gw, "admin", "FUNCTION", "DELETE", "boundary").status_code == 200


# HEAD --------------------------------------------------------------------------------------------
def test_head_never_writes(gw: GatewayProcess, deployment: Deployment) -> None:
    server = deployment
    headers = {"Authorization": f"Bearer {gw.tokens['admin']}"}
    response = httpx.head(gw.url + "/set/app:head/v", headers=headers)
    assert response.status_code == 400
    assert server.cli("EXISTS", "app:head") == "0"
    server.cli("SET", "app:head", "v")
    assert httpx.head(gw.url + "/get/app:head", headers=headers).status_code == 200


def test_lambda_appsync_field_refuses_nul_names(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Any, server: RedisServer) -> None:
    from redis_gateway import aws_lambda
    from redis_gateway.auth import hash_token, new_token

    token = new_token()
    config = tmp_path / "lambda.toml"
    config.write_text(f'[[tokens]]\nname = "pfx"\nhash = "{hash_token(token)}"\n'
                      f'rules = "{PFX}"\n')
    monkeypatch.setenv("REDIS_GATEWAY_REDIS", server.url)
    monkeypatch.setenv("REDIS_GATEWAY_CONFIG", str(config))
    aws_lambda.reset()
    try:
        event = {"arguments": {"Command": ["CONFIG", "GET\x00d", "*"]}, "identity": None,
                 "source": None, "prev": None, "stash": {},
                 "request": {"headers": {"x-api-key": token}, "domainName": None},
                 "info": {"fieldName": "getRedis", "parentTypeName": "Query",
                          "variables": {}, "selectionSetList": [], "selectionSetGraphQL": ""}}
        with pytest.raises(Exception) as info:
            aws_lambda.handler(event, None)
        assert "NUL" in json.dumps(str(info.value))
    finally:
        aws_lambda.reset()
