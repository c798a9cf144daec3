"""One typed configuration, read from a TOML file and ``REDIS_GATEWAY_*`` variables.

Precedence: defaults < TOML file < environment < command-line flags. Every value is
checked when the gateway starts; a wrong one stops it with a message that names the
key and says what is allowed, so a typo never silently falls back to a default.

Environment names: ``REDIS_GATEWAY_<KEY>``, with ``__`` between section and key,
e.g. ``REDIS_GATEWAY_LIMITS__COMMAND_TIMEOUT=5``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .policy import RuleError
from .policy import parse as parse_rules
from .typed_config import SettingsError as SettingsError  # raised by load(): its home here
from .typed_config import build_dataclass

ENV_PREFIX = "REDIS_GATEWAY_"


@dataclass(frozen=True)
class MappedUser:
    """An existing Redis user that tokens with given rules run as (enforcement = "mapped")."""

    username: str = ""
    password: str | None = None
    # Or: a Secrets Manager secret holding it (JSON {"password"} or a plain string).
    password_secret_arn: str = ""


@dataclass(frozen=True)
class BackendSettings:
    """One Redis deployment that tokens can be pointed at: a server or a topology."""

    url: str = ""
    username: str | None = None
    password: str | None = None
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_check_hostname: bool = True
    # Shared connections that carry every non-blocking command back to back.
    connections: int = 1
    # Connections reserved one request at a time: transactions and blocking commands.
    max_dedicated_connections: int = 32
    # "standalone": url is the server. "replicas": url is the primary, `replicas` its
    # read replicas. "sentinel": url's host is the master name (redis://mymaster/0),
    # `sentinels` are asked where its primary is. "cluster": url (an ElastiCache
    # configuration endpoint, or any node) and `seeds` are where the slot map is read.
    # Every node is reached with url's scheme, credentials and TLS files.
    topology: str = "standalone"
    replicas: list[str] = field(default_factory=list)
    sentinels: list[str] = field(default_factory=list)
    seeds: list[str] = field(default_factory=list)
    # Run commands flagged readonly on replicas. Unset: on for "replicas", off for
    # "sentinel" and "cluster", where reading your own writes is what clients expect.
    read_from_replicas: bool | None = None
    # Who enforces the tokens' rules besides the gateway's own check. "managed": Redis,
    # through an ACL user per rule set that the gateway creates on every node. "mapped":
    # Redis, through existing users named in `users`. "gateway": the gateway alone; then
    # scripts and functions are refused to every token that is not unrestricted.
    enforcement: str = "managed"
    # Each token's commands on shared connections of its own (a lane), so that one
    # token's large replies never hold up another's on the same socket; false: the tokens
    # of one rule set share its connections.
    token_connections: bool = True
    # Per node: groups of connections kept open, one per rule set and one per token with
    # a lane. Past it, a token gets no lane of its own (it shares its rule set's) unless a
    # lane unused for a minute is closed; rule sets' idle groups are closed (and opened
    # again at their next request).
    max_user_groups: int = 64
    # enforcement = "mapped": the user for each rule set, keyed by the rules as tokens
    # write them, e.g. users."read-only" = { username = "gw-ro", password = "..." }.
    users: dict[str, MappedUser] = field(default_factory=dict)

    @property
    def replica_reads(self) -> bool:
        if self.read_from_replicas is None:
            return self.topology == "replicas"
        return self.read_from_replicas


# A token's name: its share, its streams (onPutRedis) and the logs go by it, so it is one
# token's only, and plain enough for a log line or a terminal.
TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+=/-]{0,127}")
TOKEN_NAME_RULE = ("must be 1 to 128 letters, digits or . _ : @ + = / -, starting with a "
                   "letter or digit")


@dataclass(frozen=True)
class LimitSettings:
    max_body_bytes: int = 10 * 1024 * 1024
    max_commands: int = 1000
    max_reply_bytes: int = 16 * 1024 * 1024
    command_timeout: float = 10.0
    max_block_seconds: float = 10.0
    connect_timeout: float = 2.0
    # After a failed connect, requests fail at once for this long instead of each
    # waiting for its own connect attempt.
    reconnect_backoff: float = 0.5
    # The HTTP server: seconds a client may take to send a request's head (slow clients
    # would otherwise hold connections), its body (after the head), and seconds an idle
    # connection is kept.
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 75.0
    # Each token's share, unless the token sets its own (see TokenShare): requests in flight
    # at once, and the fraction of a backend's reserved connections it may hold.
    token_concurrency: int = 256
    token_reserved_share: float = 0.5
    # The fraction of max_pending_request_bytes one token's large bodies may hold until
    # answered (judged by a body's announced length, before it is read).
    token_body_share: float = 0.5
    # Requests per second per token (0: no rate limit unless the token sets one), and how
    # many may arrive at once (0: one second's worth).
    token_rate: float = 0.0
    token_burst: int = 0
    # Count rates in the default Redis, so every gateway process shares one budget per token.
    shared_rate: bool = False
    # Bytes of replies per second per token (0: no limit unless the token sets one). Redis's
    # work grows with what it sends: this bounds one token's share of it (in each process).
    token_reply_rate: float = 0.0
    # Bytes of request bodies per second per token (0: no limit unless the token sets one):
    # reading and parsing grow with what arrives. A large body is charged, or refused, by
    # its Content-Length before it is read.
    token_body_rate: float = 0.0
    # Seconds of Redis per second per token (0: no limit unless the token sets one): how
    # long Redis took to answer its commands on shared connections, e.g. 0.05 for a
    # twentieth of one Redis. What its rate cannot see: what one command costs.
    token_redis_time: float = 0.0
    # Open client connections; past it a new one is answered 503 and closed.
    max_connections: int = 1000
    max_header_bytes: int = 64 * 1024
    # The built-in server only. A connection stops being read while this many of its
    # requests wait for the app, or while its client leaves more than write_buffer_bytes
    # of responses unread; such a client must read some every write_timeout seconds.
    max_pipelined_requests: int = 16
    write_buffer_bytes: int = 64 * 1024
    write_timeout: float = 30.0
    # Bytes of requests received and not yet answered (bodies arriving, pipelined requests,
    # requests being handled), over all connections, beyond max_header_bytes each.
    max_pending_request_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class StreamSettings:
    """Streams (SSE, WebSocket): pub/sub, MONITOR and Redis Streams (``streams/``)."""

    # Open streams in this process, and per token (a WebSocket with subscriptions counts
    # once per SUBSCRIBE it holds open).
    max_streams: int = 10_000
    max_streams_per_token: int = 100
    # Bytes of messages one stream may hold while its client is not reading; past it the
    # client is a slow consumer: its stream ends with a final error event.
    buffer_bytes: int = 1024 * 1024
    # Seconds between keep-alive comments on an idle SSE stream.
    keepalive_seconds: float = 15.0
    # Seconds between checks that each open stream's token is still valid (expiry,
    # revocation): a revoked token's streams end within about this long.
    recheck_seconds: float = 2.0
    # Largest WebSocket message a client may send.
    max_ws_message_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class GraphQLSettings:
    introspection: bool = True
    # Per operation, fragments expanded.
    max_depth: int = 10
    max_aliases: int = 200
    # Fields an operation resolves, each fragment spread counted where it stands.
    max_fields: int = 1000
    # Checked before parsing: parsing costs about 250 ns a byte even inside a string.
    max_document_bytes: int = 32 * 1024
    # Lexical tokens, and comments counted apart, stop the parser: validating costs
    # 25-100 µs a token and graphql-core's overlapping-fields rule is quadratic.
    max_tokens: int = 2000
    # Values in a request's variables (graphql-core coerces each in Python).
    max_variable_values: int = 10_000
    # Elements of a reply that a typed field returns as a list (completed one by one).
    max_list_items: int = 10_000
    # Parsed and validated documents kept, by count and by total document size (a
    # document's tree takes up to ~100x its text); one over 1/16 of it is not kept.
    document_cache_entries: int = 512
    document_cache_bytes: int = 256 * 1024
    # Operations one WebSocket connection runs at once (AppSync's default quota too).
    max_subscriptions: int = 100
    # Lets an admin token's subscription turn on notify-keyspace-events (enable: true);
    # never on by itself.
    keyspace_events_enable: bool = False


@dataclass(frozen=True)
class AwsSettings:
    """How AppSync identities map to token rules, when the gateway runs as a Lambda.

    An empty rule string refuses that kind of caller.
    """

    # Callers AppSync authenticated with one of its API keys, when the key is not
    # itself a gateway token. AppSync has checked the key already.
    api_key_rules: str = ""
    # IAM callers: the first pattern (glob) matching the caller's ARN wins, else iam_rules.
    iam_arn_rules: dict[str, str] = field(default_factory=dict)
    iam_rules: str = ""
    # Cognito user pools: the first of the user's groups listed here wins, else cognito_rules.
    cognito_group_rules: dict[str, str] = field(default_factory=dict)
    cognito_rules: str = ""
    oidc_rules: str = ""
    lambda_authorizer_rules: str = ""


@dataclass(frozen=True)
class TokenSettings:
    """A token declared in configuration. Only its hash is ever written down."""

    name: str = ""
    hash: str = ""
    rules: str = "read-write"
    expires: dt.datetime | None = None
    backend: str = "default"
    # This token's share, overriding [limits]' token_* defaults (0 rate: unlimited).
    concurrency: int | None = None
    reserved: int | None = None
    rate: float | None = None
    burst: int | None = None
    reply_rate: float | None = None
    body_rate: float | None = None
    redis_time: float | None = None


# A token's share, as TokenSettings and token records name its parts (admission.Share).
SHARE_KEYS = ("concurrency", "reserved", "rate", "burst", "reply_rate", "body_rate",
              "redis_time")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8079
    # URL of the default backend; empty means start the embedded Redis.
    redis: str = ""
    base_path: str = ""
    cors_origins: list[str] = field(default_factory=lambda: ["*"])
    log_level: str = "info"
    # "builtin": the gateway's own HTTP/1.1 server (server.py), fastest; "uvicorn" if
    # you need what only uvicorn has (h11 fallback, its logging and options).
    server: str = "builtin"
    # Processes serving the port (SO_REUSEPORT) under one supervisor; "auto" in the file
    # or environment means one per CPU core (resolved when loaded: always an int here).
    workers: int = 1
    # SIGTERM: seconds the requests in flight have to finish before their connections close.
    drain_timeout: float = 30.0
    # Where `redis-gateway token create` keeps tokens (hashes only); "" disables the file.
    tokens_file: str = ""
    # "redis": tokens also live in the default backend, shared by all gateway instances.
    token_store: str = "file"
    # Signs token records kept in Redis, so a client that can write keys cannot mint tokens.
    token_store_secret: str | None = None
    # Or: a Secrets Manager secret holding it (JSON {"key": ...} or a plain string).
    token_store_secret_arn: str = ""
    # Seconds a token looked up in Redis is trusted before it is read again.
    token_cache_seconds: float = 5.0
    limits: LimitSettings = field(default_factory=LimitSettings)
    graphql: GraphQLSettings = field(default_factory=GraphQLSettings)
    streams: StreamSettings = field(default_factory=StreamSettings)
    aws: AwsSettings = field(default_factory=AwsSettings)
    # Secrets Manager secret with the default backend's password (Lambda): a JSON
    # {"username", "token"|"password"} or a plain string; read once at start.
    password_secret_arn: str = ""
    backends: dict[str, BackendSettings] = field(default_factory=dict)
    tokens: list[TokenSettings] = field(default_factory=list)
    # Observability (docs/operations.md). Logs: "text" or "json"; levels per logger
    # name, e.g. {"redis_gateway.access" = "warning"}; a line per request.
    log_format: str = "text"
    log_levels: dict[str, str] = field(default_factory=dict)
    access_log: bool = False
    # /metrics: on the main port behind this token's hash ("sha256:...", made with
    # `redis-gateway token hash`), and/or on its own address ("127.0.0.1:9108") with no
    # token. Neither set: no metrics, /metrics is 404.
    metrics_token: str = ""
    metrics_listen: str = ""
    # Distinct token names given their own label in redis_gateway_token_requests_total
    # (0: no such metric); past it they count as "other".
    metrics_token_labels: int = 0
    # "redis": a Stream (redis-gateway:audit) in the default backend; "file": JSONL.
    audit: str = "off"
    audit_file: str = ""
    audit_max_entries: int = 1_000_000  # the stream's cap (XADD MAXLEN ~)
    audit_queue: int = 10_000  # entries waiting to be written; past it they are dropped
    # OTLP/HTTP collector for OpenTelemetry spans (or OTEL_EXPORTER_OTLP_ENDPOINT).
    otel_endpoint: str = ""

    def backend(self, name: str) -> BackendSettings:
        return self.backends[name]


_CHOICES: dict[str, tuple[str, ...]] = {
    "token_store": ("file", "redis"),
    "log_level": ("critical", "error", "warning", "info", "debug"),
    "server": ("builtin", "uvicorn"),
    "log_format": ("text", "json"),
    "audit": ("off", "redis", "file"),
}


def load(
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build validated settings from a TOML file, the environment and explicit overrides."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {path} is not valid TOML: {exc}") from exc
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        keys = name[len(ENV_PREFIX) :].lower().split("__")
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise SettingsError(f"environment variable {name}: '{key}' is not a section")
        node[keys[-1]] = value
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    if data.get("workers") == "auto":
        data["workers"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else os.cpu_count() or 1
    settings = build_dataclass(Settings, data, "")
    return _finish(settings)


def _finish(settings: Settings) -> Settings:
    for key, allowed in _CHOICES.items():
        value = getattr(settings, key)
        if value not in allowed:
            raise SettingsError(f"{key}: '{value}' is not one of {', '.join(allowed)}")
    if settings.base_path and (
        not settings.base_path.startswith("/") or settings.base_path.endswith("/")
    ):
        raise SettingsError("base_path: must start with '/' and not end with '/', e.g. '/redis'")
    if not 1 <= settings.workers <= 512:
        raise SettingsError(f"workers: {settings.workers} is not between 1 and 512 (or \"auto\")")
    if settings.drain_timeout < 0:
        raise SettingsError("drain_timeout: must not be negative")
    if not 0 < settings.port < 65536:
        raise SettingsError(f"port: {settings.port} is not between 1 and 65535")
    for section in ("limits", "graphql", "streams"):
        values = getattr(settings, section)
        for f in dataclasses.fields(values):
            value = getattr(values, f.name)
            if f.name in _MAY_BE_ZERO:
                if value < 0:
                    raise SettingsError(f"{section}.{f.name}: must not be negative")
            elif not isinstance(value, bool) and value <= 0:
                raise SettingsError(f"{section}.{f.name}: must be greater than 0")
    for share in ("token_reserved_share", "token_body_share"):
        if not 0 < getattr(settings.limits, share) <= 1:
            raise SettingsError(f"limits.{share}: must be more than 0 and at most 1")
    limits = settings.limits
    if limits.max_pending_request_bytes < limits.max_body_bytes:
        raise SettingsError(f"limits.max_pending_request_bytes: must be at least max_body_bytes "
                            f"({limits.max_body_bytes}), or the largest body allowed could "
                            "never be received")
    backends = dict(settings.backends)
    default = backends.get("default", BackendSettings())
    if settings.redis:
        default = dataclasses.replace(default, url=settings.redis)
    backends["default"] = default
    for name, backend in backends.items():
        if backend.url and not backend.url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError(
                f"backends.{name}.url: '{backend.url}' must start with redis://, rediss:// "
                "or unix://"
            )
        if name != "default" and not backend.url:
            raise SettingsError(f"backends.{name}.url: is required")
        if backend.connections < 1 or backend.max_dedicated_connections < 1 or \
                backend.max_user_groups < 1:
            raise SettingsError(f"backends.{name}: connection counts must be at least 1")
        _check_topology(f"backends.{name}", backend)
        if backend.enforcement not in ENFORCEMENT_MODES:
            raise SettingsError(f"backends.{name}.enforcement: '{backend.enforcement}' is not "
                                f"one of {', '.join(ENFORCEMENT_MODES)}")
        if backend.users and backend.enforcement != "mapped":
            raise SettingsError(f"backends.{name}.users: only used with enforcement = "
                                f"\"mapped\" (this backend's is '{backend.enforcement}')")
        for rules, user in backend.users.items():
            where = f"backends.{name}.users.\"{rules}\""
            try:
                parse_rules(rules)
            except RuleError as exc:
                raise SettingsError(f"{where}: {exc}") from None
            if not user.username:
                raise SettingsError(f"{where}.username: is required")
            if user.password is None and not user.password_secret_arn:
                raise SettingsError(f"{where}: set password or password_secret_arn")
    names: set[str] = set()
    for i, token in enumerate(settings.tokens):
        where = f"tokens[{i}]"
        if not TOKEN_NAME.fullmatch(token.name):
            raise SettingsError(f"{where}.name: {TOKEN_NAME_RULE}")
        if token.name in names:
            raise SettingsError(f"{where}.name: another token is named '{token.name}': a "
                                "token's share, streams and logs go by its name")
        names.add(token.name)
        if not token.hash.startswith("sha256:") or len(token.hash) != 7 + 64:
            raise SettingsError(
                f"{where}.hash: must be 'sha256:<64 hex digits>' "
                "(make one with `redis-gateway token hash`)"
            )
        if token.backend not in backends:
            raise SettingsError(
                f"{where}.backend: '{token.backend}' is not one of {', '.join(sorted(backends))}"
            )
        for key in SHARE_KEYS:
            value = getattr(token, key)
            if value is not None and value < (1 if key in ("concurrency", "reserved") else 0):
                raise SettingsError(f"{where}.{key}: {value} is out of range")
    aws = settings.aws
    for key, rules in [("api_key_rules", aws.api_key_rules), ("iam_rules", aws.iam_rules),
                       ("cognito_rules", aws.cognito_rules), ("oidc_rules", aws.oidc_rules),
                       ("lambda_authorizer_rules", aws.lambda_authorizer_rules),
                       *((f"iam_arn_rules.{k}", v) for k, v in aws.iam_arn_rules.items()),
                       *((f"cognito_group_rules.{k}", v)
                         for k, v in aws.cognito_group_rules.items())]:
        if rules:
            try:
                parse_rules(rules)
            except RuleError as exc:
                raise SettingsError(f"aws.{key}: {exc}") from None
    if settings.token_store == "redis" and not (settings.token_store_secret
                                                or settings.token_store_secret_arn):
        raise SettingsError("token_store_secret: is required when token_store is 'redis' "
                            "(or token_store_secret_arn)")
    _check_observability(settings)
    return dataclasses.replace(settings, backends=backends)


def _check_observability(settings: Settings) -> None:
    for name, level in settings.log_levels.items():
        if level.lower() not in _CHOICES["log_level"]:
            raise SettingsError(f"log_levels.{name}: '{level}' is not one of "
                                f"{', '.join(_CHOICES['log_level'])}")
    token = settings.metrics_token
    if token and (not token.startswith("sha256:") or len(token) != 7 + 64):
        raise SettingsError("metrics_token: must be 'sha256:<64 hex digits>', the token's "
                            "hash (make one with `redis-gateway token hash`), never the token")
    if settings.metrics_listen:
        host, _, port = settings.metrics_listen.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError(f"metrics_listen: '{settings.metrics_listen}' must be "
                                "host:port, e.g. 127.0.0.1:9108")
    if settings.metrics_token_labels < 0:
        raise SettingsError("metrics_token_labels: must not be negative")
    if settings.audit == "file" and not settings.audit_file:
        raise SettingsError("audit_file: is required when audit is 'file'")
    if settings.audit_max_entries < 1 or settings.audit_queue < 1:
        raise SettingsError("audit_max_entries and audit_queue: must be at least 1")


ENFORCEMENT_MODES = ("managed", "mapped", "gateway")
_MAY_BE_ZERO = frozenset({"token_rate", "token_burst", "token_reply_rate",
                          "token_body_rate", "token_redis_time"})
_TOPOLOGY_LISTS = {"replicas": "replicas", "sentinels": "sentinel", "seeds": "cluster"}


def _check_topology(where: str, backend: BackendSettings) -> None:
    topology = backend.topology
    allowed = ("standalone", "replicas", "sentinel", "cluster")
    if topology not in allowed:
        raise SettingsError(f"{where}.topology: '{topology}' is not one of {', '.join(allowed)}")
    for key, owner in _TOPOLOGY_LISTS.items():
        urls: list[str] = getattr(backend, key)
        if urls and topology != owner:
            raise SettingsError(f"{where}.{key}: only used with topology = \"{owner}\" "
                                f"(this backend's topology is '{topology}')")
        for i, url in enumerate(urls):
            if not url.startswith(("redis://", "rediss://")) or not urlsplit(url).hostname:
                raise SettingsError(f"{where}.{key}[{i}]: '{url}' must be redis://host:port "
                                    "or rediss://host:port")
    if topology == "standalone":
        if backend.read_from_replicas:
            raise SettingsError(f"{where}.read_from_replicas: needs a topology with replicas "
                                "(replicas, sentinel or cluster)")
        return
    parts = urlsplit(backend.url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        example = "redis://mymaster/0" if topology == "sentinel" else "redis://10.0.0.5:6379"
        raise SettingsError(f"{where}.url: topology '{topology}' needs a redis:// or rediss:// "
                            f"URL with a host, e.g. {example}")
    if topology == "replicas" and not backend.replicas:
        raise SettingsError(f"{where}.replicas: list the read replicas, e.g. "
                            "[\"redis://10.0.0.6:6379\"]")
    if topology == "sentinel":
        if not backend.sentinels:
            raise SettingsError(f"{where}.sentinels: list the Sentinels to ask, e.g. "
                                "[\"redis://10.0.0.7:26379\", \"redis://10.0.0.8:26379\"]")
        if parts.port is not None:
            raise SettingsError(f"{where}.url: with topology 'sentinel' the URL's host is the "
                                f"master name ('{parts.hostname}') and it has no port: the "
                                "Sentinels say where the primary is")
    if topology == "cluster" and parts.path.strip("/") not in ("", "0"):
        raise SettingsError(f"{where}.url: Redis Cluster has only database 0; "
                            f"remove '{parts.path}' from the URL")
