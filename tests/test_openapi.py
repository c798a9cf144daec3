"""The REST API's OpenAPI description (src/redis_gateway/openapi.json): valid OpenAPI 3.1,
served by the gateway, in step with the README, and the gateway fuzzed from it by
Schemathesis against a real gateway and a real redis-server."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import hiredis
import httpx
import pytest
import schemathesis
from hypothesis import strategies as st
from openapi_spec_validator import validate

import redis_gateway
from redis_gateway.auth import new_token
from redis_gateway.streams.sse import STREAMING_PATHS

from support import GatewayProcess, RedisServer

DESCRIPTION_FILE = Path(redis_gateway.__file__).parent / "openapi.json"
DESCRIPTION = json.loads(DESCRIPTION_FILE.read_text())
README = (Path(__file__).parent.parent / "README.md").read_text()
# Names that {command} cannot take: the gateway's own paths.
OWN_PATHS = DESCRIPTION["components"]["schemas"]["PathCommandName"]["not"]["enum"]
BASE_PATH = "/redis"  # the fuzzed gateway is mounted below a prefix, as a deployment may be
FUZZ_TOKEN = new_token()  # known before the gateway starts: Schemathesis is set up at import
# Small limits, so that the fuzzer also meets the 413s.
FUZZ_LIMITS = "[limits]\nmax_commands = 8\nmax_reply_bytes = 65536\nmax_block_seconds = 0.05\n"


@pytest.fixture(scope="module")
def fuzzed_gateway() -> Iterator[GatewayProcess]:
    """A gateway on its own redis-server, with one read-write token (dangerous and admin
    commands refused), so that no generated command can stop or reconfigure Redis."""
    server = RedisServer().start()
    try:
        gateway = GatewayProcess(server.url, rules={"fuzz": "read-write"},
                                 tokens={"fuzz": FUZZ_TOKEN}, base_path=BASE_PATH,
                                 config_extra=FUZZ_LIMITS).start()
        try:
            yield gateway
        finally:
            gateway.stop()
    finally:
        server.close()


# The description itself ----------------------------------------------------------------
def test_description_is_valid_openapi_3_1() -> None:
    assert DESCRIPTION["openapi"].startswith("3.1.")
    validate(DESCRIPTION)  # raises, naming the place, if the document is not valid


def test_description_version_is_the_package_version() -> None:
    assert DESCRIPTION["info"]["version"] == metadata.version("redis-gateway")


def test_served_without_a_token_and_naming_the_base_path(fuzzed_gateway: GatewayProcess) -> None:
    response = httpx.get(f"{fuzzed_gateway.url}{BASE_PATH}/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    served = response.json()
    assert served["servers"][0]["url"] == BASE_PATH
    assert {**served, "servers": DESCRIPTION["servers"]} == DESCRIPTION
    # As the description says: a path outside the base path is a 404.
    outside = httpx.get(f"{fuzzed_gateway.url}/openapi.json")
    assert outside.status_code == 404 and "error" in outside.json()


# The description and the README ----------------------------------------------------------
def _operations() -> dict[tuple[str, str], dict[str, Any]]:
    return {(method.upper(), path): operation
            for path, item in DESCRIPTION["paths"].items()
            for method, operation in item.items() if method != "parameters"}


def _readme_section(title: str) -> str:
    start = README.index(title)
    end = README.find("\n#", start + len(title))
    return README[start:end]


def test_every_status_in_the_readme_is_described_and_no_other() -> None:
    readme = {int(s) for s in re.findall(r"^\| (\d{3}) \|", _readme_section("### Errors"), re.M)}
    described = {int(status) for operation in _operations().values()
                 for status in operation["responses"]}
    assert readme, "the README's error table was not found"
    assert readme == {s for s in described if s >= 400}


def test_every_endpoint_in_the_readme_is_described() -> None:
    rows = re.findall(r"^\| `([A-Z|\\]+) (/[^` ]*)`", _readme_section("## API reference"), re.M)
    assert len(rows) >= 7, rows
    operations = _operations()
    for methods, path in rows:
        # The README writes the path style as /cmd/arg/...; OpenAPI has no variadic path.
        paths = ["/{command}", "/{command}/{arguments}"] if path.startswith("/cmd/") else [path]
        for method in methods.replace("\\", "").split("|"):
            for described in paths:
                assert (method, described) in operations, f"{method} {described} (README)"


def test_every_request_header_in_the_readme_is_described() -> None:
    section = _readme_section("Request headers:")
    parameters = {p["name"]: p["schema"] for p in DESCRIPTION["components"]["parameters"].values()
                  if p["in"] == "header"}
    names = re.findall(r"^- `([A-Za-z-]+)", section, re.M)
    assert len(names) >= 4, names
    assert set(names) <= set(parameters)
    # "`Redis-Reply-Format: typed-resp2` or `typed-resp3`": each value the README names
    for header, *values in re.findall(r"`([A-Z][\w-]+): ([\w-]+)`(?: or `([\w-]+)`)?", section):
        for value in filter(None, values):
            assert value in parameters[header].get("enum", [value]), (header, value)


def test_both_ways_of_sending_a_token_are_described() -> None:
    assert "Authorization: Bearer <token>`, or `?_token=<token>`" in README
    bearer, query = (DESCRIPTION["components"]["securitySchemes"][name]
                     for name in ("bearer", "queryToken"))
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    assert (query["type"], query["in"], query["name"]) == ("apiKey", "query", "_token")
    assert DESCRIPTION["security"] == [{"bearer": []}, {"queryToken": []}]


def test_command_names_exclude_exactly_the_gateways_own_paths() -> None:
    """Described here, or served and not described: /metrics, /ws and the event streams
    (the fuzzer never sends these as a command, or a stream would never end)."""
    own = {path.split("/")[1] for path in DESCRIPTION["paths"]
           if path != "/" and not path.startswith("/{")}
    assert set(OWN_PATHS) == own | STREAMING_PATHS | {"metrics", "ws"}


# What the fuzzer found ------------------------------------------------------------------
@pytest.mark.parametrize("command", [["a\r\n+OK"], ["NOSUCH", "x\r\n:1\r\n"], [False, "\r\n"],
                                     ["lone\nfeed"]])
def test_resp2_error_items_cannot_forge_replies(fuzzed_gateway: GatewayProcess,
                                                command: list[Any]) -> None:
    """A pipeline item the gateway refuses is an error line in the RESP2 output: a line
    break from the request inside it must not end it early and read as another reply."""
    response = httpx.post(f"{fuzzed_gateway.url}{BASE_PATH}/pipeline",
                          json=[command, ["PING"]],
                          headers={"Authorization": f"Bearer {FUZZ_TOKEN}",
                                   "Upstash-Response-Format": "resp2"})
    assert response.status_code == 200
    reader = hiredis.Reader()
    reader.feed(response.content)
    error, pong = reader.gets(), reader.gets()
    assert isinstance(error, hiredis.ReplyError) and pong == b"PONG", response.content
    assert reader.gets() is False and not reader.has_data()
    assert "\r" not in str(error) and "\n" not in str(error)


# The fuzzer ------------------------------------------------------------------------------
FORMAT_HEADERS = ("Upstash-Encoding", "Upstash-Response-Format", "Redis-Reply-Format")
# Random names are nearly all unknown commands: half the time the fuzzer uses these real
# ones, so that replies of every type (RESP3 maps, sets, doubles, verbatim text, errors
# nested in arrays) reach the encoders and the response schemas. None lets a generated
# number choose how big a reply Redis builds (no SRANDMEMBER/HRANDFIELD, SETRANGE, ...).
COMMANDS = [
    "GET", "SET", "MGET", "INCR", "INCRBYFLOAT", "APPEND", "DEL", "EXISTS", "TYPE", "TTL",
    "EXPIRE", "PING", "ECHO", "HSET", "HGETALL", "LPUSH", "LRANGE", "LPOP", "SADD", "SMEMBERS",
    "ZADD", "ZRANGE", "ZSCORE", "XADD", "XRANGE", "XREAD", "SCAN", "EVAL", "EVAL_RO", "BLPOP",
    "PUBLISH", "COMMAND", "CLIENT", "OBJECT",
    # refused by the gateway (400) or by the token's rules (403)
    "SUBSCRIBE", "MULTI", "SELECT", "HELLO", "CONFIG", "FLUSHALL", "DEBUG", "KEYS",
]
WORDS = [
    "k", "h", "l", "s", "z", "x", "*", "0", "1", "-1", "1.5", "inf", "EX", "NX", "GET", "INFO",
    "WITHSCORES", "COUNT", "BLOCK", "STREAMS", "REPLY", "OFF", "DOCS", "ENCODING",
    "return {1, 'two', {err = 'nested'}, {3.5}, true}", "return redis.call('PING')",
    "\r\n", "+OK\r\n", "*2\r\n", "$-1\r\n",  # RESP's own framing, inside values
]

# A fixed seed and budget: CI runs the same cases every time (about a minute). For a deeper
# search: RG_FUZZ_EXAMPLES=500 RG_FUZZ_SEED=7 pytest tests/test_openapi.py -k fuzz
schema = schemathesis.openapi.from_path(DESCRIPTION_FILE, config=schemathesis.Config.from_dict({
    "seed": int(os.environ.get("RG_FUZZ_SEED", "2024")),
    # "all": valid requests and requests that break the description (those must be 4xx).
    "generation": {"max-examples": int(os.environ.get("RG_FUZZ_EXAMPLES", "60")),
                   "deterministic": True, "mode": "all"},
    "phases": {"stateful": {"enabled": False}},
    # The one health check that measures time: on a loaded CI machine it is not a finding.
    "suppress-health-check": ["too_slow"],
    "auth": {"openapi": {"bearer": {"bearer": FUZZ_TOKEN}, "queryToken": {"api_key": FUZZ_TOKEN},
                         "apiKey": {"api_key": FUZZ_TOKEN}}},
}))


def _or_one_of(value: Any, choices: list[str]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(value), st.sampled_from(choices))


def _realistic(command: Any) -> st.SearchStrategy[Any]:
    if not isinstance(command, list) or not command:
        return st.just(command)
    return st.tuples(_or_one_of(command[0], COMMANDS),
                     *(_or_one_of(a, WORDS) for a in command[1:])).map(list)


@schema.hook("flatmap_body")
def _real_commands_in_bodies(context: schemathesis.HookContext, body: Any) -> Any:
    path = context.operation.path if context.operation else None
    if path == "/":
        return _realistic(body)
    if path in ("/pipeline", "/multi-exec") and isinstance(body, list):
        return st.tuples(*map(_realistic, body)).map(list)
    return st.just(body)


@schema.hook("flatmap_path_parameters")
def _real_commands_in_paths(context: schemathesis.HookContext,
                            parameters: dict[str, Any] | None) -> Any:
    if not parameters or "command" not in parameters:
        return st.just(parameters)
    return st.fixed_dictionaries({name: _or_one_of(value, COMMANDS if name == "command" else WORDS)
                                  for name, value in parameters.items()})


@schema.hook("flatmap_headers")
def _one_reply_format(context: schemathesis.HookContext, headers: dict[str, Any] | None) -> Any:
    # The format headers exclude each other (a 400 the description states in words, as OpenAPI
    # cannot say it): keep one, so that most requests reach Redis.
    present = [name for name in FORMAT_HEADERS if name in (headers or {})]
    if len(present) < 2:
        return st.just(headers)
    assert headers is not None
    return st.sampled_from(present).map(
        lambda keep: {k: v for k, v in headers.items() if k not in present or k == keep})


@schema.hook("filter_case")
def _not_another_endpoint(context: schemathesis.HookContext, case: schemathesis.Case) -> bool:
    # A case that breaks the description may name one of the gateway's own paths as a
    # command: that request is the other endpoint's (concrete paths match first), fuzzed there.
    return (case.path_parameters or {}).get("command") not in OWN_PATHS


@schemathesis.serializer("application/graphql")
def _graphql_document(ctx: Any, value: Any) -> bytes:
    # A bare GraphQL document; a case breaking the description may make it any JSON value.
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


def resp2_framing(ctx: schemathesis.CheckContext, response: schemathesis.Response,
                  case: schemathesis.Case) -> bool | None:
    """RESP2 output holds exactly one whole reply per command: none forged, none lost."""
    content_type = {k.lower(): v for k, v in response.headers.items()}.get("content-type")
    if content_type != ["application/octet-stream"]:
        return None
    expected = len(case.body) if case.operation.path in ("/pipeline", "/multi-exec") else 1
    reader = hiredis.Reader()
    reader.feed(response.content)
    replies = []
    try:
        while (reply := reader.gets()) is not False:
            replies.append(reply)
    except hiredis.ProtocolError as exc:
        raise AssertionError(f"not RESP2 ({exc}): {response.content[:300]!r}") from None
    assert len(replies) == expected and not reader.has_data(), (
        f"{expected} command(s), but the RESP2 body reads as {len(replies)} replies and "
        f"{'some' if reader.has_data() else 'no'} bytes more: {response.content[:300]!r}")
    for reply in replies:
        # An error line ends at the first CR LF: RESP2 allows neither inside one.
        assert not (isinstance(reply, hiredis.ReplyError) and {"\r", "\n"} & set(str(reply))), (
            f"an error reply with a line break inside: {response.content[:300]!r}")
    return True


@schema.parametrize()
def test_fuzz(case: schemathesis.Case, fuzzed_gateway: GatewayProcess) -> None:
    case.call_and_validate(
        base_url=fuzzed_gateway.url + BASE_PATH,
        checks=[
            schemathesis.checks.not_a_server_error,
            schemathesis.checks.status_code_conformance,
            schemathesis.checks.content_type_conformance,
            schemathesis.checks.response_schema_conformance,
            schemathesis.checks.response_headers_conformance,
            schemathesis.checks.ignored_auth,
            resp2_framing,
        ])


