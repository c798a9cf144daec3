"""GraphQL batching: one round trip per operation level, measured.

Compares, in one run against one redis-server and one gateway process:
- a query with N aliased ``get`` fields (one pipeline to Redis),
- the same N GETs as one REST ``/pipeline`` (the floor: no GraphQL work at all),
- the same N GETs as N separate GraphQL queries (what a resolver-per-request design costs).

Reports Redis commands per second for each, and the ratios. Loopback only; bounded in time.

    .venv/bin/python bench/graphql_batch.py [--seconds 5] [--fields 50] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support import GatewayProcess, RedisServer


async def measure(name: str, seconds: float, concurrency: int, commands_per_call: int,
                  call: object) -> float:
    done = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            await call()  # type: ignore[operator]
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    rate = done * commands_per_call / (time.monotonic() - started)
    print(f"{name:44} {rate:12,.0f} commands/s")
    return rate


async def run(seconds: float, fields: int, concurrency: int) -> None:
    server = RedisServer().start()
    gateway = GatewayProcess(server.url, rules={"admin": "admin"},
                             config_extra='log_level = "warning"').start()
    try:
        headers = {"Authorization": f"Bearer {gateway.tokens['admin']}"}
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(base_url=gateway.url, headers=headers, limits=limits,
                                     timeout=30) as client:
            await client.post("/", json=["SET", "bench:g", "value"])
            query = "{ " + " ".join(f'f{i}: get(key: "bench:g")' for i in range(fields)) + " }"
            single = '{ get(key: "bench:g") }'
            pipeline = [["GET", "bench:g"]] * fields

            async def aliased() -> None:
                r = await client.post("/graphql", json={"query": query})
                assert len(r.json()["data"]) == fields

            async def rest_pipeline() -> None:
                r = await client.post("/pipeline", json=pipeline)
                assert len(r.json()) == fields

            async def separate() -> None:
                for _ in range(fields):
                    r = await client.post("/graphql", json={"query": single})
                    assert r.json()["data"]["get"] == "value"

            await aliased()  # warm-up
            batched = await measure(f"GraphQL, {fields} aliased fields in one query",
                                    seconds, concurrency, fields, aliased)
            floor = await measure(f"REST /pipeline of {fields} GETs", seconds, concurrency,
                                  fields, rest_pipeline)
            naive = await measure(f"GraphQL, {fields} separate queries", seconds,
                                  concurrency, fields, separate)
        print(f"\nbatched GraphQL / separate GraphQL queries: {batched / naive:.1f}x")
        print(f"batched GraphQL / REST pipeline:            {batched / floor:.2f}x")
    finally:
        gateway.stop()
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--fields", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(run(args.seconds, args.fields, args.concurrency))


if __name__ == "__main__":
    main()
