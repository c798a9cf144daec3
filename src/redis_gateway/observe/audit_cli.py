"""``redis-gateway audit [--since] [--token] [--key]``: the trail, one JSON line an entry."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable

from ..errors import GatewayError
from ..settings import Settings
from .audit import AuditEntry, read_file, read_stream, select


def print_audit(settings: Settings, *, since: float | None, token: str | None,
                key: str | None) -> int:
    entries: Iterable[AuditEntry]
    if settings.audit == "file":
        try:
            entries = list(read_file(settings.audit_file))
        except FileNotFoundError:
            raise GatewayError(f"no audit file at {settings.audit_file} yet") from None
    elif settings.audit == "redis":
        entries = asyncio.run(_from_redis(settings, since))
    else:
        raise GatewayError("the audit trail is off: set audit = \"redis\" or \"file\"")
    for entry in select(entries, token, key, since):
        sys.stdout.write(entry.to_json() + "\n")
    return 0


async def _from_redis(settings: Settings, since: float | None) -> list[AuditEntry]:
    from ..backends import make_backend

    backend = make_backend("default", settings.backends["default"], settings.limits)
    try:
        return await read_stream(backend, since)
    finally:
        await backend.close()
