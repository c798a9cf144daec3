"""The gateway: built from settings, it routes each request to its front door.

``Gateway.handle(Request) -> Response`` is the one entry; ``Gateway`` is also a plain
ASGI app (for uvicorn, Mangum, tests), and the built-in server calls ``handle`` directly.

Routing (below ``base_path``):
- ``GET /healthz``: the process is up. ``GET /readyz``: every backend answers PING.
- ``OPTIONS *``: CORS preflight.
- ``/graphql``: the GraphQL front door (AppSync-compatible).
- ``/console/``: the web console's static files.
- everything else: the REST front door, after the token is checked.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from .auth import REDIS_TOKENS_KEY, TokenRecord, TokenStore
from .backend import Backend, make_backend
from .errors import GatewayError, MethodNotAllowed, NotFound, RedisUnavailable
from .executor import Executor
from .http import (
    JSON_TYPE,
    Cors,
    Headers,
    Receive,
    Request,
    Response,
    Scope,
    Send,
    SyncTokens,
    bearer_token,
    json_body,
    read_body,
)
from .rest import RestApi
from .settings import Settings
from .static import StaticFiles

if TYPE_CHECKING:
    from .graphql.endpoint import GraphQLEndpoint

log = logging.getLogger("redis_gateway")

_METHODS = frozenset({"GET", "POST", "PUT", "HEAD"})


class Gateway:
    """The ASGI application: one per process, holding the backends and the token store."""

    def __init__(
        self,
        settings: Settings,
        *,
        extra_tokens: Iterable[TokenRecord] = (),
        on_shutdown: Callable[[], Awaitable[None] | None] | None = None,
    ) -> None:
        self.settings = settings
        self.backends: dict[str, Backend] = {
            name: make_backend(name, backend, settings.limits)
            for name, backend in settings.backends.items()
        }
        self.executor = Executor(self.backends, settings.limits)
        self.tokens = TokenStore(settings, self._fetch_token_record, extra_tokens)
        self.rest = RestApi(self.executor, settings.limits.max_reply_bytes, settings.base_path)
        self.cors = Cors(settings.cors_origins)
        self.console = StaticFiles("redis_gateway", "console")
        self._graphql: GraphQLEndpoint | None = None
        self.sync_tokens = SyncTokens()
        self._base = settings.base_path
        self._on_shutdown = on_shutdown

    def graphql(self) -> GraphQLEndpoint:
        """Built at the first GraphQL request: a REST-only Lambda never imports graphql-core."""
        if self._graphql is None:
            from .graphql.endpoint import GraphQLEndpoint

            self._graphql = GraphQLEndpoint(self.settings, self.executor, self.tokens)
        return self._graphql

    async def _fetch_token_record(self, field: bytes) -> Any:
        (reply,) = await self.backends["default"].run([[b"HGET", REDIS_TOKENS_KEY, field]])
        return reply

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI: for uvicorn, Mangum and any other ASGI server."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method: str = scope["method"]
        limits = self.settings.limits
        try:
            body = await read_body(scope, receive, limits.max_body_bytes, limits.body_timeout)
        except GatewayError as exc:  # the body is not all read: the stream is not trusted
            response = _error(exc)
            response.headers.append((b"connection", b"close"))
        else:
            request = Request(method, scope["path"], scope.get("raw_path") or
                              scope["path"].encode(), scope.get("query_string", b""),
                              scope["headers"], body)
            response = await self.handle(request)
        await send({"type": "http.response.start", "status": response.status,
                    "headers": [*response.headers,
                                (b"content-length", b"%d" % len(response.body))]})
        await send({"type": "http.response.body",
                    "body": b"" if method == "HEAD" else response.body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.warm_up()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def warm_up(self) -> None:
        """Connect and read each command table now, so the first request is not slower.

        A Redis that is down is not fatal: the gateway starts, /readyz says so, and
        requests succeed once Redis is back.
        """
        for backend in self.backends.values():
            try:
                table = await backend.command_table()
                log.info("backend '%s': %s, %d commands", backend.name, backend.label,
                         len(table.commands))
            except GatewayError as exc:
                log.warning("backend '%s' is not ready yet: %s", backend.name, exc.message)

    async def close(self) -> None:
        for backend in self.backends.values():
            await backend.close()
        if self._on_shutdown is not None:
            result = self._on_shutdown()
            if result is not None:
                await result

    async def handle(self, request: Request) -> Response:
        """Route one request to its front door; every outcome is a response, never a raise."""
        method = request.method
        headers: Headers = [*self.cors.headers(request),
                            (b"upstash-sync-token", self.sync_tokens.next())]
        try:
            path = self._local_path(request.path)
            if method == "OPTIONS":
                return Response(204, b"", self.cors.preflight(request))
            if method not in _METHODS:
                raise MethodNotAllowed(
                    f"method {method} is not allowed; use GET, POST, PUT or HEAD"
                )
            if path in ("/healthz", "/readyz") and method in ("GET", "HEAD"):
                response = await self._health(path)
            elif path == "/graphql" and method in ("GET", "POST"):
                response = await self.graphql().handle(request)
            elif (path == "/console" or path.startswith("/console/")) and \
                    method in ("GET", "HEAD"):
                if path == "/console":  # relative asset URLs need the trailing slash
                    response = Response(308, b"", [(b"location",
                                                    f"{self._base}/console/".encode())])
                else:
                    response = self.console.get(path[len("/console/"):])
            else:
                principal = await self.tokens.authenticate(bearer_token(request))
                response = await self.rest.handle(request, principal, path)
        except GatewayError as exc:
            response = _error(exc)
        except Exception:
            incident = uuid.uuid4().hex[:12]
            log.exception("unexpected error, incident %s", incident)
            response = Response(500, json_body(
                {"error": f"internal gateway error (incident {incident}; see the gateway log)"}
            ), [JSON_TYPE])
        if response.status == 405:
            headers.append((b"allow", b"GET, POST, PUT, HEAD, OPTIONS"))
        response.headers = [*response.headers, *headers]
        return response

    def _local_path(self, path: str) -> str:
        if not self._base:
            return path
        if path == self._base or path.startswith(self._base + "/"):
            return path[len(self._base):] or "/"
        raise NotFound(f"no such path; this gateway is mounted at {self._base}")

    async def _health(self, path: str) -> Response:
        if path == "/healthz":
            return Response(200, json_body({"result": "ok"}), [JSON_TYPE])
        down = [b.name for b in self.backends.values() if not await b.ping()]
        if down:
            return _error(RedisUnavailable(f"Redis not reachable for backend(s): "
                                           f"{', '.join(down)}"))
        return Response(200, json_body({"result": "ready"}), [JSON_TYPE])


def _error(exc: GatewayError) -> Response:
    return Response(exc.status, json_body({"error": exc.message}), [JSON_TYPE])
