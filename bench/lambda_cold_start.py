"""Lambda cold start: import time of the handler, first-call time, deployment package size.

Each sample runs in a fresh interpreter, as a new execution environment would:
- ``import redis_gateway.aws_lambda`` (``python -X importtime``, the module's cumulative µs);
- the first invocation for an HTTP API event (REST path: no graphql-core) and for an
  AppSync event (loads graphql-core and builds the schema), against a local redis-server;
- the size of the function's build folder made by ``sam build`` (if it has been run).

    .venv/bin/python bench/lambda_cold_start.py [--runs 5] [--build-dir deploy/aws/.aws-sam/build]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from redis_gateway.auth import hash_token, new_token

from support import RedisServer

_FIRST_CALL = r"""
import json, sys, time
kind = sys.argv[1]
started = time.perf_counter()
from redis_gateway import aws_lambda
token = sys.argv[2]
if kind == "http":
    event = {"version": "2.0", "routeKey": "$default", "rawPath": "/get/k", "rawQueryString": "",
             "headers": {"authorization": "Bearer " + token},
             "requestContext": {"http": {"method": "GET", "path": "/get/k",
                                         "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
                                "stage": "$default", "requestId": "r", "routeKey": "$default",
                                "accountId": "a", "apiId": "b", "domainName": "d",
                                "domainPrefix": "d", "time": "t", "timeEpoch": 0},
             "isBase64Encoded": False}
else:
    event = {"arguments": {"key": "k"}, "identity": None, "source": None,
             "request": {"headers": {"x-api-key": token}},
             "info": {"fieldName": "get", "parentTypeName": "Query", "variables": {}}}
aws_lambda.handler(event, None)
first = time.perf_counter() - started
began = time.perf_counter()
aws_lambda.handler(event, None)
print(json.dumps({"first": first, "warm": time.perf_counter() - began}))
"""


def import_time_ms() -> float:
    out = subprocess.run([sys.executable, "-X", "importtime", "-c",
                          "import redis_gateway.aws_lambda"], capture_output=True, text=True,
                         check=True).stderr
    line = next(ln for ln in out.splitlines() if ln.rstrip().endswith("redis_gateway.aws_lambda"))
    return int(line.split("|")[1]) / 1000


def first_call(kind: str, env: dict[str, str], token: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", _FIRST_CALL, kind, token], env=env,
                         capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--build-dir", default="deploy/aws/.aws-sam/build")
    args = parser.parse_args()

    imports = [import_time_ms() for _ in range(args.runs)]
    print(f"import redis_gateway.aws_lambda: median {statistics.median(imports):.1f} ms "
          f"(min {min(imports):.1f}, max {max(imports):.1f}; {args.runs} fresh interpreters)")

    server = RedisServer().start()
    token = new_token()
    config = server.dir / "lambda.toml"
    config.write_text(f'[[tokens]]\nname = "b"\nhash = "{hash_token(token)}"\nrules = "admin"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_GATEWAY_")}
    env |= {"REDIS_GATEWAY_REDIS": server.url, "REDIS_GATEWAY_CONFIG": str(config)}
    try:
        for kind in ("http", "appsync"):
            samples = [first_call(kind, env, token) for _ in range(args.runs)]
            first = statistics.median(s["first"] for s in samples) * 1000
            warm = statistics.median(s["warm"] for s in samples) * 1000
            print(f"{kind:8} event: first call {first:6.1f} ms (import + connect + run), "
                  f"second call {warm:5.2f} ms")
    finally:
        server.close()

    build = Path(args.build_dir)
    if build.is_dir():
        for function in sorted(p for p in build.iterdir() if p.is_dir()):
            print(f"package {function.name}: {folder_size(function) / 1e6:.1f} MB unzipped")
    else:
        print(f"no {build}: run `sam build` in deploy/aws to measure the package size")


if __name__ == "__main__":
    main()
