"""The GraphQL front door, through a real GraphQL client (gql) and raw HTTP as AppSync sees it."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from gql import Client, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXTransport

from redis_gateway import settings as settings_mod
from redis_gateway.app import Gateway
from redis_gateway.auth import TokenRecord, hash_token, new_token

from support import GatewayProcess, RedisServer, record_runs


def client_for(gateway: GatewayProcess, token: str = "admin") -> Client:
    transport = HTTPXTransport(url=gateway.url + "/graphql",
                               headers={"x-api-key": gateway.tokens[token]}, timeout=30)
    return Client(transport=transport, fetch_schema_from_transport=True)


@pytest.fixture(scope="module")
def gql_admin(gateway: GatewayProcess) -> Iterator[Any]:
    with client_for(gateway) as session:
        yield session


@pytest.fixture
def k() -> str:
    return f"gql:{uuid.uuid4().hex[:8]}"


def request(document: str, variables: dict[str, Any]) -> Any:
    query = gql(document)
    query.variable_values = variables
    return query


def run(session: Any, document: str, **variables: Any) -> dict[str, Any]:
    result: dict[str, Any] = session.execute(request(document, variables))
    return result


def failure(session: Any, document: str, **variables: Any) -> dict[str, Any]:
    with pytest.raises(TransportQueryError) as info:
        session.execute(request(document, variables))
    assert info.value.errors
    error: dict[str, Any] = info.value.errors[0]
    return error


# The seed sample's API ----------------------------------------------------------------
def seed_post(gateway: GatewayProcess, query: str) -> httpx.Response:
    """Exactly what the sample's index.html sends: a JSON body labelled application/graphql."""
    import json

    return httpx.post(gateway.url + "/graphql", content=json.dumps({"query": query}),
                      headers={"Content-Type": "application/graphql",
                               "x-api-key": gateway.tokens["admin"]})


def test_seed_page_request_shape(gateway: GatewayProcess, k: str) -> None:
    put = seed_post(gateway, 'mutation { putRedis(Command: [["SET", "%s", "hello world"], '
                             '["RPUSH", "%s:l", "a b", "c"]]) }' % (k, k))
    assert put.status_code == 200
    assert put.json() == {"data": {"putRedis": '["OK", 2]'}}
    got = seed_post(gateway, 'query { getRedis(Command: ["GET", "%s"]) }' % k)
    assert got.json() == {"data": {"getRedis": ["hello world"]}}  # one argument, no timing
    lst = seed_post(gateway, 'query { getRedis(Command: ["LRANGE", "%s:l", "0", "-1"]) }' % k)
    assert lst.json() == {"data": {"getRedis": ["a b", "c"]}}


def test_seed_query_refuses_writes(gateway: GatewayProcess, k: str) -> None:
    body = seed_post(gateway, 'query { getRedis(Command: ["SET", "%s", "x"]) }' % k).json()
    assert body["data"] == {"getRedis": None}
    error = body["errors"][0]
    assert error["path"] == ["getRedis"] and error["errorType"] == "BadRequest"
    assert "'set' may write" in error["message"] and "Mutation" in error["message"]
    assert error["locations"] == [{"line": 1, "column": 9, "sourceName": None}]


def test_put_redis_is_atomic(gql_admin: Any, k: str) -> None:
    error = failure(gql_admin, 'mutation($k: String!) { putRedis(Command: [["SET", $k, "1"], '
                               '["GET", $k, "too", "many"]]) }', k=k)
    assert "wrong number of arguments" in error["message"]
    assert run(gql_admin, "query($k: String!) { exists(keys: [$k]) }", k=k) == {"exists": 0}


# Generic fields --------------------------------------------------------------------------
def test_generic_command_fields(gql_admin: Any, k: str) -> None:
    assert run(gql_admin, 'mutation($k: String!) { command(args: ["SET", $k, "v"]) }',
               k=k) == {"command": '"OK"'}
    assert run(gql_admin, 'query($k: String!) { command(args: ["MGET", $k, "nope"]) }',
               k=k) == {"command": '["v", null]'}
    error = failure(gql_admin, 'query($k: String!) { command(args: ["DEL", $k]) }', k=k)
    assert "may write" in error["message"]
    error = failure(gql_admin, 'query { command(args: ["EVAL", "return 1", "0"]) }')
    assert "'eval' may write" in error["message"]
    assert run(gql_admin, 'query { command(args: ["EVAL_RO", "return 7", "0"]) }') == {
        "command": "7"}
    assert run(gql_admin, 'query { command(args: ["PING"]) }') == {"command": '"PONG"'}


