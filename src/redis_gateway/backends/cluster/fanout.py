"""Keyless commands in Redis Cluster: which nodes run them and how their replies merge.

From the server's tips (``tips.py``): ``request_policy:all_shards`` means every primary
(DBSIZE, KEYS, FLUSHDB, PING, SCRIPT EXISTS), ``request_policy:all_nodes`` primaries and
replicas (CONFIG SET, SCRIPT LOAD), and ``response_policy`` how to merge the replies.

What is not followed: ``response_policy:special`` (INFO, MEMORY STATS, LATENCY ...)
has no single right merge, so those commands answer for one primary. Commands with
keys across slots are ``multikey.py``'s; SCAN (``request_policy:special``) is the
router's own business.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import GatewayError
from ...resp import ReplyError
from .tips import AGGREGATES, Tips, aggregate


@dataclass(frozen=True)
class FanOut:
    """How a keyless command runs in a cluster: on every primary, and replicas too?"""

    replicas: bool  # request_policy:all_nodes
    response: str  # the response_policy, "" for the default (arrays are concatenated)


def fan_outs(tips: Mapping[str, Tips]) -> dict[str, FanOut]:
    """The commands that run on several nodes, by table name ("config|set")."""
    return {name: FanOut(tip.request == "all_nodes", tip.response)
            for name, tip in tips.items()
            if tip.request in ("all_shards", "all_nodes") and tip.response != "special"}


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
    if policy.response in AGGREGATES:
        return aggregate(policy.response, answers)
    # The default: arrays are packed into one (KEYS, SLOWLOG GET); of single values, any
    # one that is not nil (RANDOMKEY: most shards may be empty).
    if all(isinstance(a, list) for a in answers):
        return [item for answer in answers for item in answer]
    present = [a for a in answers if a is not None]
    return random.choice(present) if present else answers[0]
