"""Commands with keys in several slots, split the way Redis Cluster clients split them.

Redis answers ``CROSSSLOT`` when one command's keys hash to different slots. For the
commands whose tips say ``request_policy:multi_shard`` (MGET, MSET, DEL, UNLINK, EXISTS,
TOUCH on Redis 7), cluster clients (redis-py's cluster client, valkey-glide) send one
command per slot instead and merge the replies; so does the gateway, where the merge is
exact:
- no response policy (MGET): the values, put back in the order of the keys;
- ``agg_sum`` (DEL, EXISTS, ...): each part counts its own keys, the sum counts them all;
- ``all_succeeded`` (MSET): OK when every part is.
Other policies merge exactly only for commands that change nothing: MSETNX (``agg_min``)
would set the keys of some slots and not others, so it keeps Redis's CROSSSLOT, as do
commands whose keys are not "every n-th argument to the end".

The parts run in parallel and are not atomic together: another client may see some
parts done and not others (documented in docs/topologies.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...commands import CommandInfo, CommandTable
from ...errors import GatewayError
from ...redis_types import Argv
from ...resp import ReplyError
from ..slots import key_slot
from .tips import AGGREGATES, Tips, aggregate

_EXACT_FOR_WRITES = frozenset({"", "agg_sum", "all_succeeded"})


@dataclass(frozen=True)
class Split:
    """Where a splittable command's keys are, and how its parts' replies merge."""

    first: int  # the index of the first key
    step: int  # arguments per key: the key, then its values (MSET: 2)
    response: str  # the response policy


@dataclass
class Part:
    """One slot's share of a split command."""

    slot: int
    argv: list[bytes]
    keys: list[int] = field(default_factory=list)  # which of the command's keys, by order


def splits(tips: Mapping[str, Tips], table: CommandTable) -> dict[str, Split]:
    """The commands split across slots, by table name."""
    found = {}
    for name, tip in tips.items():
        info = table.commands.get(name)
        if tip.request != "multi_shard" or info is None:
            continue
        exact = tip.response in _EXACT_FOR_WRITES or (
            tip.response in AGGREGATES and "write" not in info.flags)
        layout = _key_layout(info)
        if exact and layout is not None:
            found[name] = Split(*layout, tip.response)
    return found


def _key_layout(info: CommandInfo) -> tuple[int, int] | None:
    """(first, step) when the keys are every step-th argument from first to the end."""
    if info.key_specs:
        specs = [s for s in info.key_specs if "not_key" not in s.flags]
        if len(specs) != 1:
            return None
        begin, find = specs[0].begin, specs[0].find
        if begin[0] == "index" and find[0] == "range" and find[1] == -1 and find[3] == 0 \
                and find[2] >= 1:
            return int(begin[1]), int(find[2])
        return None
    # Redis 6: the first/last/step triple.
    if info.first > 0 and info.last == -1 and info.step >= 1:
        return info.first, info.step
    return None


def split(argv: Argv, how: Split) -> list[Part] | None:
    """The command's parts by slot, in the order their slots first appear; None when its
    keys share one slot or its arguments do not come in whole groups (Redis says what is
    wrong with them)."""
    if len(argv) <= how.first or (len(argv) - how.first) % how.step:
        return None
    head = list(argv[: how.first])
    parts: dict[int, Part] = {}
    for ordinal, i in enumerate(range(how.first, len(argv), how.step)):
        slot = key_slot(argv[i])
        part = parts.get(slot)
        if part is None:
            part = parts[slot] = Part(slot, list(head))
        part.argv += argv[i : i + how.step]
        part.keys.append(ordinal)
    return list(parts.values()) if len(parts) > 1 else None


def merge(how: Split, parts: Sequence[Part], replies: Sequence[Any]) -> Any:
    """The command's one reply from its parts' replies. A part that failed (a Redis
    error, or a node that did not answer) makes the whole fail with its error; the other
    parts may have run."""
    for reply in replies:
        if isinstance(reply, (ReplyError, GatewayError)):
            return reply
    if how.response == "":
        merged: list[Any] = [None] * sum(len(p.keys) for p in parts)
        for part, reply in zip(parts, replies, strict=True):
            if not isinstance(reply, list) or len(reply) != len(part.keys):
                return reply  # not one value per key: nothing to put in order
            for ordinal, value in zip(part.keys, reply, strict=True):
                merged[ordinal] = value
        return merged
    if how.response == "all_succeeded":
        return replies[0]
    return aggregate(how.response, list(replies))


class SplitBatch:
    """A batch with its multi-key commands replaced by their parts: what to send (each
    part where its slot is), and how to put one reply per command back together."""

    def __init__(self, commands: Sequence[Argv], slots: Sequence[int],
                 split_commands: Mapping[int, tuple[Split, list[Part]]]) -> None:
        self.argvs: list[Argv] = []
        self.slots: list[int] = []
        self._split = split_commands
        self._starts: list[int] = []  # where each command's parts begin in ``argvs``
        for i, argv in enumerate(commands):
            self._starts.append(len(self.argvs))
            found = split_commands.get(i)
            if found is None:
                self.argvs.append(argv)
                self.slots.append(slots[i])
            else:
                self.argvs += [part.argv for part in found[1]]
                self.slots += [part.slot for part in found[1]]

    def merge(self, replies: Sequence[Any]) -> list[Any]:
        merged = []
        for i, start in enumerate(self._starts):
            found = self._split.get(i)
            if found is None:
                merged.append(replies[start])
            else:
                how, parts = found
                merged.append(merge(how, parts, replies[start : start + len(parts)]))
        return merged
