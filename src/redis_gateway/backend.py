"""Backends: where commands go once the core has decided they may run.

Front doors never see this module; the executor calls a ``Backend``. A backend
owns its connections and its command table. ``StandaloneBackend`` is one Redis
server. Cluster, replica and Sentinel backends implement the same interface, so
routing by slot or role stays behind it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

import hiredis

from .commands import CommandTable
from .connection import Address, Connection, TlsFiles, open_connection
from .errors import CommandTimeout, RedisUnavailable
from .settings import BackendSettings, LimitSettings

log = logging.getLogger("redis_gateway.backend")

Argv = Sequence[bytes]


class Backend(Protocol):
    name: str

    @property
    def label(self) -> str: ...

    async def command_table(self) -> CommandTable: ...

    async def run(self, commands: Sequence[Argv], *, exact: int | None = None) -> list[Any]:
        """Run commands on a shared connection, back to back; one reply each, in order.

        ``exact=2`` or ``3`` reads replies with every RESP type kept apart (``resp.py``),
        over RESP2 or RESP3; the default reads them with hiredis, fastest.
        """

    async def run_reserved(
        self, commands: Sequence[Argv], *, timeout: float, reusable: bool = True,
        exact: int | None = None,
    ) -> list[Any]:
        """Run commands alone on a connection no other request uses meanwhile.

        For MULTI/EXEC and blocking commands. ``reusable=False`` closes the
        connection afterwards (its state was changed, e.g. by SELECT).
        """

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


def make_backend(name: str, settings: BackendSettings, limits: LimitSettings) -> Backend:
    """The backend for one configured Redis deployment, by its topology."""
    # Imported here: a topology's module loads only when configured (import time counts
    # on Lambda), and each builds on StandaloneBackend from this module.
    if settings.topology == "cluster":
        from .cluster import ClusterBackend

        return ClusterBackend(name, settings, limits)
    if settings.topology == "replicas":
        from .replicas import ReplicaBackend

        return ReplicaBackend.from_settings(name, settings, limits)
    if settings.topology == "sentinel":
        from .sentinel import SentinelBackend

        return SentinelBackend(name, settings, limits)
    return StandaloneBackend(name, settings, limits)


def backend_address(settings: BackendSettings) -> Address:
    """The address in the backend's URL, with ``username``/``password`` settings applied."""
    address = Address.parse(settings.url)
    if settings.username is not None or settings.password is not None:
        address = dataclasses.replace(
            address, username=settings.username or address.username,
            password=settings.password or address.password,
        )
    return address


def pack(commands: Sequence[Argv]) -> bytes:
    return b"".join([hiredis.pack_command(tuple(c)) for c in commands])  # type: ignore[arg-type]


