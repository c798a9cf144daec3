"""The one path from a principal and an argv to Redis replies.

Every front door calls ``Executor``; nothing else decides whether a command may run.
Each command meets the checks in ``checks.py``; then it runs back to back on a shared
connection, or alone on a reserved one (transactions, blocking commands, and anything that
could leave a connection different from how it found it: ``placement.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from .acl import RedisUser
from .admission import Admission, Admitted, timed
from .auth import Principal
from .backends import Backend
from .backends.node import backend_address
from .checks import Keys, Prepared, Scope, both_ways, check, check_keys
from .commands import CommandInfo, CommandTable
from .enforcement import Enforcement
from .errors import (
    BadRequest,
    CommandTimeout,
    Forbidden,
    GatewayError,
    LimitExceeded,
    RedisCommandError,
    RedisUnavailable,
)
from .observe.context import watch as observed
from .placement import Where
from .policy import Policy
from .redis_types import Argv
from .resp import ReplyError
from .settings import Settings

log = logging.getLogger("redis_gateway.executor")

# The commands that run code, and what stops that code once it ran too long.
_SCRIPT_KILLS = {name: (b"SCRIPT", b"KILL") for name in ("eval", "evalsha", "eval_ro",
                                                       "evalsha_ro")}
_SCRIPT_KILLS |= {"fcall": (b"FUNCTION", b"KILL"), "fcall_ro": (b"FUNCTION", b"KILL")}


_SCRIPT_REFUSED = "ERR The user executing the script can't"


def _gateway_error(reply: Any) -> GatewayError | None:
    """An error reply that means the request was refused, as the gateway's own refusal."""
    if not isinstance(reply, ReplyError):
        return None
    text = str(reply)
    if text.startswith("NOPERM "):  # Redis enforced the token's rules (its ACL user)
        return Forbidden(text.replace("this user", "this token", 1))
    if text.startswith(_SCRIPT_REFUSED):  # ... inside a script or function
        return Forbidden("NOPERM this token's rules do not allow what its script or function "
                         f"tried: {text}")
    if text.startswith("BUSY "):
        return RedisUnavailable(f"Redis is busy running a script or function and answered: "
                                f"{text}; retry shortly")
    return None


async def _timed(call: Awaitable[list[Any]], admitted: Admitted) -> list[Any]:
    """``call``, its time added to the request's Redis time (a token with redis_time)
    whatever its outcome: a reply too large or too deep took Redis's time too."""
    began = time.perf_counter()
    try:
        return await call
    finally:
        admitted.redis_seconds += time.perf_counter() - began


