"""``/graphql`` over HTTP, behaving like AWS AppSync on the wire.

- Auth: ``x-api-key: <token>`` or ``Authorization: [Bearer ]<token>`` (the core's tokens).
- Body: a JSON ``{"query", "variables", "operationName"}``, also under
  ``Content-Type: application/graphql`` (the seed's page sends that); ``GET`` with query
  parameters for queries.
- 200 with ``data`` and ``errors[]`` (``message``, ``path``, ``locations``, ``errorType``);
  400 ``MalformedHttpRequestException``; 401 ``UnauthorizedException`` with the
  ``x-amzn-ErrorType`` header.
"""

from __future__ import annotations

import logging
import math
from typing import Any
from urllib.parse import parse_qsl

import orjson
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    specified_rules,
)
from graphql.validation import NoSchemaIntrospectionCustomRule

from ..admission import Admission
from ..auth import Principal, TokenStore
from ..errors import TooManyRequests, Unauthorized
from ..executor import Executor
from ..http import JSON_TYPE, Request, Response, bearer_token, graphql_token, json_body
from ..settings import Settings
from .batch import Batch
from .documents import DocumentChecker
from .limits import variable_values_error
from .operations import SharedResults, execute_operation, result_json
from .resolvers import Context
from .schema import executable_schema
from .sse import event_stream, wants_events
from .subscriptions import Live

log = logging.getLogger("redis_gateway.graphql")

_MALFORMED = "MalformedHttpRequestException"
_NOT_AUTHORIZED = "You are not authorized to make this call."
_SUBSCRIPTION_TRANSPORTS = (
    "Subscriptions stream: open a WebSocket on /graphql with the graphql-transport-ws "
    "subprotocol, or POST with 'Accept: text/event-stream' (graphql-sse).")


def _failure(status: int, error_type: str, message: str,
             info: dict[str, str] | None = None) -> Response:
    error: dict[str, Any] = {"errorType": error_type, "message": message}
    if info:
        error["errorInfo"] = info
    headers = [JSON_TYPE]
    if status == 401:
        headers.append((b"x-amzn-errortype", error_type.encode()))
    return Response(status, json_body({"errors": [error]}), headers)


