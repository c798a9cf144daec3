"""``redis-gateway token explain NAME CMD ARGS…``: would this command be allowed, and why?

The answer comes from the same path a request takes: the token as the gateway loads it,
the executor's checks (``checks.py``: command, placement, arity, rules, database,
channels, keys, including the keys only the server can name) against the live command
table; then, where Redis enforces the rules too (managed or mapped), ``ACL DRYRUN`` as
the token's Redis user on the live server has the final word. The managed user is made
first if it is not there yet, exactly as a gateway makes it before its first connection.
Nothing else is run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from .app import Gateway
from .auth import Principal
from .checks import Prepared
from .commands import CommandInfo
from .errors import Forbidden, GatewayError, Unauthorized
from .placement import Where
from .policy import Policy
from .redis_glob import glob_match
from .redis_types import Argv
from .resp import ReplyError


@dataclass
class Explanation:
    allowed: bool
    status: int  # what a request would get from the gateway's checks: 200, or the refusal's
    reasons: list[str] = field(default_factory=list)

    def text(self) -> str:
        verdict = "ALLOWED" if self.allowed else f"REFUSED ({self.status})"
        return "\n".join([verdict, *(f"  {r}" for r in self.reasons)])


async def explain(gateway: Gateway, name: str, argv: Argv) -> Explanation:
    principal = await _principal(gateway, name)
    if principal.expires is not None and principal.expires <= dt.datetime.now(dt.UTC):
        return Explanation(False, Unauthorized.status, [
            f"token '{name}' expired at {principal.expires.isoformat()}: every request "
            "with it gets 401"])
    executor = gateway.executor
    backend = executor.backend_for(principal)
    table = await backend.command_table()
    scope = executor.scope(principal)
    info = table.lookup(argv) if argv else None
    try:
        prepared = await executor.prepare(principal, scope, argv, table)
    except GatewayError as exc:
        reasons = [exc.message]
        if info is not None and isinstance(exc, Forbidden) and \
                not principal.policy.allows_command(info):
            reasons.append(_deciding_rule(principal.policy, info))
        return Explanation(False, exc.status, reasons)
    reasons = [_deciding_rule(principal.policy, prepared.info),
               _keys(principal.policy, prepared), _placement(prepared)]
    if list(prepared.argv) != list(argv):
        reasons.append("its timeout is capped to limits.max_block_seconds: sent as "
                       + " ".join(a.decode("utf-8", "replace") for a in prepared.argv))
    if scope.user is None:
        reasons.append("Redis is not asked: enforcement = \"gateway\" (or the gateway's own "
                       "user), so the gateway's check is the only one")
        return Explanation(True, 200, reasons)
    return await _dry_run(gateway, principal, prepared, reasons)


async def _principal(gateway: Gateway, name: str) -> Principal:
    found = [p for p in await gateway.known_tokens() if p.name == name]
    if not found:
        raise GatewayError(f"no token named '{name}' in the configuration, the tokens file "
                           "or the token store")
    return found[0]


def _deciding_rule(policy: Policy, info: CommandInfo) -> str:
    for rule in reversed(policy.command_rules):
        if rule.matches(info):
            text = f"{'+' if rule.allow else '-'}" + (
                f"@{rule.category}" if rule.category else f"{rule.command}")
            verb = "allows" if rule.allow else "denies"
            return f"'{text}' {verb} {info.name.replace('|', ' ').upper()} (the last rule " \
                   f"of '{policy.text}' that names it)"
    return f"no rule of '{policy.text}' allows {info.name.upper()}: a command is denied " \
           "unless a rule allows it"


def _keys(policy: Policy, prepared: Prepared) -> str:
    if policy.all_keys:
        return "keys: this token reaches every key"
    if prepared.info.keys_need_server:
        return "keys: named by the server (COMMAND GETKEYSANDFLAGS), each granted"
    keys = prepared.info.keys(prepared.argv)
    if not keys:
        return "keys: the command names none"
    granted = []
    for key, _ in keys:
        pattern = next((p for p, _ in policy.key_patterns if glob_match(p, key)), None)
        how = f"by '{pattern.decode('utf-8', 'replace')}'" if pattern else "by allkeys"
        granted.append(f"'{key.decode('utf-8', 'replace')}' {how}")
    return "keys: " + ", ".join(granted)


def _placement(prepared: Prepared) -> str:
    if prepared.where.where is Where.RESERVED:
        return "runs alone on a reserved connection (it blocks or changes its connection)"
    return "runs on a shared connection (it leaves the connection as it found it)"


async def _dry_run(gateway: Gateway, principal: Principal, prepared: Prepared,
                   reasons: list[str]) -> Explanation:
    user = gateway.executor.scope(principal).user
    assert user is not None
    node = gateway.executor.backend_for(principal).nodes()[0]
    try:
        if user.create is not None:
            await node.make_user(user)
        (reply,) = await node.run([[b"ACL", b"DRYRUN", user.username.encode(),
                                    *prepared.argv]])
    except GatewayError as exc:
        reasons.append(f"Redis could not be asked (ACL DRYRUN as '{user.username}'): "
                       f"{exc.message}")
        return Explanation(True, 200, reasons)
    if reply == b"OK":
        reasons.append(f"Redis agrees: ACL DRYRUN as '{user.username}' on {node.label} "
                       "answers OK")
        return Explanation(True, 200, reasons)
    text = str(reply) if isinstance(reply, ReplyError) else repr(reply)
    if "unknown subcommand" in text.lower():
        reasons.append(f"{node.label} has no ACL DRYRUN (Redis < 7): the gateway's check "
                       "is the answer")
        return Explanation(True, 200, reasons)
    reasons.append(f"but Redis refuses it: ACL DRYRUN as '{user.username}' on {node.label} "
                   f"answers: {text}")
    return Explanation(False, Forbidden.status, reasons)
