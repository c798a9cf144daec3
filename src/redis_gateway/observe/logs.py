"""Logs: JSON or text, a level per logger, and the access log's one line per request.

The JSON formatter is a few lines on the stdlib (``orjson`` is a dependency already):
one object a line, with ``time``, ``level``, ``logger``, ``pid``, ``message`` and the fields a
call passes as ``extra={"fields": {...}}`` (the access log's). No log line ever holds a
token, a password, a request's path or body, or a value: the access line names commands
only (a path such as ``/set/k/v`` carries the value, and ``?_token=`` the token).
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from collections.abc import Mapping
from typing import Any

import orjson

ACCESS_LOGGER = "redis_gateway.access"
# Command names kept on an access line; a 1000-command pipeline says how many more.
MAX_LOGGED_COMMANDS = 20


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,  # which worker, when there are several
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """The classic line, with the access fields as ``key=value`` after the message."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if fields:
            line += " " + " ".join(f"{k}={_text(v)}" for k, v in fields.items())
        return line


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "-"
    return "-" if value is None else str(value)


def configure(level: str, fmt: str, levels: Mapping[str, str]) -> None:
    """The process's logging: one handler on stderr, the root at ``level``, and
    ``levels`` per logger name (``{"redis_gateway.access": "warning"}``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name, value in levels.items():
        logging.getLogger(name).setLevel(value.upper())


def access_fields(request_id: bytes, token: str | None, door: str, method: str,
                  commands: list[str], status: int, seconds: float, bytes_in: int,
                  bytes_out: int) -> dict[str, Any]:
    names = commands[:MAX_LOGGED_COMMANDS]
    if len(commands) > MAX_LOGGED_COMMANDS:
        names.append(f"+{len(commands) - MAX_LOGGED_COMMANDS} more")
    return {"request_id": request_id.decode(), "token": token, "door": door,
            "method": method, "commands": names, "status": status,
            "duration_ms": round(seconds * 1000, 3), "bytes_in": bytes_in,
            "bytes_out": bytes_out}
