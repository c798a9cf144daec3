"""The one refresher behind a node's reconnect, a Cluster's slot map and Sentinel
discovery: one refresh at a time, fail fast during back-off, log once per outage."""

from __future__ import annotations

import asyncio
import logging

import pytest

from redis_gateway.backends.refresher import Refresher
from redis_gateway.errors import RedisUnavailable

LOG = logging.getLogger("test.refresher")


class Target:
    """What a refresh reaches: up or down, counting the attempts."""

    def __init__(self) -> None:
        self.up = False
        self.attempts = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def reach(self) -> None:
        self.attempts += 1
        await self.gate.wait()
        if not self.up:
            raise RedisUnavailable(f"cannot reach it (attempt {self.attempts})")


async def test_callers_during_a_refresh_share_it() -> None:
    target = Target()
    target.up = True
    target.gate.clear()
    refresher = Refresher(target.reach, backoff=60, logger=LOG, recovered="up")
    callers = [asyncio.create_task(refresher.refresh()) for _ in range(5)]
    await asyncio.sleep(0)
    target.gate.set()
    await asyncio.gather(*callers)
    assert target.attempts == 1


async def test_a_caller_that_gives_up_does_not_stop_the_refresh() -> None:
    target = Target()
    target.up = True
    target.gate.clear()
    refresher = Refresher(target.reach, backoff=60, logger=LOG, recovered="up")
    impatient = asyncio.create_task(refresher.refresh())
    await asyncio.sleep(0)
    impatient.cancel()
    patient = asyncio.create_task(refresher.refresh())
    await asyncio.sleep(0)
    target.gate.set()
    await patient
    assert target.attempts == 1 and refresher.failure == ""


async def test_after_a_failure_callers_fail_fast_until_the_back_off_ends() -> None:
    target = Target()
    refresher = Refresher(target.reach, backoff=60, logger=LOG, recovered="up")
    with pytest.raises(RedisUnavailable, match="attempt 1"):
        await refresher.refresh()
    for _ in range(3):  # no attempt of their own: the last failure's reason, at once
        with pytest.raises(RedisUnavailable, match="attempt 1"):
            await refresher.refresh()
        with pytest.raises(RedisUnavailable, match="attempt 1"):
            await refresher.attempt(target.reach)
    assert target.attempts == 1
    no_back_off = Refresher(target.reach, backoff=0, logger=LOG, recovered="up")
    for _ in range(2):
        with pytest.raises(RedisUnavailable):
            await no_back_off.refresh()
    assert target.attempts == 3


async def test_background_refreshes_are_spaced_but_not_stopped_by_the_back_off() -> None:
    target = Target()
    spaced = Refresher(target.reach, backoff=60, logger=LOG, recovered="up", interval=60)
    with pytest.raises(RedisUnavailable):
        await spaced.refresh()
    spaced.refresh_soon()  # within the interval of the last start: nothing
    await asyncio.sleep(0)
    assert target.attempts == 1
    eager = Refresher(target.reach, backoff=60, logger=LOG, recovered="up")
    with pytest.raises(RedisUnavailable):
        await eager.refresh()
    target.up = True
    eager.refresh_soon()  # in back-off, yet it runs: that is how recovery is noticed
    for _ in range(3):
        await asyncio.sleep(0)
    assert target.attempts == 3 and eager.failure == ""
    await eager.refresh()  # the back-off is over once an attempt works


async def test_an_outage_is_logged_once_and_its_end_once(
        caplog: pytest.LogCaptureFixture) -> None:
    target = Target()
    refresher = Refresher(target.reach, backoff=0, logger=LOG, label="backend 'x'",
                          recovered="reachable again")
    with caplog.at_level(logging.INFO, logger=LOG.name):
        for _ in range(3):
            with pytest.raises(RedisUnavailable):
                await refresher.refresh()
        target.up = True
        await refresher.refresh()
        await refresher.refresh()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "backend 'x': cannot reach it (attempt 1)"),
        ("INFO", "backend 'x': reachable again")]


async def test_an_unexpected_error_in_the_background_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise ValueError("a reply of an unexpected shape")

    refresher = Refresher(broken, backoff=0, logger=LOG, recovered="up")
    with caplog.at_level(logging.INFO, logger=LOG.name):
        refresher.refresh_soon()
        for _ in range(3):
            await asyncio.sleep(0)
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [ValueError]
