"""``redis-gateway serve``: the embedded Redis when none is configured, the development
token when none is, then one process (the built-in server or uvicorn) or a supervisor and
its workers."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import tempfile
from typing import Any

from .. import settings as settings_mod
from ..auth import TokenRecord, TokenStore, default_tokens_file, hash_token, new_token
from .common import load

log = logging.getLogger("redis_gateway")


def serve(args: argparse.Namespace) -> int:
    from ..app import Gateway
    from ..embedded import EmbeddedRedis, EmbeddedRedisError

    overrides: dict[str, Any] = {"redis": args.redis, "host": args.host, "port": args.port,
                                 "workers": args.workers}
    settings = load(args, secrets=False, **overrides)  # enough to set up; secrets below
    from ..observe.logs import configure as configure_logs

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
    settings = load(args, **overrides)

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
        from ..server import serve as serve_http

        if _has("uvloop"):
            import uvloop

            uvloop.install()

        async def rebuild() -> Gateway:  # SIGHUP: the configuration as it is now
            return Gateway(load(args, **overrides), extra_tokens=extra)

        def listening() -> None:
            if worker:
                os.write(args.worker_ready_fd, b"1")
                os.close(args.worker_ready_fd)
            else:
                announce(gateway.backends["default"].label)

        asyncio.run(serve_http(gateway, settings.host, settings.port, settings.limits, listening,
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
    from ..backends import make_backend
    from ..supervisor import Supervisor

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
        from ..observe import prometheus

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
