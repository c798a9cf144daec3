"""Keyless commands in Redis Cluster: which nodes run them and how their replies merge.

Redis 7 tells cluster clients itself, in each command's tips (the 8th field of
``COMMAND``): ``request_policy:all_shards`` means every primary (DBSIZE, KEYS, FLUSHDB,
PING, SCRIPT EXISTS), ``request_policy:all_nodes`` primaries and replicas (CONFIG SET,
SCRIPT LOAD), and ``response_policy:...`` how to merge the replies (agg_sum,
all_succeeded, ...). Following the server rather than a list kept here keeps a newer
Redis's and a module's commands right. Redis 6 has no tips; for it the commands that
matter most carry them below.

What is not followed: ``response_policy:special`` (INFO, MEMORY STATS, LATENCY ...)
has no single right merge, so those commands answer for one primary; and
``request_policy:multi_shard`` (MGET, DEL, MSET across slots) would split one command
into several non-atomic ones, so a command's keys must share a slot, as in Redis.
SCAN (``request_policy:special``) is the cluster backend's own business.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hiredis import ReplyError

from .commands import _text
from .errors import GatewayError


@dataclass(frozen=True)
class FanOut:
    """How a keyless command runs in a cluster: on every primary, and replicas too?"""

    replicas: bool  # request_policy:all_nodes
    response: str  # the response_policy, "" for the default (arrays are concatenated)


def fan_outs(command_reply: Sequence[Any]) -> dict[str, FanOut]:
    """The commands that run on several nodes, by table name ("config|set"), from COMMAND."""
    found: dict[str, FanOut] = {}
    saw_tips = False

    def walk(entries: Sequence[Any]) -> None:
        nonlocal saw_tips
        for entry in entries:
            if not entry:
                continue
            if len(entry) > 7:
                saw_tips = True
                tips = dict(_text(t).partition(":")[::2] for t in entry[7])
                request, response = tips.get("request_policy"), tips.get("response_policy", "")
                if request in ("all_shards", "all_nodes") and response != "special":
                    found[_text(entry[0]).lower()] = FanOut(request == "all_nodes", response)
            if len(entry) > 9:
                walk(entry[9])

    walk(command_reply)
    return found if saw_tips else dict(REDIS6_FAN_OUTS)


# What Redis 7 says about these commands, for servers that do not say it themselves.
REDIS6_FAN_OUTS: dict[str, FanOut] = {
    "dbsize": FanOut(False, "agg_sum"),
    "keys": FanOut(False, ""),
    "randomkey": FanOut(False, ""),
    "ping": FanOut(False, "all_succeeded"),
    "flushdb": FanOut(False, "all_succeeded"),
    "flushall": FanOut(False, "all_succeeded"),
    "script|exists": FanOut(False, "agg_logical_and"),
    "script|load": FanOut(True, "all_succeeded"),
    "script|flush": FanOut(True, "all_succeeded"),
}

_AGGREGATES: dict[str, Callable[[list[int]], int]] = {
    "agg_sum": sum,
    "agg_min": min,
    "agg_max": max,
    "agg_logical_and": lambda values: int(all(values)),
    "agg_logical_or": lambda values: int(any(values)),
}


def merge(policy: FanOut, replies: Sequence[Any]) -> Any:
    """One reply from each node's: a Redis error reply or a ``GatewayError`` if one failed."""
    failed = [r for r in replies if isinstance(r, (ReplyError, GatewayError))]
    answers = [r for r in replies if not isinstance(r, (ReplyError, GatewayError))]
    if policy.response == "one_succeeded":  # e.g. SCRIPT KILL: one node runs the script
        return answers[0] if answers else failed[0]
    if failed:
        return failed[0]
    if policy.response == "all_succeeded":
        return answers[0]
    combine = _AGGREGATES.get(policy.response)
    if combine is not None:
        return _aggregate(combine, answers)
    # The default: arrays are packed into one (KEYS, SLOWLOG GET); of single values, any
    # one that is not nil (RANDOMKEY: most shards may be empty).
    if all(isinstance(a, list) for a in answers):
        return [item for answer in answers for item in answer]
    present = [a for a in answers if a is not None]
    return random.choice(present) if present else answers[0]


def _aggregate(combine: Callable[[list[int]], int], answers: list[Any]) -> Any:
    if all(isinstance(a, int) for a in answers):
        return combine(answers)
    if all(isinstance(a, list) for a in answers):  # position by position: SCRIPT EXISTS
        return [combine(list(column)) for column in zip(*answers, strict=True)]
    return answers[0]  # not numbers after all: nothing sensible to add up
