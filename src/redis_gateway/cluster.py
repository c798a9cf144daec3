"""Redis Cluster behind the one Backend interface (``topology = "cluster"``).

The slot map is read from the cluster (``CLUSTER SHARDS``, or ``SLOTS`` on older
servers) at the first request and again whenever it proves stale: a MOVED reply
(resharding, failover), a node that cannot be reached or does not answer,
CLUSTERDOWN. Every node is a ``StandaloneBackend``: its one shared connection with
commands written back to back, its reserved connections, its fail-fast back-off,
and the TLS and ACL credentials of the backend's URL and settings.

A command goes to the primary of its keys' slot, or to one of that shard's replicas
for reads when ``read_from_replicas`` is on. A batch is split by node, sent to every
node at once, and its replies are put back in the request's order; the commands for
one node keep their order, and a keyless command that runs on every primary (see
``fanout.py``) waits for the commands before it. Replies that redirect are re-sent
where they point: MOVED (the slot lives elsewhere now; the map is corrected) and ASK
(this key is being migrated: ASKING, then the command, on the importing node).

Not done, on purpose: a command whose keys span slots is not split into several
(Redis answers CROSSSLOT and atomicity is kept), and a transaction must keep all its
keys in one slot (a clear 400 before anything runs).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import random
import time
from collections.abc import Sequence
from typing import Any

from hiredis import ReplyError

from .backend import Argv, StandaloneBackend, backend_address
from .commands import CommandTable
from .connection import Address
from .errors import BadRequest, GatewayError, RedisUnavailable
from .fanout import FanOut, fan_outs, merge
from .replicas import Send, read_on_replica, reserved, shared
from .settings import BackendSettings, LimitSettings
from .slotmap import Endpoint, ShardLayout, parse_shards, parse_slots
from .slots import KEYLESS, SLOTS, SlotFinder, key_slot

log = logging.getLogger("redis_gateway.cluster")

# Redirections followed for one command before its MOVED/ASK error is returned as is.
MAX_REDIRECTS = 5
# A stale map shows on many requests at once; one re-read per interval serves them all.
REFRESH_INTERVAL = 0.1
# A map older than this is re-read in the background: replicas that were loading or
# down when it was read get their share of reads once healthy.
MAP_MAX_AGE = 10.0
# A SCAN cursor given to clients is the node's cursor times this plus the shard's index.
SCAN_SHARDS = 1024
# Error replies meaning "this shard cannot serve now": a 503, and the map is re-read.
_UNAVAILABLE = ("CLUSTERDOWN", "LOADING", "MASTERDOWN")
_ASKING: Argv = (b"ASKING",)


class _Node(StandaloneBackend):
    """A cluster node: a standalone backend that knows its address in the map."""

    def __init__(self, endpoint: Endpoint, name: str, settings: BackendSettings,
                 limits: LimitSettings, template: Address, readonly: bool) -> None:
        host, port = endpoint
        super().__init__(f"{name} {host}:{port}", settings, limits,
                         address=dataclasses.replace(template, host=host, port=port),
                         readonly=readonly)
        self.endpoint = endpoint


class _Shard:
    __slots__ = ("primary", "replicas")

    def __init__(self, primary: _Node, replicas: list[_Node]) -> None:
        self.primary = primary
        self.replicas = replicas

    def reader(self, slot: int) -> _Node | None:
        """The replica for reads of ``slot``: one per slot, so a key's reads stay on one."""
        return self.replicas[max(slot, 0) % len(self.replicas)] if self.replicas else None


