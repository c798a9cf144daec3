"""Reading a Redis Cluster's layout: which primary serves which slots, and its replicas.

``CLUSTER SHARDS`` (Redis 7) says each node's health, so a replica still loading or
failed gets no reads; ``CLUSTER SLOTS`` is the fallback for Redis 6 and for managed
services that do not offer SHARDS. Both are parsed into the same ``ShardLayout``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...redis_types import pairs, text
from ..node import Endpoint


@dataclass(frozen=True)
class ShardLayout:
    ranges: tuple[tuple[int, int], ...]  # inclusive slot ranges
    primary: Endpoint
    replicas: tuple[Endpoint, ...]  # the healthy ones

    @property
    def first_slot(self) -> int:
        return min(start for start, _ in self.ranges)


def parse_shards(reply: Sequence[Any], *, tls: bool, asked_host: str) -> list[ShardLayout]:
    """``CLUSTER SHARDS``: shards without slots (a primary just added) are left out."""
    layouts = []
    for shard in reply:
        fields = pairs(shard)
        bounds = [int(b) for b in fields.get("slots", [])]
        ranges = tuple(zip(bounds[::2], bounds[1::2], strict=True))
        if not ranges:
            continue
        primary: Endpoint | None = None
        replicas: list[Endpoint] = []
        for node in fields.get("nodes", []):
            info = pairs(node)
            endpoint = _endpoint(info, tls=tls, asked_host=asked_host)
            if endpoint is None:
                continue
            if text(info.get("role", b"")) == "master":
                primary = endpoint
            elif text(info.get("health", b"online")) == "online":
                replicas.append(endpoint)
        if primary is not None:
            layouts.append(ShardLayout(ranges, primary, tuple(replicas)))
    return layouts


def parse_slots(reply: Sequence[Any], *, asked_host: str) -> list[ShardLayout]:
    """``CLUSTER SLOTS``: one entry per slot range, grouped here by primary."""
    by_primary: dict[Endpoint, tuple[list[tuple[int, int]], list[Endpoint]]] = {}
    for entry in reply:
        start, end, *nodes = entry
        endpoints = [(_host(node[0], asked_host), int(node[1])) for node in nodes]
        if not endpoints:
            continue
        ranges, replicas = by_primary.setdefault(endpoints[0], ([], []))
        ranges.append((int(start), int(end)))
        replicas += [e for e in endpoints[1:] if e not in replicas]
    return [ShardLayout(tuple(ranges), primary, tuple(replicas))
            for primary, (ranges, replicas) in by_primary.items()]


def _endpoint(info: dict[str, Any], *, tls: bool, asked_host: str) -> Endpoint | None:
    # A TLS cluster reports "tls-port" and, if it also listens in clear, "port".
    port = info.get("tls-port") if tls else None
    port = port if port is not None else info.get("port")
    if port is None:
        return None
    endpoint = text(info.get("endpoint", b""))
    if endpoint in ("", "?"):
        endpoint = text(info.get("ip", b""))
    return _host(endpoint, asked_host), int(port)


def _host(value: Any, asked_host: str) -> str:
    # An empty or "?" endpoint means "the node you asked" (cluster-preferred-endpoint-type
    # unknown-endpoint, or a node behind NAT that does not know its own address).
    host = text(value)
    return asked_host if host in ("", "?") else host
