"""Redis Streams over Server-Sent Events: the at-least-once path, resumable.

``GET /streams/<key>`` reads the stream with ``XREAD BLOCK`` and sends each entry as one
event whose ``id:`` is the entry ID, so a browser's ``EventSource`` that reconnects sends
``Last-Event-ID`` and misses nothing:

    id: 1700000000000-0
    data: ["field","value",...]

- Where to start: ``Last-Event-ID`` (header), else ``?last_id=``, else ``$`` (new entries
  only); ``?last_id=0`` replays the whole stream.
- Consumer groups: ``?group=<g>&consumer=<c>`` reads with ``XREADGROUP``: first this
  consumer's entries delivered but not acknowledged (so a reconnect gets them again), then
  new ones (``>``). Acknowledge with ``POST /streams/<key>/ack?group=<g>`` and a JSON array
  of IDs (``XACK``), answered ``{"result": <count>}``.
- ``?count=`` entries per read (default 100); ``Upstash-Encoding: base64`` or
  ``?encoding=base64`` sends field names and values base64-encoded (as REST does).

Every read is an ordinary command through the executor: the token's key rules apply (a
read of the key; the group form writes), and it blocks on a reserved connection under
``limits.max_block_seconds``, given back between reads. Idle streams get keep-alive
comments. Pub/sub (``/subscribe``) is at-most-once: a client that is away misses what was
published meanwhile. This is at-least-once: entries stay in Redis until trimmed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from ..auth import Principal
from ..codec import Encoder
from ..errors import BadRequest, GatewayError, MethodNotAllowed, Unauthorized
from ..executor import Executor
from ..http import JSON_TYPE, Request, Response, json_body, query_pairs
from ..http_streaming import EVENT_STREAM_HEADERS, KEEPALIVE_COMMENT, StreamingResponse
from ..resp import ReplyError
from .hub import Hub
from .sse import event_lines

_MAX_COUNT = 10_000


async def handle(executor: Executor, hub: Hub, principal: Principal, request: Request,
                 key: bytes, action: str, recheck: Callable[[], Awaitable[Principal]],
                 max_reply_bytes: int) -> Response:
    query = {k.decode("utf-8", "replace"): v for k, v in query_pairs(request.query_string)}
    if action == "ack":
        if request.method != "POST":
            raise MethodNotAllowed("acknowledge with POST /streams/<key>/ack?group=<g>")
        ids = _ids(request.body)
        reply = await executor.execute(principal, [b"XACK", key, _required(query, "group"),
                                                   *ids])
        if isinstance(reply, ReplyError):
            raise BadRequest(str(reply))
        return Response(200, json_body({"result": reply}), [JSON_TYPE])
    if action:
        raise BadRequest(f"no such stream action '{action}'; use /streams/<key> or "
                         "/streams/<key>/ack")
    count = _count(query.get("count"))
    base64 = (request.header(b"upstash-encoding") or b"").strip().lower() == b"base64" or \
        query.get("encoding") == b"base64"
    group = query.get("group")
    first_id: bytes
    if group is not None:
        consumer = _required(query, "consumer")
        first_id = b"0"  # this consumer's pending entries first
    else:
        consumer = None
        first_id = (request.header(b"last-event-id") or query.get("last_id") or b"$").strip()
    if first_id == b"$" and group is None:
        # Resolve "$" now: reads after the first must continue from where it stood.
        first_id = await _last_id(executor, principal, key)
    read = _Reader(executor, principal, key, group, consumer, count, first_id)
    entries = await read.next(0.0)  # checks the rules before the response starts
    lease = hub.lease(principal)
    return StreamingResponse(200, list(EVENT_STREAM_HEADERS), _events(
        read, entries, hub, lease, recheck, Encoder(base64, max_reply_bytes)))


class _Reader:
    """XREAD or XREADGROUP, one call at a time, remembering where it is."""

    def __init__(self, executor: Executor, principal: Principal, key: bytes,
                 group: bytes | None, consumer: bytes | None, count: int,
                 first_id: bytes) -> None:
        self.executor, self.principal, self.key = executor, principal, key
        self.group, self.consumer, self.count = group, consumer, count
        self.position = first_id

    async def next(self, block: float) -> list[Any]:
        if self.group is not None:
            assert self.consumer is not None
            argv = [b"XREADGROUP", b"GROUP", self.group, self.consumer, b"COUNT",
                    b"%d" % self.count]
        else:
            argv = [b"XREAD", b"COUNT", b"%d" % self.count]
        if block > 0:
            argv += [b"BLOCK", b"%d" % int(block * 1000)]
        argv += [b"STREAMS", self.key, self.position]
        reply = await self.executor.execute(self.principal, argv)
        if isinstance(reply, ReplyError):
            raise BadRequest(str(reply))
        entries: list[Any] = reply[0][1] if reply else []
        if self.group is not None and self.position != b">" and not entries:
            self.position = b">"  # pending ones delivered: now the new ones
        elif entries and self.group is None:
            self.position = entries[-1][0]
        return entries


async def _last_id(executor: Executor, principal: Principal, key: bytes) -> bytes:
    reply = await executor.execute(principal, [b"XREVRANGE", key, b"+", b"-", b"COUNT", b"1"])
    if isinstance(reply, ReplyError):
        raise BadRequest(str(reply))
    return bytes(reply[0][0]) if reply else b"0"


async def _events(read: _Reader, entries: list[Any], hub: Hub, lease: Callable[[], None],
                  recheck: Callable[[], Awaitable[Principal]], encoder: Encoder
                  ) -> AsyncIterator[bytes]:
    block = min(hub.settings.keepalive_seconds, read.executor.limits.max_block_seconds)
    try:
        yield b": stream\n\n"
        while not hub.draining:
            if entries:
                yield b"".join(_entry_event(entry, encoder) for entry in entries)
            else:
                yield KEEPALIVE_COMMENT
            try:
                await recheck()
                entries = await read.next(block)
            except Unauthorized as exc:
                yield b"event: error\n" + event_lines(b"error,token revoked," +
                                                      exc.message.encode())
                return
            except GatewayError as exc:
                yield b"event: error\n" + event_lines(b"error,%b,%b" % (
                    exc.kind.encode(), exc.message.encode()))
                return
        yield b"retry: 1000\nevent: reconnect\n" + event_lines(
            b"reconnect,draining,the gateway is shutting down; reconnect")
    finally:
        lease()


def _entry_event(entry: list[Any], encoder: Encoder) -> bytes:
    entry_id, fields = entry
    encoder.budget = encoder.limit  # per event, not per stream
    return b"id: %b\n%b" % (entry_id, event_lines(orjson.dumps(encoder.value(fields or []))))


def _required(query: dict[str, bytes | None], name: str) -> bytes:
    value = query.get(name)
    if not value:
        raise BadRequest(f"?{name}= is required")
    return value


def _count(raw: bytes | None) -> int:
    if raw is None:
        return 100
    if not raw.isdigit() or not 0 < int(raw) <= _MAX_COUNT:
        raise BadRequest(f"?count= must be a whole number from 1 to {_MAX_COUNT}")
    return int(raw)


def _ids(body: bytes) -> list[bytes]:
    try:
        ids = orjson.loads(body or b"null")
    except orjson.JSONDecodeError:
        ids = None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise BadRequest('send the entry IDs to acknowledge as a JSON array of strings, '
                         'e.g. ["1700000000000-0"]')
    return [i.encode() for i in ids]
