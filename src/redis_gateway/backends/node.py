"""One Redis server, as every topology uses it: a ``Node`` and its connections.

A node is an address and, per set of credentials, a ``ConnectionGroup`` (``group.py``):
a few shared connections that carry commands from every request back to back, and a
bounded set of reserved ones that one request at a time has to itself (transactions,
blocking commands). The standalone topology is one node; replicas, Sentinel and Cluster
are several, made by ``Nodes`` with the backend's credentials and TLS files, and told how
to run a batch there by a ``Dispatch`` (shared or reserved).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from functools import partial
from typing import Any

from ..acl import RedisUser
from ..commands import CommandTable
from ..connect import Address, TlsFiles
from ..errors import RedisUnavailable
from ..redis_types import Argv
from ..resp import ReplyError
from ..settings import BackendSettings, LimitSettings
from .group import ConnectionGroup, Prepare

log = logging.getLogger("redis_gateway.backends")

Endpoint = tuple[str, int]  # (host, port), as topologies name their nodes

# A token's own connections (a lane, see acl.RedisUser) unused this long may be closed
# to make room for another token's when a node has max_user_groups groups.
LANE_IDLE_SECONDS = 60.0

# A replica answering these has no data to read right now; its primary has.
REPLICA_NOT_READY = ("LOADING ", "MASTERDOWN ")


def backend_address(settings: BackendSettings) -> Address:
    """The address in the backend's URL, with ``username``/``password`` settings applied."""
    address = Address.parse(settings.url)
    if settings.username is not None or settings.password is not None:
        address = dataclasses.replace(
            address, username=settings.username or address.username,
            password=settings.password or address.password,
        )
    return address


