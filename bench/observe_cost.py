"""What observability costs a single GET: the gateway in-process, observers off and on.

Drives the ASGI app (as ``profile_app.py``) against a private redis-server with
``--requests`` GETs, after a warm-up, under one of these configurations:

- ``off``: nothing configured (request ids only, always on);
- ``metrics``: ``metrics_token`` set (Prometheus counters and histograms);
- ``all``: metrics, the JSON access log (written to /dev/null) and the audit trail
  (a GET is not audited: this is the cost of checking that).

Wall-clock time moves with the machine; instruction counts do not. For those, run each
configuration under callgrind at two request counts and divide the difference:

    for c in off metrics all; do for n in 500 2500; do
      valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$c.$n \\
        .venv/bin/python bench/observe_cost.py --config $c --requests $n --quiet
    done; done
    # per request: (total(2500) - total(500)) / 2000, totals from callgrind_annotate

    .venv/bin/python bench/observe_cost.py --compare   # µs per GET, same run, all three
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from redis_gateway import settings as settings_mod
from redis_gateway.app import Gateway
from redis_gateway.auth import TokenRecord, hash_token, new_token
from redis_gateway.observe.logs import configure

from support import RedisServer

CONFIGS: dict[str, dict[str, Any]] = {
    "off": {},
    "metrics": {"metrics_token": hash_token("bench")},
    "all": {"metrics_token": hash_token("bench"), "access_log": True, "log_format": "json",
            "audit": "file", "audit_file": os.devnull},
}


async def run(app: Gateway, token: str, requests: int) -> float:
    scope = {"type": "http", "method": "POST", "path": "/", "raw_path": b"/",
             "query_string": b"", "root_path": "", "scheme": "http",
             "headers": [(b"host", b"gw"), (b"authorization", b"Bearer " + token.encode())]}
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b'["GET", "bench:k"]', "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    started = time.perf_counter()
    for _ in range(requests):
        await app(dict(scope), receive, send)
    elapsed = time.perf_counter() - started
    assert set(statuses) == {200}, set(statuses)
    return elapsed / requests * 1e6


async def measure(server: RedisServer, config: str, requests: int) -> float:
    token = new_token()
    settings = settings_mod.load(env={}, overrides={"redis": server.url, **CONFIGS[config]})
    if settings.access_log:
        configure("info", "json", {})
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the access lines go nowhere
        logging.getLogger().handlers[0].setStream(sys.stderr)  # type: ignore[attr-defined]
    app = Gateway(settings, extra_tokens=[TokenRecord("b", hash_token(token), "read-write")])
    await app.warm_up()
    try:
        await run(app, token, 200)  # warm-up: connections, verdicts, metric children
        return await run(app, token, requests)
    finally:
        await app.close()


async def main_async(args: argparse.Namespace) -> None:
    server = RedisServer().start()
    try:
        if args.compare:
            for _ in range(args.rounds):
                line = [f"{c}: {await measure(server, c, args.requests):6.1f} µs"
                        for c in CONFIGS]
                print("  ".join(line))
        else:
            micros = await measure(server, args.config, args.requests)
            if not args.quiet:
                print(f"{args.config}: {micros:.1f} µs per GET")
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="off")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
