"""The REST front door on the wire: shapes, encodings, headers, formats."""

from __future__ import annotations

import asyncio
import base64
import uuid

import httpx

from support import GatewayProcess


def key(name: str) -> str:
    return f"rest:{uuid.uuid4().hex[:8]}:{name}"


def test_single_command_in_body(admin: httpx.Client) -> None:
    k = key("a")
    assert admin.post("/", json=["SET", k, "v1", "EX", 100]).json() == {"result": "OK"}
    assert admin.post("/", json=["get", k]).json() == {"result": "v1"}
    assert admin.post("/", json=["TTL", k]).json()["result"] in range(95, 101)


def test_result_is_present_for_nil(admin: httpx.Client) -> None:
    response = admin.post("/", json=["GET", key("missing")])
    assert response.status_code == 200
    assert response.json() == {"result": None}


def test_numbers_and_booleans_become_their_json_text(admin: httpx.Client) -> None:
    k = key("n")
    admin.post("/", json=["SET", k, 12])
    assert admin.post("/", json=["INCRBYFLOAT", k, 1.5]).json() == {"result": "13.5"}
    admin.post("/", content=b'["SET", "%s", 1e3]' % k.encode())
    assert admin.post("/", json=["GET", k]).json() == {"result": "1e3"}
    admin.post("/", json=["SET", k, True])
    assert admin.post("/", json=["GET", k]).json() == {"result": "true"}


def test_path_style_segments_body_and_query(admin: httpx.Client) -> None:
    k = key("p")
    assert admin.get(f"/set/{k}/hello").json() == {"result": "OK"}
    assert admin.get(f"/get/{k}").json() == {"result": "hello"}
    # percent-decoding, a slash inside a segment, and an empty segment
    admin.get(f"/set/{k}/a%2Fb%20c")
    assert admin.get(f"/get/{k}").json() == {"result": "a/b c"}
    # the POST body is the last argument, query pairs follow it
    response = admin.post(f"/set/{k}?EX=100", content=b'{"any": "json"}')
    assert response.json() == {"result": "OK"}
    assert admin.get(f"/get/{k}").json() == {"result": '{"any": "json"}'}
    assert 0 < admin.get(f"/ttl/{k}").json()["result"] <= 100
    # a bare query key adds one argument
    assert admin.post(f"/set/{k}?NX", content=b"x").json() == {"result": None}


def test_token_in_query_string(gateway: GatewayProcess) -> None:
    token = gateway.tokens["admin"]
    response = httpx.get(f"{gateway.url}/echo/hi?_token={token}")
    assert response.json() == {"result": "hi"}


def test_base64_encoding_everything_but_ok(admin: httpx.Client) -> None:
    k = key("b")
    headers = {"Upstash-Encoding": "base64"}
    assert admin.post("/", json=["SET", k, "bar"], headers=headers).json() == {"result": "OK"}
    assert admin.post("/", json=["GET", k], headers=headers).json() == {"result": "YmFy"}
    assert admin.post("/", json=["MGET", k, key("none")], headers=headers).json() == {
        "result": ["YmFy", None]}
    assert admin.post("/", json=["STRLEN", k], headers=headers).json() == {"result": 3}
    error = admin.post("/", json=["INCR", k], headers=headers)
    assert error.status_code == 400
    assert error.json() == {"error": "ERR value is not an integer or out of range"}
    items = admin.post("/pipeline", json=[["GET", k], ["INCR", k]], headers=headers).json()
    assert items == [{"result": "YmFy"},
                     {"error": "ERR value is not an integer or out of range"}]


def test_binary_values_that_are_not_utf8(admin: httpx.Client) -> None:
    k = key("bin")
    raw = bytes([0xFF, 0x00, 0xFE, 0x80, 0x0A, 0x0D])
    assert admin.post(f"/set/{k}", content=raw).json() == {"result": "OK"}
    got = admin.post("/", json=["GET", k], headers={"Upstash-Encoding": "base64"}).json()
    assert base64.b64decode(got["result"]) == raw
    resp = admin.get(f"/get/{k}", headers={"Upstash-Response-Format": "resp2"})
    assert resp.content == b"$6\r\n" + raw + b"\r\n"
    # binary in a key name, through percent-encoding
    assert admin.get("/set/bin%FFkey:" + k + "/v").json() == {"result": "OK"}
    assert admin.post("/", json=["EXISTS", "bin\ufffdkey:" + k]).json() == {"result": 0}
    assert admin.get("/exists/bin%FFkey:" + k).json() == {"result": 1}
    admin.get("/del/bin%FFkey:" + k)


