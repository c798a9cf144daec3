"""The gateway's own CPU cost per request, without HTTP parsing or a load generator.

Drives the ASGI app in-process (one event loop, ``--concurrency`` requests in flight)
against a private redis-server, and prints microseconds of gateway work per request for
a single GET and for a ``/pipeline`` of 100 GETs. ``--profile`` adds a cProfile listing
of where that time goes. Use it to find hot spots; use ``bench/run.py`` for the numbers
that compare with webdis.

    .venv/bin/python bench/profile_app.py [--requests 20000] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from redis_gateway import settings as settings_mod
from redis_gateway.app import Gateway
from redis_gateway.auth import TokenRecord, hash_token, new_token

from support import RedisServer


def scope(path: bytes, token: str) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": path.decode(), "raw_path": path,
            "query_string": b"", "root_path": "", "scheme": "http",
            "headers": [(b"host", b"gw"), (b"content-type", b"application/json"),
                        (b"authorization", b"Bearer " + token.encode())]}


async def drive(app: Gateway, path: bytes, body: bytes, token: str, requests: int,
                concurrency: int) -> float:
    request_scope = scope(path, token)
    statuses: list[int] = []

    async def one() -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(dict(request_scope), receive, send)

    async def worker(count: int) -> None:
        for _ in range(count):
            await one()

    started = time.perf_counter()
    await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    assert set(statuses) == {200}, set(statuses)
    return elapsed / len(statuses) * 1e6


async def main_async(args: argparse.Namespace) -> None:
    server = RedisServer().start()
    token = new_token()
    settings = settings_mod.load(env={}, overrides={"redis": server.url})
    app = Gateway(settings, extra_tokens=[TokenRecord("p", hash_token(token), "read-write")])
    await app.warm_up()
    single = b'["GET", "profile:k"]'
    pipeline = b"[" + b",".join([b'["GET", "profile:k"]'] * 100) + b"]"
    profiler = cProfile.Profile() if args.profile else None
    try:
        for name, path, body, count in (("single GET", b"/", single, args.requests),
                                        ("/pipeline of 100 GETs", b"/pipeline", pipeline,
                                         args.requests // 20)):
            await drive(app, path, body, token, count // 10, args.concurrency)  # warm-up
            if profiler:
                profiler.enable()
            micros = await drive(app, path, body, token, count, args.concurrency)
            if profiler:
                profiler.disable()
            per_command = micros / 100 if path == b"/pipeline" else micros
            print(f"{name:24} {micros:8.1f} µs per request, {per_command:6.2f} µs per command")
    finally:
        await app.close()
        server.close()
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
