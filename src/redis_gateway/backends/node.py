"""One Redis server, as every topology uses it: a ``Node`` and its connections.

A node is an address and a ``ConnectionGroup``: a few shared connections that carry
commands from every request back to back, and a bounded set of reserved ones that one
request at a time has to itself (transactions, blocking commands). The standalone
topology is one node; replicas, Sentinel and Cluster are several, made by ``Nodes``
with the backend's credentials and TLS files, and told how to run a batch there by a
``Dispatch`` (shared or reserved).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from functools import partial
from typing import Any

import hiredis

from ..acl import RedisUser
from ..commands import CommandTable
from ..connect import Address, TlsFiles, open_connection
from ..connection import Connection
from ..errors import CommandTimeout, RedisUnavailable
from ..redis_types import Argv
from ..resp import ReplyError
from ..settings import BackendSettings, LimitSettings
from .refresher import Refresher

log = logging.getLogger("redis_gateway.backends")

Endpoint = tuple[str, int]  # (host, port), as topologies name their nodes

# Runs before a group opens a connection; True: the server refused its credentials.
Prepare = Callable[[bool], Awaitable[None]]

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


def pack(commands: Sequence[Argv]) -> bytes:
    return b"".join([hiredis.pack_command(tuple(c)) for c in commands])  # type: ignore[arg-type]


class ConnectionGroup:
    """The connections to one node under one set of credentials.

    Shared connections (``shared`` of them, the least loaded takes the next batch) plus
    up to ``max_reserved`` reserved ones, kept idle between uses. A lost shared
    connection is reopened by one refresher: one reconnect at a time, failing fast
    during the back-off that follows a failed one.
    """

    def __init__(self, address: Address, tls: TlsFiles, limits: LimitSettings, *,
                 shared: int, slots: asyncio.Semaphore, max_reserved: int,
                 readonly: bool = False, prepare: Prepare | None = None) -> None:
        """``slots`` bounds the reserved connections of every group of the node together;
        ``readonly`` sends READONLY on every connection (a Cluster replica that serves
        reads); ``prepare(again)`` runs before a connection is opened (a managed user is
        made to exist), ``again`` after the server refused the credentials."""
        self.address = address
        self._prepare = prepare
        self._tls = tls
        self._limits = limits
        self._readonly = readonly
        self._shared: list[Connection | None] = [None] * shared
        # One shared connection per protocol for replies read with every type kept
        # apart (``exact``, see ``resp.py``).
        self._typed: dict[int, Connection] = {}
        self._typed_lock = asyncio.Lock()
        # Idle reserved connections, by reply reader (see ``run``).
        self._idle: dict[int | None, list[Connection]] = {None: [], 2: [], 3: []}
        self._reserved = slots
        self._max_reserved = max_reserved
        self._reconnect = Refresher(
            self._reconnect_shared, backoff=limits.reconnect_backoff, logger=log,
            recovered=f"Redis at {address.display()} answers again")

    def run(self, commands: Sequence[Argv], *, exact: int | None = None
            ) -> Awaitable[list[Any]]:
        """The commands back to back on a shared connection; their replies in order."""
        first = self._shared[0]
        if exact is None and len(self._shared) == 1 and first is not None and first.alive:
            # The usual case, without a coroutine of its own: one shared connection, up.
            return first.send(pack(commands), len(commands), self._limits.command_timeout)
        return self._run_shared(commands, exact)

    async def _run_shared(self, commands: Sequence[Argv], exact: int | None) -> list[Any]:
        conn = await (self._shared_connection() if exact is None
                      else self._typed_connection(exact))
        return await conn.send(pack(commands), len(commands), self._limits.command_timeout)

    async def run_reserved(
        self, commands: Sequence[Argv], *, timeout: float, reusable: bool = True,
        exact: int | None = None,
    ) -> list[Any]:
        """The commands alone on a connection no other request uses meanwhile.
        ``reusable=False`` closes it afterwards (its state was changed, e.g. by SELECT)."""
        try:
            async with asyncio.timeout(self._limits.command_timeout):
                await self._reserved.acquire()
        except TimeoutError:
            raise RedisUnavailable(
                f"all {self._max_reserved} reserved connections (for transactions and "
                "blocking commands) are busy; raise max_dedicated_connections or retry"
            ) from None
        conn: Connection | None = None
        try:
            idle = self._idle[exact]
            while idle and conn is None:
                candidate = idle.pop()
                conn = candidate if candidate.alive else None
            if conn is None:
                conn = await self._reconnect.attempt(partial(self._open, exact))
            replies = await conn.send(pack(commands), len(commands), timeout)
            if reusable and conn.alive:
                idle.append(conn)
                conn = None
            return replies
        finally:
            if conn is not None:
                conn.close()
            self._reserved.release()

    async def _shared_connection(self) -> Connection:
        alive = [c for c in self._shared if c is not None and c.alive]
        if len(alive) < len(self._shared):
            try:
                await self._reconnect.refresh()
            except RedisUnavailable:
                if not alive:
                    raise
                # The connections still up carry the load meanwhile.
            alive = [c for c in self._shared if c is not None and c.alive]
            if not alive:
                raise RedisUnavailable(self._reconnect.failure or
                                       f"connection to Redis at {self.address.display()} lost")
        return min(alive, key=lambda c: c.load)

    async def _reconnect_shared(self) -> None:
        for i, conn in enumerate(self._shared):
            if conn is None or not conn.alive:
                self._shared[i] = await self._open()
                if conn is not None and not self._reconnect.failure:
                    # Lost, and back at the first try: no outage for the refresher to log.
                    log.info("reconnected to Redis at %s (%s)", self.address.display(),
                             conn.lost_reason)

    async def _typed_connection(self, protocol: int) -> Connection:
        async with self._typed_lock:
            conn = self._typed.get(protocol)
            if conn is None or not conn.alive:
                conn = self._typed[protocol] = await self._reconnect.attempt(
                    partial(self._open, protocol))
            return conn

    async def _open(self, exact: int | None = None) -> Connection:
        if self._prepare is not None:
            await self._prepare(False)
        try:
            conn = await self._connect(exact)
        except RedisUnavailable as exc:
            if self._prepare is None or "WRONGPASS" not in exc.message:
                raise
            # The user is gone (a restarted node, an ACL DELUSER): make it again, once.
            await self._prepare(True)
            conn = await self._connect(exact)
        if self._readonly:
            await self._allow_replica_reads(conn)
        return conn

    def _connect(self, exact: int | None) -> Awaitable[Connection]:
        return open_connection(
            self.address, tls=self._tls, timeout=self._limits.connect_timeout,
            typed=exact is not None, resp3=exact == 3,
            reply_limit=self._limits.max_reply_bytes,
        )

    @property
    def busy(self) -> bool:
        """Some connection of this group has commands in flight."""
        return any(c is not None and c.load for c in [*self._shared, *self._typed.values()])

    async def _allow_replica_reads(self, conn: Connection) -> None:
        where = self.address.display()
        try:
            reply = await conn.call("READONLY", timeout=self._limits.connect_timeout)
        except CommandTimeout:
            conn.close()
            raise RedisUnavailable(f"Redis at {where} did not answer READONLY") from None
        if isinstance(reply, ReplyError):
            conn.close()
            raise RedisUnavailable(f"Redis at {where} refused READONLY: {reply}")

    def close(self) -> None:
        self._reconnect.close()
        idle = [conn for conns in self._idle.values() for conn in conns]
        for conn in [*self._shared, *self._typed.values(), *idle]:
            if conn is not None:
                conn.close()
        self._idle = {None: [], 2: [], 3: []}


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
        self._made: set[RedisUser] = set()  # managed users known to exist on this node
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

    def nodes(self) -> list[Node]:
        return [self]

    async def make_user(self, user: RedisUser) -> None:
        """Make a managed user exist with its rules on this node now, not at first use."""
        await self._make_user(user, False)

    async def _make_user(self, user: RedisUser, again: bool) -> None:
        """Create or refresh a managed user with its rules on this node (ACL SETUSER on
        the gateway's own connection), before connections authenticate as it."""
        if user in self._made and not again:
            return
        async with self._making:
            if user in self._made and not again:
                return
            assert user.create is not None
            (reply,) = await self.connections.run([user.create])
            if isinstance(reply, ReplyError):
                raise RedisUnavailable(
                    f"Redis at {self.label} refused to create the ACL user for a token's "
                    f"rules ({reply}): the gateway's own Redis user needs ACL SETUSER "
                    "(+acl), or set this backend's enforcement to \"mapped\" or "
                    "\"gateway\"")
            self._made.add(user)

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
