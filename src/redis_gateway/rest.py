"""The REST front door, wire-compatible with the Upstash REST API.

- ``POST /`` with ``["SET", "k", "v"]``: one command.
- ``GET|POST|PUT /set/k/v?EX=100``: one command in the path; each segment is one
  percent-decoded argument, a POST/PUT body is appended as the last argument as raw
  bytes, then each query pair ``K=V`` adds ``K`` and ``V`` (a bare ``?NX`` adds ``NX``).
- ``POST /pipeline``, ``POST /multi-exec``: arrays of commands.

Answers are ``{"result": ...}`` or ``{"error": "..."}`` (arrays of them for batches).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple
from urllib.parse import unquote_to_bytes

import orjson

from .auth import Principal
from .codec import Encoder, TypedEncoder
from .errors import BadRequest, GatewayError, MethodNotAllowed, RedisCommandError
from .executor import Executor
from .http import JSON_TYPE, Request, Response, json_body, query_pairs
from .resp import ReplyError, encode_resp2

_RESP_TYPE = (b"content-type", b"application/octet-stream")
_BATCH_PATHS = {"/pipeline": "pipeline", "/multi-exec": "multi-exec"}


class RestApi:
    def __init__(
        self, executor: Executor, max_reply_bytes: int, base_path: str
    ) -> None:
        self._executor = executor
        self._base_path = base_path.encode()
        self._max_reply = max_reply_bytes

    async def handle(
        self, request: Request, principal: Principal, path: str
    ) -> Response:
        """``path`` is the request's path below the gateway's base path."""
        method = request.method
        fmt = ReplyFormat.of(request)
        batch = _BATCH_PATHS.get("/" + path.lstrip("/"))
        if batch is not None:
            if method != "POST":
                raise MethodNotAllowed(f"{method} is not allowed on /{batch}; use POST")
            commands = _parse_batch(request.body)
            if batch == "multi-exec":
                fmt = fmt.without_resp2()  # as Upstash: transactions always answer JSON
                replies = await self._executor.transaction(principal, commands,
                                                           exact=fmt.exact)
            else:
                replies = await self._executor.pipeline(principal, commands, exact=fmt.exact)
            return self._items(replies, fmt)
        if path == "/":
            if method != "POST":
                raise MethodNotAllowed(
                    f"{method} / has no command; POST a JSON array such as [\"GET\", \"key\"] "
                    "or put the command in the path, e.g. GET /get/key"
                )
            argv = _parse_command(request.body)
        else:
            argv = self._path_command(request)
        reply = await self._executor.execute(principal, argv, exact=fmt.exact)
        if fmt.resp2:
            status = 400 if isinstance(reply, ReplyError) else 200
            return Response(status, encode_resp2(reply), [_RESP_TYPE])
        if fmt.typed:
            typed = TypedEncoder(self._max_reply).value(reply)
            return Response(200, json_body({"result": typed}), [JSON_TYPE])
        if isinstance(reply, ReplyError):
            raise RedisCommandError(str(reply))
        encoder = Encoder(fmt.base64, self._max_reply)
        return Response(200, json_body({"result": encoder.value(reply)}), [JSON_TYPE])

    def _items(self, replies: Sequence[Any], fmt: ReplyFormat) -> Response:
        if fmt.resp2:
            return Response(200, b"".join(_resp2_item(r) for r in replies), [_RESP_TYPE])
        if fmt.typed:
            typed = TypedEncoder(self._max_reply)
            return Response(200, json_body([typed.value(r) for r in replies]), [JSON_TYPE])
        encoder = Encoder(fmt.base64, self._max_reply)
        return Response(200, json_body([encoder.item(r) for r in replies]), [JSON_TYPE])

    def _path_command(self, request: Request) -> list[bytes]:
        # The raw path keeps %2F inside a segment apart from the '/' between segments.
        raw = request.raw_path.split(b"?", 1)[0][len(self._base_path):]
        argv = [unquote_to_bytes(seg) for seg in raw[1:].split(b"/")]
        if request.method in ("POST", "PUT") and request.body:
            argv.append(request.body)
        for key, value in query_pairs(request.query_string):
            if key == b"_token":
                continue
            argv.append(key)
            if value is not None:
                argv.append(value)
        return argv


class ReplyFormat(NamedTuple):
    """How the client wants replies, from its request headers."""

    base64: bool = False  # Upstash-Encoding: base64
    resp2: bool = False  # Upstash-Response-Format: resp2 (raw RESP bytes)
    typed: int | None = None  # Redis-Reply-Format: typed-resp2 | typed-resp3

    @property
    def exact(self) -> int | None:
        """The RESP protocol whose replies must keep every type, if any."""
        return 2 if self.resp2 else self.typed

    def without_resp2(self) -> ReplyFormat:
        return ReplyFormat(self.base64, False, self.typed)

    @classmethod
    def of(cls, request: Request) -> ReplyFormat:
        base64 = resp2 = False
        typed = None
        for key, value in request.headers:
            if key == b"upstash-encoding":
                base64 = value.strip().lower() == b"base64"
            elif key == b"upstash-response-format":
                fmt = value.strip().lower()
                if fmt not in (b"json", b"resp2"):
                    raise BadRequest("Upstash-Response-Format must be 'json' or 'resp2'")
                resp2 = fmt == b"resp2"
            elif key == b"redis-reply-format":
                typed = _TYPED_FORMATS.get(value.strip().lower())
                if typed is None:
                    raise BadRequest("Redis-Reply-Format must be 'typed-resp2' or 'typed-resp3'")
        if base64 and resp2:
            raise BadRequest("Upstash-Encoding: base64 cannot be combined with "
                             "Upstash-Response-Format: resp2 (RESP is binary already)")
        if typed and (base64 or resp2):
            raise BadRequest("Redis-Reply-Format cannot be combined with Upstash-Encoding "
                             "or Upstash-Response-Format")
        return cls(base64, resp2, typed)


_TYPED_FORMATS = {b"typed-resp2": 2, b"typed-resp3": 3}


def _resp2_item(reply: Any) -> bytes:
    if isinstance(reply, GatewayError):
        # An error line ends at CR LF, and messages quote the request: blank its line breaks
        # (as Redis does in its own errors), or a request could forge replies.
        line = reply.message.replace("\r", " ").replace("\n", " ")
        return b"-" + line.encode() + b"\r\n"
    return encode_resp2(reply)


def _load_json(body: bytes) -> Any:
    if not body.strip():
        raise BadRequest("the request body is empty: send a JSON array")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None  # the standard parser below says precisely what is wrong
    else:
        if not _has_float(data):
            return data
    try:
        # Floats keep their exact text: "1e3" must reach Redis as 1e3, not 1000.0.
        return json.loads(body, parse_float=str, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None


def _has_float(data: Any) -> bool:
    """True when a command or batch holds a float (orjson would lose its exact text)."""
    if type(data) is not list:
        return False
    if float in map(type, data):
        return True
    for item in data:  # noqa: SIM110 - a plain loop: any() over a generator costs more here
        if type(item) is list and float in map(type, item):
            return True
    return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in a command")


def _argument(value: Any) -> bytes:
    if type(value) is str:
        return value.encode("utf-8")  # UnicodeEncodeError is reported by _to_argv
    if value is True or value is False:
        return b"true" if value else b"false"
    if type(value) is int:  # floats never get here: they are re-read as their text
        return b"%d" % value
    raise TypeError(value)


def _to_argv(value: Any, index: int | None = None) -> list[bytes]:
    """A command as bytes; ``index`` is its place in a batch, for error messages."""
    if type(value) is list and value:
        try:
            return [v.encode("utf-8") if type(v) is str else _argument(v) for v in value]
        except (UnicodeEncodeError, TypeError):
            pass
    where = "the command" if index is None else f"command {index + 1}"
    if type(value) is not list:
        raise BadRequest(f"{where} must be a JSON array such as [\"SET\", \"key\", \"value\"]")
    if not value:
        raise BadRequest(f"{where} is an empty array: its first element must be a command name")
    # Something is wrong: say which element and why, which the fast path above does not.
    for i, v in enumerate(value):
        element = f"{where}, element {i + 1},"
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest(f"{element} is not valid Unicode (a lone surrogate escape); "
                                 "send binary values as a raw body in the path style") from None
        elif not isinstance(v, int):
            kind = "null" if v is None else ("an array" if isinstance(v, list) else "an object")
            raise BadRequest(f"{element} is {kind}; each argument must be a string, number "
                             "or boolean")
    raise AssertionError("unreachable: every element converts")  # pragma: no cover


def _parse_command(body: bytes) -> list[bytes]:
    return _to_argv(_load_json(body))


def _parse_batch(body: bytes) -> list[list[bytes]]:
    data = _load_json(body)
    if not isinstance(data, list) or not all(isinstance(c, list) for c in data):
        raise BadRequest(
            "expected an array of command arrays such as [[\"SET\",\"k\",\"v\"],[\"GET\",\"k\"]]"
        )
    return [_to_argv(c, i) for i, c in enumerate(data)]
