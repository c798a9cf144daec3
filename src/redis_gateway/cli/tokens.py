"""``redis-gateway token create | list | revoke``: in the tokens file, or in Redis
(``token_store = "redis"``, records signed)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from typing import Any

from .. import settings as settings_mod
from ..auth import (
    REDIS_TOKENS_KEY,
    REVOKED_PREFIX,
    TokenRecord,
    check_record,
    hash_token,
    new_token,
    read_tokens_file,
    revocation_field,
    sign_record,
    sign_revocation,
    verify_record,
    write_tokens_file,
)
from ..errors import GatewayError
from .common import load, parse_expiry, tokens_file


def token_create(args: argparse.Namespace) -> int:
    settings = load(args)
    token = new_token()
    expires = parse_expiry(args.expires).isoformat() if args.expires else None
    record = TokenRecord(
        name=args.name, hash=hash_token(token), rules=args.rules, expires=expires,
        backend=args.backend, created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **{k: getattr(args, k) for k in settings_mod.SHARE_KEYS},
    )
    check_record(record, settings.backends)
    if any(t.name == args.name for t in settings.tokens):
        raise GatewayError(f"a token named '{args.name}' is in the configuration; a "
                           "token's share, streams and logs go by its name: choose another")
    if settings.token_store == "redis":
        assert settings.token_store_secret
        records = asyncio.run(_redis_tokens(settings))
        if any(r.name == args.name for r in records):
            raise GatewayError(f"a token named '{args.name}' exists; revoke it first")
        asyncio.run(_redis_call(settings, [b"HSET", REDIS_TOKENS_KEY, record.hash.encode(),
                                           sign_record(record, settings.token_store_secret)]))
        where = "Redis"
    else:
        path = tokens_file(args, settings)
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


def token_list(args: argparse.Namespace) -> int:
    settings = load(args)
    if settings.token_store == "redis":
        records = asyncio.run(_redis_tokens(settings))
    else:
        records = read_tokens_file(tokens_file(args, settings))
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


def token_revoke(args: argparse.Namespace) -> int:
    settings = load(args)
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
        path = tokens_file(args, settings)
        records = read_tokens_file(path)
        kept = [r for r in records if r.name != args.name]
        if len(kept) == len(records):
            raise GatewayError(f"no token named '{args.name}' in {path}")
        write_tokens_file(path, kept)
    print(f"revoked token '{args.name}'", file=sys.stderr)
    return 0


async def _redis_call(settings: settings_mod.Settings, argv: list[bytes]) -> Any:
    from ..backends import make_backend

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
