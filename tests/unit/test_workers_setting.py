"""The workers and drain_timeout settings: "auto", numbers, and what is refused."""

from __future__ import annotations

import os

import pytest

from redis_gateway.settings import SettingsError, load


def test_auto_is_the_cores_this_process_may_use() -> None:
    settings = load(env={"REDIS_GATEWAY_WORKERS": "auto"})
    assert settings.workers == len(os.sched_getaffinity(0))


def test_numbers_from_the_environment_and_flags() -> None:
    assert load(env={"REDIS_GATEWAY_WORKERS": "3"}).workers == 3
    assert load(env={}, overrides={"workers": "2"}).workers == 2
    assert load(env={}).workers == 1 and load(env={}).drain_timeout == 30.0


@pytest.mark.parametrize(("value", "message"), [
    ("0", "workers: 0 is not between 1 and 512"),
    ("many", "workers: expected int, got 'many'"),
])
def test_bad_worker_counts_are_refused(value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(env={"REDIS_GATEWAY_WORKERS": value})


def test_negative_drain_timeout_is_refused() -> None:
    with pytest.raises(SettingsError, match="drain_timeout: must not be negative"):
        load(env={"REDIS_GATEWAY_DRAIN_TIMEOUT": "-1"})