class Node:
    """One Redis server: its address, its connections and its command table."""

    def __init__(self, address: Address, settings: BackendSettings, limits: LimitSettings, *,
                 readonly: bool = False) -> None:
        self.address = address
        self._tls = TlsFiles(settings.tls_ca_file, settings.tls_cert_file,
                             settings.tls_key_file, settings.tls_check_hostname)
        self._settings = settings
        self._limits = limits
        self._readonly = readonly
        # Reserved connections, bounded for the node whatever users they authenticate as.
        self._slots = asyncio.Semaphore(settings.max_dedicated_connections)
        # The gateway's own connections (command table, keys, slot maps, the token store).
        self.connections = self._group(address, None)
        # Each token rule set's, by the Redis user it runs as (enforcement.py), oldest
        # first.
        self._groups: dict[RedisUser, ConnectionGroup] = {}
        self._made: set[str] = set()  # managed users known to exist on this node
        self._lanes_full_until = 0.0  # no room for a lane: not looked for again until then
        self._making = asyncio.Lock()
        self._table: CommandTable | None = None

    def _group(self, address: Address, prepare: Prepare | None) -> ConnectionGroup:
        return ConnectionGroup(
            address, self._tls, self._limits, shared=self._settings.connections,
            slots=self._slots, max_reserved=self._settings.max_dedicated_connections,
            readonly=self._readonly, prepare=prepare)

    def group(self, user: RedisUser | None) -> ConnectionGroup:
        """The connections that authenticate as ``user`` (None: as the gateway)."""
        if user is None:
            return self.connections
        group = self._groups.get(user)
        if group is not None:
            return group
        if user.base is not None and not self._room_for_lane():
            return self.group(user.base)  # the token shares its rule set's connections
        address = dataclasses.replace(self.address, username=user.username,
                                      password=user.password)
        group = self._groups[user] = self._group(
            address, partial(self._make_user, user) if user.create else None)
        self._close_idle_groups()
        return group

    def _close_idle_groups(self) -> None:
        """Past max_user_groups, the oldest groups with nothing in flight go (not kept in
        order of use: that would cost every request); a group is opened again, lazily, at
        its user's next request."""
        excess = len(self._groups) - self._settings.max_user_groups
        for user in [u for u, g in self._groups.items() if not g.busy][:max(excess, 0)]:
            self._groups.pop(user).close()

    def _room_for_lane(self) -> bool:
        """Below max_user_groups, or once a lane idle for LANE_IDLE_SECONDS is closed."""
        if len(self._groups) < self._settings.max_user_groups:
            return True
        now = time.monotonic()
        if now < self._lanes_full_until:
            return False
        for user, group in self._groups.items():
            if user.lane and not group.busy and now - group.used > LANE_IDLE_SECONDS:
                self._groups.pop(user).close()
                return True
        self._lanes_full_until = now + 1.0  # looked at every group: not on every request
        return False

    def nodes(self) -> list[Node]:
        return [self]

    def connection_counts(self) -> list[tuple[str, int, int]]:
        """(rule set, shared, reserved) per connection group: "gateway" for its own, else
        the Redis user a rule set runs as. Read by /metrics, not per request."""
        counts: dict[str, tuple[int, int]] = {}
        for user, group in self._groups.items():  # a rule set's lanes count as its own
            shared, reserved = group.open_counts()
            before = counts.get(user.username, (0, 0))
            counts[user.username] = (before[0] + shared, before[1] + reserved)
        return [("gateway", *self.connections.open_counts()),
                *((name, *pair) for name, pair in counts.items())]

    async def make_user(self, user: RedisUser) -> None:
        """Make a managed user exist with its rules on this node now, not at first use."""
        await self._make_user(user, False)

    async def _make_user(self, user: RedisUser, again: bool) -> None:
        """Create or refresh a managed user with its rules on this node (ACL SETUSER on
        the gateway's own connection), before connections authenticate as it."""
        if user.username in self._made and not again:
            return
        async with self._making:
            if user.username in self._made and not again:
                return
            assert user.create is not None
            (reply,) = await self.connections.run([user.create])
            if isinstance(reply, ReplyError):
                raise RedisUnavailable(
                    f"Redis at {self.label} refused to create the ACL user for a token's "
                    f"rules ({reply}): the gateway's own Redis user needs ACL SETUSER "
                    "(+acl), or set this backend's enforcement to \"mapped\" or "
                    "\"gateway\"")
            self._made.add(user.username)

    @property
    def label(self) -> str:
        return self.address.display()

    @property
    def endpoint(self) -> Endpoint:
        return self.address.host, self.address.port

    def run(self, commands: Sequence[Argv], *, exact: int | None = None,
            user: RedisUser | None = None) -> Awaitable[list[Any]]:
        group = self.connections if user is None else \
            self._groups.get(user) or self.group(user)
        return group.run(commands, exact=exact)

    def run_reserved(
        self, commands: Sequence[Argv], *, timeout: float, reusable: bool = True,
        exact: int | None = None, user: RedisUser | None = None,
    ) -> Awaitable[list[Any]]:
        return self.group(user).run_reserved(commands, timeout=timeout, reusable=reusable,
                                             exact=exact)

    async def pubsub_node(self, shard_channel: bytes | None = None) -> Node:
        return self

    def push_address(self, user: RedisUser | None) -> tuple[Address, TlsFiles]:
        """Where and how a connection of its own (a subscriber's) reaches this node as
        ``user`` (None: as the gateway)."""
        if user is None:
            return self.address, self._tls
        return dataclasses.replace(self.address, username=user.username,
                                   password=user.password), self._tls

    async def command_table(self) -> CommandTable:
        if self._table is None:
            self._table = CommandTable.from_command_info(await command_listing(self))
        return self._table

    async def ping(self) -> bool:
        try:
            (reply,) = await self.run([[b"PING"]])
        except (RedisUnavailable, TimeoutError):
            return False
        return bool(reply == b"PONG")

    async def close(self) -> None:
        for group in [self.connections, *self._groups.values()]:
            group.close()
        self._groups.clear()
        self._made.clear()


