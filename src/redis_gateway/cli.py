"""``redis-gateway serve | token create|list|revoke|hash``."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import settings as settings_mod
from .auth import (
    REDIS_TOKENS_KEY,
    REVOKED_PREFIX,
    TokenRecord,
    TokenStore,
    check_record,
    default_tokens_file,
    hash_token,
    new_token,
    read_tokens_file,
    revocation_field,
    sign_record,
    sign_revocation,
    verify_record,
    write_tokens_file,
)
from .errors import GatewayError

log = logging.getLogger("redis_gateway")


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
    serve.set_defaults(run=_serve)

    checking = commands.add_parser("check", help="check the configuration against the live "
                                   "servers: versions, topology, enforcement, what each token "
                                   "may do; exits 1 on any problem")
    checking.set_defaults(run=_check)
    token = commands.add_parser("token", help="manage tokens").add_subparsers(title="token")
    explaining = token.add_parser("explain", help="whether and why a token may run a command")
    explaining.add_argument("name")
    explaining.add_argument("command", nargs=argparse.REMAINDER, help="CMD ARGS...")
    explaining.set_defaults(run=_token_explain)
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
    create.set_defaults(run=_token_create)
    listing = token.add_parser("list", help="list tokens (names and rules, never secrets)")
    listing.set_defaults(run=_token_list)
    revoke = token.add_parser("revoke", help="revoke a token by name")
    revoke.add_argument("name")
    revoke.set_defaults(run=_token_revoke)
    hashing = token.add_parser("hash", help="print the hash to put in a config file")
    hashing.add_argument("token")
    hashing.set_defaults(run=lambda a: print(hash_token(a.token)) or 0)
    audit = commands.add_parser("audit", help="print the audit trail (JSON lines), oldest "
                                "first: who ran which command that writes, on which keys")
    audit.add_argument("--config", help="TOML configuration file")
    audit.add_argument("--since", help="ISO 8601 time, or a duration back from now: 30m, 2d")
    audit.add_argument("--token", help="only this token's commands (its name)")
    audit.add_argument("--key", help="only commands on keys matching this glob pattern")
    audit.set_defaults(run=_audit)
    for sub in (create, listing, revoke, checking, explaining):
        sub.add_argument("--config", help="TOML configuration file")
        sub.add_argument("--file", help="tokens file (default: tokens_file setting, or "
                                        f"{default_tokens_file()})")
    return parser


def _load(args: argparse.Namespace, *, secrets: bool = True,
          **overrides: Any) -> settings_mod.Settings:
    settings = settings_mod.load(getattr(args, "config", None), overrides=overrides)
    if secrets:
        from .aws_secrets import resolve  # boto3 is imported only if a secret is configured

        settings = resolve(settings)
    return settings


def _tokens_file(args: argparse.Namespace, settings: settings_mod.Settings) -> Path:
    return Path(args.file or settings.tokens_file or default_tokens_file())


# serve ------------------------------------------------------------------------------
def _serve(args: argparse.Namespace) -> int:
    from .app import Gateway
    from .embedded import EmbeddedRedis, EmbeddedRedisError

    overrides: dict[str, Any] = {"redis": args.redis, "host": args.host, "port": args.port,
                                 "workers": args.workers}
    settings = _load(args, secrets=False, **overrides)  # enough to set up; secrets below
    from .observe.logs import configure as configure_logs

    configure_logs(settings.log_level, settings.log_format, settings.log_levels)
    if not settings.tokens_file:
        overrides["tokens_file"] = str(default_tokens_file())
    worker = args.worker_ready_fd is not None  # one of a supervisor's workers
    if settings.workers > 1 and settings.server != "builtin" and not worker:
        raise settings_mod.SettingsError("workers: more than one needs server = \"builtin\" "
                                         "(uvicorn has its own --workers)")
    embedded = None
    if not settings.backends["default"].url:
        embedded = EmbeddedRedis()
        try:
            overrides["redis"] = embedded.start()
        except EmbeddedRedisError as exc:
            print(f"redis-gateway: {exc}", file=sys.stderr)
            return 1
        log.warning("no Redis configured: started an embedded Redis (%s) at %s; "
                    "its data is NOT kept when the gateway stops", embedded.origin,
                    overrides["redis"])
    settings = _load(args, **overrides)

    extra: list[TokenRecord] = []
    dev_token = None
    if args.dev_token_hash:  # made by the supervisor, the same for every worker
        extra.append(TokenRecord("development", args.dev_token_hash, args.dev_token_rules))
    elif TokenStore(settings).empty:
        # Nothing configured: a token for this run only, admin on a throwaway Redis,
        # read-write (dangerous commands closed) on a real one.
        dev_token = new_token()
        rules = "admin" if embedded else "read-write"
        extra.append(TokenRecord(name="development", hash=hash_token(dev_token), rules=rules))
    base = f"http://{_display_host(settings.host)}:{settings.port}{settings.base_path}"

    def announce(redis_label: str) -> None:
        # Said once the built-in server listens: whoever reads it may connect at once.
        print(f"redis-gateway listening on {base}", flush=True)
        print(f"  console: {base}/console/", flush=True)
        print(f"  Redis: {redis_label}"
              + (" (embedded, not persisted)" if embedded else ""), flush=True)
        if settings.workers > 1:
            print(f"  workers: {settings.workers}", flush=True)
        if dev_token:
            print(f"  token (this run only, {extra[0].rules}): {dev_token}", flush=True)
            print(f"  try: curl -H 'Authorization: Bearer {dev_token}' {base}/ping", flush=True)
        else:
            print(f"  tokens: from configuration and {settings.tokens_file}", flush=True)

    try:
        if settings.workers > 1 and not worker:
            return _supervise(args, settings, overrides, extra, announce)
        gateway = Gateway(settings, extra_tokens=extra)
        if settings.server == "uvicorn":
            announce(gateway.backends["default"].label)
            return _run_uvicorn(gateway, settings)
        from .server import serve

        if _has("uvloop"):
            import uvloop

            uvloop.install()

        async def rebuild() -> Gateway:  # SIGHUP: the configuration as it is now
            return Gateway(_load(args, **overrides), extra_tokens=extra)

        def listening() -> None:
            if worker:
                os.write(args.worker_ready_fd, b"1")
                os.close(args.worker_ready_fd)
            else:
                announce(gateway.backends["default"].label)

        asyncio.run(serve(gateway, settings.host, settings.port, settings.limits, listening,
                          drain_timeout=settings.drain_timeout, reload=rebuild,
                          reuse_port=worker))
    finally:
        if embedded:
            embedded.stop()
    return 0


def _supervise(args: argparse.Namespace, settings: settings_mod.Settings,
               overrides: dict[str, Any], extra: list[TokenRecord],
               announce: Any) -> int:
    """Run ``settings.workers`` workers, each ``serve`` again with what was decided here
    (the embedded Redis, the development token) on its command line."""
    from .backends import make_backend
    from .supervisor import Supervisor

    common = [sys.executable, "-m", "redis_gateway", "serve", "--workers", "1"]
    for flag, value in (("--config", args.config), ("--redis", overrides["redis"]),
                        ("--host", args.host), ("--port", args.port)):
        if value is not None:
            common += [flag, str(value)]
    if extra:  # a hash, never the token itself, goes on the command line
        common += ["--dev-token-hash", extra[0].hash, "--dev-token-rules", extra[0].rules]
    label = make_backend("default", settings.backends["default"], settings.limits).label
    on_exit = None
    metrics_dir = None
    if settings.metrics_token or settings.metrics_listen:
        # The workers' metrics add up in files of a directory of this run's own.
        from .observe import prometheus

        metrics_dir = tempfile.mkdtemp(prefix="redis-gateway-metrics-")
        prometheus.prepare_multiprocess_dir(metrics_dir)
        on_exit = prometheus.worker_exited
    try:
        return Supervisor(command=lambda fd: [*common, "--worker-ready-fd", str(fd)],
                          count=settings.workers, on_listening=lambda: announce(label),
                          drain_timeout=settings.drain_timeout, on_exit=on_exit).run()
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _run_uvicorn(app: Any, settings: settings_mod.Settings) -> int:
    import math

    import uvicorn

    limits = settings.limits
    # The limits uvicorn has a knob for (README, "Limits of the HTTP server" says what
    # differs); the body deadline is the app's own (http.read_body).
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port,
        loop="uvloop" if _has("uvloop") else "asyncio",
        http="httptools" if _has("httptools") else "h11", lifespan="on",
        access_log=False, log_level=settings.log_level, server_header=False,
        proxy_headers=False,  # nothing here reads the client's address
        backlog=2048, limit_concurrency=limits.max_connections,
        timeout_keep_alive=math.ceil(limits.keep_alive_timeout),
        h11_max_incomplete_event_size=limits.max_header_bytes,
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout),
    )
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown
        return 130
    return 0


def _display_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# check, explain ----------------------------------------------------------------------
def _live_settings(args: argparse.Namespace) -> settings_mod.Settings:
    """The settings ``serve`` would run with; the tokens file where ``serve`` looks."""
    settings = _load(args)
    return _load(args, tokens_file=str(_tokens_file(args, settings)))


def _check(args: argparse.Namespace) -> int:
    from .check import check

    settings = _live_settings(args)
    if not settings.redis and not any(b.url for b in settings.backends.values()):
        print("no Redis configured: `serve` would start an embedded one; nothing to check")
        return 0
    # What goes wrong is in the report; the log adds only what is worse.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    report = asyncio.run(check(settings))
    print("\n".join(report.lines))
    if report.problems:
        print(f"redis-gateway check: {len(report.problems)} problem(s):", file=sys.stderr)
        for problem in report.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print("ok: no problem found")
    return 0


def _token_explain(args: argparse.Namespace) -> int:
    from .app import Gateway
    from .explain import explain

    if not args.command:
        raise GatewayError("say which command: redis-gateway token explain NAME CMD ARGS...")

    async def run() -> int:
        gateway = Gateway(_live_settings(args))
        try:
            answer = await explain(gateway, args.name, [os.fsencode(a) for a in args.command])
        finally:
            await gateway.close()
        print(answer.text())
        return 0 if answer.allowed else 1

    return asyncio.run(run())


# tokens ----------------------------------------------------------------------------
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_expiry(text: str, now: dt.datetime | None = None) -> dt.datetime:
    now = now or dt.datetime.now(dt.UTC)
    match = _DURATION.match(text.strip())
    if match:
        return now + dt.timedelta(**{_UNITS[match[2]]: int(match[1])})
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise GatewayError(f"--expires '{text}': use ISO 8601 (2027-01-31T00:00:00Z) or a "
                           "duration such as 30d, 12h, 45m") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _token_create(args: argparse.Namespace) -> int:
    settings = _load(args)
    token = new_token()
    expires = parse_expiry(args.expires).isoformat() if args.expires else None
    record = TokenRecord(
        name=args.name, hash=hash_token(token), rules=args.rules, expires=expires,
        backend=args.backend, created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **{k: getattr(args, k) for k in settings_mod.SHARE_KEYS},
    )
    check_record(record, settings.backends)
    if settings.token_store == "redis":
        assert settings.token_store_secret
        records = asyncio.run(_redis_tokens(settings))
        if any(r.name == args.name for r in records):
            raise GatewayError(f"a token named '{args.name}' exists; revoke it first")
        asyncio.run(_redis_call(settings, [b"HSET", REDIS_TOKENS_KEY, record.hash.encode(),
                                           sign_record(record, settings.token_store_secret)]))
        where = "Redis"
    else:
        path = _tokens_file(args, settings)
        records = read_tokens_file(path)
        if any(r.name == args.name for r in records):
            raise GatewayError(f"a token named '{args.name}' exists in {path}; revoke it first")
        write_tokens_file(path, [*records, record])
        where = str(path)
    print(token)
    print(f"created token '{args.name}' ({args.rules}"
          + (f", expires {expires}" if expires else "") + f") in {where}; "
          "it is shown only now", file=sys.stderr)
    return 0


def _token_list(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings.token_store == "redis":
        records = asyncio.run(_redis_tokens(settings))
    else:
        records = read_tokens_file(_tokens_file(args, settings))
    configured = [TokenRecord(t.name, t.hash, t.rules,
                              t.expires.isoformat() if t.expires else None, t.backend)
                  for t in settings.tokens]
    now = dt.datetime.now(dt.UTC)
    print(f"{'NAME':20} {'RULES':30} {'BACKEND':10} {'EXPIRES':26} SOURCE")
    for source, items in (("config", configured), (settings.token_store, records)):
        for r in items:
            expiry = r.expiry()
            state = (expiry.isoformat(timespec="seconds") if expiry else "never") + (
                " (expired)" if expiry and expiry <= now else "")
            print(f"{r.name:20} {r.rules:30} {r.backend:10} {state:26} {source}")
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings.token_store == "redis":
        records = asyncio.run(_redis_tokens(settings))
        match = [r for r in records if r.name == args.name]
        if not match:
            raise GatewayError(f"no token named '{args.name}' in Redis")
        assert settings.token_store_secret
        # A tombstone first, then the record: a copy of the record written back later
        # (by anyone who saved it) finds the tombstone and stays revoked.
        tombstones = [x for r in match for x in (
            revocation_field(r.hash), sign_revocation(r.hash, settings.token_store_secret))]
        asyncio.run(_redis_call(settings, [b"HSET", REDIS_TOKENS_KEY, *tombstones]))
        asyncio.run(_redis_call(settings, [b"HDEL", REDIS_TOKENS_KEY,
                                           *(r.hash.encode() for r in match)]))
    else:
        path = _tokens_file(args, settings)
        records = read_tokens_file(path)
        kept = [r for r in records if r.name != args.name]
        if len(kept) == len(records):
            raise GatewayError(f"no token named '{args.name}' in {path}")
        write_tokens_file(path, kept)
    print(f"revoked token '{args.name}'", file=sys.stderr)
    return 0


def _audit(args: argparse.Namespace) -> int:
    from .observe.audit_cli import print_audit

    settings = _load(args)
    since = None
    if args.since:
        now = dt.datetime.now(dt.UTC)
        match = _DURATION.match(args.since.strip())
        moment = now - dt.timedelta(**{_UNITS[match[2]]: int(match[1])}) if match \
            else parse_expiry(args.since)
        since = moment.timestamp()
    return print_audit(settings, since=since, token=args.token, key=args.key)


async def _redis_call(settings: settings_mod.Settings, argv: list[bytes]) -> Any:
    from .backends import make_backend

    backend = make_backend("default", settings.backends["default"], settings.limits)
    try:
        (reply,) = await backend.run([argv])
        return reply
    finally:
        await backend.close()


async def _redis_tokens(settings: settings_mod.Settings) -> list[TokenRecord]:
    assert settings.token_store_secret
    flat = await _redis_call(settings, [b"HGETALL", REDIS_TOKENS_KEY])
    records = []
    for field, blob in zip(flat[::2], flat[1::2], strict=True):
        if field.startswith(REVOKED_PREFIX):
            continue
        record = verify_record(blob, settings.token_store_secret)
        if record is not None:
            records.append(record)
    return records


if __name__ == "__main__":
    sys.exit(main())
