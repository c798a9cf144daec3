"""Redis Cluster behind the one Backend interface (``topology = "cluster"``).

The pieces: ``slotmap`` knows which shard serves each slot (read from the cluster,
corrected by MOVED, re-read when stale), ``router`` decides where each command of a
batch runs and puts the replies back, ``slots`` finds a command's slot from the live
command table. Every node is a ``Node``: its shared connection with commands written
back to back, its reserved connections, its fail-fast back-off, and the TLS and ACL
credentials of the backend's URL and settings.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ...acl import RedisUser
from ...commands import CommandTable
from ...errors import GatewayError, RedisUnavailable
from ...redis_types import Argv
from ...resp import ReplyError
from ...settings import BackendSettings, LimitSettings
from ..node import Node, command_listing, on_reserved, on_shared
from ..slots import SlotFinder, key_slot
from .router import UNAVAILABLE, Router
from .slotmap import SlotMap
from .tips import command_tips

T = TypeVar("T")


class ClusterBackend:
    """``topology = "cluster"``: the Backend interface over every node of a Redis Cluster."""

    def __init__(self, name: str, settings: BackendSettings, limits: LimitSettings) -> None:
        self.name = name
        self._map = SlotMap(name, settings, limits)
        self._replica_reads = settings.replica_reads
        self._table: CommandTable | None = None
        self._finder: SlotFinder | None = None
        self._router: Router | None = None

    @property
    def label(self) -> str:
        shards = f", {len(self._map.shards)} shards" if self._map.shards else ""
        return f"Redis Cluster via {self._map.nodes.template.display()}{shards}"

    async def _ready(self) -> Router:
        if self._router is None:
            await self.command_table()
        assert self._router is not None
        return self._router

    async def _on_any_primary(self, call: Callable[[Node], Awaitable[T]]) -> T:
        """``call`` on whichever primary answers."""
        primaries = [s.primary for s in self._map.shards]
        failure = RedisUnavailable(self._map.failure or "no Redis Cluster node")
        for node in random.sample(primaries, len(primaries)):
            try:
                return await call(node)
            except RedisUnavailable as exc:
                failure = exc
                self._map.stale()
        raise failure

    async def _ask_keys(self, argv: Argv) -> list[bytes]:
        async def getkeys(node: Node) -> Any:
            (reply,) = await node.run([[b"COMMAND", b"GETKEYS", *argv]])
            return reply

        reply = await self._on_any_primary(getkeys)
        return reply if isinstance(reply, list) else []  # an error: no keys, Redis will say

    # Backend interface ---------------------------------------------------------------
    async def command_table(self) -> CommandTable:
        if self._table is None:
            await self._map.ready()
            listing = await self._on_any_primary(command_listing)
            table = CommandTable.from_command_info(listing)
            self._finder = SlotFinder(table, self._ask_keys)
            self._router = Router(self._map, self._finder, table, command_tips(listing))
            self._table = table
        return self._table

    async def run(self, commands: Sequence[Argv], *, exact: int | None = None,
                  user: RedisUser | None = None) -> list[Any]:
        if len(commands) == 1 and self._finder is not None:
            replies = await self._run_one(commands, exact, user)
            if replies is not None:
                return replies
        router = await self._ready()
        return await router.run(commands, on_shared(exact, user), reads=self._replica_reads)

    async def _run_one(self, commands: Sequence[Argv], exact: int | None,
                       user: RedisUser | None) -> list[Any] | None:
        """The common case, a single-key command on the primary, without the batch
        machinery (it costs more than the routing); None to take the general path."""
        assert self._finder is not None
        slot = self._finder.slot_now(commands[0])
        if slot is None or (self._replica_reads and self._finder.is_read(commands[0])):
            return None
        shard = self._map.by_slot[slot]
        if shard is None:
            return None
        self._map.keep_fresh()
        try:
            replies = await shard.primary.run(commands, exact=exact, user=user)
        except GatewayError:
            self._map.stale()
            raise
        reply = replies[0]
        # A redirect or "cannot serve now" means the command did not run: the general
        # path may send it again, where it belongs.
        if isinstance(reply, ReplyError) and str(reply).startswith(("MOVED ", "ASK ",
                                                                    *UNAVAILABLE)):
            return None
        return replies

    async def run_reserved(
        self, commands: Sequence[Argv], *, timeout: float, reusable: bool = True,
        exact: int | None = None, user: RedisUser | None = None,
    ) -> list[Any]:
        router = await self._ready()
        dispatch = on_reserved(timeout, reusable, exact, user)
        if len(commands) > 1 and commands[0] and commands[0][0].upper() == b"MULTI":
            return await router.transaction(commands, dispatch)
        return await router.run(commands, dispatch, reads=False)

    def nodes(self) -> list[Node]:
        return list(self._map.nodes)

    async def pubsub_node(self, shard_channel: bytes | None = None) -> Node:
        """A shard channel's primary; plain pub/sub and MONITOR on the first primary
        (a Cluster forwards PUBLISH to every node, so any one hears every channel)."""
        await self._map.ready()
        if shard_channel is None:
            shard = self._map.shards[0] if self._map.shards else None
        else:
            shard = self._map.by_slot[key_slot(shard_channel)]
        if shard is None:
            raise RedisUnavailable(self._map.failure or "no Redis Cluster node serves "
                                   "that channel's slot")
        return shard.primary

    async def ping(self) -> bool:
        """Ready when every primary answers: each serves a part of the keys."""
        try:
            await self.command_table()
            replies = await asyncio.gather(*(s.primary.run([[b"PING"]])
                                             for s in self._map.shards))
        except GatewayError:
            return False
        return all(reply == [b"PONG"] for reply in replies)

    async def close(self) -> None:
        await self._map.close()