class StandaloneBackend:
    """One Redis server: a few shared connections plus a bounded set of reserved ones."""

    def __init__(
        self, name: str, settings: BackendSettings, limits: LimitSettings, *,
        address: Address | None = None, readonly: bool = False,
    ) -> None:
        """``address`` overrides the settings' URL (a node of a topology); ``readonly``
        sends READONLY on every connection (a Redis Cluster replica that serves reads)."""
        self.name = name
        self._address = address or backend_address(settings)
        self._readonly = readonly
        self._tls = TlsFiles(settings.tls_ca_file, settings.tls_cert_file,
                             settings.tls_key_file, settings.tls_check_hostname)
        self._limits = limits
        self._shared: list[Connection | None] = [None] * settings.connections
        self._exact: dict[int, Connection] = {}
        # Idle reserved connections, by reply reader (see ``run``).
        self._idle: dict[int | None, list[Connection]] = {None: [], 2: [], 3: []}
        self._reserved = asyncio.Semaphore(settings.max_dedicated_connections)
        self._max_reserved = settings.max_dedicated_connections
        self._connect_lock = asyncio.Lock()
        self._retry_at = 0.0
        self._last_failure = ""
        self._table: CommandTable | None = None

    @property
    def label(self) -> str:
        return self._address.display()

    # connections --------------------------------------------------------------
    async def _open(self, exact: int | None = None) -> Connection:
        """Connect, failing at once while a recent attempt has just failed."""
        if time.monotonic() < self._retry_at:
            raise RedisUnavailable(self._last_failure)
        try:
            conn = await open_connection(
                self._address, tls=self._tls, timeout=self._limits.connect_timeout,
                typed=exact is not None, resp3=exact == 3,
                reply_limit=self._limits.max_reply_bytes,
            )
            if self._readonly:
                await self._allow_replica_reads(conn)
            return conn
        except RedisUnavailable as exc:
            if exc.message != self._last_failure:
                log.warning("%s", exc.message)
            self._last_failure = exc.message
            self._retry_at = time.monotonic() + self._limits.reconnect_backoff
            raise

    async def _allow_replica_reads(self, conn: Connection) -> None:
        try:
            reply = await conn.call("READONLY", timeout=self._limits.connect_timeout)
        except CommandTimeout:
            raise RedisUnavailable(f"Redis at {self.label} did not answer READONLY") from None
        if isinstance(reply, hiredis.ReplyError):
            conn.close()
            raise RedisUnavailable(f"Redis at {self.label} refused READONLY: {reply}")

    async def _shared_connection(self) -> Connection:
        alive = [c for c in self._shared if c is not None and c.alive]
        if len(alive) == len(self._shared):
            return min(alive, key=lambda c: c.load)
        async with self._connect_lock:
            for i, conn in enumerate(self._shared):
                if conn is not None and conn.alive:
                    continue
                try:
                    self._shared[i] = await self._open()
                except RedisUnavailable:
                    if alive:  # the connections still up carry the load meanwhile
                        return min(alive, key=lambda c: c.load)
                    raise
                if conn is not None:
                    log.info("reconnected to Redis at %s", self.label)
        return min((c for c in self._shared if c is not None), key=lambda c: c.load)

    async def _exact_connection(self, protocol: int) -> Connection:
        async with self._connect_lock:
            conn = self._exact.get(protocol)
            if conn is None or not conn.alive:
                conn = self._exact[protocol] = await self._open(protocol)
            return conn

    # Backend interface ---------------------------------------------------------
    async def command_table(self) -> CommandTable:
        if self._table is None:
            # Plain COMMAND is COMMAND INFO for every command, on Redis 6 as on 7+.
            (reply,) = await self.run([[b"COMMAND"]])
            if not isinstance(reply, list) or not reply:
                raise RedisUnavailable(f"Redis at {self.label} did not list its commands: "
                                       f"{reply}")
            self._table = CommandTable.from_command_info(reply)
        return self._table

    async def run(self, commands: Sequence[Argv], *, exact: int | None = None) -> list[Any]:
        if exact is None:
            first = self._shared[0]
            # The usual case, without a coroutine of its own: one shared connection, up.
            conn = first if len(self._shared) == 1 and first is not None and first.alive \
                else await self._shared_connection()
        else:
            conn = await self._exact_connection(exact)
        return await conn.send(pack(commands), len(commands), self._limits.command_timeout)

    async def run_reserved(
        self, commands: Sequence[Argv], *, timeout: float, reusable: bool = True,
        exact: int | None = None,
    ) -> list[Any]:
        try:
            async with asyncio.timeout(self._limits.command_timeout):
                await self._reserved.acquire()
        except TimeoutError:
            raise RedisUnavailable(
                f"all {self._max_reserved} reserved connections (for transactions and "
                "blocking commands) are busy; raise max_dedicated_connections or retry"
            ) from None
        conn: Connection | None = None
        try:
            idle = self._idle[exact]
            while idle and conn is None:
                candidate = idle.pop()
                conn = candidate if candidate.alive else None
            if conn is None:
                conn = await self._open(exact)
            replies = await conn.send(pack(commands), len(commands), timeout)
            if reusable and conn.alive:
                idle.append(conn)
                conn = None
            return replies
        finally:
            if conn is not None:
                conn.close()
            self._reserved.release()

    async def ping(self) -> bool:
        try:
            (reply,) = await self.run([[b"PING"]])
        except (RedisUnavailable, TimeoutError):
            return False
        return bool(reply == b"PONG")

    async def close(self) -> None:
        idle = [conn for conns in self._idle.values() for conn in conns]
        for conn in [*self._shared, *self._exact.values(), *idle]:
            if conn is not None:
                conn.close()
        self._idle = {None: [], 2: [], 3: []}