def test_pipeline_mutation(gql_admin: Any, k: str) -> None:
    result = run(gql_admin, '''mutation($k: String!) {
        plain: pipeline(commands: [["SET", $k, "1"], ["INCR", $k], ["HGET", $k, "f"]]) {
          result error }
        tx: pipeline(atomic: true, commands: [["INCR", $k], ["GET", $k]]) { result error }
    }''', k=k)
    assert result["plain"] == [
        {"result": '"OK"', "error": None}, {"result": "2", "error": None},
        {"result": None,
         "error": "WRONGTYPE Operation against a key holding the wrong kind of value"}]
    assert result["tx"] == [{"result": "3", "error": None}, {"result": '"3"', "error": None}]


# Typed fields ------------------------------------------------------------------------------
def test_strings_and_keys(gql_admin: Any, k: str) -> None:
    result = run(gql_admin, '''mutation($k: String!) {
        a: set(key: $k, value: "v1", ex: 100)
        b: set(key: $k, value: "v2", nx: true)
        c: set(key: $k, value: "v3", get: true)
        n: incr(key: "%s:n", by: 5)
        e: expire(key: "%s:n", seconds: 50)
    }''' % (k, k), k=k)
    assert result == {"a": "OK", "b": None, "c": "v1", "n": 5, "e": True}
    result = run(gql_admin, '''query($k: String!) {
        get(key: $k) mget(keys: [$k, "none"]) exists(keys: [$k, "none"]) type(key: $k)
        ttl(key: "%s:n")
    }''' % k, k=k)
    assert result["get"] == "v3" and result["mget"] == ["v3", None]
    assert result["exists"] == 1 and result["type"] == "string"
    assert 0 < result["ttl"] <= 50
    assert run(gql_admin, 'mutation($k: String!) { rename(key: $k, newKey: "%s:r") '
                          'del(keys: ["%s:r", "%s:n"]) }' % (k, k, k), k=k) == {
        "rename": True, "del": 2}
    page = run(gql_admin, 'query($m: String!) { scan(match: $m, count: 1000) { cursor keys } }',
               m=k + "*")["scan"]
    assert page["keys"] == [] and isinstance(page["cursor"], str)


def test_scan_filters(gql_admin: Any, k: str) -> None:
    run(gql_admin, 'mutation($k: String!) { set(key: $k, value: "x") '
                   'hset(key: "%s:h", fields: [{field: "f", value: "v"}]) }' % k, k=k)
    keys: list[str] = []
    cursor = "0"
    while True:
        page = run(gql_admin, 'query($c: String!, $m: String!) { scan(cursor: $c, match: $m, '
                              'count: 100, type: "hash") { cursor keys } }', c=cursor,
                   m=k + "*")["scan"]
        keys += page["keys"]
        cursor = page["cursor"]
        if cursor == "0":
            break
    assert keys == [k + ":h"]


def test_hashes(gql_admin: Any, k: str) -> None:
    assert run(gql_admin, '''mutation($k: String!) {
        hset(key: $k, fields: [{field: "a", value: "1"}, {field: "b b", value: "x y"}])
        hincrby(key: $k, field: "a", by: 41)
    }''', k=k) == {"hset": 2, "hincrby": 42}
    result = run(gql_admin, 'query($k: String!) { hget(key: $k, field: "b b") '
                            'hgetall(key: $k) { field value } }', k=k)
    assert result == {"hget": "x y", "hgetall": [{"field": "a", "value": "42"},
                                                 {"field": "b b", "value": "x y"}]}
    assert run(gql_admin, 'mutation($k: String!) { hdel(key: $k, fields: ["a", "zz"]) }',
               k=k) == {"hdel": 1}


def test_lists(gql_admin: Any, k: str) -> None:
    assert run(gql_admin, '''mutation($k: String!) {
        r: rpush(key: $k, values: ["b", "c"]) l: lpush(key: $k, values: ["a"])
    }''', k=k) == {"r": 2, "l": 3}
    assert run(gql_admin, 'query($k: String!) { lrange(key: $k) tail: lrange(key: $k, '
                          'start: -1) llen(key: $k) }', k=k) == {
        "lrange": ["a", "b", "c"], "tail": ["c"], "llen": 3}
    assert run(gql_admin, 'mutation($k: String!) { lpop(key: $k) rpop(key: $k) }', k=k) == {
        "lpop": "a", "rpop": "c"}


