"""The request being handled, reachable from deep in the executor without passing it.

``Gateway.handle`` opens a ``RequestRecord`` (through the ``Observer``) and the executor
calls ``watch`` around each Redis call: with nothing observed that is one context
variable read, and the call goes through untouched.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Awaitable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..auth import Principal
    from ..checks import Prepared

# A client's X-Request-Id is kept when it is short and plain (it is echoed in headers
# and written to logs: no spaces, quotes or control characters); else one is made.
MAX_REQUEST_ID = 128
_SAFE_ID = re.compile(rb"[A-Za-z0-9._:/+=-]{1,%d}" % MAX_REQUEST_ID)


class RequestIds:
    """Unique per process run without a system call per request: a random prefix and
    a counter (uuid4 reads os.urandom every time)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex().encode() + b"-"
        self._counter = itertools.count(1)

    def next(self) -> bytes:
        return self._prefix + b"%x" % next(self._counter)

    def take(self, sent: bytes | None) -> bytes:
        if sent is not None and _SAFE_ID.fullmatch(sent):
            return sent
        return self.next()


class Watcher(Protocol):
    """What observes a request's Redis calls (``observer.Observer``)."""

    def watch(self, record: RequestRecord, call: Awaitable[list[Any]], principal: Principal,
              prepared: Sequence[Prepared]) -> Awaitable[list[Any]]: ...


class RequestRecord:
    """What one request did, as far as the logs, metrics, audit and traces need it."""

    __slots__ = ("commands", "observer", "request_id", "reset", "span", "start", "token")

    def __init__(self, observer: Watcher, request_id: bytes, start: float) -> None:
        self.observer = observer
        self.request_id = request_id
        self.start = start  # time.perf_counter()
        self.token: str | None = None  # the token's name, once known
        self.commands: list[str] = []  # names from the command table
        self.span: Any = None  # the request's OpenTelemetry span, when tracing
        self.reset: Any = None  # the context variable's token, to restore it


current: ContextVar[RequestRecord | None] = ContextVar("redis_gateway_request", default=None)


def watch(call: Awaitable[list[Any]], principal: Principal,
          prepared: Sequence[Prepared]) -> Awaitable[list[Any]]:
    """``call`` (the Redis call for ``prepared``), observed if anything is observed."""
    record = current.get()
    if record is None:
        return call
    return record.observer.watch(record, call, principal, prepared)
