"""Pub/sub and MONITOR over Server-Sent Events, on the Upstash wire.

``GET|POST /subscribe/<ch>[/<ch2>...]``, ``/psubscribe/<pattern>[/...]``,
``/ssubscribe/<ch>[/...]`` (Cluster shard channels) and ``/monitor``. Each path segment
is one percent-decoded channel or pattern. Events, as ``@upstash/redis`` parses them
(``upstash-rest.md`` §1.6-1.7):

    data: subscribe,<channel>,<count>        one per channel, once Redis confirmed it
    data: message,<channel>,<payload>
    data: pmessage,<pattern>,<channel>,<payload>
    data: "OK"                                MONITOR: first, then one event per line
    data: <monitor line>
    : keepalive                               every streams.keepalive_seconds when idle

Payloads go as they are (never base64). A payload or name holding a line break is sent as
several lines, as SSE says (``EventSource`` joins them with ``\\n``); continuation lines
are written so that the line-based parser of ``@upstash/redis`` cannot read them as events
of their own (``event_lines``).

When the gateway ends a stream, a last event says why, then the response ends:

    event: error      data: error,<reason>,<detail>
    event: reconnect  data: reconnect,draining,<detail>       (with retry: 1000)

where <reason> is "slow consumer", "token revoked", "token expired" or "redis unavailable".

A client that closes the request ends its subscription (UNSUBSCRIBE when it was the
channel's last listener).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import unquote_to_bytes

from ..auth import Principal
from ..errors import BadRequest
from ..http import Request
from ..http_streaming import EVENT_STREAM_HEADERS, KEEPALIVE_COMMENT, StreamingResponse
from .hub import CLOSED, DRAINING, Hub, Message, Subscription

PATHS = {"subscribe": "channel", "psubscribe": "pattern", "ssubscribe": "shard",
         "monitor": "monitor"}
_CONFIRM = {"channel": b"subscribe", "pattern": b"psubscribe", "shard": b"ssubscribe"}
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_BATCH_BYTES = 64 * 1024  # messages already waiting leave together, up to this much


STREAMING_PATHS = frozenset([*PATHS, "streams"])
_PREFIXES = tuple("/" + name for name in STREAMING_PATHS)  # on every request: a quick no first


def streaming_path(path: str) -> str | None:
    """The streaming endpoint a request path names (``subscribe`` ..., ``streams``), or
    None. Lower case only, as the SDKs send them: ``/SUBSCRIBE/x`` is the path style's
    SUBSCRIBE command, which says where to go instead."""
    if not path.startswith(_PREFIXES):
        return None
    end = path.find("/", 1)
    head = path[1:] if end < 0 else path[1:end]
    return head if head in STREAMING_PATHS else None


def event_lines(text: bytes) -> bytes:
    """One SSE event whose data is ``text``.

    Continuation lines are written ``data:<line>``, without the space after the colon
    (``data:  <line>`` when the line itself starts with a space, as SSE strips one):
    ``EventSource`` reads them exactly, while ``@upstash/redis``, which takes only lines
    starting with ``data: ``, skips them, or reads an event type starting with a space,
    which no listener has; a payload can never pose as another channel's message.
    """
    lines = _LINE_BREAK.split(text)
    out = [b"data: " + lines[0]]
    for line in lines[1:]:
        out.append(b"data: " + line if line.startswith(b" ") else b"data:" + line)
    return b"\n".join(out) + b"\n\n"


def message_event(message: Message) -> bytes:
    if message.kind == "monitor":
        return event_lines(message.data)
    if message.kind == "pmessage":
        assert message.pattern is not None
        return event_lines(b"pmessage,%b,%b,%b" % (message.pattern, message.channel,
                                                   message.data))
    return event_lines(b"%b,%b,%b" % (message.kind.encode(), message.channel, message.data))


def end_event(sub: Subscription) -> bytes:
    """The last event of a stream the gateway ended; nothing if the client closed it."""
    reason = sub.ended
    if reason is None or reason == CLOSED:
        return b""
    detail = sub.detail.encode()
    if reason == DRAINING:
        return b"retry: 1000\nevent: reconnect\n" + event_lines(b"reconnect,draining," + detail)
    return b"event: error\n" + event_lines(b"error,%b,%b" % (reason.encode(), detail))


def names_of(request: Request, base_path: bytes) -> list[bytes]:
    """The channels or patterns in the path, each segment percent-decoded."""
    raw = request.raw_path.split(b"?", 1)[0][len(base_path):]
    segments = raw.lstrip(b"/").split(b"/")[1:]
    return [unquote_to_bytes(s) for s in segments if s]


def stream_key(request: Request, base_path: bytes) -> tuple[bytes, str]:
    """``/streams/<key>[/<action>]``: the key (percent-decoded; a '/' in it is %2F) and the
    action ("" or "ack")."""
    segments = names_of(request, base_path)
    if not segments or len(segments) > 2:
        raise BadRequest("use /streams/<key> (a '/' inside the key as %2F) or "
                         "/streams/<key>/ack")
    return segments[0], segments[1].decode("utf-8", "replace") if len(segments) == 2 else ""


async def open_stream(hub: Hub, principal: Principal, request: Request, command: str,
                      base_path: bytes, recheck: Callable[[], Awaitable[Principal]]
                      ) -> StreamingResponse:
    """Subscribe (errors raise before any byte is sent: a plain JSON error response), then
    answer with the event stream."""
    kind = PATHS[command]
    if kind == "monitor":
        sub = await hub.monitor(principal, recheck=recheck)
        first = event_lines(b'"OK"')
    else:
        names = names_of(request, base_path)
        if not names:
            raise BadRequest(f"name at least one {'pattern' if kind == 'pattern' else 'channel'}"
                             f": /{command}/<name>[/<name>...]")
        sub = await hub.subscribe(principal, kind, names,  # type: ignore[arg-type]
                                  recheck=recheck)
        first = b"".join(event_lines(b"%b,%b,%d" % (_CONFIRM[kind], name, i))
                         for i, name in enumerate(sub.names, 1))
    return StreamingResponse(200, list(EVENT_STREAM_HEADERS),
                             events(sub, first, hub.settings.keepalive_seconds))


async def events(sub: Subscription, first: bytes, keepalive: float) -> AsyncIterator[bytes]:
    """The stream's bytes: ``first``, then each message, keep-alive comments when idle,
    and the last event when the gateway ends it. Closing it closes the subscription."""
    try:
        yield first
        while True:
            try:
                async with asyncio.timeout(keepalive):
                    message = await anext(sub)
            except TimeoutError:
                yield KEEPALIVE_COMMENT
                continue
            except StopAsyncIteration:
                break
            chunk = [message_event(message)]
            size = len(chunk[0])
            while sub.pending() and size < _BATCH_BYTES:
                event = message_event(await anext(sub))
                chunk.append(event)
                size += len(event)
            yield b"".join(chunk)
        yield end_event(sub)
    finally:
        await sub.close()
