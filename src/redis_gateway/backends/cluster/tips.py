"""What Redis tells cluster clients about each command: where to send it, how to merge.

Redis 7 gives every command's routing tips in ``COMMAND`` (the 8th field):
``request_policy`` says where a command without one target node runs
(``all_shards``: every primary; ``all_nodes``: replicas too; ``multi_shard``: split by
the slots of its keys; ``special``: the client's own business) and ``response_policy``
how the replies become one (``agg_sum``, ``all_succeeded``, ...; none means the
default: arrays joined, or for ``multi_shard`` the values put back in key order).
Following the server rather than a list kept here keeps a newer Redis's and a module's
commands right. Redis 6 has no tips: what Redis 7 says of the commands that matter most
stands in for them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ...redis_types import text


@dataclass(frozen=True)
class Tips:
    request: str  # the request_policy, "" when it has none (routed by its keys)
    response: str  # the response_policy, "" for the default


def command_tips(command_reply: Sequence[Any]) -> dict[str, Tips]:
    """Tips by table name ("config|set"), from a ``COMMAND`` reply; only commands with a
    ``request_policy`` are listed."""
    found: dict[str, Tips] = {}
    saw_tips = False

    def walk(entries: Sequence[Any]) -> None:
        nonlocal saw_tips
        for entry in entries:
            if not entry:
                continue
            if len(entry) > 7:
                saw_tips = True
                tips = dict(text(t).partition(":")[::2] for t in entry[7])
                if "request_policy" in tips:
                    found[text(entry[0]).lower()] = Tips(tips["request_policy"],
                                                         tips.get("response_policy", ""))
            if len(entry) > 9:
                walk(entry[9])

    walk(command_reply)
    return found if saw_tips else dict(REDIS6_TIPS)


# What Redis 7 says about these commands, for servers that do not say it themselves.
REDIS6_TIPS: dict[str, Tips] = {
    "dbsize": Tips("all_shards", "agg_sum"),
    "keys": Tips("all_shards", ""),
    "randomkey": Tips("all_shards", ""),
    "ping": Tips("all_shards", "all_succeeded"),
    "flushdb": Tips("all_shards", "all_succeeded"),
    "flushall": Tips("all_shards", "all_succeeded"),
    "script|exists": Tips("all_shards", "agg_logical_and"),
    "script|load": Tips("all_nodes", "all_succeeded"),
    "script|flush": Tips("all_nodes", "all_succeeded"),
    "mget": Tips("multi_shard", ""),
    "mset": Tips("multi_shard", "all_succeeded"),
    "msetnx": Tips("multi_shard", "agg_min"),
    "del": Tips("multi_shard", "agg_sum"),
    "unlink": Tips("multi_shard", "agg_sum"),
    "exists": Tips("multi_shard", "agg_sum"),
    "touch": Tips("multi_shard", "agg_sum"),
}

AGGREGATES: dict[str, Callable[[list[int]], int]] = {
    "agg_sum": sum,
    "agg_min": min,
    "agg_max": max,
    "agg_logical_and": lambda values: int(all(values)),
    "agg_logical_or": lambda values: int(any(values)),
}


def aggregate(response: str, answers: list[Any]) -> Any:
    """Numbers combined as an ``agg_*`` policy says; arrays position by position (SCRIPT
    EXISTS); anything else, the first answer (nothing sensible to add up)."""
    combine = AGGREGATES[response]
    if all(isinstance(a, int) for a in answers):
        return combine(answers)
    if all(isinstance(a, list) for a in answers):
        return [combine(list(column)) for column in zip(*answers, strict=True)]
    return answers[0]
