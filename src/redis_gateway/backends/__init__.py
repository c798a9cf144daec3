"""Backends: where commands go once the core has decided they may run.

Front doors never see this package; the executor calls a ``Backend``. A backend owns
its connections and its command table. The standalone backend is one Redis server
(``node``); ``replicas``, ``sentinel`` and ``cluster`` implement the same interface over
several, so routing by role or slot stays behind it. Each builds on ``node`` and none
imports this module: the factory below is the one place that knows them all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

from ..acl import RedisUser
from ..commands import CommandTable
from ..redis_types import Argv
from ..settings import BackendSettings, LimitSettings
from .node import Node, StandaloneBackend


class Backend(Protocol):
    name: str

    @property
    def label(self) -> str: ...

    async def command_table(self) -> CommandTable: ...

    def run(self, commands: Sequence[Argv], *, exact: int | None = None,
            user: RedisUser | None = None) -> Awaitable[list[Any]]:
        """Run commands on a shared connection, back to back; one reply each, in order.

        ``exact=2`` or ``3`` reads replies with every RESP type kept apart (``resp.py``),
        over RESP2 or RESP3; the default reads them with hiredis, fastest. ``user``: the
        Redis user to run them as (a token's rule set, ``enforcement.py``); None: the
        gateway's own.
        """

    def run_reserved(
        self, commands: Sequence[Argv], *, timeout: float, reusable: bool = True,
        exact: int | None = None, user: RedisUser | None = None,
    ) -> Awaitable[list[Any]]:
        """Run commands alone on a connection no other request uses meanwhile.

        For MULTI/EXEC and blocking commands. ``reusable=False`` closes the
        connection afterwards (its state was changed, e.g. by SELECT).
        """

    async def ping(self) -> bool: ...

    async def pubsub_node(self, shard_channel: bytes | None = None) -> Node:
        """Where a subscriber connects: the node that owns ``shard_channel``'s slot (for
        SSUBSCRIBE), or with None the one node that carries plain pub/sub and MONITOR."""

    def nodes(self) -> list[Node]:
        """The servers known now (a topology learns them as it goes)."""

    async def close(self) -> None: ...


def make_backend(name: str, settings: BackendSettings, limits: LimitSettings) -> Backend:
    """The backend for one configured Redis deployment, by its topology."""
    # Imported here: a topology's modules load only when it is configured (import time
    # counts on Lambda, where the standalone backend is the usual one).
    if settings.topology == "cluster":
        from .cluster.backend import ClusterBackend

        return ClusterBackend(name, settings, limits)
    if settings.topology == "replicas":
        from .replicas import ReplicaBackend

        return ReplicaBackend.from_settings(name, settings, limits)
    if settings.topology == "sentinel":
        from .sentinel import SentinelBackend

        return SentinelBackend(name, settings, limits)
    return StandaloneBackend(name, settings, limits)
