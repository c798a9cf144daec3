"""Keeping one piece of a backend's knowledge fresh: a node's connections, a Cluster's
slot map, where Sentinel says the primary is.

All three fail the same way (Redis unreachable, then many requests noticing at once) and
want the same answer:
- one refresh at a time: callers that arrive while one runs wait for that one;
- fail fast during back-off: after a failed refresh, callers fail at once with its reason
  for ``backoff`` seconds instead of each waiting for an attempt of its own;
- log once per outage: a warning at the first failure, a line when it works again.
Background refreshes (``refresh_soon``) are rate-limited but not stopped by the back-off:
they are how a failover is noticed soon after the servers know of it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..errors import RedisUnavailable

T = TypeVar("T")


class Refresher:
    """Runs ``action`` (which raises ``RedisUnavailable`` when it fails) one at a time."""

    def __init__(
        self, action: Callable[[], Awaitable[None]], *, backoff: float, logger: logging.Logger,
        recovered: str, label: str = "", interval: float = 0.0,
    ) -> None:
        """``label`` prefixes the log lines (failure messages that name their server need
        none); ``recovered`` is logged when an attempt works after a failure; ``interval``
        is the least time between two background refreshes."""
        self._action = action
        self._backoff = backoff
        self._log = logger
        self._label = label
        self._recovered = recovered
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self.started_at = -math.inf  # when the last refresh began (``time.monotonic()``)
        self._failed_at = -math.inf
        self.failure = ""  # why the last attempt failed; "" once one works

    async def refresh(self) -> None:
        """Wait for a refresh: the one under way, else a new one."""
        task = self._task
        if task is None or task.done():
            self._fail_fast()
            task = self._start()
        # Shielded: a caller that gives up (its request timed out) does not cancel the
        # refresh the others are waiting for.
        await asyncio.shield(task)

    def refresh_soon(self) -> None:
        """Refresh in the background, unless one is under way or began within ``interval``."""
        if (self._task is None or self._task.done()) and \
                time.monotonic() - self.started_at >= self._interval:
            self._start()

    async def attempt(self, action: Callable[[], Awaitable[T]]) -> T:
        """A one-off attempt at what ``action`` reaches (a connection of its own, not one
        to share): it fails at once during back-off, and counts as a refresh would."""
        self._fail_fast()
        return await self._watched(action)

    def _fail_fast(self) -> None:
        if self.failure and time.monotonic() - self._failed_at < self._backoff:
            raise RedisUnavailable(self.failure)

    def _start(self) -> asyncio.Task[None]:
        self.started_at = time.monotonic()
        task = self._task = asyncio.create_task(self._watched(self._action))
        task.add_done_callback(self._collect)
        return task

    async def _watched(self, action: Callable[[], Awaitable[T]]) -> T:
        try:
            result = await action()
        except RedisUnavailable as exc:
            if not self.failure:  # once per outage, not once per attempt
                self._log.warning("%s", self._prefixed(exc.message))
            self.failure = exc.message
            self._failed_at = time.monotonic()
            raise
        if self.failure:
            self._log.info("%s", self._prefixed(self._recovered))
            self.failure = ""
        return result

    def _prefixed(self, message: str) -> str:
        return f"{self._label}: {message}" if self._label else message

    def _collect(self, task: asyncio.Task[None]) -> None:
        # A background refresh has no caller to raise to: its failure is kept in
        # ``failure`` (and logged); anything else is a bug worth a traceback.
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and not isinstance(exc, RedisUnavailable):
            self._log.error("%s", self._prefixed("refresh failed"), exc_info=exc)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
