"""Redis Sentinel: the primary (and replicas) wherever the Sentinels say it is now.

Configured like redis-rb: ``url = "redis://[user:password@]<master name>[/db]"`` with
``sentinels = ["redis://10.0.0.7:26379", ...]``. The URL's credentials, database and
scheme (TLS) apply to the data nodes; each Sentinel URL carries its own.

All the Sentinels are asked at once where the primary is (``GET-MASTER-ADDR-BY-NAME``,
with ``SENTINEL MASTER`` for the configuration epoch: around a failover the newest view
wins), a new primary is checked with ``ROLE``, and this happens at the first request,
whenever the primary fails a request (connection lost or refused, no answer, or a
``READONLY``/``LOADING``/``MASTERDOWN`` reply: it was demoted or restarted) at most every
``REDISCOVER_INTERVAL``, and every ``POLL_SECONDS`` in any case: a manual failover, or one
after a network partition, leaves the old primary reachable and accepting writes that
will be lost. While the switch is under way requests fail at once with 503; the first
one after it succeeds, no restart needed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from urllib.parse import unquote, urlsplit

from hiredis import ReplyError

from .backend import StandaloneBackend, backend_address
from .commands import _pairs, _text
from .connection import Address
from .errors import GatewayError, RedisUnavailable
from .replicas import ReplicaBackend
from .settings import BackendSettings, LimitSettings
from .slotmap import Endpoint

log = logging.getLogger("redis_gateway.sentinel")

REDISCOVER_INTERVAL = 0.1
# A manual failover (SENTINEL FAILOVER) does not stop the old primary: what it takes
# until the gateway moves is lost when it is demoted. One short command per poll keeps
# the gateway's share of that window small.
POLL_SECONDS = 0.2


@dataclasses.dataclass(frozen=True)
class _View:
    """What one Sentinel says now."""

    primary: Endpoint
    replicas: list[Endpoint]
    epoch: int  # its configuration epoch: a failover it knows of raises it
    failing_over: bool  # it is running a failover of this master


class SentinelBackend(ReplicaBackend):
    """``topology = "sentinel"``: a ``ReplicaBackend`` whose nodes the Sentinels name."""

    # Besides LOADING: READONLY means the node was demoted (it is a replica now),
    # MASTERDOWN that it is a replica that lost its primary.
    unavailable_errors = ("LOADING ", "READONLY ", "MASTERDOWN ")

    def __init__(self, name: str, settings: BackendSettings, limits: LimitSettings) -> None:
        super().__init__(name, settings, limits, primary=None, replicas=[])
        self._template = backend_address(settings)
        # The host part as written: master names are case-sensitive, hostnames are not.
        self.master = unquote(urlsplit(settings.url).netloc.rpartition("@")[2])
        self._sentinels = [
            StandaloneBackend(f"{name} sentinel {i + 1}", settings, limits,
                              address=Address.parse(url))
            for i, url in enumerate(settings.sentinels)
        ]
        self._nodes: dict[Endpoint, StandaloneBackend] = {}
        self._discovery: asyncio.Task[None] | None = None
        self._discovered_at = -math.inf
        self._discovery_error = ""
        self._watch: asyncio.Task[None] | None = None

    @property
    def label(self) -> str:
        return f"Sentinel master '{self.master}': {super().label}"

    # discovery ------------------------------------------------------------------------
    async def _current_primary(self) -> StandaloneBackend:
        if self._watch is None:
            self._watch = asyncio.create_task(self._watch_sentinels())
        if self._primary is None:
            if self._discovery_error and \
                    time.monotonic() - self._discovered_at < self._limits.reconnect_backoff:
                raise RedisUnavailable(self._discovery_error)  # fail fast, as a node does
            await self._discover_now()
        if self._primary is None:
            raise RedisUnavailable(self._discovery_error)
        return self._primary

    def _primary_trouble(self) -> None:
        # Many requests fail at once when the primary goes: one discovery serves them.
        if (self._discovery is None or self._discovery.done()) and \
                time.monotonic() - self._discovered_at >= REDISCOVER_INTERVAL:
            self._discovery = asyncio.create_task(self._discover())

    async def _discover_now(self) -> None:
        if self._discovery is None or self._discovery.done():
            self._discovery = asyncio.create_task(self._discover())
        await asyncio.shield(self._discovery)

    async def _watch_sentinels(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                await self._discover_now()
            except Exception:  # e.g. a reply of an unexpected shape: keep watching
                log.exception("backend '%s': asking the Sentinels failed", self.name)

    async def _discover(self) -> None:
        self._discovered_at = time.monotonic()
        answers = await asyncio.gather(*(self._ask(s) for s in self._sentinels))
        views = [a for a in answers if isinstance(a, _View)]
        failures = [a for a in answers if isinstance(a, str)]
        # Sentinels disagree for a moment around a failover: the others learn it from the
        # one that ran it. The newest view wins: the highest configuration epoch, then the
        # Sentinel running a failover (it names the promoted replica before the epoch
        # moves), then the primary in use (no switching back and forth on a tie).
        current = next((e for e, n in self._nodes.items() if n is self._primary), None)
        if views:
            best = max(views, key=lambda v: (v.epoch, v.failing_over, v.primary == current))
            if best.primary == current or not await self._demoted(best.primary):
                self._switch(best.primary, best.replicas)
                self._discovery_error = ""
                return
            failures.append(f"the Sentinels name {best.primary[0]}:{best.primary[1]} as the "
                            "primary, but it says it is a replica (failover under way?)")
        error = (f"no Sentinel could say where the primary of '{self.master}' is: "
                 + "; ".join(failures))
        if error != self._discovery_error:  # once per outage, not once per attempt
            log.warning("backend '%s': %s", self.name, error)
        self._discovery_error = error

    async def _ask(self, sentinel: StandaloneBackend) -> _View | str:
        """One Sentinel's view, or why it has none. One round trip."""
        name = self.master.encode()
        commands = [[b"SENTINEL", b"GET-MASTER-ADDR-BY-NAME", name],
                    [b"SENTINEL", b"MASTER", name]]
        if self._reads_on_replicas:
            commands.append([b"SENTINEL", b"REPLICAS", name])
        try:
            async with asyncio.timeout(self._limits.connect_timeout):
                addr, master, *listing = await sentinel.run(commands)
        except TimeoutError:
            return f"{sentinel.label}: no answer within {self._limits.connect_timeout:g} s"
        except GatewayError as exc:
            return exc.message
        if not isinstance(addr, list) or len(addr) != 2 or not isinstance(master, list):
            why = addr if isinstance(addr, ReplyError) else "no master by that name"
            return f"{sentinel.label} does not know '{self.master}': {why}"
        state = {k: _text(v) for k, v in _pairs(master).items()}
        replicas: list[Endpoint] = []
        for entry in listing[0] if listing and isinstance(listing[0], list) else []:
            info = {k: _text(v) for k, v in _pairs(entry).items()}
            flags = set(info.get("flags", "").split(","))
            if not flags & {"s_down", "o_down", "disconnected"} and \
                    info.get("master-link-status") == "ok":
                replicas.append((info["ip"], int(info["port"])))
        return _View(primary=(_text(addr[0]), int(addr[1])), replicas=replicas,
                     epoch=int(state.get("config-epoch", "0")),
                     failing_over="failover_in_progress" in state.get("flags", ""))

    async def _demoted(self, endpoint: Endpoint) -> bool:
        """True only if the node answers that it is not a primary; unreachable is not."""
        try:
            async with asyncio.timeout(self._limits.connect_timeout):
                (role,) = await self._node(endpoint).run([[b"ROLE"]])
        except (GatewayError, TimeoutError):
            return False  # the Sentinels' word stands; requests fail fast until it changes
        return isinstance(role, list) and bool(role) and role[0] != b"master"

    def _node(self, endpoint: Endpoint) -> StandaloneBackend:
        node = self._nodes.get(endpoint)
        if node is None:
            host, port = endpoint
            address = dataclasses.replace(self._template, host=host, port=port)
            node = self._nodes[endpoint] = StandaloneBackend(
                f"{self.name} {host}:{port}", self._settings, self._limits, address=address)
        return node

    def _switch(self, primary: Endpoint, replicas: list[Endpoint]) -> None:
        node = self._node(primary)
        if node is not self._primary:
            if self._primary is None:
                log.info("backend '%s': primary of '%s' is %s", self.name, self.master,
                         node.label)
            else:
                log.warning("backend '%s': primary of '%s' is now %s (was %s)", self.name,
                            self.master, node.label, self._primary.label)
            self._primary = node
        # The old primary's node stays: it often comes back as a replica.
        self._replicas = [self._node(r) for r in replicas if r != primary]

    async def close(self) -> None:
        for task in (self._watch, self._discovery):
            if task is not None:
                task.cancel()
        for node in [*self._sentinels, *self._nodes.values()]:
            await node.close()

