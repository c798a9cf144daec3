"""A Redis Cluster's topology as the gateway knows it: which shard serves each slot.

The map is read from the cluster (``CLUSTER SHARDS``, or ``SLOTS`` on older servers) at
the first request and again whenever it proves stale: a MOVED reply (resharding,
failover), a node that cannot be reached or does not answer, CLUSTERDOWN; and every
``MAP_MAX_AGE`` seconds while requests come, so that replicas that were loading or down
when it was read get their share of reads once healthy. Nodes that leave the map are
closed once the requests already sent to them are done.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from ...connect import Address
from ...errors import GatewayError, RedisUnavailable
from ...settings import BackendSettings, LimitSettings
from ..node import Endpoint, Node, Nodes
from ..refresher import Refresher
from ..slots import SLOTS
from .layout import ShardLayout, parse_shards, parse_slots

log = logging.getLogger("redis_gateway.backends.cluster")

# A stale map shows on many requests at once; one re-read per interval serves them all.
REFRESH_INTERVAL = 0.1
MAP_MAX_AGE = 10.0


class Shard:
    __slots__ = ("primary", "replicas")

    def __init__(self, primary: Node, replicas: list[Node]) -> None:
        self.primary = primary
        self.replicas = replicas

    def reader(self, slot: int) -> Node | None:
        """The replica for reads of ``slot``: one per slot, so a key's reads stay on one."""
        return self.replicas[max(slot, 0) % len(self.replicas)] if self.replicas else None


class SlotMap:
    """The shards by slot, and the nodes behind them."""

    def __init__(self, name: str, settings: BackendSettings, limits: LimitSettings) -> None:
        self._name = name
        self._limits = limits
        # READONLY on every connection when replicas serve reads: harmless on a primary,
        # and a primary demoted by a failover then keeps serving reads.
        self.nodes = Nodes(settings, limits, readonly=settings.replica_reads)
        self._tls = self.nodes.template.tls
        # Seeds are where the map is read when no known node answers; they are reached
        # like the URL's node, and never retired.
        self._seed_nodes = Nodes(settings, limits, readonly=settings.replica_reads)
        seeds = [self.nodes.template, *(Address.parse(url) for url in settings.seeds)]
        self._seeds = [self._seed_nodes.at((a.host, a.port)) for a in seeds]
        self.shards: list[Shard] = []  # by first slot: SCAN cursors count on the order
        # The shard of each slot, read by the router for every command; only this class
        # changes it.
        self.by_slot: list[Shard | None] = [None] * SLOTS
        self._by_primary: dict[Endpoint, Shard] = {}
        self._listed: set[Endpoint] = set()  # every node the cluster itself named
        self._layout: list[ShardLayout] = []
        self._retiring: set[asyncio.Task[None]] = set()
        self._refresher = Refresher(
            self._read, backoff=limits.reconnect_backoff, logger=log,
            label=f"backend '{name}'", recovered="the Redis Cluster slot map is read again",
            interval=REFRESH_INTERVAL)

    @property
    def failure(self) -> str:
        """Why the map could not be read last time, or ""."""
        return self._refresher.failure

    async def ready(self) -> None:
        """Read the map if there is none yet; fails at once while a recent read failed."""
        if not self.shards:
            await self._refresher.refresh()

    def stale(self) -> None:
        """Re-read the map in the background, unless that was done moments ago."""
        self._refresher.refresh_soon()

    def keep_fresh(self) -> None:
        """Re-read the map in the background once it is ``MAP_MAX_AGE`` old."""
        if time.monotonic() - self._refresher.started_at > MAP_MAX_AGE:
            self.stale()

    def lists(self, endpoint: Endpoint) -> bool:
        """Whether the cluster named this node (a primary or a replica) when last read."""
        return endpoint in self._listed

    def moved(self, slot: int, endpoint: Endpoint) -> None:
        """MOVED to a node the map lists: the slot is served there now. Fix it at once;
        re-read the rest."""
        shard = self._by_primary.get(endpoint)
        if shard is None:
            shard = self._by_primary[endpoint] = Shard(self.nodes.at(endpoint), [])
        self.by_slot[slot] = shard
        self.stale()

    # reading the map -------------------------------------------------------------------
    async def _read(self) -> None:
        failures: list[str] = []
        # Known primaries first, in random order so that one stuck node does not delay
        # every refresh; then replicas; the seeds when nothing else answers.
        primaries = [s.primary for s in self.shards]
        replicas = [r for s in self.shards for r in s.replicas]
        candidates = [*random.sample(primaries, len(primaries)),
                      *random.sample(replicas, len(replicas)), *self._seeds]
        for node in candidates:
            try:
                async with asyncio.timeout(self._limits.connect_timeout):
                    layout = await self._ask_layout(node)
            except TimeoutError:
                failures.append(f"{node.label} did not answer within "
                                f"{self._limits.connect_timeout:g} s")
                continue
            except GatewayError as exc:
                failures.append(exc.message)
                continue
            if layout:
                self._apply(layout)
                return
            failures.append(f"{node.label} has no slots assigned")
        raise RedisUnavailable("cannot read the Redis Cluster slot map: "
                               + "; ".join(dict.fromkeys(failures)))

    async def _ask_layout(self, node: Node) -> list[ShardLayout]:
        host = node.endpoint[0]
        (reply,) = await node.run([[b"CLUSTER", b"SHARDS"]])
        if isinstance(reply, list):
            return parse_shards(reply, tls=self._tls, asked_host=host)
        disabled = "cluster support disabled" in str(reply)
        if not disabled:  # Redis 6, or a managed service without SHARDS
            (reply,) = await node.run([[b"CLUSTER", b"SLOTS"]])
            if isinstance(reply, list):
                return parse_slots(reply, asked_host=host)
        hint = "; use topology = \"standalone\"" if disabled else ""
        raise RedisUnavailable(f"Redis at {node.label} did not give its slot map: {reply}{hint}")

    def _apply(self, layout: list[ShardLayout]) -> None:
        layout = sorted(layout, key=lambda shard: shard.first_slot)
        slots: list[Shard | None] = [None] * SLOTS
        shards: list[Shard] = []
        for described in layout:
            shard = Shard(self.nodes.at(described.primary),
                          [self.nodes.at(r) for r in described.replicas])
            for start, end in described.ranges:
                slots[start : end + 1] = [shard] * (end - start + 1)
            shards.append(shard)
        self.by_slot, self.shards = slots, shards
        self._by_primary = {s.primary.endpoint: s for s in shards}
        if layout != self._layout:
            log.info("backend '%s': %d shards: %s", self._name, len(shards), ", ".join(
                f"{d.primary[0]}:{d.primary[1]} ({len(d.replicas)} replicas)" for d in layout))
            self._layout = layout
        in_use = self._listed = {e for d in layout for e in (d.primary, *d.replicas)}
        for node in self.nodes:
            if node.endpoint not in in_use:
                self.nodes.drop(node.endpoint)
                self._retire(node)

    def _retire(self, node: Node) -> None:
        async def close_later() -> None:
            # Requests already sent there (a blocking one may wait its cap) finish first.
            try:
                await asyncio.sleep(self._limits.command_timeout + self._limits.max_block_seconds)
            finally:
                await node.close()

        task = asyncio.create_task(close_later())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def close(self) -> None:
        self._refresher.close()
        for task in self._retiring:
            task.cancel()
        await self.nodes.close()
        await self._seed_nodes.close()