class Executor:
    def __init__(self, backends: Mapping[str, Backend], settings: Settings,
                 admission: Admission) -> None:
        self.backends = backends
        self.limits = settings.limits
        self._admission = admission
        self._reserved = {name: b.max_dedicated_connections
                          for name, b in settings.backends.items()}
        # Per backend: who enforces the tokens' rules there, and as which Redis users.
        self._scopes: dict[tuple[Policy, str, bool, bool, float], Scope] = {}
        self._enforcement = {
            name: Enforcement(name, b, backend_address(b).db)
            for name, b in settings.backends.items()
        }
        self._own_connections = {name: b.token_connections
                                 for name, b in settings.backends.items()}
        self._lanes: dict[tuple[str, str], RedisUser] = {}  # (backend, token) -> its lane

    def backend_for(self, principal: Principal) -> Backend:
        return self.backends[principal.backend]

    def scope(self, principal: Principal, *, read_only: bool = False,
              in_transaction: bool = False) -> Scope:
        """The principal's Scope, kept (with its verdicts) for the next request like it."""
        reply_rate = principal.share.reply_rate
        key = (principal.policy, principal.backend, read_only, in_transaction, reply_rate)
        scope = self._scopes.get(key)
        if scope is None:
            if len(self._scopes) > 4096:  # rule sets come and go with tokens
                self._scopes.clear()
            enforcement = self._enforcement[principal.backend]
            policy = principal.policy
            scope = self._scopes[key] = Scope(policy, enforcement.db,
                                              enforcement.redis_enforces, read_only,
                                              in_transaction, enforcement.user(policy),
                                              reply_rate, enforcement.unguarded_pattern(policy))
        return scope

    def enforcement(self, backend: str) -> Enforcement:
        return self._enforcement[backend]

    def redis_user(self, principal: Principal) -> RedisUser | None:
        """The Redis user the principal's commands run as (None: the gateway's own)."""
        return self.scope(principal).user

    def _shared_user(self, principal: Principal, user: RedisUser | None) -> RedisUser | None:
        """Whose shared connections carry the principal's commands: its own lane of its
        Redis user (``backends.<name>.token_connections``), so that no other token's
        replies come before its own on them."""
        if user is None or not self._own_connections[principal.backend]:
            return user
        key = (principal.backend, principal.name)
        lane = self._lanes.get(key)
        if lane is None or lane.base is not user:  # new, or its rules changed
            if len(self._lanes) > 4096:  # tokens come and go
                self._lanes.clear()
            lane = self._lanes[key] = user.lane_of(principal.name)
        return lane

    # checks -----------------------------------------------------------------------
    async def prepare(self, principal: Principal, scope: Scope, argv: Argv,
                      table: CommandTable) -> Prepared:
        """Every check, including keys that only the server can find."""
        prepared = check(scope, argv, table, self.limits)
        if not scope.policy.all_keys:
            await self._check_keys(principal, prepared.info, argv)
        return prepared

    async def _check_keys(self, principal: Principal, info: CommandInfo, argv: Argv) -> None:
        backend = self.backend_for(principal)

        async def ask(argv: Argv) -> Keys:
            (reply,) = await backend.run([[b"COMMAND", b"GETKEYSANDFLAGS", *argv]])
            if isinstance(reply, ReplyError) and "unknown subcommand" in str(reply).lower():
                # Redis 6 has no GETKEYSANDFLAGS: every key counts as read and written.
                (reply,) = await backend.run([[b"COMMAND", b"GETKEYS", *argv]])
                if isinstance(reply, list):
                    return both_ways(reply)
            if isinstance(reply, ReplyError):
                if "no key arguments" in str(reply).lower():
                    return []
                raise BadRequest(str(reply))
            return [(k, frozenset(f.decode().lower() for f in flags)) for k, flags in reply]

        await check_keys(principal.policy, info, argv, ask)

    # running ----------------------------------------------------------------------
    def _check_count(self, commands: Sequence[Argv]) -> None:
        if not commands:
            raise BadRequest("the request holds no commands: send an array of command arrays")
        if len(commands) > self.limits.max_commands:
            raise LimitExceeded(
                f"{len(commands)} commands in one request; the limit is "
                f"{self.limits.max_commands} (limits.max_commands)"
            )

    async def _watched(self, principal: Principal, prepared: Sequence[Prepared],
                       call: Awaitable[list[Any]]) -> list[Any]:
        """``call``'s replies; past command_timeout, a script among ``prepared`` is stopped.

        Redis runs one script at a time and answers BUSY to everyone meanwhile: a script
        that loops would stall every client until someone ran SCRIPT KILL by hand.
        """
        kills = {_SCRIPT_KILLS[p.info.name] for p in prepared if p.info.name in _SCRIPT_KILLS}
        if not kills:
            return await call
        try:
            return await call
        except CommandTimeout as exc:
            outcome = [await self._stop_script(principal, kill) for kill in sorted(kills)]
            raise CommandTimeout(f"{exc.message}; {'; '.join(outcome)}") from None

    async def _stop_script(self, principal: Principal, kill: tuple[bytes, bytes]) -> str:
        what = "script" if kill[0] == b"SCRIPT" else "function"
        try:
            (reply,) = await self.backend_for(principal).run([list(kill)])
        except GatewayError as exc:
            return f"the {what} may still be running: {kill[0].decode()} KILL failed " \
                   f"({exc.message})"
        text = str(reply)
        if not isinstance(reply, ReplyError):
            log.warning("token '%s': a %s ran past command_timeout; stopped with %s KILL",
                        principal.name, what, kill[0].decode())
            return f"the {what} ran past command_timeout and was stopped " \
                   f"({kill[0].decode()} KILL)"
        if text.startswith("NOTBUSY"):
            return f"no {what} is running any more"
        log.error("token '%s': a %s ran past command_timeout and cannot be stopped: %s",
                  principal.name, what, text)
        return (f"the {what} has already written data, so Redis cannot stop it ({text}); "
                "it runs until it ends, and Redis answers BUSY to every client meanwhile")

    async def _run_reserved(self, principal: Principal, commands: Sequence[Argv], *,
                            timeout: float, reusable: bool, exact: int | None) -> list[Any]:
        """On a reserved connection, within the token's share of them."""
        async with self._admission.reserved(principal.name, principal.share,
                                            self._reserved[principal.backend],
                                            self.limits.command_timeout, principal.backend):
            return await self.backend_for(principal).run_reserved(
                commands, timeout=timeout, reusable=reusable, exact=exact,
                user=self.redis_user(principal))

    @property
    def _block_timeout(self) -> float:
        return self.limits.max_block_seconds + self.limits.command_timeout

    async def execute(
        self, principal: Principal, argv: Argv, *, exact: int | None = None,
        read_only: bool = False,
    ) -> Any:
        """One command; its reply (a Redis error reply is returned, not raised)."""
        backend = self.backend_for(principal)
        scope = self.scope(principal, read_only=read_only)
        prepared = await self.prepare(principal, scope, argv, await backend.command_table())
        call: Awaitable[list[Any]]
        admitted = None
        if prepared.where.where is Where.RESERVED:
            call = self._run_reserved(
                principal, [prepared.argv], timeout=self._block_timeout,
                reusable=prepared.where.reusable, exact=exact,
            )
        else:
            call = backend.run([prepared.argv], exact=exact,
                               user=self._shared_user(principal, scope.user))
            admitted = timed.get()
        if prepared.info.name in _SCRIPT_KILLS:
            call = self._watched(principal, [prepared], call)
        observing = observed(call, principal, (prepared,))
        (reply,) = await (observing if admitted is None else _timed(observing, admitted))
        if isinstance(reply, ReplyError):
            refused = _gateway_error(reply)
            if refused is not None:
                raise refused
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
        scope = self.scope(principal, read_only=read_only)
        all_keys, limits = scope.policy.all_keys, self.limits
        for i, argv in enumerate(commands):
            try:
                # prepare(), unrolled: no coroutine per command when no key needs the server
                prepared = check(scope, argv, table, limits)
                if not all_keys:
                    await self._check_keys(principal, prepared.info, argv)
                runnable.append((i, prepared))
            except GatewayError as exc:
                results[i] = exc
        if runnable:
            argvs = [p.argv for _, p in runnable]
            alone = [p.where for _, p in runnable if p.where.where is Where.RESERVED]
            call: Awaitable[list[Any]]
            admitted = None
            if alone:
                call = self._run_reserved(
                    principal, argvs, timeout=self._block_timeout,
                    reusable=all(w.reusable for w in alone), exact=exact)
            else:
                call = backend.run(argvs, exact=exact,
                                   user=self._shared_user(principal, scope.user))
                admitted = timed.get()
            ran = [p for _, p in runnable]
            watched = observed(self._watched(principal, ran, call), principal, ran)
            replies = await (watched if admitted is None else _timed(watched, admitted))
            for (i, _), reply in zip(runnable, replies, strict=True):
                results[i] = reply if type(reply) is bytes else _gateway_error(reply) or reply
        return results

    async def transaction(
        self, principal: Principal, commands: Sequence[Argv], *, exact: int | None = None
    ) -> list[Any]:
        """MULTI ... EXEC on a reserved connection; the replies of EXEC, in order.

        Raises when the transaction is refused or discarded as a whole.
        """
        self._check_count(commands)
        table = await self.backend_for(principal).command_table()
        prepared: list[Prepared] = []
        scope = self.scope(principal, in_transaction=True)
        for i, argv in enumerate(commands):
            try:
                prepared.append(await self.prepare(principal, scope, argv, table))
            except GatewayError as exc:
                exc.message = f"{exc.message} (command {i + 1} of the transaction; " \
                              "nothing was run)"
                raise
        replies = await observed(self._watched(principal, prepared, self._run_reserved(
            principal, [[b"MULTI"], *(p.argv for p in prepared), [b"EXEC"]],
            timeout=self.limits.command_timeout,
            # Anything not fit for a shared connection (SELECT, ...) spoils this one too.
            reusable=all(p.where.where is Where.SHARED for p in prepared),
            exact=exact,
        )), principal, prepared)
        for i, queued in enumerate(replies[1:-1]):
            refused = _gateway_error(queued)
            if refused is not None:
                refused.message = f"{refused.message} (command {i + 1} of the transaction; " \
                                  "nothing was run)"
                raise refused
            if isinstance(queued, ReplyError):
                raise RedisCommandError(
                    f"EXECABORT Transaction discarded because command {i + 1} "
                    f"({prepared[i].info.name}) was refused: {queued}"
                )
        result = replies[-1]
        if isinstance(result, ReplyError):
            raise RedisCommandError(str(result))
        if isinstance(result, GatewayError):  # it ran, but its reply cannot be carried
            raise result
        if not isinstance(result, list):
            raise RedisCommandError("EXECABORT Transaction discarded")
        return result
