"""GraphQL over SSE (graphql-sse, distinct connections mode) on both HTTP servers: the
event stream read with httpx as a graphql-sse client reads it, Redis published to directly.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support import GatewayProcess, RedisServer, numsub, redis_command, wait_for

RULES = {"admin": "admin", "chat": "+@all -@admin ~* &chat:*"}


@pytest.fixture(scope="module", params=["builtin", "uvicorn"])
def gw(request: pytest.FixtureRequest, redis: RedisServer) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(redis.url, rules=RULES, config_extra=(
        f'server = "{request.param}"\n[streams]\nkeepalive_seconds = 0.5\n'
        "recheck_seconds = 0.5\n")).start()
    yield gateway
    gateway.stop()


def events(response: httpx.Response) -> Iterator[tuple[str, str]]:
    """(event, data) as an SSE client reads them; comments skipped."""
    kind, data = "message", []
    for line in response.iter_lines():
        if line == "":
            if data or kind != "message":
                yield kind, "\n".join(data)
            kind, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


def stream(gw: GatewayProcess, query: str, token: str = "admin",
           **variables: Any) -> Any:
    return httpx.stream("POST", gw.url + "/graphql",
                        json={"query": query, "variables": variables},
                        headers={"x-api-key": gw.tokens[token], "Accept": "text/event-stream"},
                        timeout=10)


def test_a_subscription_streams_next_events(gw: GatewayProcess, redis: RedisServer) -> None:
    channel = f"chat:{uuid.uuid4().hex[:8]}"
    query = "subscription($c: [String!]!) { messages(channels: $c) { channel message } }"
    with stream(gw, query, c=[channel]) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        got = events(response)
        wait_for(lambda: numsub(redis, channel) == 1, 5, "one Redis subscription")
        redis_command(redis.port, "PUBLISH", channel, "two\nlines")
        assert next(got) == ("next", json.dumps(
            {"data": {"messages": {"channel": channel, "message": "two\nlines"}}},
            separators=(",", ":")))
    # The client went away: the subscription is gone from Redis too.
    wait_for(lambda: numsub(redis, channel) == 0, 5, "no Redis subscription")


def test_queries_and_refusals_come_as_next_then_complete(gw: GatewayProcess) -> None:
    with stream(gw, "query { type(key: \"nothing\") }") as response:
        assert list(events(response)) == [("next", '{"data":{"type":"none"}}'),
                                          ("complete", "")]
    # Refused by the token's channel rules, by the limits, by validation: 200, one next
    # event with the errors, then complete (EventSource would drop a 400's reason).
    for query, token in (('subscription { messages(channels: ["other"]) { message } }', "chat"),
                         ("query { " + "a { " * 50 + "}" * 51, "admin"),
                         ("subscription { nosuch }", "admin")):
        with stream(gw, query, token) as response:
            assert response.status_code == 200
            (kind, data), complete = list(events(response))
            assert (kind, complete) == ("next", ("complete", ""))
            assert json.loads(data)["errors"], query
    with stream(gw, 'subscription { messages(channels: ["other"]) { message } }',
                "chat") as response:
        (_, data), _ = list(events(response))
        assert json.loads(data)["errors"][0]["errorType"] == "Forbidden"


def test_without_a_token_401(gw: GatewayProcess) -> None:
    answer = httpx.post(gw.url + "/graphql", json={"query": "subscription { onPutRedis }"},
                        headers={"Accept": "text/event-stream"})
    assert answer.status_code == 401


def test_get_with_the_token_in_the_query_for_eventsource(gw: GatewayProcess) -> None:
    """EventSource cannot send headers: GET with ?_token= (SSE only)."""
    params = {"query": "{ type(key: \"nothing\") }", "_token": gw.tokens["admin"]}
    with httpx.stream("GET", gw.url + "/graphql", params=params,
                      headers={"Accept": "text/event-stream"}, timeout=10) as response:
        assert list(events(response)) == [("next", '{"data":{"type":"none"}}'),
                                          ("complete", "")]
    # Not for plain GraphQL over HTTP: a token in a URL ends up in logs.
    assert httpx.get(gw.url + "/graphql", params=params).status_code == 401
    # A GET never writes, streamed or not.
    params = {"query": 'mutation { set(key: "sse:get", value: "x") }',
              "_token": gw.tokens["admin"]}
    with httpx.stream("GET", gw.url + "/graphql", params=params,
                      headers={"Accept": "text/event-stream"}, timeout=10) as response:
        (_, data), _ = list(events(response))
        assert "use POST" in json.loads(data)["errors"][0]["message"]