def test_sets(gql_admin: Any, k: str) -> None:
    assert run(gql_admin, 'mutation($k: String!) { sadd(key: $k, members: ["x", "y", "x"]) }',
               k=k) == {"sadd": 2}
    result = run(gql_admin, 'query($k: String!) { smembers(key: $k) scard(key: $k) '
                            'yes: sismember(key: $k, member: "x") '
                            'no: sismember(key: $k, member: "q") }', k=k)
    assert sorted(result.pop("smembers")) == ["x", "y"]
    assert result == {"scard": 2, "yes": True, "no": False}
    assert run(gql_admin, 'mutation($k: String!) { srem(key: $k, members: ["x"]) }',
               k=k) == {"srem": 1}


def test_sorted_sets(gql_admin: Any, k: str) -> None:
    assert run(gql_admin, '''mutation($k: String!) {
        zadd(key: $k, members: [{member: "a", score: 1}, {member: "b", score: 2.5},
                                {member: "c", score: 3}])
        zincrby(key: $k, member: "a", by: 0.25)
    }''', k=k) == {"zadd": 3, "zincrby": 1.25}
    result = run(gql_admin, '''query($k: String!) {
        all: zrange(key: $k) { member score }
        top: zrange(key: $k, rev: true, start: "0", stop: "0") { member score }
        byScore: zrange(key: $k, by: SCORE, start: "(1.25", stop: "+inf") { member }
        page: zrange(key: $k, by: SCORE, start: "-inf", stop: "+inf", offset: 1, count: 1) {
          member }
        byLex: zrange(key: $k, by: LEX, start: "[b", stop: "+") { member score }
        zscore(key: $k, member: "b") zrank(key: $k, member: "c")
        missing: zrank(key: $k, member: "zz")
    }''', k=k)
    assert result["all"] == [{"member": "a", "score": 1.25}, {"member": "b", "score": 2.5},
                             {"member": "c", "score": 3.0}]
    assert result["top"] == [{"member": "c", "score": 3.0}]
    assert result["byScore"] == [{"member": "b"}, {"member": "c"}]
    assert result["page"] == [{"member": "b"}]
    assert result["byLex"] == [{"member": "b", "score": None}, {"member": "c", "score": None}]
    assert (result["zscore"], result["zrank"], result["missing"]) == (2.5, 2, None)
    assert run(gql_admin, 'mutation($k: String!) { zrem(key: $k, members: ["a", "b"]) }',
               k=k) == {"zrem": 2}


def test_streams_and_publish(gql_admin: Any, k: str) -> None:
    first = run(gql_admin, 'mutation($k: String!) { xadd(key: $k, fields: '
                           '[{field: "t", value: "20"}]) }', k=k)["xadd"]
    run(gql_admin, 'mutation($k: String!) { xadd(key: $k, id: "*", maxlen: 10, fields: '
                   '[{field: "t", value: "21"}, {field: "u", value: "C"}]) }', k=k)
    result = run(gql_admin, '''query($k: String!) {
        xrange(key: $k) { id fields { field value } }
        last: xrevrange(key: $k, count: 1) { fields { field value } }
        xlen(key: $k)
    }''', k=k)
    assert result["xrange"][0] == {"id": first, "fields": [{"field": "t", "value": "20"}]}
    assert result["last"] == [{"fields": [{"field": "t", "value": "21"},
                                          {"field": "u", "value": "C"}]}]
    assert result["xlen"] == 2
    assert run(gql_admin, 'mutation { publish(channel: "gql:nobody", message: "hi") }') == {
        "publish": 0}


