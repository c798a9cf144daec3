"""Tokens: who is calling, what their rules are, which Redis they reach.

Only a token's SHA-256 is stored anywhere. Tokens are 32 random bytes, so a fast
unsalted hash is enough: there is nothing to guess from a dictionary, and the
lookup stays a dict access on every request.

Three places hold tokens, merged in this order:
- the ``[[tokens]]`` tables of the configuration file;
- the tokens file that ``redis-gateway token create`` writes (re-read when it changes,
  so a running gateway sees new and revoked tokens within a second);
- optionally a hash in the default Redis (``token_store = "redis"``), shared by every
  gateway instance. Its records are signed with ``token_store_secret``: a client that
  may write keys could otherwise add a token of its own choosing.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .admission import Share
from .errors import BadRequest, RedisUnavailable, Unauthorized
from .observe import metrics
from .policy import Policy, RuleError, parse
from .settings import SHARE_KEYS, TOKEN_NAME, TOKEN_NAME_RULE, Settings

log = logging.getLogger("redis_gateway.auth")

TOKEN_PREFIX = "rgw_"
# Keys the gateway keeps in Redis start with this; no token but an unrestricted one
# reaches them (policy.Policy.guarding, acl.py).
RESERVED_PREFIX = b"redis-gateway:"
REDIS_TOKENS_KEY = RESERVED_PREFIX + b"tokens"
# A field of that hash holding a revoked token's tombstone: "revoked:" + its hash.
REVOKED_PREFIX = b"revoked:"
_FILE_CHECK_INTERVAL = 1.0


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenRecord:
    name: str
    hash: str
    rules: str = "read-write"
    expires: str | None = None  # ISO 8601, UTC
    backend: str = "default"
    created: str | None = None
    # The token's own share (admission.Share); None: the [limits] defaults.
    concurrency: int | None = None
    reserved: int | None = None
    rate: float | None = None
    burst: int | None = None
    reply_rate: float | None = None
    body_rate: float | None = None
    redis_time: float | None = None

    def expiry(self) -> dt.datetime | None:
        return dt.datetime.fromisoformat(self.expires) if self.expires else None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TokenRecord:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class Principal:
    """Who a request runs as: a token's name, its compiled rules and its backend."""

    name: str
    policy: Policy
    backend: str
    expires: dt.datetime | None = None
    share: Share = field(default_factory=Share)


def check_record(record: TokenRecord, backends: Iterable[str]) -> None:
    """Refuse a token whose name, rules, expiry or backend would fail later."""
    if not TOKEN_NAME.fullmatch(record.name):
        raise BadRequest(f"token {record.name!r}: its name {TOKEN_NAME_RULE}")
    try:
        parse(record.rules)
    except RuleError as exc:
        raise BadRequest(f"token '{record.name}': {exc}") from None
    if record.expires:
        try:
            record.expiry()
        except ValueError:
            raise BadRequest(f"token '{record.name}': expiry '{record.expires}' is not "
                             "ISO 8601") from None
    if record.backend not in backends:
        raise BadRequest(f"token '{record.name}': backend '{record.backend}' is not configured")
    for key in SHARE_KEYS:
        value = getattr(record, key)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)
                                  or value < (1 if key in ("concurrency", "reserved") else 0)):
            raise BadRequest(f"token '{record.name}': {key} {value!r} is out of range")


# The tokens file -------------------------------------------------------------------
def read_tokens_file(path: Path) -> list[TokenRecord]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    return [TokenRecord.from_json(item) for item in data.get("tokens", [])]


