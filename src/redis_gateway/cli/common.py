"""What the commands share: settings as they load them, the tokens file, times."""

from __future__ import annotations

import argparse
import datetime as dt
import re
from pathlib import Path
from typing import Any

from .. import settings as settings_mod
from ..auth import default_tokens_file
from ..errors import GatewayError


def load(args: argparse.Namespace, *, secrets: bool = True,
         **overrides: Any) -> settings_mod.Settings:
    settings = settings_mod.load(getattr(args, "config", None), overrides=overrides)
    if secrets:
        from ..aws_secrets import resolve  # boto3 is imported only if a secret is configured

        settings = resolve(settings)
    return settings


def tokens_file(args: argparse.Namespace, settings: settings_mod.Settings) -> Path:
    return Path(args.file or settings.tokens_file or default_tokens_file())


def live_settings(args: argparse.Namespace) -> settings_mod.Settings:
    """The settings ``serve`` would run with; the tokens file where ``serve`` looks."""
    settings = load(args)
    return load(args, tokens_file=str(tokens_file(args, settings)))


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


def parse_since(text: str) -> dt.datetime:
    """A moment given as a duration back from now (30m, 2d) or in ISO 8601."""
    match = _DURATION.match(text.strip())
    if match:
        return dt.datetime.now(dt.UTC) - dt.timedelta(**{_UNITS[match[2]]: int(match[1])})
    return parse_expiry(text)
