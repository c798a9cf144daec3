"""What every GraphQL transport does with one operation: HTTP (``endpoint``), WebSocket
(``transport_ws``) and SSE (``sse``) run them alike through a ``Runner`` (the endpoint)."""

from __future__ import annotations

import logging
import uuid
from typing import Any, Protocol

from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    execute,
)

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


def _operation(document: DocumentNode, operation_name: str | None) -> OperationType | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = [d for d in operations
              if operation_name is None or (d.name and d.name.value == operation_name)]
    return chosen[0].operation if chosen else None


def is_subscription(document: DocumentNode, operation_name: str | None) -> bool:
    return _operation(document, operation_name) == OperationType.SUBSCRIPTION


def is_mutation(document: DocumentNode, operation_name: str | None) -> bool:
    return _operation(document, operation_name) == OperationType.MUTATION


async def execute_admitted(runner: Runner, document: DocumentNode, context: Context,
                           variables: dict[str, Any] | None, operation_name: str | None
                           ) -> ExecutionResult:
    """A query or mutation, admitted under the token's share as on HTTP."""
    try:
        async with runner.admitted(context.principal):
            result = execute(runner.schema, document, context_value=context,
                             variable_values=variables, operation_name=operation_name)
            if not isinstance(result, ExecutionResult):
                result = await result
            return result
    except TooManyRequests as exc:
        return ExecutionResult(None, [GraphQLError(exc.message, original_error=exc)])


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
