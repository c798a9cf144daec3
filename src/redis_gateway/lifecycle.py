"""How the built-in server stops and reloads without losing a request.

SIGTERM (``drain``): ``/readyz`` answers 503 from that moment (the app's ``draining``),
the listening socket closes, idle keep-alive connections close, the open streams are
told to end (the app's ``drain``: each sends its client a last event telling it to
reconnect), and the requests in flight have ``drain_timeout`` seconds to finish; each
connection closes after its last response (``Connection: close``). What is still open
after the deadline is cut. A request is either answered in full or its connection closes
before any byte of a response: never half an answer.

SIGHUP (``reload``): the configuration and tokens are read again and a new app is built
and warmed up beside the old one; new requests go to the new app at once, on the same
client connections; the old app (its Redis connections) closes once the requests it
started are answered; its streams are told to reconnect first, so that they come back
under the new rules. A configuration that does not load leaves the old one serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Protocol

from .http import Request, Response

log = logging.getLogger("redis_gateway.server")

# How often a reload looks whether the old app's last requests are answered.
_RETIRE_POLL = 0.05


class Handler(Protocol):
    """The app a server runs (``app.Gateway``)."""

    draining: bool  # set when a stop begins: /readyz answers 503 from then on

    async def handle(self, request: Request) -> Response: ...
    def judge_body(self, request: Request, length: int | None) -> Response | None:
        """Before a large body is read: the response refusing it now, if any (``request``
        has no body yet; ``length`` is the one its head announces, None for a chunked body
        judged once it outgrows the connection's allowance)."""
    async def warm_up(self) -> None: ...
    async def close(self) -> None: ...
    async def drain(self) -> None:
        """End the open streams, each with a last event telling its client to reconnect."""


class Connection(Protocol):
    @property
    def app_in_use(self) -> Handler | None:
        """The app running this connection's request now, if any."""

    def close_if_idle(self) -> None: ...
    def abort(self) -> None: ...


class ServerState(Protocol):
    """What the server's connections share (``http_connection.ServerState``), as used here."""

    app: Handler
    stopping: bool
    all_closed: asyncio.Event

    @property
    def connections(self) -> Collection[Connection]: ...


async def drain(state: ServerState, server: asyncio.AbstractServer, timeout: float) -> None:
    """Stop accepting, end the streams, finish the requests in flight within ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    state.stopping = True
    state.app.draining = True
    server.close()
    for conn in list(state.connections):
        conn.close_if_idle()
    try:
        await asyncio.wait_for(state.app.drain(), max(deadline - loop.time(), 0.0))
    except Exception as exc:  # a stream that fails to drain is cut below
        log.warning("the streams did not all drain: %r", exc)
    if state.connections:
        log.info("draining: %d connection(s) finishing their requests (up to %g s)",
                 len(state.connections), timeout)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.all_closed.wait(), max(deadline - loop.time(), 0.0))
    late = list(state.connections)
    if late:
        log.warning("drain_timeout (%g s) passed: closing %d connection(s) with requests "
                    "still running", timeout, len(late))
    for conn in late:
        conn.abort()


async def reload(state: ServerState, make_app: Callable[[], Awaitable[Handler]],
                 timeout: float) -> None:
    """Swap in an app built from the configuration as it is now; retire the old one."""
    try:
        new = await make_app()
    except Exception as exc:  # a bad file must not stop a serving gateway
        log.error("SIGHUP: the configuration was not reloaded, the old one keeps serving: %s",
                  getattr(exc, "message", exc))
        return
    await new.warm_up()
    old, state.app = state.app, new
    log.info("SIGHUP: configuration and tokens reloaded; no connection was dropped")
    await old.drain()
    await _retire(old, state.connections, timeout)


async def _retire(old: Handler, connections: Collection[Connection], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline and any(
            conn.app_in_use is old for conn in list(connections)):
        await asyncio.sleep(_RETIRE_POLL)
    await old.close()
