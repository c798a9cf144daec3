"""The one path from a principal and an argv to Redis replies.

Every front door calls ``Executor``; nothing else decides whether a command may
run. For each command it checks, in order: that the server knows it, that it can
work on a request/response endpoint, its arity, the token's command rules, the
keys and channels it touches, and caps a blocking command's timeout. Then it picks
how to run it: back to back on a shared connection, or alone on a reserved one
(transactions and commands that block).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from .auth import Principal
from .backends import Backend
from .commands import READ_FLAGS, WRITE_FLAGS, CommandInfo, CommandTable
from .errors import BadRequest, Forbidden, GatewayError, LimitExceeded, RedisCommandError
from .redis_types import Argv
from .resp import ReplyError
from .settings import LimitSettings

# Commands that cannot work when each request may run on a connection shared with
# others, with the reason and, where there is one, what to use instead.
_STREAMING = ("it streams replies, which a request/response endpoint cannot carry; "
              "this gateway has no streaming endpoint yet (POST /{name}/... with "
              "Server-Sent Events is planned)")
_CONNECTION_STATE = "it changes the state of a connection the gateway shares between requests"
NOT_ON_THIS_ENDPOINT: dict[str, str] = {
    "subscribe": _STREAMING,
    "psubscribe": _STREAMING,
    "ssubscribe": _STREAMING,
    "monitor": _STREAMING,
    "unsubscribe": "there is no subscription on a request/response endpoint; close the stream",
    "punsubscribe": "there is no subscription on a request/response endpoint; close the stream",
    "sunsubscribe": "there is no subscription on a request/response endpoint; close the stream",
    "multi": "send the whole transaction to POST /multi-exec",
    "exec": "send the whole transaction to POST /multi-exec",
    "discard": "send the whole transaction to POST /multi-exec",
    "watch": "WATCH needs a connection kept between requests; use POST /multi-exec or a script",
    "unwatch": "WATCH needs a connection kept between requests; use POST /multi-exec or a script",
    "select": "choose the database in the token's backend URL (redis://host:port/<db>); "
    "SELECT is allowed inside POST /multi-exec",
    "sync": "it is the replication protocol",
    "psync": "it is the replication protocol",
    "replconf": "it is the replication protocol",
    "hello": _CONNECTION_STATE,
    "auth": "the gateway authenticates to Redis itself; send your gateway token instead",
    "reset": _CONNECTION_STATE,
    "quit": _CONNECTION_STATE,
    "readonly": _CONNECTION_STATE,
    "readwrite": _CONNECTION_STATE,
    "client|reply": _CONNECTION_STATE,
    "client|setname": _CONNECTION_STATE,
    "client|tracking": _CONNECTION_STATE,
    "client|caching": _CONNECTION_STATE,
    "client|no-evict": _CONNECTION_STATE,
    "client|no-touch": _CONNECTION_STATE,
    "client|setinfo": _CONNECTION_STATE,
    "client|pause": "it would pause the gateway's own connections, stalling every client",
    "client|unpause": "CLIENT PAUSE is not available through the gateway",
}
ALLOWED_IN_TRANSACTION = frozenset({"select"})

# Where each blocking command carries its timeout: (position or keyword, unit).
# Negative positions count from the end, as in Python.
_SECONDS, _MILLIS = 1.0, 1000.0
BLOCK_TIMEOUTS: dict[str, tuple[int | bytes, float]] = {
    "blpop": (-1, _SECONDS),
    "brpop": (-1, _SECONDS),
    "brpoplpush": (-1, _SECONDS),
    "blmove": (-1, _SECONDS),
    "bzpopmin": (-1, _SECONDS),
    "bzpopmax": (-1, _SECONDS),
    "blmpop": (1, _SECONDS),
    "bzmpop": (1, _SECONDS),
    "xread": (b"block", _MILLIS),
    "xreadgroup": (b"block", _MILLIS),
    "wait": (2, _MILLIS),
    "waitaof": (3, _MILLIS),
}


class Prepared(NamedTuple):
    argv: Sequence[bytes]
    info: CommandInfo
    blocks: bool  # must run alone on a reserved connection


class Executor:
    def __init__(self, backends: Mapping[str, Backend], limits: LimitSettings) -> None:
        self.backends = backends
        self.limits = limits

    def backend_for(self, principal: Principal) -> Backend:
        return self.backends[principal.backend]

    # checks -----------------------------------------------------------------------
    async def prepare(
        self, principal: Principal, argv: Argv, table: CommandTable, *,
        in_transaction: bool = False, read_only: bool = False,
    ) -> Prepared:
        """Every check, including keys that only the server can find."""
        prepared = self.check(principal, argv, table, in_transaction=in_transaction,
                              read_only=read_only)
        if not principal.policy.all_keys:
            await self._check_keys(principal, prepared.info, argv)
        return prepared

    def check(
        self, principal: Principal, argv: Argv, table: CommandTable, *,
        in_transaction: bool = False, read_only: bool = False,
    ) -> Prepared:
        """Every check that needs no round trip: all of them for a token with allkeys."""
        if not argv:
            raise BadRequest("empty command: the first element must be a command name")
        info = table.lookup(argv)
        if info is None:
            raise BadRequest(_unknown_command(argv))
        reason = NOT_ON_THIS_ENDPOINT.get(info.name)
        if reason and not (in_transaction and info.name in ALLOWED_IN_TRANSACTION):
            raise BadRequest(
                f"ERR {info.name.replace('|', ' ').upper()} is not available here: "
                + reason.format(name=info.name)
            )
        if not info.arity_ok(len(argv)):
            raise BadRequest(f"ERR wrong number of arguments for '{info.name}' command")
        if read_only and not _reads_only(info):
            raise BadRequest(
                f"'{info.name}' may write, and this request runs read-only commands only "
                "(a GraphQL Query); send it in a Mutation"
            )
        policy = principal.policy
        if not policy.allows_command(info):
            raise Forbidden(
                f"NOPERM this token has no permissions to run the '{info.name}' command"
            )
        if info.pubsub and not policy.all_channels:
            channels = argv[1:2] if info.name in ("publish", "spublish") else argv[1:]
            denied = policy.denied_channel(channels)
            if denied is not None:
                raise Forbidden(
                    f"NOPERM this token has no permissions to access the "
                    f"'{denied.decode('utf-8', 'replace')}' channel"
                )
        if info.blocking:
            argv, blocks = self._cap_block(info.name, argv)
            return Prepared(argv, info, blocks)
        return Prepared(argv, info, False)

    async def _check_keys(self, principal: Principal, info: CommandInfo, argv: Argv) -> None:
        denied = principal.policy.denied_key(await self._keys(principal, info, argv))
        if denied is not None:
            raise Forbidden(
                f"NOPERM this token has no permissions to access the "
                f"'{denied.decode('utf-8', 'replace')}' key"
            )

    async def _keys(
        self, principal: Principal, info: CommandInfo, argv: Argv
    ) -> list[tuple[bytes, frozenset[str]]]:
        if not info.keys_need_server:
            try:
                return info.keys(argv)
            except ValueError as exc:
                raise BadRequest(f"ERR {exc}") from None
        backend = self.backend_for(principal)
        (reply,) = await backend.run([[b"COMMAND", b"GETKEYSANDFLAGS", *argv]])
        if isinstance(reply, ReplyError) and "unknown subcommand" in str(reply).lower():
            # Redis 6 has no GETKEYSANDFLAGS: treat every key as read and written.
            (reply,) = await backend.run([[b"COMMAND", b"GETKEYS", *argv]])
            if isinstance(reply, list):
                return [(k, READ_FLAGS | WRITE_FLAGS) for k in reply]
        if isinstance(reply, ReplyError):
            if "no key arguments" in str(reply).lower():
                return []
            raise BadRequest(str(reply))
        return [(k, frozenset(f.decode().lower() for f in flags)) for k, flags in reply]

    def _cap_block(self, name: str, argv: Argv) -> tuple[Sequence[bytes], bool]:
        """Bound a blocking command's timeout; say whether it can block at all."""
        where = BLOCK_TIMEOUTS.get(name)
        if where is None:  # a module's blocking command: run alone, timeout enforced
            return argv, True
        place, unit = where
        if isinstance(place, bytes):
            lowered = [a.lower() for a in argv]
            if place not in lowered:
                return argv, False  # XREAD without BLOCK answers at once
            index = lowered.index(place) + 1
        else:
            index = place if place >= 0 else len(argv) + place
        if index >= len(argv):
            return argv, True
        try:
            value = float(argv[index])
        except ValueError:
            return argv, True  # let Redis report the malformed timeout
        cap = self.limits.max_block_seconds * unit
        if value == 0 or value > cap:
            capped = list(argv)
            capped[index] = (b"%d" % cap) if unit == _MILLIS else repr(cap).encode()
            return capped, True
        return argv, True

    # running ----------------------------------------------------------------------
    def _check_count(self, commands: Sequence[Argv]) -> None:
        if not commands:
            raise BadRequest("the request holds no commands: send an array of command arrays")
        if len(commands) > self.limits.max_commands:
            raise LimitExceeded(
                f"{len(commands)} commands in one request; the limit is "
                f"{self.limits.max_commands} (limits.max_commands)"
            )

    @property
    def _block_timeout(self) -> float:
        return self.limits.max_block_seconds + self.limits.command_timeout

    async def execute(
        self, principal: Principal, argv: Argv, *, exact: int | None = None
    ) -> Any:
        """One command; its reply (a Redis error reply is returned, not raised)."""
        backend = self.backend_for(principal)
        prepared = await self.prepare(principal, argv, await backend.command_table())
        if prepared.blocks:
            (reply,) = await backend.run_reserved(
                [prepared.argv], timeout=self._block_timeout, exact=exact
            )
        else:
            (reply,) = await backend.run([prepared.argv], exact=exact)
        return reply

    async def pipeline(
        self, principal: Principal, commands: Sequence[Argv], *, exact: int | None = None,
        read_only: bool = False,
    ) -> list[Any]:
        """Each command's reply or error in order; a refused command does not stop the rest.

        ``read_only`` refuses every command that may write (see ``_reads_only``).
        """
        self._check_count(commands)
        backend = self.backend_for(principal)
        table = await backend.command_table()
        results: list[Any] = [None] * len(commands)
        runnable: list[tuple[int, Prepared]] = []
        all_keys = principal.policy.all_keys
        for i, argv in enumerate(commands):
            try:
                # prepare(), unrolled: no coroutine per command when no key needs the server
                prepared = self.check(principal, argv, table, read_only=read_only)
                if not all_keys:
                    await self._check_keys(principal, prepared.info, argv)
                runnable.append((i, prepared))
            except GatewayError as exc:
                results[i] = exc
        if runnable:
            argvs = [p.argv for _, p in runnable]
            if any(p.blocks for _, p in runnable):
                replies = await backend.run_reserved(argvs, timeout=self._block_timeout,
                                                     exact=exact)
            else:
                replies = await backend.run(argvs, exact=exact)
            for (i, _), reply in zip(runnable, replies, strict=True):
                results[i] = reply
        return results

    async def transaction(
        self, principal: Principal, commands: Sequence[Argv], *, exact: int | None = None
    ) -> list[Any]:
        """MULTI ... EXEC on a reserved connection; the replies of EXEC, in order.

        Raises when the transaction is refused or discarded as a whole.
        """
        self._check_count(commands)
        backend = self.backend_for(principal)
        table = await backend.command_table()
        prepared: list[Prepared] = []
        for i, argv in enumerate(commands):
            try:
                prepared.append(
                    await self.prepare(principal, argv, table, in_transaction=True)
                )
            except GatewayError as exc:
                exc.message = f"{exc.message} (command {i + 1} of the transaction; " \
                              "nothing was run)"
                raise
        selects = any(p.info.name == "select" for p in prepared)
        replies = await backend.run_reserved(
            [[b"MULTI"], *(p.argv for p in prepared), [b"EXEC"]],
            timeout=self.limits.command_timeout,
            reusable=not selects,  # SELECT changed the connection's database
            exact=exact,
        )
        for i, queued in enumerate(replies[1:-1]):
            if isinstance(queued, ReplyError):
                raise RedisCommandError(
                    f"EXECABORT Transaction discarded because command {i + 1} "
                    f"({prepared[i].info.name}) was refused: {queued}"
                )
        result = replies[-1]
        if isinstance(result, ReplyError):
            raise RedisCommandError(str(result))
        if not isinstance(result, list):
            raise RedisCommandError("EXECABORT Transaction discarded")
        return result


# Categories of commands that may change data or the server even without the write flag
# (EVAL, FUNCTION, PUBLISH, CONFIG SET, ...).
_MAY_WRITE = frozenset({"write", "scripting", "admin", "dangerous", "pubsub"})


def _reads_only(info: CommandInfo) -> bool:
    """True for commands the server marks read-only, or that touch no data at all (PING)."""
    if "readonly" in info.flags:
        return True
    return "write" not in info.flags and not info.categories & _MAY_WRITE


def _unknown_command(argv: Argv) -> str:
    name = argv[0].decode("utf-8", "replace")
    # Redis's own wording, a space after each quoted argument included.
    args = "".join(f"'{a.decode('utf-8', 'replace')}' " for a in argv[1:6])
    return f"ERR unknown command '{name}', with args beginning with: {args}"
