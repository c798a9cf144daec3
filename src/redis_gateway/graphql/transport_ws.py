"""GraphQL over WebSocket: the ``graphql-transport-ws`` protocol (graphql-ws, Apollo).

One connection, many operations (The Guild's PROTOCOL.md):
- the client sends ``connection_init`` (its ``payload`` carries the token: ``x-api-key``,
  ``Authorization`` with or without ``Bearer``, or ``token``; failing that, the token the
  WebSocket handshake carried); the server answers ``connection_ack``, or closes 4403;
- ``subscribe`` (``id``, ``payload``: query, variables, operationName) runs an operation:
  a query or mutation gives one ``next``, a subscription one per event, then ``complete``;
  a refused document gives ``error`` (a list of GraphQL errors) instead;
- ``complete`` from the client stops its operation; ``ping`` is answered ``pong``.
Misbehaviour closes the socket with the protocol's codes: 4400 bad message, 4401
``subscribe`` before the ack, 4403 refused token, 4408 no ``connection_init`` in time,
4409 an id already running, 4429 a second ``connection_init``.

The socket underneath is the HTTP server's (``TextSocket``): this module knows nothing of
frames. The token is checked again every few seconds, so that an expired or revoked one
ends the connection (4403) within ``token_recheck`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

import orjson
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
)

from ..auth import Principal
from ..errors import GatewayError, Unauthorized
from .operations import (
    Runner,
    error_json,
    execute_admitted,
    is_subscription,
    operation_key,
    result_json,
    subscription_payloads,
)
from .resolvers import Context

log = logging.getLogger("redis_gateway.graphql")

SUBPROTOCOL = "graphql-transport-ws"


class TextSocket(Protocol):
    """A WebSocket as this protocol needs it: text messages in and out."""

    async def receive(self) -> str | bytes | None:
        """The next message; None once the peer has closed or the socket is closed."""

    async def send(self, text: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class _Close(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


def token_from_payload(payload: Any) -> str | None:
    """The token in ``connection_init``'s payload, as the popular clients send it."""
    if not isinstance(payload, dict):
        return None
    fields = {str(k).lower(): v for k, v in payload.items()}
    for name in ("x-api-key", "authorization", "token", "authtoken"):
        value = fields.get(name)
        if isinstance(value, str) and value.strip():
            scheme, _, rest = value.strip().partition(" ")
            return rest.strip() if scheme.lower() == "bearer" and rest.strip() else value.strip()
    headers = fields.get("headers")  # Apollo's connectionParams often nest them
    return token_from_payload(headers) if isinstance(headers, dict) else None


