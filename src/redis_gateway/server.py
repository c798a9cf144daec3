"""A small HTTP/1.1 server for the gateway's ASGI app: httptools parsing on uvloop.

Why not uvicorn, which the gateway also runs under: measured on the 2-core reference
machine, uvicorn alone costs about 28 µs of CPU per request (an asyncio task, message
dicts and two writes per response), more than the gateway's own work on a GET. This
server keeps one task per connection that runs the app for each request in turn, and
sends each response in one write. It speaks what the gateway needs: HTTP/1.0 and 1.1,
keep-alive, pipelined requests (answered in order), chunked request bodies,
``Expect: 100-continue``, streaming responses (``http_streaming.py``) and WebSocket on the
gateway's ``/ws`` (handed to ``websocket.py``).

It hands the gateway a whole ``Request`` and writes its ``Response``: the same objects
the ASGI adapter (``app.Gateway.__call__``) makes, so the front doors cannot tell the two
servers apart. The connection itself is ``http_connection.py``; here is the listening
socket, the once-a-second deadline sweep, signals, drain and reload (``lifecycle.py``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from . import lifecycle
from .errors import GatewayError
from .http_connection import HttpConnection, ServerState
from .lifecycle import Handler
from .settings import LimitSettings

log = logging.getLogger("redis_gateway.server")


def _allow_open_files(connections: int) -> None:
    """Raise the soft limit on open files so the connection cap is reached first: past
    the file limit accept() fails, and clients wait instead of getting the cap's 503."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return
    needed = connections + 256  # Redis connections, refused clients lingering, files
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
    if raised < needed:
        log.warning("limits.max_connections is %d, but this process may open only %d files "
                    "(ulimit -n): connections past that wait in the listen backlog",
                    connections, raised)


async def serve(app: Handler, host: str, port: int, limits: LimitSettings,
                on_listening: Callable[[], None] | None = None, *, drain_timeout: float = 30.0,
                reload: Callable[[], Awaitable[Handler]] | None = None,
                reuse_port: bool = False) -> None:
    """Run until SIGINT/SIGTERM, then drain (lifecycle.py) and close the app; SIGHUP
    reloads the app with ``reload``. ``reuse_port``: several processes serve the port."""
    loop = asyncio.get_running_loop()
    _allow_open_files(limits.max_connections)
    state = ServerState(app, limits)
    await app.warm_up()
    try:
        server = await loop.create_server(lambda: HttpConnection(state), host, port,
                                          backlog=2048, reuse_port=reuse_port or None)
    except OSError as exc:
        await app.close()
        raise GatewayError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[None]] = set()
    if reload is not None:
        def hangup() -> None:
            task = loop.create_task(lifecycle.reload(state, reload, drain_timeout))
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, hangup)
    # Said only now: a supervisor may pass a SIGHUP on as soon as its workers listen, and
    # before the handler above a SIGHUP would end the process.
    if on_listening is not None:
        on_listening()

    async def sweep() -> None:
        # One pass a second instead of a timer per request: deadlines are enforced up to
        # a second late, which the limits' documentation says.
        while True:
            await asyncio.sleep(1.0)
            now = loop.time()
            for conn in list(state.connections):
                conn.expire(now)

    sweeper = loop.create_task(sweep())
    try:
        await stop.wait()
    finally:
        await lifecycle.drain(state, server, drain_timeout)  # the sweep goes on meanwhile
        sweeper.cancel()
        for task in list(reloads):
            await task
        await state.app.close()