def test_binary_values_round_trip_with_base64(gql_admin: Any, k: str) -> None:
    raw = bytes([0xFF, 0x00, 0x80, 0x7F, 0xC3])
    b64 = base64.b64encode(raw).decode()
    result = run(gql_admin, '''mutation($k: String!, $v: String!) {
        set(key: $k, value: $v, encoding: BASE64)
        hset(key: "%s:h", encoding: BASE64, fields: [{field: $v, value: $v}])
        rpush(key: "%s:l", values: [$v], encoding: BASE64)
        sadd(key: "%s:s", members: [$v], encoding: BASE64)
        zadd(key: "%s:z", members: [{member: $v, score: 1}], encoding: BASE64)
        xadd(key: "%s:x", fields: [{field: "Zg==", value: $v}], encoding: BASE64)
    }''' % (k, k, k, k, k), k=k, v=b64)
    assert result["set"] == "OK"
    result = run(gql_admin, '''query($k: String!, $v: String!) {
        get(key: $k, encoding: BASE64)
        hget(key: "%s:h", field: $v, encoding: BASE64)
        hgetall(key: "%s:h", encoding: BASE64) { field value }
        lrange(key: "%s:l", encoding: BASE64)
        smembers(key: "%s:s", encoding: BASE64)
        sismember(key: "%s:s", member: $v, encoding: BASE64)
        zrange(key: "%s:z", encoding: BASE64) { member }
        zscore(key: "%s:z", member: $v, encoding: BASE64)
        xrange(key: "%s:x", encoding: BASE64) { fields { field value } }
        command(args: ["GET", $k], encoding: BASE64)
    }''' % ((k,) * 8), k=k, v=b64)
    assert result["get"] == b64 and result["hget"] == b64
    assert result["hgetall"] == [{"field": b64, "value": b64}]
    assert result["lrange"] == [b64] and result["smembers"] == [b64]
    assert result["sismember"] is True and result["zscore"] == 1.0
    assert result["zrange"] == [{"member": b64}]
    assert result["xrange"][0]["fields"] == [{"field": "Zg==", "value": b64}]
    assert result["command"] == f'"{b64}"'
    error = failure(gql_admin, 'mutation { set(key: "x", value: "***", encoding: BASE64) }')
    assert "not valid base64" in error["message"]


# Errors, policy and limits -------------------------------------------------------------------
def test_policy_applies_to_every_field(gateway: GatewayProcess, k: str) -> None:
    with client_for(gateway, "ro") as ro, client_for(gateway, "scoped") as scoped:
        error = failure(ro, 'mutation($k: String!) { set(key: $k, value: "v") }', k=k)
        assert error["errorType"] == "Forbidden" and "NOPERM" in error["message"]
        assert failure(ro, 'mutation { putRedis(Command: [["FLUSHALL"]]) }')[
            "errorType"] == "Forbidden"
        assert run(scoped, 'mutation { set(key: "app:gql", value: "v") }') == {"set": "OK"}
        error = failure(scoped, 'query { get(key: "other:gql") }')
        assert "'other:gql' key" in error["message"]


def test_redis_errors_carry_redis_text(gql_admin: Any, k: str) -> None:
    run(gql_admin, 'mutation($k: String!) { set(key: $k, value: "text") }', k=k)
    error = failure(gql_admin, 'mutation($k: String!) { incr(key: $k) }', k=k)
    assert error["errorType"] == "RedisError"
    assert error["message"] == "ERR value is not an integer or out of range"
    assert error["path"] == ["incr"]


def test_malformed_documents_unknown_fields_and_variables(gateway: GatewayProcess) -> None:
    headers = {"x-api-key": gateway.tokens["admin"]}
    url = gateway.url + "/graphql"
    syntax = httpx.post(url, json={"query": "query { get(key: "}, headers=headers)
    assert syntax.status_code == 200 and syntax.json()["data"] is None
    assert "Syntax Error" in syntax.json()["errors"][0]["message"]
    unknown = httpx.post(url, json={"query": "{ nope }"}, headers=headers).json()
    assert unknown["errors"][0]["errorType"] == "ValidationError"
    assert "Cannot query field 'nope'" in unknown["errors"][0]["message"]
    bad_var = httpx.post(url, json={"query": "query($k: String!) { get(key: $k) }",
                                    "variables": {"k": 5}}, headers=headers).json()
    assert "String cannot represent a non string value" in bad_var["errors"][0]["message"]
    missing = httpx.post(url, json={"query": "query($k: String!) { get(key: $k) }"},
                         headers=headers).json()
    assert "non-null type 'String!' to be provided" in missing["errors"][0]["message"]
    for body, message in ((b"", "Request body is empty."), (b"{}", "Unable to parse"),
                          (b"[]", "Unable to parse"), (b"{oops", "Unable to parse")):
        r = httpx.post(url, content=body, headers={**headers, "content-type": "application/json"})
        assert r.status_code == 400, body
        assert r.json()["errors"][0]["errorType"] == "MalformedHttpRequestException"
        assert message in r.json()["errors"][0]["message"]