def test_sync_token_is_fresh_on_every_response(admin: httpx.Client) -> None:
    first = admin.post("/", json=["PING"], headers={"Upstash-Sync-Token": ""})
    second = admin.post("/", json=["PING"], headers={"Upstash-Sync-Token": "whatever"})
    failed = admin.post("/", json="not a command")
    tokens = [r.headers["upstash-sync-token"] for r in (first, second, failed)]
    assert all(tokens) and len(set(tokens)) == 3


def test_telemetry_headers_are_ignored(admin: httpx.Client) -> None:
    response = admin.post("/", json=["PING"], headers={
        "Upstash-Telemetry-Sdk": "py-upstash-redis@v1.6.0",
        "Upstash-Telemetry-Runtime": "python@v3.11", "Upstash-Telemetry-Platform": "unknown"})
    assert response.json() == {"result": "PONG"}


def test_resp2_format_keeps_types(admin: httpx.Client) -> None:
    k = key("r")
    h = {"Upstash-Response-Format": "resp2"}
    assert admin.post("/", json=["SET", k, "OK"], headers=h).content == b"+OK\r\n"
    assert admin.post("/", json=["GET", k], headers=h).content == b"$2\r\nOK\r\n"
    assert admin.post("/", json=["GET", key("no")], headers=h).content == b"$-1\r\n"
    assert admin.post("/", json=["INCR", key("i")], headers=h).content == b":1\r\n"
    lst = key("l")
    admin.post("/", json=["RPUSH", lst, "a", "b"])
    assert admin.post("/", json=["LRANGE", lst, 0, -1], headers=h).content == \
        b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"
    err = admin.post("/", json=["INCR", lst], headers=h)
    assert err.status_code == 400 and err.content.startswith(b"-WRONGTYPE")
    assert err.headers["content-type"] == "application/octet-stream"
    pipe = admin.post("/pipeline", json=[["GET", k], ["LLEN", lst]], headers=h)
    assert pipe.content == b"$2\r\nOK\r\n:2\r\n"


def test_resp2_with_base64_is_refused(admin: httpx.Client) -> None:
    r = admin.post("/", json=["PING"], headers={"Upstash-Response-Format": "resp2",
                                                "Upstash-Encoding": "base64"})
    assert r.status_code == 400
    assert "cannot be combined" in r.json()["error"]
    r = admin.post("/", json=["PING"], headers={"Upstash-Response-Format": "xml"})
    assert r.status_code == 400 and "json" in r.json()["error"]


def test_pipeline_runs_in_order_with_item_errors(admin: httpx.Client) -> None:
    k = key("pipe")
    items = admin.post("/pipeline", json=[
        ["SET", k, "v1"], ["SETEX", key("x"), 13, "v2"], ["INCR", k], ["GET", k],
        ["NOSUCHCMD"], ["SUBSCRIBE", "ch"],
    ]).json()
    assert items[0] == {"result": "OK"}
    assert items[1] == {"result": "OK"}
    assert items[2] == {"error": "ERR value is not an integer or out of range"}
    assert items[3] == {"result": "v1"}
    assert items[4]["error"].startswith("ERR unknown command 'NOSUCHCMD'")
    assert "SUBSCRIBE is not available here" in items[5]["error"]
    assert len(items) == 6


def test_pipeline_with_forbidden_item_runs_the_rest(gateway: GatewayProcess) -> None:
    k = key("ro")
    with gateway.client("rw") as rw:
        items = rw.post("/pipeline", json=[["SET", k, "1"], ["FLUSHALL"], ["GET", k]]).json()
    assert items[0] == {"result": "OK"}
    assert items[1]["error"].startswith("NOPERM")
    assert items[2] == {"result": "1"}


