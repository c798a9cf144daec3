"""What every GraphQL transport does with one operation: HTTP (``endpoint``), WebSocket
(``transport_ws``) and SSE (``sse``) run them alike through a ``Runner`` (the endpoint)."""

from __future__ import annotations

import inspect
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import orjson
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    execute,
)
from graphql.execution import Executor, create_source_event_stream

from ..auth import Principal
from ..errors import GatewayError, TooManyRequests
from .resolvers import Context

log = logging.getLogger("redis_gateway.graphql")


class Runner(Protocol):
    """The endpoint, as the streaming transports use it."""

    @property
    def schema(self) -> GraphQLSchema: ...

    async def authenticate(self, token: str) -> Principal: ...

    def admitted(self, principal: Principal) -> Any: ...

    async def check(self, query: str, variables: dict[str, Any] | None
                    ) -> tuple[DocumentNode | None, list[GraphQLError]]: ...

    def context(self, principal: Principal) -> Context: ...

    @property
    def shared(self) -> SharedResults: ...


def _operation(document: DocumentNode, operation_name: str | None) -> OperationType | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = [d for d in operations
              if operation_name is None or (d.name and d.name.value == operation_name)]
    return chosen[0].operation if chosen else None


def is_subscription(document: DocumentNode, operation_name: str | None) -> bool:
    return _operation(document, operation_name) == OperationType.SUBSCRIPTION


def is_mutation(document: DocumentNode, operation_name: str | None) -> bool:
    return _operation(document, operation_name) == OperationType.MUTATION


async def execute_operation(schema: GraphQLSchema, document: DocumentNode, context: Context,
                            variables: dict[str, Any] | None, operation_name: str | None
                            ) -> ExecutionResult:
    """A query or mutation, run to its result (resolvers may await Redis)."""
    result = execute(schema, document, context_value=context, variable_values=variables,
                     operation_name=operation_name)
    if not isinstance(result, ExecutionResult):
        result = await result
    return result


async def execute_admitted(runner: Runner, document: DocumentNode, context: Context,
                           variables: dict[str, Any] | None, operation_name: str | None
                           ) -> ExecutionResult:
    """A query or mutation, admitted under the token's share as on HTTP."""
    try:
        async with runner.admitted(context.principal):
            return await execute_operation(runner.schema, document, context, variables,
                                           operation_name)
    except TooManyRequests as exc:
        return ExecutionResult(None, [GraphQLError(exc.message, original_error=exc)])


class SharedResults:
    """Each pub/sub event's result, computed once per distinct operation.

    The hub hands one message object to every subscriber of a channel, and a subscription
    field's result depends only on that event and the operation (its resolvers shape the
    event; what a token may see is decided before, in the source stream). So a message to
    1,000 clients of the same subscription is executed once, not 1,000 times: graphql-core
    takes about 100 µs an event. Keyed by the event's identity (the entry keeps the event,
    so its id cannot be reused while cached) and the operation's text and variables.
    """

    def __init__(self, entries: int = 4096) -> None:
        self._entries = entries
        self._cache: OrderedDict[tuple[int, str], tuple[Any, dict[str, Any]]] = OrderedDict()

    def get(self, event: Any, operation: str, compute: Callable[[], dict[str, Any]]
            ) -> dict[str, Any]:
        key = (id(event), operation)
        hit = self._cache.get(key)
        if hit is not None and hit[0] is event:
            return hit[1]
        value = compute()
        self._cache[key] = (event, value)
        if len(self._cache) > self._entries:
            self._cache.popitem(last=False)
        return value


def operation_key(query: str, variables: dict[str, Any] | None,
                  operation_name: str | None) -> str:
    canonical = orjson.dumps(variables, option=orjson.OPT_SORT_KEYS).decode()
    return f"{operation_name or ''}\0{canonical}\0{query}"


async def subscription_payloads(runner: Runner, document: DocumentNode, context: Context,
                                variables: dict[str, Any] | None, operation_name: str | None,
                                key: str) -> AsyncIterator[dict[str, Any]] | dict[str, Any]:
    """The subscription's results as JSON-ready payloads (``result_json``), or one
    payload with the errors that refused it before any event (rules, limits, variables)."""
    built = Executor.build(runner.schema, document, context_value=context,
                           raw_variable_values=variables, operation_name=operation_name)
    if isinstance(built, list):
        return result_json(ExecutionResult(None, built))
    source = create_source_event_stream(built)
    if inspect.isawaitable(source):
        source = await source
    if isinstance(source, ExecutionResult):
        return result_json(source)
    return _payloads(runner, document, context, variables, operation_name, key, source)


async def _payloads(runner: Runner, document: DocumentNode, context: Context,
                    variables: dict[str, Any] | None, operation_name: str | None, key: str,
                    source: Any) -> AsyncIterator[dict[str, Any]]:
    def compute(event: Any) -> dict[str, Any]:
        result = execute(runner.schema, document, root_value=event, context_value=context,
                         variable_values=variables, operation_name=operation_name)
        assert isinstance(result, ExecutionResult)  # event resolvers do not await
        return result_json(result)

    try:
        async for event in source:
            yield runner.shared.get(event, key, lambda: compute(event))  # noqa: B023
    finally:
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()


def result_json(result: ExecutionResult) -> dict[str, Any]:
    """An execution result as AppSync answers it (``errors[]`` with ``errorType``)."""
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [error_json(e) for e in result.errors]
    return body


def error_json(error: GraphQLError) -> dict[str, Any]:
    original = error.original_error
    if isinstance(original, GatewayError):
        error_type, message = original.kind, original.message
    elif original is not None and not isinstance(original, GraphQLError):
        incident = uuid.uuid4().hex[:12]
        log.error("resolver failed, incident %s", incident, exc_info=original)
        error_type = "InternalError"
        message = f"internal gateway error (incident {incident}; see the gateway log)"
    else:
        error_type = "ValidationError" if error.path is None else "GraphQLError"
        message = error.message
    return {
        "message": message,
        "path": error.path,
        "locations": [{"line": loc.line, "column": loc.column, "sourceName": None}
                      for loc in error.locations or []] or None,
        "errorType": error_type,
        "errorInfo": None,
        "data": None,
    }
