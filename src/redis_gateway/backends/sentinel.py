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
from urllib.parse import unquote, urlsplit

from ..connect import Address
from ..errors import GatewayError, RedisUnavailable
from ..observe import metrics
from ..redis_types import pairs, text
from ..resp import ReplyError
from ..settings import BackendSettings, LimitSettings
from .node import Endpoint, Node, Nodes
from .refresher import Refresher
from .replicas import ReplicaBackend

log = logging.getLogger("redis_gateway.backends.sentinel")

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
        super().__init__(name, settings, Nodes(settings, limits), primary=None, replicas=[])
        self._limits = limits
        # The host part as written: master names are case-sensitive, hostnames are not.
        self.master = unquote(urlsplit(settings.url).netloc.rpartition("@")[2])
        # Each Sentinel with the credentials of its own URL.
        self._sentinels = [Node(Address.parse(url), settings, limits)
                           for url in settings.sentinels]
        # Many requests fail at once when the primary goes: one discovery serves them.
        self._discovery = Refresher(
            self._discover, backoff=limits.reconnect_backoff, logger=log,
            label=f"backend '{name}'", recovered="the Sentinels name the primary again",
            interval=REDISCOVER_INTERVAL)
        self._watch: asyncio.Task[None] | None = None

    @property
    def label(self) -> str:
        return f"Sentinel master '{self.master}': {super().label}"

    # discovery ------------------------------------------------------------------------
    async def _current_primary(self) -> Node:
        if self._watch is None:
            self._watch = asyncio.create_task(self._watch_sentinels())
        if self._primary is None:
            await self._discovery.refresh()
        if self._primary is None:
            raise RedisUnavailable(self._discovery.failure or "no primary known yet")
        return self._primary

    def _primary_trouble(self) -> None:
        self._discovery.refresh_soon()

    async def _watch_sentinels(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            self._discovery.refresh_soon()

    async def _discover(self) -> None:
        answers = await asyncio.gather(*(self._ask(s) for s in self._sentinels))
        views = [a for a in answers if isinstance(a, _View)]
        failures = [a for a in answers if isinstance(a, str)]
        # Sentinels disagree for a moment around a failover: the others learn it from the
        # one that ran it. The newest view wins: the highest configuration epoch, then the
        # Sentinel running a failover (it names the promoted replica before the epoch
        # moves), then the primary in use (no switching back and forth on a tie).
        current = self._primary.endpoint if self._primary is not None else None
        if views:
            best = max(views, key=lambda v: (v.epoch, v.failing_over, v.primary == current))
            if best.primary == current or not await self._demoted(best.primary):
                self._switch(best.primary, best.replicas)
                return
            failures.append(f"the Sentinels name {best.primary[0]}:{best.primary[1]} as the "
                            "primary, but it says it is a replica (failover under way?)")
        raise RedisUnavailable(f"no Sentinel could say where the primary of '{self.master}' "
                               "is: " + "; ".join(failures))

    async def _ask(self, sentinel: Node) -> _View | str:
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
        state = {k: text(v) for k, v in pairs(master).items()}
        replicas: list[Endpoint] = []
        for entry in listing[0] if listing and isinstance(listing[0], list) else []:
            info = {k: text(v) for k, v in pairs(entry).items()}
            flags = set(info.get("flags", "").split(","))
            if not flags & {"s_down", "o_down", "disconnected"} and \
                    info.get("master-link-status") == "ok":
                replicas.append((info["ip"], int(info["port"])))
        return _View(primary=(text(addr[0]), int(addr[1])), replicas=replicas,
                     epoch=int(state.get("config-epoch", "0")),
                     failing_over="failover_in_progress" in state.get("flags", ""))

    async def _demoted(self, endpoint: Endpoint) -> bool:
        """True only if the node answers that it is not a primary; unreachable is not."""
        try:
            async with asyncio.timeout(self._limits.connect_timeout):
                (role,) = await self._nodes.at(endpoint).run([[b"ROLE"]])
        except (GatewayError, TimeoutError):
            return False  # the Sentinels' word stands; requests fail fast until it changes
        return isinstance(role, list) and bool(role) and role[0] != b"master"

    def _switch(self, primary: Endpoint, replicas: list[Endpoint]) -> None:
        node = self._nodes.at(primary)
        if node is not self._primary:
            if self._primary is None:
                log.info("backend '%s': primary of '%s' is %s", self.name, self.master,
                         node.label)
            else:
                log.warning("backend '%s': primary of '%s' is now %s (was %s)", self.name,
                            self.master, node.label, self._primary.label)
                metrics.sink.backend_event(node.label, "failover")
            self._primary = node
        # The old primary's node stays: it often comes back as a replica.
        self._replicas = [self._nodes.at(r) for r in replicas if r != primary]

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        self._discovery.close()
        for node in self._sentinels:
            await node.close()
        await super().close()

