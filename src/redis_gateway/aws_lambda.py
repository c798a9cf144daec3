"""AWS Lambda entry point: ``redis_gateway.aws_lambda.handler``.

One function serves every event shape, dispatched on the event before anything else:
- a list: AppSync direct Lambda resolvers with batching (a list of the same length back,
  per-item errors);
- a dict with ``info.fieldName``: one AppSync direct resolver call;
- a dict with ``query`` = ``RedisGet``/``RedisSet``: the seed sample's mapping-template
  payload, so its deployments can switch their function to this one;
- a dict with ``requestContext``: API Gateway (HTTP API v2, REST v1) and Function URLs,
  served by the same ASGI app as the server, through Mangum.

Everything that lasts is made once per execution environment, at the first call: the
settings, the event loop and the backends' connections (a Lambda handles one request at
a time, so there is nothing to gain from more). Imports stay lazy: the REST path never
loads graphql-core, and boto3 is loaded only to read a secret.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from collections.abc import Callable
from typing import Any

from . import settings as settings_mod
from .admission import Share
from .auth import Principal, compile_rules
from .errors import BadRequest, GatewayError, Unauthorized

log = logging.getLogger("redis_gateway.aws_lambda")

# After this long without a call, the environment may have been frozen and its sockets
# closed by the network in between: check the connection before trusting it.
_STALE_AFTER = 30.0
_SEED_FIELDS = {"RedisGet": ("Query", "getRedis"), "RedisSet": ("Mutation", "putRedis")}


class Runtime:
    """What one execution environment keeps between invocations."""

    def __init__(self, settings: settings_mod.Settings) -> None:
        from .app import Gateway

        self.settings = settings
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)  # Mangum runs the app on the current loop
        self.gateway = Gateway(settings)
        self.gateway.streaming = False  # one whole response per invocation
        self._last_call = time.monotonic()
        self._http: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None

    def invoke(self, event: Any, context: Any) -> Any:
        self.loop.run_until_complete(self._refresh_if_stale())
        try:
            if isinstance(event, dict) and "requestContext" in event:
                return self._http_handler()(event, context)
            if isinstance(event, list):
                return self.loop.run_until_complete(self._batch(event))
            if isinstance(event, dict) and isinstance(event.get("info"), dict):
                return self.loop.run_until_complete(self._single(event))
            if isinstance(event, dict) and event.get("query") in _SEED_FIELDS:
                type_name, field = _SEED_FIELDS[event["query"]]
                appsync = dict(event.get("context") or {})
                appsync["info"] = {"parentTypeName": type_name, "fieldName": field}
                return self.loop.run_until_complete(self._single(appsync))
            raise _appsync_error(BadRequest(
                "unrecognised event: expected an AppSync resolver event (or a list of them), "
                "the sample's {query, context} payload, or an API Gateway/Function URL event"))
        finally:
            self._last_call = time.monotonic()

    def _http_handler(self) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
        if self._http is None:
            from mangum import Mangum

            # lifespan off: Mangum would run startup and shutdown on every invocation,
            # closing the connections this environment keeps.
            self._http = Mangum(self.gateway, lifespan="off")
        return self._http

    async def _refresh_if_stale(self) -> None:
        if time.monotonic() - self._last_call < _STALE_AFTER:
            return
        for backend in self.gateway.backends.values():
            try:
                async with asyncio.timeout(self.settings.limits.connect_timeout):
                    alive = await backend.ping()
            except (TimeoutError, GatewayError):
                alive = False
            if not alive:
                log.info("connection to %s did not survive the pause; reconnecting",
                         backend.label)
                await backend.close()  # the next command opens fresh connections

    # AppSync --------------------------------------------------------------------------
    async def _single(self, event: dict[str, Any]) -> Any:
        from .graphql.batch import Batch

        try:
            principal = await self.principal(event)
            batch = Batch(self.gateway.executor, principal, self.settings.limits.max_commands)
            async with self.gateway.admission.request(principal.name, principal.share):
                return await self._resolve(event, principal, batch)
        except GatewayError as exc:
            raise _appsync_error(exc) from None

    async def _batch(self, events: list[Any]) -> list[dict[str, Any] | None]:
        """Every item at once, so that their commands share one round trip."""
        from .graphql.batch import Batch

        batches: dict[str, Batch] = {}

        async def one(event: Any) -> dict[str, Any]:
            try:
                if not isinstance(event, dict):
                    raise BadRequest("a batch item is not an AppSync resolver event")
                principal = await self.principal(event)
                batch = batches.setdefault(principal.name, Batch(
                    self.gateway.executor, principal, self.settings.limits.max_commands))
                async with self.gateway.admission.request(principal.name, principal.share):
                    return {"data": await self._resolve(event, principal, batch)}
            except GatewayError as exc:
                return {"data": None, "errorMessage": exc.message,
                        "errorType": _error_type(exc)}

        return list(await asyncio.gather(*(one(e) for e in events)))

    async def _resolve(self, event: dict[str, Any], principal: Principal, batch: Any) -> Any:
        from .graphql.resolvers import RESOLVERS, Context

        info = event.get("info") or {}
        key = (info.get("parentTypeName"), info.get("fieldName"))
        resolver = RESOLVERS.get(key)  # type: ignore[arg-type]
        if resolver is None:
            raise BadRequest(f"no resolver for {key[0]}.{key[1]}")
        limits = self.settings.limits
        context = Context(principal, self.gateway.executor, batch, limits.max_reply_bytes)
        return await resolver(context, event.get("arguments") or {})

    async def principal(self, event: dict[str, Any]) -> Principal:
        """Who the caller is, from the identity AppSync verified, mapped to token rules."""
        aws = self.settings.aws
        identity = event.get("identity")
        headers = (event.get("request") or {}).get("headers") or {}
        if not identity:  # API key mode: AppSync leaves identity empty
            api_key = headers.get("x-api-key")
            try:
                return await self.gateway.tokens.authenticate(api_key)
            except Unauthorized:
                if api_key and aws.api_key_rules:
                    return self._rules("appsync-api-key", aws.api_key_rules)
                raise
        if "resolverContext" in identity:
            return self._rules("lambda-authorizer", aws.lambda_authorizer_rules)
        if identity.get("userArn"):
            arn = identity["userArn"]
            for pattern, rules in aws.iam_arn_rules.items():
                if fnmatch.fnmatchcase(arn, pattern):
                    return self._rules(f"iam:{arn}", rules)
            return self._rules(f"iam:{arn}", aws.iam_rules)
        if "claims" in identity and "defaultAuthStrategy" in identity:  # Cognito user pools
            user = identity.get("username") or identity.get("sub")
            for group in identity.get("groups") or []:
                if group in aws.cognito_group_rules:
                    return self._rules(f"cognito:{user}", aws.cognito_group_rules[group])
            return self._rules(f"cognito:{user}", aws.cognito_rules)
        if "claims" in identity:
            return self._rules(f"oidc:{identity.get('sub')}", aws.oidc_rules)
        raise Unauthorized("the caller's identity is of a kind this gateway does not map")

    def _rules(self, name: str, rules: str) -> Principal:
        if not rules:
            raise Unauthorized(f"no rules are configured for {name} (see the [aws] settings)")
        return Principal(name, compile_rules(self.settings, rules, "default"), "default",
                         share=Share.of(self.settings.limits))


def _error_type(exc: GatewayError) -> str:
    return "UnauthorizedException" if isinstance(exc, Unauthorized) else exc.kind


def _appsync_error(exc: GatewayError) -> Exception:
    """An exception whose class name is the errorType AppSync will show."""
    error_class: type[Exception] = type(_error_type(exc), (Exception,), {})
    return error_class(exc.message)


def load_settings() -> settings_mod.Settings:
    from .aws_secrets import resolve

    return resolve(settings_mod.load())


_runtime: Runtime | None = None


def handler(event: Any, context: Any) -> Any:
    global _runtime
    if _runtime is None:
        _runtime = Runtime(load_settings())
    return _runtime.invoke(event, context)


def reset() -> None:
    """Forget this environment's state (tests start several configurations in one process)."""
    global _runtime
    if _runtime is not None:
        _runtime.loop.run_until_complete(_runtime.gateway.close())
        _runtime.loop.close()
        asyncio.set_event_loop(None)
    _runtime = None

