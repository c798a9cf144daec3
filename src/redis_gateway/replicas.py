"""A primary with read replicas: writes on the primary, reads on a replica.

A batch (one command, a ``/pipeline``) goes to a replica only when every command
in it has the server's ``readonly`` flag, so a pipeline that writes then reads sees
its own write. Which replica: the one the batch's first key hashes to, so a key's
reads stay on one replica (and a SCAN's cursor on the node that made it). A replica
that is down, loading or cut from its primary hands its reads to the primary.
Transactions and blocking commands always run on the primary.

Replicas lag behind the primary: a client that must read what it just wrote uses a
backend with ``read_from_replicas = false`` (a token names its backend).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from hiredis import ReplyError

from .backend import Argv, StandaloneBackend, backend_address
from .commands import CommandTable
from .connection import Address
from .errors import GatewayError, RedisUnavailable
from .settings import BackendSettings, LimitSettings
from .slots import SlotFinder

log = logging.getLogger("redis_gateway.replicas")

# Runs commands on one node: shared (``run``) or reserved (``run_reserved``).
Send = Callable[[StandaloneBackend, Sequence[Argv]], Awaitable[list[Any]]]

# A replica answering these has no data to read right now; its primary has.
_REPLICA_NOT_READY = ("LOADING ", "MASTERDOWN ")


def node_address(url: str, template: Address) -> Address:
    """A node's URL; credentials the URL leaves out, and the database, from ``template``."""
    address = Address.parse(url)
    return dataclasses.replace(
        address, db=template.db, username=address.username or template.username,
        password=address.password or template.password,
    )


async def read_on_replica(
    replica: StandaloneBackend, commands: Sequence[Argv], send: Send,
    on_primary: Callable[[], Awaitable[list[Any]]],
) -> list[Any]:
    """Reads on ``replica``, or ``on_primary()`` when it cannot answer them now."""
    try:
        replies = await send(replica, commands)
    except RedisUnavailable:  # down, or in its reconnect back-off: fails at once
        return await on_primary()
    for reply in replies:
        if isinstance(reply, ReplyError) and str(reply).startswith(_REPLICA_NOT_READY):
            return await on_primary()
    return replies


def is_read_batch(table: CommandTable, commands: Sequence[Argv]) -> bool:
    for argv in commands:
        info = table.lookup(argv) if argv else None
        if info is None or "readonly" not in info.flags:
            return False
    return True


class ReplicaBackend:
    """A primary and read replicas at fixed addresses (``topology = "replicas"``)."""

    # Error replies from the primary meaning it cannot serve now: the request gets a
    # 503 (nothing was written) instead of a Redis error.
    unavailable_errors: tuple[str, ...] = ("LOADING ",)

    def __init__(
        self, name: str, settings: BackendSettings, limits: LimitSettings,
        primary: StandaloneBackend | None, replicas: Sequence[StandaloneBackend],
    ) -> None:
        self.name = name
        self._settings = settings
        self._limits = limits
        self._primary = primary
        self._replicas = list(replicas)
        self._reads_on_replicas = settings.replica_reads
        self._table: CommandTable | None = None
        self._finder: SlotFinder | None = None

    @classmethod
    def from_settings(
        cls, name: str, settings: BackendSettings, limits: LimitSettings
    ) -> ReplicaBackend:
        template = backend_address(settings)
        replicas = [
            StandaloneBackend(f"{name} replica {i + 1}", settings, limits,
                              address=node_address(url, template))
            for i, url in enumerate(settings.replicas)
        ]
        return cls(name, settings, limits, StandaloneBackend(name, settings, limits), replicas)

    @property
    def label(self) -> str:
        primary = self._primary.label if self._primary else "primary not known yet"
        reads = "reads on replicas" if self._reads_on_replicas else "reads on the primary"
        return f"{primary} + {len(self._replicas)} replica(s), {reads}"

    # where commands go ----------------------------------------------------------------
    async def _current_primary(self) -> StandaloneBackend:
        assert self._primary is not None  # fixed addresses: always known
        return self._primary

    def _primary_trouble(self) -> None:
        """The primary failed or refused; a Sentinel backend asks where it is now."""

    async def _on_primary(self, commands: Sequence[Argv], send: Send) -> list[Any]:
        primary = await self._current_primary()
        try:
            replies = await send(primary, commands)
        except GatewayError:
            self._primary_trouble()
            raise
        for reply in replies:
            if isinstance(reply, ReplyError) and str(reply).startswith(self.unavailable_errors):
                self._primary_trouble()
                raise RedisUnavailable(
                    f"Redis at {primary.label} cannot take writes now ({reply}); nothing was "
                    "written, retry shortly"
                )
        return replies

    async def _replica_for(self, commands: Sequence[Argv]) -> StandaloneBackend | None:
        if not self._reads_on_replicas or not self._replicas:
            return None
        table = await self.command_table()
        if self._finder is None or not is_read_batch(table, commands):
            return None
        slot = await self._finder.slot(commands[0])
        replicas = self._replicas
        return replicas[max(slot, 0) % len(replicas)]

    async def _ask_keys(self, argv: Argv) -> list[bytes]:
        (reply,) = await self._on_primary([[b"COMMAND", b"GETKEYS", *argv]], shared())
        return reply if isinstance(reply, list) else []

    # Backend interface -------------------------------------------------------------
    async def command_table(self) -> CommandTable:
        if self._table is None:
            try:
                (reply,) = await self._on_primary([[b"COMMAND"]], shared())
            except GatewayError:
                if not self._replicas:
                    raise
                # Reads can go on while the primary is down: any node has the table.
                (reply,) = await self._replicas[0].run([[b"COMMAND"]])
            if not isinstance(reply, list) or not reply:
                raise RedisUnavailable(f"Redis at {self.label} did not list its commands: "
                                       f"{reply}")
            self._table = CommandTable.from_command_info(reply)
            self._finder = SlotFinder(self._table, self._ask_keys)
        return self._table

    async def run(self, commands: Sequence[Argv], *, exact: int | None = None) -> list[Any]:
        send = shared(exact)
        replica = await self._replica_for(commands)
        if replica is None:
            return await self._on_primary(commands, send)
        return await read_on_replica(replica, commands, send,
                                     lambda: self._on_primary(commands, send))

    async def run_reserved(
        self, commands: Sequence[Argv], *, timeout: float, reusable: bool = True,
        exact: int | None = None,
    ) -> list[Any]:
        return await self._on_primary(commands, reserved(timeout, reusable, exact))

    async def ping(self) -> bool:
        """Ready means writes can be served: the primary answers."""
        try:
            primary = await self._current_primary()
        except GatewayError:
            return False
        return await primary.ping()

    async def close(self) -> None:
        for node in [*self._replicas, *([self._primary] if self._primary else [])]:
            await node.close()


def shared(exact: int | None = None) -> Send:
    """How to send commands to a node: on its shared connection."""
    async def send(node: StandaloneBackend, argvs: Sequence[Argv]) -> list[Any]:
        return await node.run(argvs, exact=exact)

    return send


def reserved(timeout: float, reusable: bool, exact: int | None) -> Send:
    """How to send commands to a node: alone, on a reserved connection."""
    async def send(node: StandaloneBackend, argvs: Sequence[Argv]) -> list[Any]:
        return await node.run_reserved(argvs, timeout=timeout, reusable=reusable, exact=exact)

    return send
