"""The gateway: built from settings, it routes each request to its front door.

``Gateway.handle(Request) -> Response`` is the one entry; ``Gateway`` is also a plain
ASGI app (for uvicorn, Mangum, tests), and the built-in server calls ``handle`` directly.

Routing (below ``base_path``):
- ``GET /healthz``: the process is up. ``GET /readyz``: every backend answers PING.
- ``OPTIONS *``: CORS preflight.
- ``GET /openapi.json``: the REST API's OpenAPI description (``openapi.json``), no token.
- ``GET /metrics``: Prometheus metrics, with the ``metrics_token`` (else 404).
- ``/graphql``: the GraphQL front door (AppSync-compatible).
- ``/console/``: the web console's static files.
- everything else: the REST front door, after the token is checked.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Iterable
from importlib import resources
from typing import TYPE_CHECKING, Any

import orjson

from .admission import GCRA_SCRIPT, Admission
from .auth import (
    REDIS_TOKENS_KEY,
    RESERVED_PREFIX,
    Principal,
    TokenRecord,
    TokenStore,
    revocation_field,
)
from .backends import Backend, make_backend
from .enforcement import prepare as prepare_enforcement
from .errors import (
    BadRequest,
    GatewayError,
    MethodNotAllowed,
    NotFound,
    RedisUnavailable,
    ReplyTooLarge,
    TooManyRequests,
)
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
    declared_length,
    graphql_token,
    json_body,
    read_body,
)
from .http_streaming import StreamingResponse, send_asgi
from .observe.observer import Observer
from .rest import RestApi
from .settings import Settings
from .static import StaticFiles
from .streams import redis_streams
from .streams.hub import Hub
from .streams.sse import open_stream, stream_key, streaming_path
from .streams.ws import WsSession, serve_asgi

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
        shared_rate = self._shared_rate if settings.limits.shared_rate else None
        self.admission = Admission(settings.limits, shared_rate)
        self.executor = Executor(self.backends, settings, self.admission)
        self.tokens = TokenStore(settings, self._fetch_token_record, extra_tokens)
        self.rest = RestApi(self.executor, settings.limits.max_reply_bytes, settings.base_path)
        self.cors = Cors(settings.cors_origins)
        self.console = StaticFiles("redis_gateway", "console")
        self._graphql: GraphQLEndpoint | None = None
        self._openapi: bytes | None = None
        self.sync_tokens = SyncTokens()
        self.hubs = {name: Hub(backend, enforcement.user, settings.limits, settings.streams,
                               enforcement.db)
                     for name, backend in self.backends.items()
                     for enforcement in [self.executor.enforcement(name)]}
        self._base = settings.base_path
        self._on_shutdown = on_shutdown
        # Set by the server when it starts to drain (SIGTERM): /readyz answers 503 at once,
        # so load balancers stop sending before the port closes.
        self.draining = False
        self.observer = Observer(settings, self.backends)
        # False in AWS Lambda (aws_lambda.py), which cannot stream a response.
        self.streaming = True
        # Where WebSocket clients connect (streams/ws.py); the built-in server reads it.
        self.websocket_path = self._base + "/ws"
        self.graphql_websocket_path = self._base + "/graphql"
        self.ws_sessions: set[WsSession] = set()  # open /ws sessions (streams/ws.py)

    def graphql(self) -> GraphQLEndpoint:
        """Built at the first GraphQL request: a REST-only Lambda never imports graphql-core."""
        if self._graphql is None:
            from .graphql.endpoint import GraphQLEndpoint
            from .graphql.subscriptions import BackendKeyspaceConfig, Live, PutRedisFeed

            self._graphql = GraphQLEndpoint(self.settings, self.executor, self.tokens,
                                            self.admission)
            self._graphql.live = Live(
                self.hub if self.streaming else None,
                BackendKeyspaceConfig(lambda name, cmds: self.backends[name].run(cmds)),
                self.settings.graphql.keyspace_events_enable,
                PutRedisFeed(self.settings.streams.buffer_bytes))
        return self._graphql

    def openapi(self) -> bytes:
        """The REST API's description, its server URL set to where this gateway is mounted.

        Read at the first request: most gateways are never asked for it.
        """
        if self._openapi is None:
            document = orjson.loads(
                resources.files("redis_gateway").joinpath("openapi.json").read_bytes())
            document["servers"][0]["url"] = self._base or "/"
            self._openapi = json_body(document)
        return self._openapi

    async def known_tokens(self) -> list[Principal]:
        """Every token known now, those kept in Redis included (``check``, ``explain``)."""
        return await self.tokens.known(self._fetch_all_token_records)

    async def _fetch_token_record(self, token_hash: str) -> tuple[Any, Any]:
        (reply,) = await self.backends["default"].run(
            [[b"HMGET", REDIS_TOKENS_KEY, token_hash.encode(), revocation_field(token_hash)]])
        if not isinstance(reply, list):
            raise RedisUnavailable(f"reading the token store failed: {reply}")
        return reply[0], reply[1]

    async def _fetch_all_token_records(self) -> dict[str, bytes]:
        (flat,) = await self.backends["default"].run([[b"HGETALL", REDIS_TOKENS_KEY]])
        if not isinstance(flat, list):
            raise RedisUnavailable(f"reading the token store failed: {flat}")
        return {k.decode(): v for k, v in zip(flat[::2], flat[1::2], strict=True)}

    async def _shared_rate(self, name: str, interval_ms: int, tolerance_ms: int) -> int:
        key = RESERVED_PREFIX + b"rate:" + name.encode()
        (reply,) = await self.backends["default"].run(
            [[b"EVAL", GCRA_SCRIPT, b"1", key, b"%d" % interval_ms, b"%d" % tolerance_ms]])
        if not isinstance(reply, int):
            raise RedisUnavailable(f"the shared rate limit could not be read: {reply}")
        return reply

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI: for uvicorn, Mangum and any other ASGI server."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        method: str = scope["method"]
        limits = self.settings.limits
        request = Request(method, scope["path"], scope.get("raw_path") or
                          scope["path"].encode(), scope.get("query_string", b""),
                          scope["headers"], b"")
        declared = declared_length(request)
        response = None
        if declared is not None and limits.max_header_bytes < declared <= limits.max_body_bytes:
            response = self.judge_body(request, declared)
        try:
            await self._serve_asgi(request, response, declared, send, receive)
        finally:
            if request.let_go is not None:
                request.let_go()

    async def _serve_asgi(self, request: Request, response: Response | None,
                          declared: int | None, send: Send, receive: Receive) -> None:
        limits = self.settings.limits
        method = request.method
        if response is None:
            try:
                request.body = await read_body(receive, declared, limits.max_body_bytes,
                                               limits.body_timeout)
            except GatewayError as exc:
                response = _error(exc)
        if response is not None:  # the body is not (all) read: the stream is not trusted
            response.headers += [(b"connection", b"close"),
                                 (b"x-request-id", self.observer.ids.next())]
        else:
            response = await self.handle(request)
            if type(response) is StreamingResponse:
                await send_asgi(response, receive, send)
                return
        await send({"type": "http.response.start", "status": response.status,
                    "headers": [*response.headers,
                                (b"content-length", b"%d" % len(response.body))]})
        await send({"type": "http.response.body",
                    "body": b"" if method == "HEAD" else response.body})

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI WebSockets: ``/ws`` (streams/ws.py) and GraphQL subscriptions
        (graphql-transport-ws) on ``/graphql``."""
        if scope["path"] == self.websocket_path and self.streaming:
            await serve_asgi(self, scope, receive, send)
        elif scope["path"] == self.graphql_websocket_path and self.streaming:
            from .graphql.asgi_ws import serve_asgi as serve_graphql

            await serve_graphql(self.graphql(), scope, receive, send,
                                max_operations=self.settings.graphql.max_subscriptions,
                                token_recheck=self.settings.streams.recheck_seconds,
                                max_message_bytes=self.settings.streams.max_ws_message_bytes)
        else:  # refused at the handshake: ASGI turns a close before accept into a 403
            await send({"type": "websocket.close", "code": 1008})

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
        await self.observer.start(self.settings.limits)
        try:
            principals = await self.tokens.known(self._fetch_all_token_records)
        except GatewayError as exc:
            log.warning("the token store could not be read yet: %s", exc.message)
            principals = await self.tokens.known()
        for backend in self.backends.values():
            try:
                table = await backend.command_table()
                log.info("backend '%s': %s, %d commands", backend.name, backend.label,
                         len(table.commands))
            except GatewayError as exc:
                log.warning("backend '%s' is not ready yet: %s", backend.name, exc.message)
                continue
            await prepare_enforcement(
                self.executor.enforcement(backend.name), backend,
                [p.policy for p in principals if p.backend == backend.name])

    def judge_body(self, request: Request, length: int | None) -> Response | None:
        """Before a large body is read (``request`` has its head only): the 429 a known
        token over its share gets now, or None, its ``length`` charged to the token's
        body budget (``Admission.refusal``) and held as the token's until the request
        is answered: the server calls ``request.let_go`` then. A chunked body (``length``
        None) is held as the largest it may grow to, and charged to the body budget when
        its request is admitted, at its real size. An unknown token is judged when its
        request runs, as every other."""
        token = bearer_token(request) or graphql_token(request)
        principal = self.tokens.known_now(token) if token else None
        if principal is None:
            return None
        held = self.settings.limits.max_body_bytes if length is None else length
        refused = self.admission.refusal(principal.name, principal.share, length or 0, held)
        if refused is not None:
            return _error(refused)
        request.body_charged = bool(principal.share.body_rate) and length is not None
        request.let_go = self.admission.hold_body(principal.name, held)
        return None

    def hub(self, principal: Principal) -> Hub:
        """The pub/sub hub of the principal's backend (``streams/hub.py``)."""
        return self.hubs[principal.backend]

    async def drain(self) -> None:
        """End every open stream with a final event telling its client to reconnect."""
        for session in list(self.ws_sessions):
            await session.drain()
        for hub in self.hubs.values():
            await hub.drain()

    async def close(self) -> None:
        for hub in self.hubs.values():
            await hub.close()
        await self.observer.close()  # the audit entries queued are written first
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
        record = self.observer.begin(request)
        path = request.path
        try:
            path = self._local_path(request.path)
            if method == "OPTIONS":
                response = Response(204, b"", self.cors.preflight(request))
                self.observer.end(record, request, path, response)
                return response
            if method not in _METHODS:
                raise MethodNotAllowed(
                    f"method {method} is not allowed; use GET, POST, PUT or HEAD"
                )
            if path in ("/healthz", "/readyz") and method in ("GET", "HEAD"):
                response = await self._health(path)
            elif path == "/metrics" and method in ("GET", "HEAD"):
                response = self.observer.metrics_response(request)
            elif path == "/openapi.json" and method in ("GET", "HEAD"):
                response = Response(200, self.openapi(), [JSON_TYPE])
            elif path == "/graphql" and method in ("GET", "POST"):
                response = await self.graphql().handle(request)
            elif (path == "/console" or path.startswith("/console/")) and \
                    method in ("GET", "HEAD"):
                if path == "/console":  # relative asset URLs need the trailing slash
                    response = Response(308, b"", [(b"location",
                                                    f"{self._base}/console/".encode())])
                else:
                    response = self.console.get(path[len("/console/"):])
            elif (command := streaming_path(path)) is not None and method in ("GET", "POST"):
                response = await self._stream(request, command)
            else:
                principal = await self.tokens.authenticate(bearer_token(request))
                record.token = principal.name
                async with self.admission.request(principal.name, principal.share,
                                                  request.unjudged_body()) as admitted:
                    try:
                        response = await self.rest.handle(request, principal, path)
                    except ReplyTooLarge as exc:
                        admitted.reply_bytes = exc.seen
                        raise
                    admitted.reply_bytes = len(response.body)
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
        self.observer.end(record, request, path, response)
        return response

    async def _stream(self, request: Request, command: str) -> Response:
        """A streaming endpoint (``streams/``)."""
        if not self.streaming:
            raise BadRequest(f"/{command} streams its answer, which AWS Lambda cannot: a "
                             "Lambda invocation returns one whole response. Run the gateway "
                             "as a server (container, `redis-gateway serve`) for streams")
        token = bearer_token(request)
        principal = await self.tokens.authenticate(token)

        def recheck() -> Awaitable[Principal]:
            return self.tokens.authenticate(token)

        # Opening a stream counts as a request against the token's share and rate; what
        # it streams afterwards is bounded by the streams limits instead.
        async with self.admission.request(principal.name, principal.share):
            if command == "streams":
                key, action = stream_key(request, self._base.encode())
                return await redis_streams.handle(
                    self.executor, self.hub(principal), principal, request, key, action,
                    recheck, self.settings.limits.max_reply_bytes)
            return await open_stream(self.hub(principal), principal, request, command,
                                     self._base.encode(), recheck)

    def _local_path(self, path: str) -> str:
        if not self._base:
            return path
        if path == self._base or path.startswith(self._base + "/"):
            return path[len(self._base):] or "/"
        raise NotFound(f"no such path; this gateway is mounted at {self._base}")

    async def _health(self, path: str) -> Response:
        if path == "/healthz":
            return Response(200, json_body({"result": "ok"}), [JSON_TYPE])
        if self.draining:
            return _error(RedisUnavailable("the gateway is stopping (draining its requests)"))
        down = [b.name for b in self.backends.values() if not await b.ping()]
        if down:
            return _error(RedisUnavailable(f"Redis not reachable for backend(s): "
                                           f"{', '.join(down)}"))
        return Response(200, json_body({"result": "ready"}), [JSON_TYPE])


def _error(exc: GatewayError) -> Response:
    headers = [JSON_TYPE]
    if isinstance(exc, TooManyRequests):
        headers.append((b"retry-after", b"%d" % math.ceil(exc.retry_after)))
    return Response(exc.status, json_body({"error": exc.message}), headers)