def write_tokens_file(path: Path, records: list[TokenRecord]) -> None:
    """Replace the file atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"version": 1, "tokens": [r.to_json() for r in records]}, f, indent=2)
    os.replace(tmp, path)


def default_tokens_file() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "redis-gateway" / "tokens.json"


# Records kept in Redis ---------------------------------------------------------------
def sign_record(record: TokenRecord, secret: str) -> bytes:
    body = json.dumps(record.to_json(), sort_keys=True).encode()
    mac = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(mac) + b"." + body


def verify_record(blob: bytes, secret: str) -> TokenRecord | None:
    mac_b64, _, body = blob.partition(b".")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(base64.b64decode(mac_b64), expected):
            return None
        return TokenRecord.from_json(json.loads(body))
    except (ValueError, TypeError):
        return None


def revocation_field(token_hash: str) -> bytes:
    return REVOKED_PREFIX + token_hash.encode()


def sign_revocation(token_hash: str, secret: str) -> bytes:
    """A tombstone kept beside the records: a revoked token's old record, written back,
    does not bring it back (the tombstone is checked on every load)."""
    body = json.dumps({"revoked": token_hash,
                       "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}).encode()
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()) + \
        b"." + body


def is_revoked(blob: Any, token_hash: str, secret: str) -> bool:
    if not isinstance(blob, bytes):
        return False
    mac_b64, _, body = blob.partition(b".")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    try:
        return hmac.compare_digest(base64.b64decode(mac_b64), expected) and \
            json.loads(body).get("revoked") == token_hash
    except (ValueError, TypeError, AttributeError):
        return False


# Lookup -----------------------------------------------------------------------------
# async: token hash -> (its record, its revocation tombstone), each a blob or None
RedisFetch = Callable[[str], Awaitable[tuple[Any, Any]]]
# async: every field of the token store -> its blob
RedisFetchAll = Callable[[], Awaitable[dict[str, bytes]]]


def gateway_keys_in(settings: Settings, backend: str) -> bool:
    """Whether the gateway keeps keys of its own (under RESERVED_PREFIX) in ``backend``:
    the token store, the shared rate counters and the audit trail live in the default one."""
    return backend == "default" and (settings.token_store == "redis"
                                     or settings.limits.shared_rate
                                     or settings.audit == "redis")


def compile_rules(settings: Settings, rules: str, backend: str) -> Policy:
    """A token's rules, with the gateway's own keys out of reach where it keeps some."""
    policy = parse(rules)
    return policy.guarding(RESERVED_PREFIX) if gateway_keys_in(settings, backend) else policy


class TokenStore:
    """Token hash -> principal, with rules compiled when a token is loaded, not per request."""

    def __init__(
        self,
        settings: Settings,
        redis_fetch: RedisFetch | None = None,
        extra: Iterable[TokenRecord] = (),
    ) -> None:
        self._settings = settings
        self._static: dict[str, Principal] = {}
        self._names: dict[str, str] = {}  # name -> hash, configuration and file tokens
        for token in settings.tokens:
            self._add_static(TokenRecord(
                name=token.name, hash=token.hash, rules=token.rules,
                expires=token.expires.isoformat() if token.expires else None,
                backend=token.backend, **{k: getattr(token, k) for k in SHARE_KEYS},
            ))
        for record in extra:
            self._add_static(record)
        self._file = Path(settings.tokens_file) if settings.tokens_file else None
        self._from_file: dict[str, Principal] = {}
        self._file_mtime: float | None = None
        self._file_checked: float | None = None
        self._redis_fetch = redis_fetch if settings.token_store == "redis" else None
        self._redis_cache: dict[str, tuple[Principal | None, float]] = {}

    def _principal(self, record: TokenRecord) -> Principal:
        share = Share.of(self._settings.limits, **{k: getattr(record, k) for k in SHARE_KEYS})
        return Principal(record.name, compile_rules(self._settings, record.rules,
                                                    record.backend),
                         record.backend, record.expiry(), share)

    def _add_static(self, record: TokenRecord) -> None:
        check_record(record, self._settings.backends)
        self._static[record.hash] = self._principal(record)
        self._names[record.name] = record.hash

    def _name_taken(self, record: TokenRecord) -> bool:
        """Another token of the configuration or the tokens file has this name: the later
        source's record is skipped (its share, streams and logs would be the other's)."""
        owner = self._names.get(record.name)
        return owner is not None and owner != record.hash

    async def known(self, fetch_all: RedisFetchAll | None = None) -> list[Principal]:
        """Every principal known now: configuration, the tokens file and, given a way to
        read them, the records kept in Redis (revoked ones left out)."""
        self._refresh_file()
        found = [*self._static.values(), *self._from_file.values()]
        secret = self._settings.token_store_secret
        if fetch_all is not None and self._redis_fetch is not None and secret:
            stored = await fetch_all()
            for field, blob in stored.items():
                record = verify_record(blob, secret)
                if record is None or record.hash != field or \
                        is_revoked(stored.get(revocation_field(field).decode()), field, secret):
                    continue
                try:
                    check_record(record, self._settings.backends)
                except BadRequest:
                    continue
                if not self._name_taken(record):
                    found.append(self._principal(record))
        return found

    @property
    def empty(self) -> bool:
        self._refresh_file()
        return not self._static and not self._from_file and self._redis_fetch is None

    def _refresh_file(self) -> None:
        """Re-read the tokens file when it changed, looking at most once a second."""
        if self._file is None:
            return
        now = time.monotonic()
        if self._file_checked is not None and now - self._file_checked < _FILE_CHECK_INTERVAL:
            return
        self._file_checked = now
        try:
            mtime: float | None = self._file.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime == self._file_mtime:
            return
        self._file_mtime = mtime
        metrics.sink.token_reload("file")
        self._from_file = {}
        self._names = {p.name: h for h, p in self._static.items()}
        try:
            records = read_tokens_file(self._file)
        except (ValueError, TypeError) as exc:
            log.error("tokens file %s is unreadable, ignoring it: %s", self._file, exc)
            return
        for record in records:
            try:
                check_record(record, self._settings.backends)
            except BadRequest as exc:
                log.error("tokens file %s: skipping %s", self._file, exc.message)
                continue
            if self._name_taken(record):
                log.error("tokens file %s: skipping token '%s': another token has that name",
                          self._file, record.name)
                continue
            self._from_file[record.hash] = self._principal(record)
            self._names[record.name] = record.hash

    async def _from_redis(self, token_hash: str) -> Principal | None:
        assert self._redis_fetch is not None and self._settings.token_store_secret
        now = time.monotonic()
        cached = self._redis_cache.get(token_hash)
        if cached and now - cached[1] < self._settings.token_cache_seconds:
            return cached[0]
        secret = self._settings.token_store_secret
        metrics.sink.token_reload("redis")
        try:
            blob, tombstone = await self._redis_fetch(token_hash)
        except RedisUnavailable:
            if cached:  # keep serving known tokens through a short Redis outage
                return cached[0]
            raise
        record = verify_record(blob, secret) if isinstance(blob, bytes) else None
        principal = None
        if record is not None and record.hash == token_hash and \
                not is_revoked(tombstone, token_hash, secret):
            try:
                check_record(record, self._settings.backends)
                if self._name_taken(record):
                    raise BadRequest(f"token '{record.name}': another token has that name")
                principal = self._principal(record)
            except BadRequest as exc:
                log.error("token record in Redis skipped: %s", exc.message)
        if len(self._redis_cache) > 4096:
            self._redis_cache.clear()
        self._redis_cache[token_hash] = (principal, now)
        return principal

    def known_now(self, token: str) -> Principal | None:
        """``token``'s principal if it is known without asking Redis (configuration, the
        tokens file, records of the Redis store read lately); None otherwise."""
        token_hash = hash_token(token)
        principal = self._static.get(token_hash) or self._from_file.get(token_hash)
        if principal is None and (cached := self._redis_cache.get(token_hash)):
            principal = cached[0]
        return principal

    async def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise Unauthorized(
                "missing token: send 'Authorization: Bearer <token>' or '?_token=<token>'"
            )
        token_hash = hash_token(token)
        self._refresh_file()
        principal = self._static.get(token_hash) or self._from_file.get(token_hash)
        if principal is None and self._redis_fetch is not None:
            principal = await self._from_redis(token_hash)
        if principal is None:
            raise Unauthorized("invalid token: it is unknown or has been revoked")
        if principal.expires is not None and principal.expires <= dt.datetime.now(dt.UTC):
            raise Unauthorized(
                f"token '{principal.name}' expired at {principal.expires.isoformat()}")
        return principal
