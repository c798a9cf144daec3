"""The REST API's OpenAPI description (src/redis_gateway/openapi.json): valid OpenAPI 3.1,
served by the gateway, in step with the README, and the gateway fuzzed from it by
Schemathesis against a real gateway and a real redis-server."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

import redis_gateway
from redis_gateway.auth import new_token

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
    own = {path.split("/")[1] for path in DESCRIPTION["paths"]
           if path != "/" and not path.startswith("/{")}
    assert set(OWN_PATHS) == own
