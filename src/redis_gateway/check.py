"""``redis-gateway check``: is this configuration ready to serve, and what does it allow?

It reads the configuration as ``serve`` would, connects to every backend and every node
known there (primaries, replicas, the primary the Sentinels name, every Cluster node), and
reports each server's version and role, the backend's topology and who enforces token
rules there (``enforcement.py``), then each token: its name, expiry, and what its rules
allow, worked out against the live command table (``summary``). Any problem — a wrong
password, a node that cannot be reached, an expired token, a mapped user missing or
refused, a managed mode whose users cannot be made — is listed and makes the exit
status non-zero. Nothing is changed on any server.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from .acl import RedisUser
from .app import Gateway
from .auth import Principal
from .backends import Backend
from .backends.node import Node
from .commands import CommandInfo, CommandTable
from .enforcement import Enforcement
from .errors import GatewayError
from .policy import READ, WRITE, Policy
from .resp import ReplyError
from .settings import BackendSettings, Settings

_DEFAULT_MODE = BackendSettings().enforcement
_LISTED = 4  # commands named in a summary before "and N more"


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def say(self, line: str) -> None:
        self.lines.append(line)

    def problem(self, text: str) -> None:
        self.problems.append(text)
        self.lines.append(f"  PROBLEM: {text}")


async def check(settings: Settings) -> Report:
    report = Report()
    gateway = Gateway(settings)
    try:
        try:
            principals = await gateway.known_tokens()
        except GatewayError as exc:
            report.problem(f"the token store in Redis cannot be read: {exc.message}")
            principals = await gateway.tokens.known()
        tables: dict[str, CommandTable] = {}
        for name, backend in gateway.backends.items():
            table = await _check_backend(report, gateway, name, backend,
                                         [p for p in principals if p.backend == name])
            if table is not None:
                tables[name] = table
        report.say(f"tokens: {len(principals)}")
        now = dt.datetime.now(dt.UTC)
        for principal in sorted(principals, key=lambda p: p.name):
            _check_token(report, gateway, principal, tables.get(principal.backend), now)
        if not principals:
            report.say("  none configured: `serve` would make a development token per run")
    finally:
        await gateway.close()
    return report


async def _check_backend(report: Report, gateway: Gateway, name: str, backend: Backend,
                         principals: list[Principal]) -> CommandTable | None:
    settings = gateway.settings.backends[name]
    report.say(f"backend '{name}': topology {settings.topology}")
    try:
        table = await backend.command_table()
    except GatewayError as exc:
        report.problem(f"backend '{name}': {exc.message}")
        return None
    report.say(f"  {backend.label}; {len(table.commands)} commands")
    nodes = [node for node in backend.nodes() if await _check_node(report, name, node)]
    enforcement = gateway.executor.enforcement(name)
    await _check_enforcement(report, enforcement, settings, nodes, principals)
    return table


async def _check_node(report: Report, backend: str, node: Node) -> bool:
    """Reports the node's version and role; False if it cannot be reached or asked."""
    try:
        server, replication = await node.run([[b"INFO", b"server"], [b"INFO", b"replication"]])
    except GatewayError as exc:
        report.problem(f"backend '{backend}': node {node.label}: {exc.message}")
        return False
    if isinstance(server, ReplyError) or isinstance(replication, ReplyError):
        report.problem(f"backend '{backend}': node {node.label} refused INFO: "
                       f"{server if isinstance(server, ReplyError) else replication}")
        return False
    info = _info(server) | _info(replication)
    product = "Valkey" if "valkey_version" in info else "Redis"
    version = info.get("valkey_version") or info.get("redis_version", "?")
    role = {"master": "primary", "slave": "replica"}.get(info.get("role", ""), "?")
    mode = info.get("redis_mode", "")
    report.say(f"  node {node.label}: {product} {version}, {role}"
               + (f" ({mode})" if mode and mode != "standalone" else ""))
    return True


def _info(reply: Any) -> dict[str, str]:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else ""
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


async def _check_enforcement(report: Report, enforcement: Enforcement,
                             settings: BackendSettings, nodes: list[Node],
                             principals: list[Principal]) -> None:
    mode = enforcement.mode
    why = "the default" if mode == _DEFAULT_MODE else "configured"
    if mode == "gateway":
        report.say(f"  enforcement: gateway ({why}): only the gateway checks token rules; "
                   "scripts and functions are refused to every restricted token")
        return
    if mode == "mapped":
        report.say(f"  enforcement: mapped ({why}): Redis enforces token rules as existing "
                   "users, one per rule set")
        for rules in sorted({p.policy.text for p in principals}):
            mapped = settings.users.get(rules)
            if mapped is None:
                report.problem(f"backend '{enforcement.backend}': no Redis user is mapped for "
                               f"the rules '{rules}' (enforcement = \"mapped\"): add "
                               f"[backends.{enforcement.backend}.users.\"{rules}\"]")
                continue
            user = RedisUser(mapped.username, mapped.password or "")
            for node in nodes:
                await _log_in(report, enforcement.backend, node, user, rules)
        return
    report.say(f"  enforcement: managed ({why}): Redis enforces token rules as ACL users "
               "the gateway makes, one per rule set")
    for node in nodes:
        await _may_make_users(report, enforcement.backend, node)


