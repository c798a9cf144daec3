"""The gateway's own work per request, counted in CPU instructions (callgrind).

Wall-clock benchmarks on a shared 2-core machine move with whatever else runs; an
instruction count does not: the same code, inputs and environment give the same count
with the other core busy. So this is how we compare two versions of the gateway (this
checkout against ``--base``, e.g. a worktree of an older commit) or a setting on and off.

Each case drives the ASGI app in-process (no HTTP parsing, no load generator) against a
private redis-server, once with N and once with 2N requests under
``valgrind --tool=callgrind``; the difference over N is the cost of one request, with
start-up, imports and warm-up cancelled out.

    .venv/bin/python bench/instructions.py [--base ../wt/base] [--requests 400]
        [--only "single GET"] [--set access_log=true --set metrics_token=sha256:... ...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
KINDS = {
    "single GET": (b"/", b'["GET", "profile:k"]'),
    "/pipeline of 100 GETs": (b"/pipeline",
                              b"[" + b",".join([b'["GET", "profile:k"]'] * 100) + b"]"),
}


async def _child(kind: str, requests: int, redis_url: str, overrides: dict[str, Any]) -> None:
    # Runs under callgrind, importing the gateway from whatever PYTHONPATH points at, so
    # only APIs that both old and new versions have are used here.
    from redis_gateway import settings as settings_mod
    from redis_gateway.app import Gateway
    from redis_gateway.auth import TokenRecord, hash_token, new_token

    token = new_token()
    settings = settings_mod.load(env={}, overrides={"redis": redis_url, **overrides})
    if overrides.get("access_log"):  # lines written as serve writes them, to stderr
        from redis_gateway.observe.logs import configure

        configure(settings.log_level, settings.log_format, settings.log_levels)
    app = Gateway(settings, extra_tokens=[TokenRecord("p", hash_token(token), "read-write")])
    await app.warm_up()
    path, body = KINDS[kind]
    scope = {"type": "http", "method": "POST", "path": path.decode(), "raw_path": path,
             "query_string": b"", "root_path": "", "scheme": "http",
             "headers": [(b"host", b"gw"), (b"content-type", b"application/json"),
                         (b"authorization", b"Bearer " + token.encode())]}
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(requests):
        await app(dict(scope), receive, send)
    await app.close()
    if set(statuses) != {200}:
        raise SystemExit(f"unexpected statuses {set(statuses)}")


def _count(tree: Path, kind: str, requests: int, redis_url: str,
           sets: list[str]) -> int:
    env = dict(os.environ, PYTHONPATH=str(tree / "src"), PYTHONHASHSEED="0")
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
               sys.executable, __file__, "--child", kind, "--requests", str(requests),
               "--redis", redis_url]
    for item in sets:
        command += ["--set", item]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode or not found:
        raise SystemExit(f"callgrind run failed ({tree}, {kind}):\n{done.stderr[-2000:]}")
    return int(found.group(1))


def _overrides(sets: list[str]) -> dict[str, Any]:
    """``name=value`` pairs as settings overrides; a value is read as TOML (``true``,
    ``5``, ``"json"``), else taken as a string; a dotted name is a table's key."""
    overrides: dict[str, Any] = {}
    for item in sets:
        name, _, text = item.partition("=")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        target = overrides
        *parents, leaf = name.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, help="another checkout to compare with")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a settings override for this checkout's runs")
    parser.add_argument("--only", choices=list(KINDS), action="append",
                        help="measure only this kind of request (repeatable)")
    parser.add_argument("--child", choices=list(KINDS), help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(_child(args.child, args.requests, args.redis, _overrides(args.set)))
        return
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is needed (apt-get install valgrind)")
    sys.path.insert(0, str(HERE.parent / "tests"))
    from support import RedisServer

    server = RedisServer().start()
    try:
        server.cli("SET", "profile:k", "v" * 32)
        trees = [("this checkout", HERE.parent, args.set)]
        if args.base:
            trees.append((f"base ({args.base})", args.base.resolve(), []))
        print(f"instructions per request (callgrind, {args.requests} vs "
              f"{2 * args.requests} requests)")
        for kind in args.only or KINDS:
            for label, tree, sets in trees:
                low = _count(tree, kind, args.requests, server.url, sets)
                high = _count(tree, kind, 2 * args.requests, server.url, sets)
                print(f"  {kind:24} {label:32} {(high - low) / args.requests / 1e3:9.1f}k")
    finally:
        server.close()


if __name__ == "__main__":
    main()