class ClusterBackend:
    """``topology = "cluster"``: the Backend interface over every node of a Redis Cluster."""

    def __init__(self, name: str, settings: BackendSettings, limits: LimitSettings) -> None:
        self.name = name
        self._settings = settings
        self._limits = limits
        self._template = backend_address(settings)
        self._replica_reads = settings.replica_reads
        # Seeds are where the map is read; nodes are reached like the URL's node.
        seeds = [self._template, *(Address.parse(url) for url in settings.seeds)]
        self._seeds = [self._new_node((a.host, a.port)) for a in seeds]
        self._nodes: dict[Endpoint, _Node] = {}
        self._slots: list[_Shard | None] = [None] * SLOTS
        self._shards: list[_Shard] = []  # by first slot: SCAN cursors count on the order
        self._by_primary: dict[Endpoint, _Shard] = {}
        self._layout: list[ShardLayout] = []
        self._refresh: asyncio.Task[None] | None = None
        self._refreshed_at = -math.inf
        self._map_error = ""
        self._retiring: set[asyncio.Task[None]] = set()
        self._table: CommandTable | None = None
        self._finder: SlotFinder | None = None
        self._fan_outs: dict[str, FanOut] = {}

    @property
    def label(self) -> str:
        shards = f", {len(self._shards)} shards" if self._shards else ""
        return f"Redis Cluster via {self._template.display()}{shards}"

    # nodes and the slot map ---------------------------------------------------------
    def _new_node(self, endpoint: Endpoint) -> _Node:
        # READONLY on every connection when replicas serve reads: harmless on a primary,
        # and a primary demoted by a failover then keeps serving reads.
        return _Node(endpoint, self.name, self._settings, self._limits, self._template,
                     self._replica_reads)

    def _node(self, endpoint: Endpoint) -> _Node:
        node = self._nodes.get(endpoint)
        if node is None:
            node = self._nodes[endpoint] = self._new_node(endpoint)
        return node

    def _stale(self) -> None:
        """Re-read the slot map in the background, unless that was done moments ago."""
        if (self._refresh is None or self._refresh.done()) and \
                time.monotonic() - self._refreshed_at >= REFRESH_INTERVAL:
            self._refresh = asyncio.create_task(self._read_map())

    async def _map_now(self) -> None:
        """Read the slot map and wait for it; fail at once while a recent read failed."""
        if self._refresh is None or self._refresh.done():
            if self._map_error and \
                    time.monotonic() - self._refreshed_at < self._limits.reconnect_backoff:
                raise RedisUnavailable(self._map_error)
            self._refresh = asyncio.create_task(self._read_map())
        await asyncio.shield(self._refresh)
        if not self._shards:
            raise RedisUnavailable(self._map_error)

    async def _read_map(self) -> None:
        self._refreshed_at = time.monotonic()
        failures: list[str] = []
        # Known primaries first, in random order so that one stuck node does not delay
        # every refresh; then replicas; the seeds when nothing else answers.
        primaries = [s.primary for s in self._shards]
        replicas = [r for s in self._shards for r in s.replicas]
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
                self._map_error = ""
                return
            failures.append(f"{node.label} has no slots assigned")
        error = "cannot read the Redis Cluster slot map: " + "; ".join(dict.fromkeys(failures))
        if error != self._map_error:  # once per outage, not once per attempt
            log.warning("backend '%s': %s", self.name, error)
        self._map_error = error

    async def _ask_layout(self, node: _Node) -> list[ShardLayout]:
        host = node.endpoint[0]
        (reply,) = await node.run([[b"CLUSTER", b"SHARDS"]])
        if isinstance(reply, list):
            return parse_shards(reply, tls=self._template.tls, asked_host=host)
        disabled = "cluster support disabled" in str(reply)
        if not disabled:  # Redis 6, or a managed service without SHARDS
            (reply,) = await node.run([[b"CLUSTER", b"SLOTS"]])
            if isinstance(reply, list):
                return parse_slots(reply, asked_host=host)
        hint = "; use topology = \"standalone\"" if disabled else ""
        raise RedisUnavailable(f"Redis at {node.label} did not give its slot map: {reply}{hint}")

    def _apply(self, layout: list[ShardLayout]) -> None:
        layout = sorted(layout, key=lambda shard: shard.first_slot)
        slots: list[_Shard | None] = [None] * SLOTS
        shards: list[_Shard] = []
        for described in layout:
            shard = _Shard(self._node(described.primary),
                           [self._node(r) for r in described.replicas])
            for start, end in described.ranges:
                slots[start : end + 1] = [shard] * (end - start + 1)
            shards.append(shard)
        self._slots, self._shards = slots, shards
        self._by_primary = {s.primary.endpoint: s for s in shards}
        if layout != self._layout:
            log.info("backend '%s': %d shards: %s", self.name, len(shards), ", ".join(
                f"{p[0]}:{p[1]} ({len(d.replicas)} replicas)"
                for d in layout for p in [d.primary]))
            self._layout = layout
        in_use = {e for d in layout for e in (d.primary, *d.replicas)}
        for endpoint in [e for e in self._nodes if e not in in_use]:
            self._retire(self._nodes.pop(endpoint))

    def _retire(self, node: _Node) -> None:
        async def close_later() -> None:
            # Requests already sent there (a blocking one may wait its cap) finish first.
            try:
                await asyncio.sleep(self._limits.command_timeout + self._limits.max_block_seconds)
            finally:
                await node.close()

        task = asyncio.create_task(close_later())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def _moved(self, slot: int, endpoint: Endpoint) -> None:
        """MOVED: the slot is served elsewhere now. Fix it at once; re-read the rest."""
        shard = self._by_primary.get(endpoint)
        if shard is None:
            shard = self._by_primary[endpoint] = _Shard(self._node(endpoint), [])
        self._slots[slot] = shard
        self._stale()

    def _redirect(self, reply: ReplyError, replied: _Node) -> tuple[bool, int, _Node] | None:
        """(is ASK, slot, node) for a MOVED or ASK reply, else None."""
        parts = str(reply).split(" ")
        if len(parts) != 3 or parts[0] not in ("MOVED", "ASK"):
            return None
        host, _, port = parts[2].rpartition(":")
        endpoint = (host or replied.endpoint[0], int(port))
        slot = int(parts[1])
        if parts[0] == "MOVED":
            self._moved(slot, endpoint)
        return parts[0] == "ASK", slot, self._node(endpoint)

    # command table and keys -----------------------------------------------------------
    async def _ready(self) -> SlotFinder:
        if self._finder is None:
            await self.command_table()
        assert self._finder is not None
        return self._finder

    async def _on_any_primary(self, argv: Argv) -> Any:
        """One command on whichever primary answers."""
        primaries = [s.primary for s in self._shards]
        failure: GatewayError = RedisUnavailable(self._map_error or "no Redis Cluster node")
        for node in random.sample(primaries, len(primaries)):
            try:
                (reply,) = await node.run([argv])
                return reply
            except RedisUnavailable as exc:
                failure = exc
                self._stale()
        raise failure

    async def _ask_keys(self, argv: Argv) -> list[bytes]:
        reply = await self._on_any_primary([b"COMMAND", b"GETKEYS", *argv])
        return reply if isinstance(reply, list) else []  # an error: no keys, Redis will say

    # running ----------------------------------------------------------------------------
    async def _run_batch(self, commands: Sequence[Argv], send: Send, *, reads: bool) -> list[Any]:
        finder = await self._ready()
        if time.monotonic() - self._refreshed_at > MAP_MAX_AGE:
            self._stale()
        slots = await finder.slots(commands)
        results: list[Any] = [None] * len(commands)
        segment: list[int] = []
        for i, slot in enumerate(slots):
            info = finder.lookup(commands[i]) if slot == KEYLESS else None
            if info is None or (info.name != "scan" and info.name not in self._fan_outs):
                segment.append(i)
                continue
            if segment:
                await self._run_segment(commands, slots, segment, results, send, reads)
                segment = []
            if info.name == "scan":
                results[i] = await self._scan(commands[i], send)
            else:
                results[i] = await self._fan_out(commands[i], self._fan_outs[info.name], send)
        if segment:
            await self._run_segment(commands, slots, segment, results, send, reads)
        # Nothing ran anywhere: the request fails as a whole (503/504), as on one server.
        if results and all(isinstance(r, GatewayError) for r in results):
            raise results[0]
        return results

    async def _run_segment(
        self, commands: Sequence[Argv], slots: list[int], indexes: list[int],
        results: list[Any], send: Send, reads: bool,
    ) -> None:
        anywhere: _Shard | None = None  # the one primary for this batch's keyless commands
        pending = indexes
        ask_to: dict[int, _Node] = {}  # command index -> the node an ASK reply named
        for _ in range(MAX_REDIRECTS + 1):
            by_shard: dict[_Shard, list[int]] = {}
            asking: dict[_Node, list[int]] = {}
            for i in pending:
                if ask_to and i in ask_to:
                    asking.setdefault(ask_to.pop(i), []).append(i)
                    continue
                slot = slots[i]
                shard: _Shard | None
                if slot == KEYLESS:
                    anywhere = shard = anywhere or random.choice(self._shards)
                else:
                    shard = self._slots[slot]
                if shard is None:
                    self._stale()
                    results[i] = RedisUnavailable(
                        f"no Redis Cluster node serves hash slot {slot} now; retry shortly")
                    continue
                group = by_shard.get(shard)
                if group is None:
                    by_shard[shard] = [i]
                else:
                    group.append(i)
            jobs = [self._send_group(shard, items, commands, slots, send, reads)
                    for shard, items in by_shard.items()]
            jobs += [self._send_asking(node, items, commands, send)
                     for node, items in asking.items()]
            outcomes = [await jobs[0]] if len(jobs) == 1 else await asyncio.gather(*jobs)
            pending = []
            for node, items, replies in outcomes:
                if isinstance(replies, GatewayError):  # the node failed: these did not run
                    for i in items:
                        results[i] = replies
                    continue
                for i, reply in zip(items, replies, strict=True):
                    results[i] = reply
                    if not isinstance(reply, ReplyError):
                        continue
                    redirect = self._redirect(reply, node)
                    if redirect is not None:  # not run: send it again where it points
                        is_ask, _, target = redirect
                        pending.append(i)
                        if is_ask:
                            ask_to[i] = target
                    elif str(reply).startswith(_UNAVAILABLE):
                        self._stale()
                        results[i] = RedisUnavailable(
                            f"Redis Cluster cannot serve this command now ({reply}); "
                            "retry shortly")
            if not pending:
                return

    async def _send_group(
        self, shard: _Shard, items: list[int], commands: Sequence[Argv], slots: list[int],
        send: Send, reads: bool,
    ) -> tuple[_Node, list[int], list[Any] | GatewayError]:
        argvs = [commands[i] for i in items]
        primary = shard.primary
        # A shard's commands go to a replica only if all are reads: a pipeline that
        # writes then reads a key must see its write.
        finder = self._finder
        reader = shard.reader(slots[items[0]]) \
            if reads and finder and all(finder.is_read(commands[i]) for i in items) else None
        try:
            if reader is None:
                return primary, items, await send(primary, argvs)
            return primary, items, await read_on_replica(reader, argvs, send,
                                                         lambda: send(primary, argvs))
        except GatewayError as exc:
            self._stale()
            return primary, items, exc

    async def _send_asking(
        self, node: _Node, items: list[int], commands: Sequence[Argv], send: Send,
    ) -> tuple[_Node, list[int], list[Any] | GatewayError]:
        # ASKING holds for the next command only, and the shared connection's writes are
        # whole batches, so each pair stays together.
        argvs = [argv for i in items for argv in (_ASKING, commands[i])]
        try:
            replies = await send(node, argvs)
        except GatewayError as exc:
            self._stale()
            return node, items, exc
        return node, items, replies[1::2]

    async def _fan_out(self, argv: Argv, policy: FanOut, send: Send) -> Any:
        primaries = [s.primary for s in self._shards]
        replicas = [r for s in self._shards for r in s.replicas] if policy.replicas else []

        async def one(node: _Node) -> Any:
            try:
                (reply,) = await send(node, [argv])
                return reply
            except GatewayError as exc:
                self._stale()
                return exc

        replies = await asyncio.gather(*(one(node) for node in [*primaries, *replicas]))
        # A replica that is down misses e.g. SCRIPT LOAD; a primary that is down fails it.
        answers = [*replies[: len(primaries)],
                   *(r for r in replies[len(primaries):] if not isinstance(r, GatewayError))]
        return merge(policy, answers)

    async def _scan(self, argv: Argv, send: Send) -> Any:
        """SCAN over every primary in turn; the cursor says which one, and where in it."""
        shards = self._shards
        try:
            cursor = int(argv[1])
        except (IndexError, ValueError):
            cursor = -1
        if cursor < 0 or cursor % SCAN_SHARDS >= len(shards):
            return ReplyError("ERR invalid cursor")
        index, node_cursor = cursor % SCAN_SHARDS, cursor // SCAN_SHARDS
        try:
            (reply,) = await send(shards[index].primary,
                                  [[argv[0], b"%d" % node_cursor, *argv[2:]]])
        except GatewayError as exc:
            self._stale()
            return exc
        if not isinstance(reply, list) or len(reply) != 2:
            return reply
        node_next = int(reply[0])
        if node_next:
            following = node_next * SCAN_SHARDS + index
        else:  # this primary is done: the next one from its start, or the end
            following = 0 if index + 1 == len(shards) else index + 1
        return [b"%d" % following, reply[1]]

    async def _transaction(self, commands: Sequence[Argv], send: Send) -> list[Any]:
        finder = await self._ready()
        slot, first = KEYLESS, b""
        for argv in commands[1:-1]:
            for key in await finder.keys(argv):
                key_in = key_slot(key)
                if slot == KEYLESS:
                    slot, first = key_in, key
                elif key_in != slot:
                    raise BadRequest(_cross_slot_transaction(first, slot, key, key_in))
        shard = random.choice(self._shards) if slot == KEYLESS else self._slots[slot]
        if shard is None:
            self._stale()
            raise RedisUnavailable(f"no Redis Cluster node serves hash slot {slot} now; "
                                   "nothing was run, retry shortly")
        node, batch = shard.primary, list(commands)
        for _ in range(MAX_REDIRECTS + 1):
            try:
                replies = await send(node, batch)
            except GatewayError:
                self._stale()
                raise
            if batch[0] is _ASKING:
                replies = replies[1:]
            # A queued command refused with MOVED or ASK made EXEC abort: nothing ran,
            # so the whole transaction can go where it points.
            redirect = next((found for r in replies[1:-1] if isinstance(r, ReplyError)
                             for found in [self._redirect(r, node)] if found), None)
            if redirect is None:
                break
            is_ask, _, node = redirect
            batch = [_ASKING, *commands] if is_ask else list(commands)
        for reply in replies[1:-1]:
            if isinstance(reply, ReplyError) and str(reply).startswith(_UNAVAILABLE):
                self._stale()
                raise RedisUnavailable(f"Redis Cluster cannot serve this transaction now "
                                       f"({reply}); nothing was run, retry shortly")
        return replies

    # Backend interface ---------------------------------------------------------------
    async def command_table(self) -> CommandTable:
        if self._table is None:
            if not self._shards:
                await self._map_now()
            reply = await self._on_any_primary([b"COMMAND"])
            if not isinstance(reply, list) or not reply:
                raise RedisUnavailable(f"Redis at {self.label} did not list its commands: "
                                       f"{reply}")
            self._table = CommandTable.from_command_info(reply)
            self._fan_outs = fan_outs(reply)
            self._finder = SlotFinder(self._table, self._ask_keys)
        return self._table

    async def run(self, commands: Sequence[Argv], *, exact: int | None = None) -> list[Any]:
        if len(commands) == 1 and self._finder is not None:
            replies = await self._run_one(commands, exact)
            if replies is not None:
                return replies

        return await self._run_batch(commands, shared(exact), reads=self._replica_reads)

    async def _run_one(self, commands: Sequence[Argv], exact: int | None) -> list[Any] | None:
        """The common case, a single-key command on the primary, without the batch
        machinery (it costs more than the routing); None to take the general path."""
        assert self._finder is not None
        slot = self._finder.slot_now(commands[0])
        if slot is None or (self._replica_reads and self._finder.is_read(commands[0])) or \
                time.monotonic() - self._refreshed_at > MAP_MAX_AGE:
            return None
        shard = self._slots[slot]
        if shard is None:
            return None
        try:
            replies = await shard.primary.run(commands, exact=exact)
        except GatewayError:
            self._stale()
            raise
        reply = replies[0]
        # A redirect or "cannot serve now" means the command did not run: the general
        # path may send it again, where it belongs.
        if isinstance(reply, ReplyError) and str(reply).startswith(("MOVED ", "ASK ",
                                                                    *_UNAVAILABLE)):
            return None
        return replies

    async def run_reserved(
        self, commands: Sequence[Argv], *, timeout: float, reusable: bool = True,
        exact: int | None = None,
    ) -> list[Any]:
        send = reserved(timeout, reusable, exact)
        if len(commands) > 1 and commands[0] and commands[0][0].upper() == b"MULTI":
            return await self._transaction(commands, send)
        return await self._run_batch(commands, send, reads=False)

    async def ping(self) -> bool:
        """Ready when every primary answers: each serves a part of the keys."""
        try:
            await self.command_table()
            replies = await asyncio.gather(*(s.primary.run([[b"PING"]]) for s in self._shards))
        except GatewayError:
            return False
        return all(reply == [b"PONG"] for reply in replies)

    async def close(self) -> None:
        for task in [self._refresh, *self._retiring]:
            if task is not None:
                task.cancel()
        for node in [*self._seeds, *self._nodes.values()]:
            await node.close()


def _cross_slot_transaction(first: bytes, slot: int, other: bytes, other_slot: int) -> str:
    a, b = (k.decode("utf-8", "replace") for k in (first, other))
    return (
        "CROSSSLOT Keys in request don't hash to the same slot: in Redis Cluster a "
        f"transaction's keys must share one hash slot, and '{a}' is in slot {slot} while "
        f"'{b}' is in slot {other_slot}; give them a common hash tag, e.g. '{{user:1}}:a' "
        "and '{user:1}:b' (nothing was run)"
    )
