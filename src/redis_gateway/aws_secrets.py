"""Secrets read from AWS Secrets Manager once at start: Redis passwords, the token-store key.

Only their ARNs are configured, so the values never sit in environment variables or
configuration files (where GetFunctionConfiguration or a backup would show them).
"""

from __future__ import annotations

import json
from dataclasses import replace

from .settings import Settings, SettingsError


def _secret_string(arn: str) -> str:
    import boto3  # loaded only when a secret is configured

    value: str = boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    return value


def _parts(arn: str, keys: tuple[str, ...], setting: str) -> tuple[str | None, str]:
    """(username, value) from a JSON secret with one of ``keys``, or a plain string."""
    text = _secret_string(arn)
    try:
        data = json.loads(text)
    except ValueError:
        return None, text
    if not isinstance(data, dict):
        return None, text
    value = next((data[k] for k in keys if isinstance(data.get(k), str)), None)
    if value is None:
        raise SettingsError(f"{setting}: secret {arn} has none of the keys {', '.join(keys)}")
    return data.get("username"), value


def resolve(settings: Settings) -> Settings:
    """Settings with the values of the configured secret ARNs filled in."""
    if settings.password_secret_arn:
        username, password = _parts(settings.password_secret_arn, ("token", "password"),
                                    "password_secret_arn")
        default = settings.backends["default"]
        settings = replace(settings, backends={**settings.backends, "default": replace(
            default, username=default.username or username, password=password)})
    backends = dict(settings.backends)
    for name, backend in settings.backends.items():
        users = {rules: replace(user, password=_parts(
                     user.password_secret_arn, ("password", "token"),
                     f"backends.{name}.users.{rules}.password_secret_arn")[1])
                 for rules, user in backend.users.items() if user.password_secret_arn}
        if users:
            backends[name] = replace(backend, users={**backend.users, **users})
    settings = replace(settings, backends=backends)
    if settings.token_store_secret_arn:
        _, key = _parts(settings.token_store_secret_arn, ("key", "secret"),
                        "token_store_secret_arn")
        settings = replace(settings, token_store_secret=key)
    return settings