def test_unauthorized_like_appsync(gateway: GatewayProcess) -> None:
    for headers in ({}, {"x-api-key": "rgw_wrong"}, {"Authorization": "Bearer rgw_wrong"}):
        r = httpx.post(gateway.url + "/graphql", json={"query": "{ get(key: \"a\") }"},
                       headers=headers)
        assert r.status_code == 401
        assert r.headers["x-amzn-errortype"] == "UnauthorizedException"
        error = r.json()["errors"][0]
        assert error["message"] == "You are not authorized to make this call."
        assert error["errorInfo"]["reason"]
    ok = httpx.post(gateway.url + "/graphql", json={"query": "{ get(key: \"a\") }"},
                    headers={"Authorization": f"Bearer {gateway.tokens['admin']}"})
    assert ok.status_code == 200


def test_get_for_queries_only(gateway: GatewayProcess) -> None:
    headers = {"x-api-key": gateway.tokens["admin"]}
    url = gateway.url + "/graphql"
    r = httpx.get(url, params={"query": "query($k: String!) { exists(keys: [$k]) }",
                               "variables": '{"k": "gql:none"}'}, headers=headers)
    assert r.json() == {"data": {"exists": 0}}
    r = httpx.get(url, params={"query": 'mutation { del(keys: ["x"]) }'}, headers=headers)
    assert r.status_code == 405


@pytest.fixture(scope="module")
def strict(redis_server: RedisServer) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(redis_server.url, rules={"admin": "admin"}, config_extra=(
        "[graphql]\nintrospection = false\nmax_depth = 2\nmax_aliases = 3\n"
        "[limits]\nmax_commands = 4\n"))
    yield gw.start()
    gw.stop()


def test_limits_and_introspection_switch(strict: GatewayProcess) -> None:
    headers = {"x-api-key": strict.tokens["admin"]}
    url = strict.url + "/graphql"

    def errors(query: str) -> list[str]:
        body = httpx.post(url, json={"query": query}, headers=headers).json()
        return [e["message"] for e in body.get("errors", [])]

    assert any("introspection" in m for m in errors("{ __schema { types { name } } }"))
    assert any("3 levels deep" in m for m in errors(
        "{ xrange(key: \"a\") { fields { field } } }"))
    assert errors('{ hgetall(key: "a") { field } }') == []
    assert any("4 aliases" in m for m in errors(
        '{ a: get(key: "1") b: get(key: "2") c: get(key: "3") d: get(key: "4") }'))
    assert any("more than 4 commands" in m for m in errors(
        'mutation { pipeline(commands: [["PING"], ["PING"], ["PING"], ["PING"], ["PING"]]) '
        "{ result } }"))


async def test_one_round_trip_per_operation_level(redis_server: RedisServer) -> None:
    """Fifty aliased gets reach Redis as one pipeline, not fifty round trips."""
    token = new_token()
    settings = settings_mod.load(env={}, overrides={"redis": redis_server.url})
    gateway = Gateway(settings, extra_tokens=[TokenRecord("t", hash_token(token), "admin")])
    backend = gateway.backends["default"]
    await backend.command_table()
    calls = record_runs(backend)
    fields = " ".join(f'k{i}: get(key: "gql:batch:{i}")' for i in range(50))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway),
                                 base_url="http://gw") as client:
        r = await client.post("/graphql", json={"query": "{ %s hlen: llen(key: \"x\") }"
                                                          % fields},
                              headers={"x-api-key": token})
        assert r.status_code == 200 and len(r.json()["data"]) == 51
        assert calls == [51]
        calls.clear()
        r = await client.post("/graphql", headers={"x-api-key": token}, json={
            "query": 'mutation { a: set(key: "gql:b1", value: "1") b: set(key: "gql:b2", '
                     'value: "2") }'})
        assert r.json() == {"data": {"a": "OK", "b": "OK"}}
        assert calls == [1, 1]  # mutation fields run one after another, as GraphQL says
    await gateway.close()


def test_schema_file_is_what_is_served(gql_admin: Any) -> None:
    from graphql import print_schema

    from redis_gateway.graphql.schema import schema_text

    assert gql_admin.client.schema is not None
    served = print_schema(gql_admin.client.schema)
    for name in ("getRedis(Command: [String!]): [String]",
                 "putRedis(Command: [[String!]]): String", "type ScoredMember"):
        assert name in served and name in schema_text()
    assert "scalar AWSJSON" not in schema_text()  # AppSync defines its own
