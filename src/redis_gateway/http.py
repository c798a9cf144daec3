"""Plain-ASGI helpers shared by the HTTP front doors: bodies, responses, CORS, tokens.

No framework router sits under the gateway: on this machine one adds about 20 µs
per request (``DESIGN.md``), more than the rest of a GET's own work.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson

from .errors import LimitExceeded, RequestTimeout

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON_TYPE = (b"content-type", b"application/json")


class Request:
    """One whole HTTP request, body included: what every front door is handed.

    Built by the ASGI adapter (``app.Gateway.__call__``) or by the built-in server,
    so the front doors never see either's plumbing.
    """

    __slots__ = ("body", "body_charged", "headers", "let_go", "method", "path",
                 "query_string", "raw_path")

    def __init__(self, method: str, path: str, raw_path: bytes, query_string: bytes,
                 headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.method = method
        self.path = path  # percent-decoded
        self.raw_path = raw_path  # as sent: keeps %2F apart from the '/' between segments
        self.query_string = query_string
        self.headers = headers  # names in lower case
        self.body = body
        # Its body was charged to its token's body budget before it was read (by its
        # announced length, see ``Gateway.judge_body``): not charged again when admitted.
        self.body_charged = False
        # Called once it is answered (or dropped): lets go of what its body held of its
        # token's part of max_pending_request_bytes (``Admission.hold_body``).
        self.let_go: Callable[[], None] | None = None

    def unjudged_body(self) -> int:
        """The bytes of its body its admission charges (``admission.Admission.request``)."""
        return 0 if self.body_charged else len(self.body)

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return bytes(value)
        return None


def query_pairs(raw: bytes) -> list[tuple[bytes, bytes | None]]:
    """Query parameters in order, percent-decoded, '+' as space; ``None`` for a bare key."""
    pairs: list[tuple[bytes, bytes | None]] = []
    for part in raw.split(b"&"):
        if not part:
            continue
        key, eq, value = part.partition(b"=")
        pairs.append((_unquote(key), _unquote(value) if eq else None))
    return pairs


def _unquote(raw: bytes) -> bytes:
    return unquote_to_bytes(raw.replace(b"+", b" "))


def bearer_token(request: Request) -> str | None:
    """The token from ``Authorization: Bearer`` or, failing that, ``?_token=``."""
    auth = request.header(b"authorization")
    if auth is not None:
        scheme, _, credentials = auth.decode("latin-1").strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    for key, value in query_pairs(request.query_string):
        if key == b"_token" and value:
            return value.decode("utf-8", "replace")
    return None


def graphql_token(request: Request) -> str | None:
    """The token as AppSync clients send it: ``x-api-key``, or ``Authorization`` with or
    without ``Bearer``."""
    api_key = request.header(b"x-api-key")
    if api_key:
        return api_key.decode("latin-1").strip()
    auth = request.header(b"authorization")
    if auth:
        text = auth.decode("latin-1").strip()
        scheme, _, rest = text.partition(" ")
        return rest.strip() if scheme.lower() == "bearer" else text
    return None


def declared_length(request: Request) -> int | None:
    """The body length the request's ``Content-Length`` announces, if it is a number."""
    declared = request.header(b"content-length")
    return int(declared) if declared is not None and declared.isdigit() else None


async def read_body(receive: Receive, declared: int | None, limit: int, timeout: float
                    ) -> bytes:
    """An ASGI request's whole body: refused past ``limit`` bytes (before any is read when
    its ``declared`` length says so, so that no ``100 Continue`` is sent), and past
    ``timeout`` seconds for all of it to arrive."""
    if declared is not None and declared > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    more = True
    # A timer that cancels this task, rather than asyncio.timeout(): counted with
    # valgrind, a GET through this path takes 20 % more instructions with that, 4 % with
    # this.
    task = asyncio.current_task()
    assert task is not None
    deadline = asyncio.get_running_loop().call_later(timeout, task.cancel, _LATE_BODY)
    try:
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            chunks.append(chunk)
            more = message.get("more_body", False)
    except asyncio.CancelledError as exc:
        if exc.args != (_LATE_BODY,):
            raise
        task.uncancel()
        raise too_slow(timeout) from None
    finally:
        deadline.cancel()
    return b"".join(chunks)


_LATE_BODY = "the request body did not arrive in time"


def too_large(limit: int) -> LimitExceeded:
    return LimitExceeded(
        f"the request body is larger than {limit} bytes (limits.max_body_bytes)"
    )


def too_slow(timeout: float) -> RequestTimeout:
    return RequestTimeout(
        f"the request body did not arrive within {timeout:g} s (limits.body_timeout)"
    )


class Response:
    """A whole response: every front door builds one, the app sends it."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes, headers: Headers) -> None:
        self.status, self.body, self.headers = status, body, headers


class SyncTokens:
    """A fresh, non-empty ``Upstash-Sync-Token`` per response.

    One Redis needs no read-your-writes bookkeeping, but both SDKs' tests check that
    the token they hold changes after a write, so every response carries a new one.
    """

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex().encode() + b"-"
        self._counter = itertools.count(1)

    def next(self) -> bytes:
        return self._prefix + b"%d" % next(self._counter)


class Cors:
    ALLOW_HEADERS = (b"authorization, content-type, upstash-encoding, upstash-sync-token, "
                     b"upstash-response-format, redis-reply-format, upstash-telemetry-sdk, "
                     b"upstash-telemetry-runtime, upstash-telemetry-platform, x-api-key")

    def __init__(self, origins: Iterable[str]) -> None:
        self._origins = {o.encode() for o in origins}
        self._any = b"*" in self._origins

    def headers(self, request: Request) -> Headers:
        origin = request.header(b"origin")
        if origin is None or not self._origins:
            return []
        if self._any:
            return [(b"access-control-allow-origin", b"*"),
                    (b"access-control-expose-headers", b"upstash-sync-token")]
        if origin in self._origins:
            return [(b"access-control-allow-origin", origin), (b"vary", b"origin"),
                    (b"access-control-expose-headers", b"upstash-sync-token")]
        return [(b"vary", b"origin")]

    def preflight(self, request: Request) -> Headers:
        allowed = self.headers(request)
        if not any(k == b"access-control-allow-origin" for k, _ in allowed):
            return allowed
        return [*allowed,
                (b"access-control-allow-methods", b"GET, POST, PUT, HEAD, OPTIONS"),
                (b"access-control-allow-headers", self.ALLOW_HEADERS),
                (b"access-control-max-age", b"600")]


def json_body(value: Any) -> bytes:
    return orjson.dumps(value)
