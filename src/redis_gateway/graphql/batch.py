"""One round trip per GraphQL operation level.

Resolvers of sibling fields start in the same event-loop turn; each asks ``Batch`` for
its command's reply, and the batch sends everything asked for in that turn as one
pipeline through the executor (so every command still meets the token's rules). A
query with fifty aliased ``get`` fields is one round trip, not fifty.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from ..auth import Principal
from ..errors import GatewayError, LimitExceeded, RedisCommandError
from ..executor import Executor
from ..resp import ReplyError


class Batch:
    def __init__(self, executor: Executor, principal: Principal, max_commands: int) -> None:
        self._executor = executor
        self._principal = principal
        self._max_commands = max_commands
        self._pending: list[tuple[Sequence[bytes], bool, asyncio.Future[Any]]] = []
        self._commands = 0
        self._sending: set[asyncio.Future[None]] = set()  # keeps running sends referenced

    def charge(self, count: int) -> None:
        """Count commands against the per-operation limit."""
        self._commands += count
        if self._commands > self._max_commands:
            raise LimitExceeded(
                f"this operation runs more than {self._max_commands} commands "
                "(limits.max_commands)"
            )

    async def run(self, argv: Sequence[bytes], *, read_only: bool) -> Any:
        """The command's reply; a Redis error reply is raised as ``RedisCommandError``."""
        self.charge(1)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((argv, read_only, future))
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for read_only in (True, False):
            group = [p for p in pending if p[1] == read_only]
            if group:
                task = asyncio.ensure_future(self._send(group, read_only))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)

    async def _send(
        self, group: list[tuple[Sequence[bytes], bool, asyncio.Future[Any]]], read_only: bool
    ) -> None:
        try:
            replies = await self._executor.pipeline(
                self._principal, [argv for argv, _, _ in group], read_only=read_only
            )
        except Exception as exc:  # every waiter must hear of it, or its request hangs
            for _, _, future in group:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), reply in zip(group, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, GatewayError):
                future.set_exception(reply)
            elif isinstance(reply, ReplyError):
                future.set_exception(RedisCommandError(str(reply)))
            else:
                future.set_result(reply)
