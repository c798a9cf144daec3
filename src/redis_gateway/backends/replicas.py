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

from collections.abc import Sequence
from typing import Any

from ..acl import RedisUser
from ..commands import CommandTable
from ..errors import GatewayError, RedisUnavailable
from ..redis_types import Argv
from ..resp import ReplyError
from ..settings import BackendSettings, LimitSettings
from .node import (
    Dispatch,
    Node,
    Nodes,
    command_listing,
    on_reserved,
    on_shared,
    read_on_replica,
)
from .slots import SlotFinder


class ReplicaBackend:
    """A primary and read replicas at fixed addresses (``topology = "replicas"``)."""

    # Error replies from the primary meaning it cannot serve now: the request gets a
    # 503 (nothing was written) instead of a Redis error.
    unavailable_errors: tuple[str, ...] = ("LOADING ",)

    def __init__(self, name: str, settings: BackendSettings, nodes: Nodes,
                 primary: Node | None, replicas: Sequence[Node]) -> None:
        self.name = name
        self._nodes = nodes
        self._primary = primary
        self._replicas = list(replicas)
        self._reads_on_replicas = settings.replica_reads
        self._table: CommandTable | None = None
        self._finder: SlotFinder | None = None

    @classmethod
    def from_settings(
        cls, name: str, settings: BackendSettings, limits: LimitSettings
    ) -> ReplicaBackend:
        nodes = Nodes(settings, limits)
        return cls(name, settings, nodes, nodes.from_url(),
                   [nodes.from_url(url) for url in settings.replicas])

    @property
    def label(self) -> str:
        primary = self._primary.label if self._primary else "primary not known yet"
        reads = "reads on replicas" if self._reads_on_replicas else "reads on the primary"
        return f"{primary} + {len(self._replicas)} replica(s), {reads}"

    # where commands go ----------------------------------------------------------------
    async def _current_primary(self) -> Node:
        assert self._primary is not None  # fixed addresses: always known
        return self._primary

    def _primary_trouble(self) -> None:
        """The primary failed or refused; a Sentinel backend asks where it is now."""

    async def pubsub_node(self, shard_channel: bytes | None = None) -> Node:
        return await self._current_primary()

    async def _on_primary(self, commands: Sequence[Argv], dispatch: Dispatch) -> list[Any]:
        primary = await self._current_primary()
        try:
            replies = await dispatch(primary, commands)
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

    async def _replica_for(self, commands: Sequence[Argv]) -> Node | None:
        if not self._reads_on_replicas or not self._replicas:
            return None
        await self.command_table()
        if self._finder is None or not self._finder.reads_only(commands):
            return None
        slot = await self._finder.slot(commands[0])
        replicas = self._replicas
        return replicas[max(slot, 0) % len(replicas)]

    async def _ask_keys(self, argv: Argv) -> list[bytes]:
        (reply,) = await self._on_primary([[b"COMMAND", b"GETKEYS", *argv]], on_shared())
        return reply if isinstance(reply, list) else []

    # Backend interface -------------------------------------------------------------
    async def command_table(self) -> CommandTable:
        if self._table is None:
            try:
                listing = await command_listing(await self._current_primary())
            except GatewayError:
                self._primary_trouble()
                if not self._replicas:
                    raise
                # Reads can go on while the primary is down: any node has the table.
                listing = await command_listing(self._replicas[0])
            self._table = CommandTable.from_command_info(listing)
            self._finder = SlotFinder(self._table, self._ask_keys)
        return self._table

    async def run(self, commands: Sequence[Argv], *, exact: int | None = None,
                  user: RedisUser | None = None) -> list[Any]:
        dispatch = on_shared(exact, user)
        replica = await self._replica_for(commands)
        if replica is None:
            return await self._on_primary(commands, dispatch)
        return await read_on_replica(replica, commands, dispatch,
                                     lambda: self._on_primary(commands, dispatch))

    async def run_reserved(
        self, commands: Sequence[Argv], *, timeout: float, reusable: bool = True,
        exact: int | None = None, user: RedisUser | None = None,
    ) -> list[Any]:
        return await self._on_primary(commands, on_reserved(timeout, reusable, exact, user))

    async def ping(self) -> bool:
        """Ready means writes can be served: the primary answers."""
        try:
            primary = await self._current_primary()
        except GatewayError:
            return False
        return await primary.ping()

    def nodes(self) -> list[Node]:
        return list(self._nodes)

    async def close(self) -> None:
        await self._nodes.close()
