"""GraphQL over Server-Sent Events: graphql-sse's "distinct connections" mode.

``POST /graphql`` (or ``GET`` for queries) with ``Accept: text/event-stream``: one
operation per request, its results streamed as

    event: next       data: <execution result as JSON>     (one per event for a subscription)
    event: complete   data:

Errors found before execution (document limits, validation, variables) come as a ``next``
event too, with status 200, as the protocol asks (a 400 would leave ``EventSource`` with no
reason). Closing the request ends the subscription; idle streams carry a keep-alive
comment (``streams.keepalive_seconds``); a stream the gateway ends (slow consumer, token
revoked, draining) gets a last ``next`` saying why, then ``complete``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from graphql import ExecutionResult, GraphQLError

from ..auth import Principal
from ..errors import GatewayError
from ..http import Request
from ..http_streaming import EVENT_STREAM_HEADERS, KEEPALIVE_COMMENT, StreamingResponse
from .operations import (
    Runner,
    execute_admitted,
    is_mutation,
    is_subscription,
    operation_key,
    subscription_payloads,
)


def wants_events(request: Request) -> bool:
    accept = request.header(b"accept") or b""
    return b"text/event-stream" in accept.lower()


def _next(result: ExecutionResult, result_json: Callable[[ExecutionResult], Any]) -> bytes:
    return _next_payload(result_json(result))


def _next_payload(payload: dict[str, Any]) -> bytes:
    return b"event: next\ndata: " + orjson.dumps(payload) + b"\n\n"


_COMPLETE = b"event: complete\ndata:\n\n"


def event_stream(endpoint: Runner, principal: Principal,
                 recheck: Callable[[], Awaitable[Principal]], envelope: dict[str, Any],
                 keepalive: float, result_json: Callable[[ExecutionResult], Any],
                 *, writes: bool) -> StreamingResponse:
    """``writes``: False for GET, which may run queries and subscriptions only."""
    return StreamingResponse(200, list(EVENT_STREAM_HEADERS), _events(
        endpoint, principal, recheck, envelope, keepalive, result_json, writes))


async def _events(endpoint: Runner, principal: Principal,
                  recheck: Callable[[], Awaitable[Principal]], envelope: dict[str, Any],
                  keepalive: float, result_json: Callable[[ExecutionResult], Any],
                  writes: bool) -> AsyncIterator[bytes]:
    variables = envelope.get("variables")
    name = envelope.get("operationName")
    operation_name = name if isinstance(name, str) else None
    document, errors = await endpoint.check(envelope["query"], variables)
    if errors:
        yield _next(ExecutionResult(None, errors), result_json) + _COMPLETE
        return
    assert document is not None
    if not writes and is_mutation(document, operation_name):
        yield _next(ExecutionResult(None, [GraphQLError(
            "Only queries and subscriptions may be sent with GET; use POST.")]),
            result_json) + _COMPLETE
        return
    context = endpoint.context(principal)
    context.recheck = recheck
    if not is_subscription(document, operation_name):
        result = await execute_admitted(endpoint, document, context, variables, operation_name)
        yield _next(result, result_json) + _COMPLETE
        return
    stream = await subscription_payloads(
        endpoint, document, context, variables, operation_name,
        operation_key(envelope["query"], variables, operation_name))
    if isinstance(stream, dict):  # refused before any event (rules, limits)
        yield _next_payload(stream) + _COMPLETE
        return
    try:
        yield b": subscribed\n\n"  # the headers go now: the client knows it is listening
        while True:
            try:
                async with asyncio.timeout(keepalive):
                    payload = await anext(stream)
            except TimeoutError:
                yield KEEPALIVE_COMMENT
                continue
            except StopAsyncIteration:
                break
            except GatewayError as exc:  # the gateway ended it: say why
                yield _next(ExecutionResult(None, [GraphQLError(exc.message,
                                                                original_error=exc)]),
                            result_json)
                break
            yield _next_payload(payload)
        yield _COMPLETE
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