class GraphQLEndpoint:
    def __init__(self, settings: Settings, executor: Executor, tokens: TokenStore,
                 admission: Admission) -> None:
        self._settings = settings
        self._executor = executor
        self._tokens = tokens
        self._admission = admission
        self._schema = executable_schema()
        rules = list(specified_rules)
        if not settings.graphql.introspection:
            rules.append(NoSchemaIntrospectionCustomRule)
        self._documents = DocumentChecker(self._schema, rules, settings.graphql)
        # Set by the app when a streaming hub exists (the built-in server, uvicorn).
        self.live: Live | None = None
        self.shared = SharedResults()

    async def handle(self, request: Request) -> Response:
        token = graphql_token(request)
        if token is None and request.method == "GET" and wants_events(request):
            token = bearer_token(request)  # ?_token=: EventSource cannot send headers
        if token is None:
            return _failure(401, "UnauthorizedException", _NOT_AUTHORIZED, {
                "reason": "missing token: send 'x-api-key: <token>' or "
                          "'Authorization: Bearer <token>'"})
        try:
            principal = await self._tokens.authenticate(token)
        except Unauthorized as exc:
            return _failure(401, "UnauthorizedException", _NOT_AUTHORIZED,
                            {"reason": exc.message})
        envelope: Any
        if request.method == "GET":
            params = dict(parse_qsl(request.query_string.decode("latin-1")))
            envelope = {k: params[k] for k in ("query", "operationName") if k in params}
            if "variables" in params:
                try:
                    envelope["variables"] = orjson.loads(params["variables"])
                except ValueError:
                    return _failure(400, _MALFORMED, "Unable to parse GraphQL query.")
        else:
            if not request.body.strip():
                return _failure(400, _MALFORMED, "Request body is empty.")
            envelope = _envelope(request.body, request.header(b"content-type") or b"")
        if not isinstance(envelope, dict) or not isinstance(envelope.get("query"), str):
            return _failure(400, _MALFORMED, "Unable to parse GraphQL query.")
        variables = envelope.get("variables")
        if variables is not None and not isinstance(variables, dict):
            return _failure(400, _MALFORMED, "variables must be a JSON object.")
        try:
            async with self._admission.request(principal.name, principal.share,
                                               request.unjudged_body()) as admitted:
                if wants_events(request):
                    # graphql-sse: opening it is admitted like a request (the token's share
                    # and rate); what it streams is bounded by the streams limits.
                    return self._events(token, principal, envelope, request.method == "POST")
                response = await self._run(principal, envelope["query"], variables,
                                           envelope.get("operationName"), request.method)
                admitted.reply_bytes = len(response.body)
                return response
        except TooManyRequests as exc:
            response = _failure(429, exc.kind, exc.message)
            response.headers.append((b"retry-after", b"%d" % math.ceil(exc.retry_after)))
            return response

    def _events(self, token: str, principal: Principal, envelope: dict[str, Any],
                writes: bool) -> Response:
        if self.live is None or self.live.hub_of is None:
            return _failure(400, _MALFORMED, "GraphQL over SSE streams its answer, which AWS "
                                             "Lambda cannot: run the gateway as a server")
        return event_stream(self, principal, lambda: self.authenticate(token), envelope,
                            self._settings.streams.keepalive_seconds, result_json,
                            writes=writes)

    @property
    def schema(self) -> GraphQLSchema:
        return self._schema

    async def authenticate(self, token: str) -> Principal:
        return await self._tokens.authenticate(token)

    def admitted(self, principal: Principal) -> Any:
        return self._admission.request(principal.name, principal.share)

    async def check(self, query: str, variables: dict[str, Any] | None
                    ) -> tuple[DocumentNode | None, list[GraphQLError]]:
        """The operation's document, or why it is refused: the same limits on every
        transport (size, tokens, depth, aliases, fields, variables)."""
        document, errors = await self._documents.check(query)
        if not errors:
            too_many = variable_values_error(variables,
                                             self._settings.graphql.max_variable_values)
            errors = [too_many] if too_many else []
        return (None, list(errors)) if errors else (document, [])

    def context(self, principal: Principal) -> Context:
        limits = self._settings.limits
        return Context(principal, self._executor,
                       Batch(self._executor, principal, limits.max_commands),
                       limits.max_reply_bytes, self._settings.graphql.max_list_items,
                       self.live)

    async def _run(self, principal: Principal, query: str, variables: dict[str, Any] | None,
                   operation_name: Any, method: str) -> Response:
        document, errors = await self.check(query, variables)
        if errors:
            return _result(ExecutionResult(None, errors))
        assert document is not None
        if method == "GET" and any(
            isinstance(d, OperationDefinitionNode) and d.operation != OperationType.QUERY
            for d in document.definitions
        ):
            return _failure(405, _MALFORMED, "Only queries may be sent with GET; use POST.")
        if any(isinstance(d, OperationDefinitionNode)
               and d.operation == OperationType.SUBSCRIPTION for d in document.definitions):
            return _failure(400, _MALFORMED, _SUBSCRIPTION_TRANSPORTS)
        return _result(await execute_operation(
            self._schema, document, self.context(principal), variables,
            operation_name if isinstance(operation_name, str) else None))


def _envelope(body: bytes, content_type: bytes) -> Any:
    try:
        # orjson, not json: json raises RecursionError (not ValueError) on deep nesting.
        return orjson.loads(body)
    except ValueError:
        # GraphQL over HTTP allows the bare document under application/graphql.
        if content_type.split(b";")[0].strip().lower() == b"application/graphql":
            return {"query": body.decode("utf-8", "replace")}
        return None


def _result(result: ExecutionResult) -> Response:
    return Response(200, json_body(result_json(result)), [JSON_TYPE])
