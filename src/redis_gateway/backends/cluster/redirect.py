"""MOVED and ASK: a cluster node saying a command's slot is served elsewhere.

``MOVED <slot> <host>:<port>``: the slot lives there now (the slot map is stale).
``ASK <slot> <host>:<port>``: this key is being migrated there; send ``ASKING`` and the
command to that node, this once, and change nothing. Parsed here into a value; what to
do about it is the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...resp import ReplyError
from ..node import Endpoint
from ..slots import SLOTS


@dataclass(frozen=True)
class Redirect:
    ask: bool  # ASK, else MOVED
    slot: int
    endpoint: Endpoint


def parse_redirect(reply: Any, asked_host: str) -> Redirect | None:
    """The redirect a reply is, else None. An empty host means the node that answered
    (``cluster-preferred-endpoint-type unknown-endpoint``)."""
    if not isinstance(reply, ReplyError):
        return None
    parts = str(reply).split(" ")
    if len(parts) != 3 or parts[0] not in ("MOVED", "ASK"):
        return None
    kind, slot, (host, _, port) = parts[0], parts[1], parts[2].rpartition(":")
    if not (_number(slot) and int(slot) < SLOTS and _number(port) and int(port) < 65536):
        return None  # not a redirect after all
    return Redirect(kind == "ASK", int(slot), (host or asked_host, int(port)))


def _number(digits: str) -> bool:
    return digits.isascii() and digits.isdigit()
