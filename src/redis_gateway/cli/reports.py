"""Commands that look and report, never change: ``check``, ``token explain``, ``audit``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from ..errors import GatewayError
from .common import live_settings, load, parse_since


def check(args: argparse.Namespace) -> int:
    from ..check import check as check_live

    settings = live_settings(args)
    if not settings.redis and not any(b.url for b in settings.backends.values()):
        print("no Redis configured: `serve` would start an embedded one; nothing to check")
        return 0
    # What goes wrong is in the report; the log adds only what is worse.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    report = asyncio.run(check_live(settings))
    print("\n".join(report.lines))
    if report.problems:
        print(f"redis-gateway check: {len(report.problems)} problem(s):", file=sys.stderr)
        for problem in report.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print("ok: no problem found")
    return 0


def token_explain(args: argparse.Namespace) -> int:
    from ..app import Gateway
    from ..explain import explain

    if not args.command:
        raise GatewayError("say which command: redis-gateway token explain NAME CMD ARGS...")

    async def run() -> int:
        gateway = Gateway(live_settings(args))
        try:
            answer = await explain(gateway, args.name, [os.fsencode(a) for a in args.command])
        finally:
            await gateway.close()
        print(answer.text())
        return 0 if answer.allowed else 1

    return asyncio.run(run())


def audit(args: argparse.Namespace) -> int:
    from ..observe.audit_cli import print_audit

    settings = load(args)
    since = parse_since(args.since).timestamp() if args.since else None
    return print_audit(settings, since=since, token=args.token, key=args.key)
