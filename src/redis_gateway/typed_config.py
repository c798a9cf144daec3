"""Typed values from TOML tables and environment strings: a dataclass built from a dict,
each value converted to its field's type hint, with an error that names the key.

The settings (``settings.py``) are built this way; nothing here knows them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import types
import typing
from typing import Any


class SettingsError(ValueError):
    """A setting that is missing, unknown or out of range; the message names it."""


def build_dataclass(cls: type[Any], data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise SettingsError(f"{where or 'config'}: expected a table, got {_kind(data)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in hints:
            raise SettingsError(
                f"{where}{key}: unknown setting; allowed here: {', '.join(names)}"
            )
        kwargs[key] = _convert(hints[key], value, f"{where}{key}")
    return cls(**kwargs)


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if value is None or value == "":
            return None
        return _convert(inner[0], value, where)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return build_dataclass(hint, value, where + ".")
    if origin is dict:
        if isinstance(value, str):  # from the environment: a JSON object
            try:
                value = json.loads(value)
            except ValueError:
                raise SettingsError(f"{where}: expected a JSON object, got {value!r}") from None
        if not isinstance(value, dict):
            raise SettingsError(f"{where}: expected a table, got {_kind(value)}")
        return {k: _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if origin is list:
        if isinstance(value, str):  # from the environment: comma-separated
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list):
            raise SettingsError(f"{where}: expected a list, got {_kind(value)}")
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false",
                                                        "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise SettingsError(f"{where}: expected true or false, got {value!r}")
    if hint is int or hint is float:
        if isinstance(value, bool):
            raise SettingsError(f"{where}: expected a number, got a boolean")
        try:
            number = hint(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{where}: expected {hint.__name__}, got {value!r}") from None
        if hint is int and isinstance(value, float) and value != number:
            raise SettingsError(f"{where}: expected a whole number, got {value!r}")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise SettingsError(f"{where}: expected a string, got {_kind(value)}")
        return value
    if hint is dt.datetime:
        return _datetime(value, where)
    raise SettingsError(f"{where}: unsupported setting type {hint!r}")  # pragma: no cover


def _datetime(value: Any, where: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            raise SettingsError(
                f"{where}: expected an ISO 8601 time such as 2027-01-31T00:00:00Z, got {value!r}"
            ) from None
    else:
        raise SettingsError(f"{where}: expected a date-time, got {_kind(value)}")
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _kind(value: Any) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