class StandaloneBackend(Node):
    """``topology = "standalone"``: the backend is one server, the one in its URL."""

    def __init__(self, name: str, settings: BackendSettings, limits: LimitSettings) -> None:
        super().__init__(backend_address(settings), settings, limits)
        self.name = name


async def command_listing(node: Node) -> list[Any]:
    """The node's ``COMMAND`` reply: every command's flags, keys and tips."""
    # Plain COMMAND is COMMAND INFO for every command, on Redis 6 as on 7+.
    (reply,) = await node.run([[b"COMMAND"]])
    if not isinstance(reply, list) or not reply:
        raise RedisUnavailable(f"Redis at {node.label} did not list its commands: {reply}")
    return reply


class Nodes:
    """The data nodes of one deployment: those configured by URL, and those a topology
    reports (by endpoint, made on first use). The one place nodes are made: each reached
    with the backend URL's scheme, credentials and database, and its TLS files."""

    def __init__(self, settings: BackendSettings, limits: LimitSettings, *,
                 readonly: bool = False) -> None:
        self.template = backend_address(settings)
        self._settings = settings
        self._limits = limits
        self._readonly = readonly
        self._nodes: dict[Endpoint, Node] = {}
        self._configured: list[Node] = []

    def at(self, endpoint: Endpoint) -> Node:
        """The node at an address a topology reported (a slot map, a Sentinel)."""
        node = self._nodes.get(endpoint)
        if node is None:
            host, port = endpoint
            address = dataclasses.replace(self.template, host=host, port=port)
            node = self._nodes[endpoint] = Node(address, self._settings, self._limits,
                                                readonly=self._readonly)
        return node

    def from_url(self, url: str | None = None) -> Node:
        """The node of the backend's URL, or of another configured one (a replica): with
        its own credentials if it has some, else the backend's; always its database."""
        address = self.template
        if url is not None:
            given = Address.parse(url)
            address = dataclasses.replace(
                given, db=address.db, username=given.username or address.username,
                password=given.password or address.password,
            )
        node = Node(address, self._settings, self._limits, readonly=self._readonly)
        self._configured.append(node)
        return node

    def drop(self, endpoint: Endpoint) -> Node | None:
        """Forget a node (it left the topology); the caller closes it."""
        return self._nodes.pop(endpoint, None)

    def __iter__(self) -> Iterator[Node]:
        return iter([*self._configured, *self._nodes.values()])

    async def close(self) -> None:
        for node in self:
            await node.close()


# How a topology runs a batch on the node it chose: on a shared connection, or alone on a
# reserved one. Made once per request by ``on_shared`` or ``on_reserved``.
Dispatch = Callable[[Node, Sequence[Argv]], Awaitable[list[Any]]]


def on_shared(exact: int | None = None, user: RedisUser | None = None) -> Dispatch:
    def dispatch(node: Node, argvs: Sequence[Argv]) -> Awaitable[list[Any]]:
        return node.run(argvs, exact=exact, user=user)

    return dispatch


def on_reserved(timeout: float, reusable: bool, exact: int | None,
                user: RedisUser | None = None) -> Dispatch:
    def dispatch(node: Node, argvs: Sequence[Argv]) -> Awaitable[list[Any]]:
        return node.run_reserved(argvs, timeout=timeout, reusable=reusable, exact=exact,
                                 user=user)

    return dispatch


async def read_on_replica(
    replica: Node, commands: Sequence[Argv], dispatch: Dispatch,
    on_primary: Callable[[], Awaitable[list[Any]]],
) -> list[Any]:
    """Reads on ``replica``, or ``on_primary()`` when it cannot answer them now."""
    try:
        replies = await dispatch(replica, commands)
    except RedisUnavailable:  # down, or in its reconnect back-off: fails at once
        return await on_primary()
    for reply in replies:
        if isinstance(reply, ReplyError) and str(reply).startswith(REPLICA_NOT_READY):
            return await on_primary()
    return replies