def test_python_sdk_trailing_slash_double_slash_pipeline(gateway: GatewayProcess) -> None:
    # upstash-redis joins url + "/pipeline" without stripping a trailing slash
    response = httpx.post(gateway.url + "//pipeline", json=[["PING"]],
                          headers={"Authorization": f"Bearer {gateway.tokens['admin']}"})
    assert response.json() == [{"result": "PONG"}]


def test_multi_exec(admin: httpx.Client) -> None:
    k = key("tx")
    items = admin.post("/multi-exec", json=[["SET", k, "1"], ["INCR", k], ["LPUSH", k, "x"],
                                            ["GET", k]]).json()
    assert items[0] == {"result": "OK"}
    assert items[1] == {"result": 2}
    assert items[2]["error"].startswith("WRONGTYPE")
    assert items[3] == {"result": "2"}


def test_multi_exec_discarded_as_a_whole(admin: httpx.Client) -> None:
    k = key("txa")
    r = admin.post("/multi-exec", json=[["SET", k, "1"], ["GET", k, "extra"]])
    assert r.status_code == 400
    assert "wrong number of arguments" in r.json()["error"]
    assert admin.post("/", json=["EXISTS", k]).json() == {"result": 0}
    # an error Redis itself raises at queue time
    r = admin.post("/multi-exec", json=[["SET", k, "1"], ["ZADD", k, "notanumber"]])
    assert r.status_code == 400
    assert admin.post("/", json=["EXISTS", k]).json() == {"result": 0}


def test_select_inside_transaction_does_not_leak(admin: httpx.Client) -> None:
    k = key("db")
    items = admin.post("/multi-exec", json=[["SELECT", "3"], ["SET", k, "in3"]]).json()
    assert items == [{"result": "OK"}, {"result": "OK"}]
    # following transactions and commands still run in database 0
    for _ in range(5):
        assert admin.post("/multi-exec", json=[["EXISTS", k]]).json() == [{"result": 0}]
    assert admin.post("/", json=["EXISTS", k]).json() == {"result": 0}
    admin.post("/multi-exec", json=[["SELECT", "3"], ["DEL", k]])


def test_health_and_readiness(gateway: GatewayProcess) -> None:
    assert httpx.get(gateway.url + "/healthz").json() == {"result": "ok"}
    assert httpx.get(gateway.url + "/readyz").json() == {"result": "ready"}


def test_cors(admin: httpx.Client) -> None:
    pre = admin.options("/", headers={"Origin": "https://app.example",
                                      "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "*"
    assert "authorization" in pre.headers["access-control-allow-headers"]
    r = admin.post("/", json=["PING"], headers={"Origin": "https://app.example"})
    assert r.headers["access-control-allow-origin"] == "*"
    assert "upstash-sync-token" in r.headers["access-control-expose-headers"]


def test_head_is_get_without_body(admin: httpx.Client) -> None:
    r = admin.head("/echo/hello")
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["content-length"]) == len(b'{"result":"hello"}')


async def test_concurrent_transactions_stay_atomic_and_apart(gateway: GatewayProcess) -> None:
    """Many transactions at once, each on its own connection: no reply crosses over."""
    k = key("ctx")
    headers = {"Authorization": f"Bearer {gateway.tokens['admin']}"}
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers, limits=limits,
                                 timeout=30) as client:

        async def one(i: int) -> list[dict[str, object]]:
            response = await client.post("/multi-exec", json=[
                ["INCR", k], ["RPUSH", k + ":log", f"tx{i}"], ["GET", k], ["ECHO", f"tx{i}"],
            ])
            assert response.status_code == 200, response.text
            items: list[dict[str, object]] = response.json()
            return items

        results = await asyncio.gather(*(one(i) for i in range(200)))
    counters = []
    for i, items in enumerate(results):
        assert items[3] == {"result": f"tx{i}"}
        assert items[2] == {"result": str(items[0]["result"])}  # nothing ran in between
        counters.append(items[0]["result"])
    assert sorted(counters) == list(range(1, 201))
    with gateway.client() as c:
        assert c.post("/", json=["LLEN", k + ":log"]).json() == {"result": 200}
