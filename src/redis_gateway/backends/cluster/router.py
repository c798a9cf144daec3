"""Where each command of a batch runs in a Redis Cluster, and its replies put back.

A command goes to the primary of its keys' slot, or to one of that shard's replicas
for reads when ``read_from_replicas`` is on. A batch is split by node, sent to every
node at once, and its replies are put back in the request's order; the commands for
one node keep their order, and a keyless command that runs on every primary
(``fanout.py``) waits for the commands before it. A command whose keys span slots is
split into one command per slot where that is exact (``multikey.py``). Replies that
redirect are re-sent where they point (``redirect.py``): MOVED (the map is corrected)
and ASK (ASKING, then the command, on the importing node).

A transaction is never split: all its keys must share one slot (a clear 400 before
anything runs), and it runs whole on that slot's primary.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from typing import Any

from ...commands import CommandTable
from ...errors import BadRequest, GatewayError, RedisUnavailable
from ...observe import metrics
from ...redis_types import Argv
from ...resp import ReplyError
from ..node import Dispatch, Node, read_on_replica
from ..slots import KEYLESS, SlotFinder, key_slot
from .fanout import FanOut, fan_outs, merge
from .multikey import Split, SplitBatch, split, splits
from .redirect import Redirect, parse_redirect
from .slotmap import Shard, SlotMap
from .tips import Tips

# Redirections followed for one command before its MOVED/ASK error is returned as is.
MAX_REDIRECTS = 5
# A SCAN cursor given to clients is the node's cursor times this plus the shard's index.
SCAN_SHARDS = 1024
# Error replies meaning "this shard cannot serve now": a 503, and the map is re-read.
UNAVAILABLE = ("CLUSTERDOWN", "LOADING", "MASTERDOWN")
_ASKING: Argv = (b"ASKING",)

# (the node a group went to, the batch indexes it carried, its replies or why it failed)
_Outcome = tuple[Node, list[int], list[Any] | GatewayError]


class Router:
    """Routes batches and transactions over one cluster's slot map."""

    def __init__(self, slotmap: SlotMap, finder: SlotFinder, table: CommandTable,
                 tips: Mapping[str, Tips]) -> None:
        self._map = slotmap
        self._finder = finder
        self._fan_outs = fan_outs(tips)
        self._splits = splits(tips, table)
        # Their names in lower case, checked before any lookup: a batch of GETs pays one
        # lower() and one set lookup per command for the splitting it does not need.
        self._split_names = {name.partition("|")[0].encode() for name in self._splits}

    # batches ----------------------------------------------------------------------------
    async def run(self, commands: Sequence[Argv], dispatch: Dispatch, *,
                  reads: bool) -> list[Any]:
        """One reply per command, in order; a ``GatewayError`` for those that failed."""
        self._map.keep_fresh()
        slots = await self._finder.slots(commands)
        names = self._split_names
        split_commands = {i: (how, parts) for i, argv in enumerate(commands)
                          if argv and argv[0].lower() in names
                          and (how := self._split_of(argv, slots[i])) is not None
                          and (parts := split(argv, how)) is not None}
        if split_commands:
            batch = SplitBatch(commands, slots, split_commands)
            results = batch.merge(await self._run_in_segments(batch.argvs, batch.slots,
                                                              dispatch, reads))
        else:
            results = await self._run_in_segments(commands, slots, dispatch, reads)
        # Nothing ran anywhere: the request fails as a whole (503/504), as on one server.
        if results and all(isinstance(r, GatewayError) for r in results):
            raise results[0]
        return results

    def _split_of(self, argv: Argv, slot: int) -> Split | None:
        if slot == KEYLESS:
            return None
        info = self._finder.lookup(argv)
        return self._splits.get(info.name) if info is not None else None

    async def _run_in_segments(self, commands: Sequence[Argv], slots: list[int],
                               dispatch: Dispatch, reads: bool) -> list[Any]:
        """The commands between two that run on every node run in parallel; those wait."""
        results: list[Any] = [None] * len(commands)
        segment: list[int] = []
        for i, slot in enumerate(slots):
            info = self._finder.lookup(commands[i]) if slot == KEYLESS else None
            if info is None or (info.name != "scan" and info.name not in self._fan_outs):
                segment.append(i)
                continue
            if segment:
                await self._run_segment(commands, slots, segment, results, dispatch, reads)
                segment = []
            if info.name == "scan":
                results[i] = await self._scan(commands[i], dispatch)
            else:
                results[i] = await self._fan_out(commands[i], self._fan_outs[info.name],
                                                 dispatch)
        if segment:
            await self._run_segment(commands, slots, segment, results, dispatch, reads)
        return results

    async def _run_segment(
        self, commands: Sequence[Argv], slots: list[int], indexes: list[int],
        results: list[Any], dispatch: Dispatch, reads: bool,
    ) -> None:
        anywhere: Shard | None = None  # the one primary for this segment's keyless commands
        pending = indexes
        ask_to: dict[int, Node] = {}  # command index -> the node an ASK reply named
        for _ in range(MAX_REDIRECTS + 1):
            by_shard: dict[Shard, list[int]] = {}
            asking: dict[Node, list[int]] = {}
            for i in pending:
                if ask_to and i in ask_to:
                    asking.setdefault(ask_to.pop(i), []).append(i)
                    continue
                slot = slots[i]
                shard: Shard | None
                if slot == KEYLESS:
                    anywhere = shard = anywhere or random.choice(self._map.shards)
                else:
                    shard = self._map.by_slot[slot]
                if shard is None:
                    self._map.stale()
                    results[i] = RedisUnavailable(
                        f"no Redis Cluster node serves hash slot {slot} now; retry shortly")
                    continue
                group = by_shard.get(shard)
                if group is None:
                    by_shard[shard] = [i]
                else:
                    group.append(i)
            jobs = [self._send_group(shard, items, commands, slots, dispatch, reads)
                    for shard, items in by_shard.items()]
            jobs += [self._send_asking(node, items, commands, dispatch)
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
                    if self._follow(reply, node, i, slots[i], ask_to):
                        pending.append(i)  # not run: send it again where it points
                    elif str(reply).startswith(UNAVAILABLE):
                        self._map.stale()
                        results[i] = RedisUnavailable(
                            f"Redis Cluster cannot serve this command now ({reply}); "
                            "retry shortly")
            if not pending:
                return

    def _follow(self, reply: ReplyError, node: Node, i: int, slot: int,
                ask_to: dict[int, Node]) -> bool:
        """Whether the reply redirects; a MOVED corrects the map, an ASK is noted."""
        redirect = self._believed(parse_redirect(reply, node.endpoint[0]), slot)
        if redirect is None:
            return False
        metrics.sink.backend_event(node.label, "redirect")
        if redirect.ask:
            ask_to[i] = self._map.nodes.at(redirect.endpoint)
        else:
            self._map.moved(redirect.slot, redirect.endpoint)
        return True

    async def _send_group(
        self, shard: Shard, items: list[int], commands: Sequence[Argv], slots: list[int],
        dispatch: Dispatch, reads: bool,
    ) -> _Outcome:
        argvs = [commands[i] for i in items]
        primary = shard.primary
        # A shard's commands go to a replica only if all are reads: a pipeline that
        # writes then reads a key must see its write.
        reader = shard.reader(slots[items[0]]) \
            if reads and self._finder.reads_only(argvs) else None
        try:
            if reader is None:
                return primary, items, await dispatch(primary, argvs)
            return primary, items, await read_on_replica(reader, argvs, dispatch,
                                                         lambda: dispatch(primary, argvs))
        except GatewayError as exc:
            self._map.stale()
            return primary, items, exc

    async def _send_asking(self, node: Node, items: list[int], commands: Sequence[Argv],
                           dispatch: Dispatch) -> _Outcome:
        # ASKING holds for the next command only, and the shared connection's writes are
        # whole batches, so each pair stays together.
        argvs = [argv for i in items for argv in (_ASKING, commands[i])]
        try:
            replies = await dispatch(node, argvs)
        except GatewayError as exc:
            self._map.stale()
            return node, items, exc
        return node, items, replies[1::2]

    # commands for several nodes -----------------------------------------------------------
    async def _fan_out(self, argv: Argv, policy: FanOut, dispatch: Dispatch) -> Any:
        shards = self._map.shards
        primaries = [s.primary for s in shards]
        replicas = [r for s in shards for r in s.replicas] if policy.replicas else []

        async def one(node: Node) -> Any:
            try:
                (reply,) = await dispatch(node, [argv])
                return reply
            except GatewayError as exc:
                self._map.stale()
                return exc

        replies = await asyncio.gather(*(one(node) for node in [*primaries, *replicas]))
        # A replica that is down misses e.g. SCRIPT LOAD; a primary that is down fails it.
        answers = [*replies[: len(primaries)],
                   *(r for r in replies[len(primaries):] if not isinstance(r, GatewayError))]
        return merge(policy, answers)

    async def _scan(self, argv: Argv, dispatch: Dispatch) -> Any:
        """SCAN over every primary in turn; the cursor says which one, and where in it."""
        shards = self._map.shards
        try:
            cursor = int(argv[1])
        except (IndexError, ValueError):
            cursor = -1
        if cursor < 0 or cursor % SCAN_SHARDS >= len(shards):
            return ReplyError("ERR invalid cursor")
        index, node_cursor = cursor % SCAN_SHARDS, cursor // SCAN_SHARDS
        try:
            (reply,) = await dispatch(shards[index].primary,
                                      [[argv[0], b"%d" % node_cursor, *argv[2:]]])
        except GatewayError as exc:
            self._map.stale()
            return exc
        if not isinstance(reply, list) or len(reply) != 2:
            return reply
        node_next = int(reply[0])
        if node_next:
            following = node_next * SCAN_SHARDS + index
        else:  # this primary is done: the next one from its start, or the end
            following = 0 if index + 1 == len(shards) else index + 1
        return [b"%d" % following, reply[1]]

    # transactions --------------------------------------------------------------------------
    async def transaction(self, commands: Sequence[Argv], dispatch: Dispatch) -> list[Any]:
        """MULTI, the commands, EXEC: whole, on the primary of the one slot of their keys."""
        slot, first = KEYLESS, b""
        for argv in commands[1:-1]:
            for key in await self._finder.keys(argv):
                key_in = key_slot(key)
                if slot == KEYLESS:
                    slot, first = key_in, key
                elif key_in != slot:
                    raise BadRequest(_cross_slot_transaction(first, slot, key, key_in))
        shard = random.choice(self._map.shards) if slot == KEYLESS else self._map.by_slot[slot]
        if shard is None:
            self._map.stale()
            raise RedisUnavailable(f"no Redis Cluster node serves hash slot {slot} now; "
                                   "nothing was run, retry shortly")
        node, batch = shard.primary, list(commands)
        for _ in range(MAX_REDIRECTS + 1):
            try:
                replies = await dispatch(node, batch)
            except GatewayError:
                self._map.stale()
                raise
            if batch[0] is _ASKING:
                replies = replies[1:]
            # A queued command refused with MOVED or ASK made EXEC abort: nothing ran,
            # so the whole transaction can go where it points.
            redirect = next((found for r in replies[1:-1] for found in
                             [self._believed(parse_redirect(r, node.endpoint[0]), slot)]
                             if found), None)
            if redirect is None:
                break
            metrics.sink.backend_event(node.label, "redirect")
            if not redirect.ask:
                self._map.moved(redirect.slot, redirect.endpoint)
            node = self._map.nodes.at(redirect.endpoint)
            batch = [_ASKING, *commands] if redirect.ask else list(commands)
        for reply in replies[1:-1]:
            if isinstance(reply, ReplyError) and str(reply).startswith(UNAVAILABLE):
                self._map.stale()
                raise RedisUnavailable(f"Redis Cluster cannot serve this transaction now "
                                       f"({reply}); nothing was run, retry shortly")
        return replies

    def _believed(self, redirect: Redirect | None, slot: int) -> Redirect | None:
        """Only Redis's own redirects are followed. A script may return any error text
        (``redis.error_reply("ASK 0 host:port")``): followed, it would send the gateway,
        its credentials and other tokens' commands for a slot to whatever host it named.
        Redis redirects a command only for the slot of its keys, and only to a node of
        the cluster: anything else is left as the error reply it is (and the map is read
        again, in case a node joined)."""
        if redirect is None:
            return None
        if redirect.slot != slot or not self._map.lists(redirect.endpoint):
            self._map.stale()
            return None
        return redirect


def _cross_slot_transaction(first: bytes, slot: int, other: bytes, other_slot: int) -> str:
    a, b = (k.decode("utf-8", "replace") for k in (first, other))
    return (
        "CROSSSLOT Keys in request don't hash to the same slot: in Redis Cluster a "
        f"transaction's keys must share one hash slot, and '{a}' is in slot {slot} while "
        f"'{b}' is in slot {other_slot}; give them a common hash tag, e.g. '{{user:1}}:a' "
        "and '{user:1}:b' (nothing was run)"
    )
