"""``redis-gateway serve | check | token create|list|revoke|hash|explain | audit``."""

from __future__ import annotations

import argparse
import sys

from .. import settings as settings_mod
from ..auth import default_tokens_file, hash_token
from ..errors import GatewayError
from . import reports, tokens
from . import serve as serving
from .common import parse_expiry

__all__ = ["main", "parse_expiry"]


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        result: int = args.run(args)
        return result
    except settings_mod.SettingsError as exc:
        print(f"redis-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f"redis-gateway: {exc.message}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="redis-gateway", description=__doc__)
    commands = parser.add_subparsers(title="commands")

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="TOML configuration file")
    serve.add_argument("--redis", help="Redis URL (default: start an embedded Redis)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8079)")
    serve.add_argument("--workers", help="processes serving the port, or 'auto' (one per "
                                         "core); default: the workers setting, 1")
    # Between the supervisor and its workers (supervisor.py): not for people.
    serve.add_argument("--worker-ready-fd", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--dev-token-hash", help=argparse.SUPPRESS)
    serve.add_argument("--dev-token-rules", default="read-write", help=argparse.SUPPRESS)
    serve.set_defaults(run=serving.serve)

    checking = commands.add_parser("check", help="check the configuration against the live "
                                   "servers: versions, topology, enforcement, what each token "
                                   "may do; exits 1 on any problem")
    checking.set_defaults(run=reports.check)
    token = commands.add_parser("token", help="manage tokens").add_subparsers(title="token")
    explaining = token.add_parser("explain", help="whether and why a token may run a command")
    explaining.add_argument("name")
    explaining.add_argument("command", nargs=argparse.REMAINDER, help="CMD ARGS...")
    explaining.set_defaults(run=reports.token_explain)
    create = token.add_parser("create", help="create a token and print it once")
    create.add_argument("--name", required=True)
    create.add_argument("--rules", default="read-write",
                        help="a preset (read-only, read-write, admin) and/or ACL rules")
    create.add_argument("--expires", help="ISO 8601 time, or a duration such as 30d, 12h, 45m")
    create.add_argument("--backend", default="default")
    for flag, kind, text in (("--concurrency", int, "requests in flight at once"),
                             ("--reserved", int, "reserved connections held at once"),
                             ("--rate", float, "requests per second"),
                             ("--burst", int, "requests at once above the rate"),
                             ("--reply-rate", float, "bytes of replies per second"),
                             ("--body-rate", float, "bytes of request bodies per second"),
                             ("--redis-time", float, "seconds of Redis per second")):
        create.add_argument(flag, type=kind, help=f"this token's share: {text} "
                            "(default: the [limits] token_* settings)")
    create.set_defaults(run=tokens.token_create)
    listing = token.add_parser("list", help="list tokens (names and rules, never secrets)")
    listing.set_defaults(run=tokens.token_list)
    revoke = token.add_parser("revoke", help="revoke a token by name")
    revoke.add_argument("name")
    revoke.set_defaults(run=tokens.token_revoke)
    hashing = token.add_parser("hash", help="print the hash to put in a config file")
    hashing.add_argument("token")
    hashing.set_defaults(run=lambda a: print(hash_token(a.token)) or 0)
    audit = commands.add_parser("audit", help="print the audit trail (JSON lines), oldest "
                                "first: who ran which command that writes, on which keys")
    audit.add_argument("--config", help="TOML configuration file")
    audit.add_argument("--since", help="ISO 8601 time, or a duration back from now: 30m, 2d")
    audit.add_argument("--token", help="only this token's commands (its name)")
    audit.add_argument("--key", help="only commands on keys matching this glob pattern")
    audit.set_defaults(run=reports.audit)
    for sub in (create, listing, revoke, checking, explaining):
        sub.add_argument("--config", help="TOML configuration file")
        sub.add_argument("--file", help="tokens file (default: tokens_file setting, or "
                                        f"{default_tokens_file()})")
    return parser