async def _log_in(report: Report, backend: str, node: Node, user: RedisUser,
                  rules: str) -> None:
    try:
        (reply,) = await node.run([[b"PING"]], user=user)
    except GatewayError as exc:
        report.problem(f"backend '{backend}': the user '{user.username}' mapped for the rules "
                       f"'{rules}' cannot log in on {node.label}: {exc.message}")
        return
    if isinstance(reply, ReplyError):
        report.problem(f"backend '{backend}': the user '{user.username}' mapped for '{rules}' "
                       f"may not even PING on {node.label}: {reply}")
        return
    report.say(f"  mapped user '{user.username}' for '{rules}' logs in on {node.label}")


async def _may_make_users(report: Report, backend: str, node: Node) -> None:
    """Whether the gateway's own user may run ACL SETUSER there, asked without running it."""
    try:
        (me,) = await node.run([[b"ACL", b"WHOAMI"]])
        if isinstance(me, ReplyError):
            raise GatewayError(str(me))
        (reply,) = await node.run([[b"ACL", b"DRYRUN", me, b"ACL", b"SETUSER",
                                    b"rgw-check"]])
    except GatewayError as exc:
        report.problem(f"backend '{backend}': managed enforcement needs ACL SETUSER, but on "
                       f"{node.label}: {exc.message}; grant the gateway's user +acl, or set "
                       "enforcement = \"mapped\" or \"gateway\"")
        return
    if reply == b"OK":
        return
    if isinstance(reply, ReplyError) and "unknown subcommand" in str(reply).lower():
        report.say(f"  {node.label} has no ACL DRYRUN (Redis < 7): whether the gateway may "
                   "make users shows at start-up")
        return
    report.problem(f"backend '{backend}': managed enforcement needs ACL SETUSER, which the "
                   f"gateway's user '{me.decode(errors='replace')}' may not run on "
                   f"{node.label} ({reply}); grant it +acl, or set enforcement = "
                   "\"mapped\" or \"gateway\"")


def _check_token(report: Report, gateway: Gateway, principal: Principal,
                 table: CommandTable | None, now: dt.datetime) -> None:
    expires = principal.expires
    if expires is None:
        expiry = "never expires"
    elif expires <= now:
        expiry = f"EXPIRED at {expires.isoformat(timespec='seconds')}"
    else:
        expiry = f"expires {expires.isoformat(timespec='seconds')} " \
                 f"(in {_duration(expires - now)})"
    report.say(f"  {principal.name} (backend '{principal.backend}', {expiry})")
    if expires is not None and expires <= now:
        report.problem(f"token '{principal.name}' expired at "
                       f"{expires.isoformat(timespec='seconds')}: every request with it gets 401")
    if table is None:
        report.say("    what it may do: unknown (its backend could not be reached)")
        return
    redis_enforces = gateway.executor.enforcement(principal.backend).redis_enforces
    report.say(f"    {summary(principal.policy, table, redis_enforces)}")


def _duration(delta: dt.timedelta) -> str:
    if delta.days >= 2:
        return f"{delta.days} days"
    hours = int(delta.total_seconds() // 3600)
    return f"{hours} h" if hours else f"{int(delta.total_seconds() // 60)} min"


def commands_of(table: CommandTable) -> list[CommandInfo]:
    """Every command a rule can name: subcommands instead of their containers."""
    found: list[CommandInfo] = []
    for info in table.commands.values():
        found += list(info.subcommands.values()) or [info]
    return found


def summary(policy: Policy, table: CommandTable, redis_enforces: bool = True) -> str:
    """What ``policy`` allows, in a line: "read-only, keys app:*, no scripts, no admin"."""
    every = commands_of(table)
    allowed = [info for info in every if policy.allows_command(info)]
    count = f"{len(allowed)} of {len(every)} commands"
    if policy.unrestricted:
        return f"unrestricted (admin): every command, key and channel ({count})"
    writes = any("write" in info.flags for info in allowed)
    reads = any("readonly" in info.flags for info in allowed)
    parts = ["read-write" if writes else "read-only" if reads else "no data commands",
             _keys(policy), _channels(policy)]
    scripts = [i for i in allowed if "scripting" in i.categories
               and i.name.split("|")[0] in ("eval", "evalsha", "eval_ro", "evalsha_ro",
                                            "fcall", "fcall_ro")]
    if not scripts:
        parts.append("no scripts")
    elif not redis_enforces:
        parts.append("no scripts (enforcement = \"gateway\" refuses them to restricted tokens)")
    else:
        parts.append("scripts (Redis checks what they run)")
    for category, label in (("admin", "admin"), ("dangerous", "dangerous commands")):
        names = sorted(i.name.replace("|", " ").upper() for i in allowed
                       if category in i.categories)
        parts.append(f"no {label}" if not names else f"{label}: {_some(names)}")
    return f"{', '.join(parts)} ({count})"


def _keys(policy: Policy) -> str:
    if policy.all_keys:
        return "all keys"
    patterns = [f"{p.decode('utf-8', 'replace')}{_perms(perms)}"
                for p, perms in policy.key_patterns]
    if policy.all_keys_flag:  # guarded: the gateway's own keys are out of reach
        return "all keys but the gateway's own"
    return f"keys {', '.join(patterns)}" if patterns else "no keys"


def _perms(perms: int) -> str:
    return {READ: " (read)", WRITE: " (write)"}.get(perms, "") if perms != READ | WRITE else ""


def _channels(policy: Policy) -> str:
    if policy.all_channels:
        return "all channels"
    names = [p.decode("utf-8", "replace") for p in policy.channel_patterns]
    return f"channels {', '.join(names)}" if names else "no channels"


def _some(names: list[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")
