"""``metrics_listen``: /metrics on an address of its own, for a scraper on a private
network, with no token (whoever reaches the address may read the metrics).

It runs on the built-in HTTP server's connection class, in the gateway's event loop.
Bound with SO_REUSEPORT: with several workers each binds the same address, and since a
scrape adds up every worker's files (multi-process mode), any of them may answer.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from ..http import JSON_TYPE, Request, Response, json_body
from ..http_connection import HttpConnection, ServerState
from ..settings import LimitSettings


class Exposition(Protocol):
    def exposition(self) -> Response: ...


class MetricsApp:
    draining = False  # the server's Handler; nothing here answers /readyz

    def __init__(self, observer: Exposition) -> None:
        self._observer = observer

    async def handle(self, request: Request) -> Response:
        if request.path == "/metrics" and request.method in ("GET", "HEAD"):
            return self._observer.exposition()
        return Response(404, json_body({"error": "only GET /metrics is served here"}),
                        [JSON_TYPE])

    async def warm_up(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def judge_body(self, request: Request, length: int | None) -> Response | None:
        return None  # no bodies here: every request is a GET

    async def drain(self) -> None:
        pass


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


async def listen(observer: Exposition, address: str, limits: LimitSettings) -> asyncio.Server:
    host, port = split_address(address)
    state = ServerState(MetricsApp(observer), limits)
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: HttpConnection(state), host, port,
                                    reuse_port=True)