class GraphQLWebSocket:
    """One ``graphql-transport-ws`` connection, from ``connection_init`` to close."""

    def __init__(self, endpoint: Runner, socket: TextSocket, *,
                 handshake_token: str | None = None, init_timeout: float = 3.0,
                 max_operations: int = 100, token_recheck: float = 5.0) -> None:
        self._endpoint = endpoint
        self._socket = socket
        self._handshake_token = handshake_token
        self._init_timeout = init_timeout
        self._max_operations = max_operations
        self._token_recheck = token_recheck
        self._token: str | None = None
        self._principal: Principal | None = None
        self._init_seen = False
        self._operations: dict[str, asyncio.Task[None]] = {}
        self._send_lock = asyncio.Lock()
        self._closed = False

    async def run(self) -> None:
        watchdog = asyncio.create_task(self._watch())
        try:
            while not self._closed:
                raw = await self._socket.receive()
                if raw is None:
                    break
                await self._on_message(raw)
        except _Close as close:
            await self._close(close.code, close.reason)
        finally:
            watchdog.cancel()
            operations = list(self._operations.values())
            for task in operations:
                task.cancel()
            for task in operations:
                with contextlib.suppress(BaseException):
                    await task
            with contextlib.suppress(BaseException):
                await watchdog

    async def _close(self, code: int, reason: str) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                await self._socket.close(code, reason)

    async def _watch(self) -> None:
        """Closes 4408 without ``connection_init`` in time, then 4403 once the token no
        longer authenticates (expired, revoked)."""
        await asyncio.sleep(self._init_timeout)
        if self._principal is None:
            await self._close(4408, "Connection initialisation timeout")
            return
        while not self._closed:
            await asyncio.sleep(self._token_recheck)
            assert self._token is not None
            try:
                await self._endpoint.authenticate(self._token)
            except Unauthorized as exc:
                await self._close(4403, f"Forbidden: {exc.message}"[:120])
            except GatewayError:
                continue  # the token store is unreachable: not a reason to drop clients

    async def _send(self, message: dict[str, Any]) -> None:
        async with self._send_lock:
            if not self._closed:
                await self._socket.send(orjson.dumps(message).decode())

    # --- messages --------------------------------------------------------------------

    async def _on_message(self, raw: str | bytes) -> None:
        try:
            message = orjson.loads(raw)
        except ValueError:
            raise _Close(4400, "Invalid message received: not JSON") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise _Close(4400, "Invalid message received: no type")
        kind = message["type"]
        if kind == "connection_init":
            await self._on_init(message.get("payload"))
        elif kind == "ping":
            pong: dict[str, Any] = {"type": "pong"}
            if isinstance(message.get("payload"), dict):
                pong["payload"] = message["payload"]
            await self._send(pong)
        elif kind == "pong":
            return
        elif kind == "subscribe":
            await self._on_subscribe(message)
        elif kind == "complete":
            operation_id = message.get("id")
            if not isinstance(operation_id, str):
                raise _Close(4400, "Invalid message received: complete without an id")
            task = self._operations.pop(operation_id, None)
            if task is not None:
                task.cancel()
        else:
            raise _Close(4400, f"Invalid message received: unknown type '{kind[:40]}'")

    async def _on_init(self, payload: Any) -> None:
        if self._init_seen:
            raise _Close(4429, "Too many initialisation requests")
        self._init_seen = True
        token = token_from_payload(payload) or self._handshake_token
        if token is None:
            raise _Close(4403, "Forbidden: no token in connection_init's payload "
                               "(x-api-key or Authorization)")
        try:
            self._principal = await self._endpoint.authenticate(token)
        except Unauthorized as exc:
            raise _Close(4403, f"Forbidden: {exc.message}"[:120]) from None
        self._token = token
        await self._send({"type": "connection_ack"})

    async def _on_subscribe(self, message: dict[str, Any]) -> None:
        if self._principal is None:
            raise _Close(4401, "Unauthorized")
        operation_id = message.get("id")
        payload = message.get("payload")
        if not isinstance(operation_id, str) or not operation_id or len(operation_id) > 256:
            raise _Close(4400, "Invalid message received: subscribe needs an id")
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            raise _Close(4400, "Invalid message received: subscribe needs payload.query")
        if operation_id in self._operations:
            raise _Close(4409, f"Subscriber for {operation_id[:80]} already exists")
        if len(self._operations) >= self._max_operations:
            # One operation refused, the connection kept: as a query over its limit.
            error = GraphQLError(f"this connection already runs {len(self._operations)} "
                                 "operations (graphql.max_subscriptions)")
            await self._send({"id": operation_id, "type": "error",
                              "payload": [error_json(error)]})
            return
        task = asyncio.create_task(self._operate(operation_id, payload, self._principal))
        self._operations[operation_id] = task
        task.add_done_callback(lambda _t: self._forget(operation_id, task))

    def _forget(self, operation_id: str, task: asyncio.Task[None]) -> None:
        if self._operations.get(operation_id) is task:
            del self._operations[operation_id]

    # --- operations ------------------------------------------------------------------

    async def _operate(self, operation_id: str, payload: dict[str, Any],
                       principal: Principal) -> None:
        variables = payload.get("variables")
        name = payload.get("operationName")
        if variables is not None and not isinstance(variables, dict):
            await self._send({"id": operation_id, "type": "error", "payload": [
                error_json(GraphQLError("variables must be a JSON object."))]})
            return
        document, errors = await self._endpoint.check(payload["query"], variables)
        if errors:
            await self._send({"id": operation_id, "type": "error",
                              "payload": [error_json(e) for e in errors]})
            return
        assert document is not None
        operation_name = name if isinstance(name, str) else None
        context = self._endpoint.context(principal)
        token = self._token
        assert token is not None
        context.recheck = lambda: self._endpoint.authenticate(token)
        try:
            if is_subscription(document, operation_name):
                await self._stream(operation_id, document, context, variables, operation_name,
                                   operation_key(payload["query"], variables, operation_name))
            else:
                await self._next(operation_id, await execute_admitted(
                    self._endpoint, document, context, variables, operation_name))
        except GatewayError as exc:  # the stream ended from our side: say why
            await self._next(operation_id, ExecutionResult(None, [GraphQLError(
                exc.message, original_error=exc)]))
        await self._send({"id": operation_id, "type": "complete"})

    async def _stream(self, operation_id: str, document: DocumentNode, context: Context,
                      variables: dict[str, Any] | None, operation_name: str | None,
                      key: str) -> None:
        # Opening a subscription is admitted like a request (the token's share and rate).
        async with self._endpoint.admitted(context.principal):
            stream = await subscription_payloads(self._endpoint, document, context,
                                                 variables, operation_name, key)
        if isinstance(stream, dict):  # refused before any event
            await self._send({"id": operation_id, "type": "next", "payload": stream})
            return
        try:
            async for payload in stream:
                await self._send({"id": operation_id, "type": "next", "payload": payload})
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    async def _next(self, operation_id: str, result: ExecutionResult) -> None:
        await self._send({"id": operation_id, "type": "next", "payload": result_json(result)})

