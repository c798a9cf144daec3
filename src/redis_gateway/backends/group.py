"""The connections to one node under one set of credentials: a ``ConnectionGroup``.

A node (``node.py``) keeps one group for the gateway's own credentials and one per Redis
user a rule set runs as; each group has its few shared connections, which carry commands
from every request back to back, and its reserved ones, which one request at a time has
to itself (transactions, blocking commands), bounded together per node.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import hiredis

from ..connect import Address, TlsFiles, open_connection
from ..connection import Connection
from ..errors import CommandTimeout, RedisUnavailable
from ..observe import metrics
from ..redis_types import Argv
from ..resp import ReplyError
from ..settings import LimitSettings
from .refresher import Refresher

log = logging.getLogger("redis_gateway.backends")

# Runs before a group opens a connection; True: the server refused its credentials.
Prepare = Callable[[bool], Awaitable[None]]


def pack(commands: Sequence[Argv]) -> bytes:
    return b"".join([hiredis.pack_command(tuple(c)) for c in commands])  # type: ignore[arg-type]


class ConnectionGroup:
    """The connections to one node under one set of credentials.

    Shared connections (``shared`` of them, the least loaded takes the next batch) plus
    up to ``max_reserved`` reserved ones, kept idle between uses. A lost shared
    connection is reopened by one refresher: one reconnect at a time, failing fast
    during the back-off that follows a failed one.
    """

    def __init__(self, address: Address, tls: TlsFiles, limits: LimitSettings, *,
                 shared: int, slots: asyncio.Semaphore, max_reserved: int,
                 readonly: bool = False, prepare: Prepare | None = None) -> None:
        """``slots`` bounds the reserved connections of every group of the node together;
        ``readonly`` sends READONLY on every connection (a Cluster replica that serves
        reads); ``prepare(again)`` runs before a connection is opened (a managed user is
        made to exist), ``again`` after the server refused the credentials."""
        self.address = address
        self._prepare = prepare
        self._tls = tls
        self._limits = limits
        self._readonly = readonly
        self._shared: list[Connection | None] = [None] * shared
        # One shared connection per protocol for replies read with every type kept
        # apart (``exact``, see ``resp.py``).
        self._typed: dict[int, Connection] = {}
        self._typed_lock = asyncio.Lock()
        # Idle reserved connections, by reply reader (see ``run``).
        self._idle: dict[int | None, list[Connection]] = {None: [], 2: [], 3: []}
        self._reserved = slots
        self._max_reserved = max_reserved
        self._in_use = 0  # reserved connections this group's requests hold (for /metrics)
        self.used = time.monotonic()  # when it last ran shared commands (lanes: node.py)
        self._reconnect = Refresher(
            self._reconnect_shared, backoff=limits.reconnect_backoff, logger=log,
            recovered=f"Redis at {address.display()} answers again")

    def run(self, commands: Sequence[Argv], *, exact: int | None = None
            ) -> Awaitable[list[Any]]:
        """The commands back to back on a shared connection; their replies in order."""
        self.used = time.monotonic()
        first = self._shared[0]
        if exact is None and len(self._shared) == 1 and first is not None and first.alive:
            # The usual case, without a coroutine of its own: one shared connection, up.
            return first.send(pack(commands), len(commands), self._limits.command_timeout)
        return self._run_shared(commands, exact)

    async def _run_shared(self, commands: Sequence[Argv], exact: int | None) -> list[Any]:
        conn = await (self._shared_connection() if exact is None
                      else self._typed_connection(exact))
        return await conn.send(pack(commands), len(commands), self._limits.command_timeout)

    async def run_reserved(
        self, commands: Sequence[Argv], *, timeout: float, reusable: bool = True,
        exact: int | None = None,
    ) -> list[Any]:
        """The commands alone on a connection no other request uses meanwhile.
        ``reusable=False`` closes it afterwards (its state was changed, e.g. by SELECT)."""
        try:
            async with asyncio.timeout(self._limits.command_timeout):
                await self._reserved.acquire()
        except TimeoutError:
            raise RedisUnavailable(
                f"all {self._max_reserved} reserved connections (for transactions and "
                "blocking commands) are busy; raise max_dedicated_connections or retry"
            ) from None
        conn: Connection | None = None
        self._in_use += 1
        try:
            idle = self._idle[exact]
            while idle and conn is None:
                candidate = idle.pop()
                conn = candidate if candidate.alive else None
            if conn is None:
                conn = await self._reconnect.attempt(partial(self._open, exact))
            replies = await conn.send(pack(commands), len(commands), timeout)
            if reusable and conn.alive:
                idle.append(conn)
                conn = None
            return replies
        finally:
            if conn is not None:
                conn.close()
            self._in_use -= 1
            self._reserved.release()

    async def _shared_connection(self) -> Connection:
        alive = [c for c in self._shared if c is not None and c.alive]
        if len(alive) < len(self._shared):
            try:
                await self._reconnect.refresh()
            except RedisUnavailable:
                if not alive:
                    raise
                # The connections still up carry the load meanwhile.
            alive = [c for c in self._shared if c is not None and c.alive]
            if not alive:
                raise RedisUnavailable(self._reconnect.failure or
                                       f"connection to Redis at {self.address.display()} lost")
        return min(alive, key=lambda c: c.load)

    async def _reconnect_shared(self) -> None:
        for i, conn in enumerate(self._shared):
            if conn is None or not conn.alive:
                self._shared[i] = await self._open()
                if conn is not None:
                    metrics.sink.backend_event(self.address.display(), "reconnect")
                if conn is not None and not self._reconnect.failure:
                    # Lost, and back at the first try: no outage for the refresher to log.
                    log.info("reconnected to Redis at %s (%s)", self.address.display(),
                             conn.lost_reason)

    async def _typed_connection(self, protocol: int) -> Connection:
        async with self._typed_lock:
            conn = self._typed.get(protocol)
            if conn is None or not conn.alive:
                conn = self._typed[protocol] = await self._reconnect.attempt(
                    partial(self._open, protocol))
            return conn

    async def _open(self, exact: int | None = None) -> Connection:
        if self._prepare is not None:
            await self._prepare(False)
        try:
            conn = await self._connect(exact)
        except RedisUnavailable as exc:
            if self._prepare is None or "WRONGPASS" not in exc.message:
                raise
            # The user is gone (a restarted node, an ACL DELUSER): make it again, once.
            await self._prepare(True)
            conn = await self._connect(exact)
        if self._readonly:
            await self._allow_replica_reads(conn)
        return conn

    def _connect(self, exact: int | None) -> Awaitable[Connection]:
        return open_connection(
            self.address, tls=self._tls, timeout=self._limits.connect_timeout,
            typed=exact is not None, resp3=exact == 3,
            reply_limit=self._limits.max_reply_bytes,
        )

    def open_counts(self) -> tuple[int, int]:
        """(shared, reserved) connections open now, reserved ones idle or in use."""
        shared = [*self._shared, *self._typed.values()]
        idle = sum(len(conns) for conns in self._idle.values())
        return sum(1 for c in shared if c is not None and c.alive), idle + self._in_use

    @property
    def busy(self) -> bool:
        """Some connection of this group has commands in flight."""
        return any(c is not None and c.load for c in [*self._shared, *self._typed.values()])

    async def _allow_replica_reads(self, conn: Connection) -> None:
        where = self.address.display()
        try:
            reply = await conn.call("READONLY", timeout=self._limits.connect_timeout)
        except CommandTimeout:
            conn.close()
            raise RedisUnavailable(f"Redis at {where} did not answer READONLY") from None
        if isinstance(reply, ReplyError):
            conn.close()
            raise RedisUnavailable(f"Redis at {where} refused READONLY: {reply}")

    def close(self) -> None:
        self._reconnect.close()
        idle = [conn for conns in self._idle.values() for conn in conns]
        for conn in [*self._shared, *self._typed.values(), *idle]:
            if conn is not None:
                conn.close()
        self._idle = {None: [], 2: [], 3: []}
