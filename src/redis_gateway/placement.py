"""Which connection a command may run on: shared, reserved, or none at all here.

Commands from every request share a few connections, written back to back; what one
command leaves behind on such a connection, the next request sees. So a command runs on a
shared connection only if it leaves the connection exactly as it found it, and that is
decided by an allow list, never a deny list:

- every command that Redis itself lets a script run (no ``noscript`` flag: scripts run on a
  client whose state must not leak into the caller's) and that is not about the connection
  (``@connection``, ``@transaction``) and cannot block (``@blocking``, flag ``blocking``);
- plus the few named below that Redis keeps from scripts for other reasons but that change
  nothing about the connection they run on (EVAL cannot nest, CONFIG GET is admin, ...).

Anything else either cannot work on a request/response endpoint at all (refused with the
reason and what to use instead), or runs alone on a reserved connection: one that a
blocking command leaves as it found it is reused; one that ran anything else is closed.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

from .commands import CommandInfo

_STREAMING = ("it streams replies, which a request/response endpoint cannot carry; "
              "use the streaming endpoints: /subscribe/<channel>, /psubscribe/<pattern>, "
              "/ssubscribe/<channel> or /monitor (Server-Sent Events), or the WebSocket /ws")
_CONNECTION_STATE = "it changes the state of a connection the gateway shares between requests"
_NO_SUBSCRIPTION = "there is no subscription on a request/response endpoint; close the stream"
_REPLICATION = "it is the replication protocol"

# Commands that cannot work when each request may run on a connection shared with
# others, with the reason and, where there is one, what to use instead.
REFUSED: dict[str, str] = {
    "subscribe": _STREAMING,
    "psubscribe": _STREAMING,
    "ssubscribe": _STREAMING,
    "monitor": _STREAMING,
    "unsubscribe": _NO_SUBSCRIPTION,
    "punsubscribe": _NO_SUBSCRIPTION,
    "sunsubscribe": _NO_SUBSCRIPTION,
    "multi": "send the whole transaction to POST /multi-exec",
    "exec": "send the whole transaction to POST /multi-exec",
    "discard": "send the whole transaction to POST /multi-exec",
    "watch": "WATCH needs a connection kept between requests; use POST /multi-exec or a script",
    "unwatch": "WATCH needs a connection kept between requests; use POST /multi-exec or a script",
    "select": "choose the database in the token's backend URL (redis://host:port/<db>)",
    "sync": _REPLICATION,
    "psync": _REPLICATION,
    "replconf": _REPLICATION,
    "hello": _CONNECTION_STATE,
    "auth": "the gateway authenticates to Redis itself; send your gateway token instead",
    "reset": _CONNECTION_STATE,
    "quit": _CONNECTION_STATE,
    "readonly": _CONNECTION_STATE,
    "readwrite": _CONNECTION_STATE,
    "asking": _CONNECTION_STATE,
    "client|reply": _CONNECTION_STATE,
    "client|setname": _CONNECTION_STATE,
    "client|setinfo": _CONNECTION_STATE,
    "client|tracking": _CONNECTION_STATE,
    "client|caching": _CONNECTION_STATE,
    "client|no-evict": _CONNECTION_STATE,
    "client|no-touch": _CONNECTION_STATE,
    "client|pause": "it would pause the gateway's own connections, stalling every client",
    "client|unpause": "CLIENT PAUSE is not available through the gateway",
    "script|debug": "the Lua debugger is interactive; use redis-cli --ldb against Redis",
}
# Refused above, but meaningful inside POST /multi-exec, whose connection is its own.
ALLOWED_IN_TRANSACTION = frozenset({"select"})

# Kept from scripts by Redis, yet they leave the connection they run on as they found it.
STATE_NEUTRAL = frozenset({
    "ping", "echo",
    "command", "command|count", "command|docs", "command|getkeys",
    "command|getkeysandflags", "command|help", "command|info", "command|list",
    "client|id", "client|info", "client|getname", "client|list", "client|getredir",
    "client|trackinginfo", "client|help",
    "eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro",
    "script|exists", "script|load", "script|flush", "script|kill", "script|help",
    "function|delete", "function|dump", "function|flush", "function|kill",
    "function|list", "function|load", "function|restore", "function|stats",
    "function|help",
    "config|get", "config|set", "config|resetstat", "config|rewrite", "config|help",
    "acl|cat", "acl|deluser", "acl|dryrun", "acl|genpass", "acl|getuser", "acl|list",
    "acl|log", "acl|save", "acl|setuser", "acl|users", "acl|whoami", "acl|help",
    "latency|doctor", "latency|graph", "latency|histogram", "latency|history",
    "latency|latest", "latency|reset", "latency|help",
    "module|list", "role", "bgsave", "bgrewriteaof",
})
_CONNECTION_CATEGORIES = frozenset({"connection", "transaction", "blocking"})
# Commands that wait by design and leave the connection as they found it once answered.
_WAITS = frozenset({"wait", "waitaof"})


class Where(Enum):
    SHARED = "shared"
    RESERVED = "reserved"  # alone; reused afterwards when ``reusable``
    REFUSED = "refused"


class Placement(NamedTuple):
    where: Where
    reusable: bool = True  # a reserved connection may serve later requests
    reason: str = ""  # why it is refused


_SHARED = Placement(Where.SHARED)


def placement(info: CommandInfo) -> Placement:
    """Where ``info`` may run (the command as the table resolved it, subcommand included)."""
    reason = REFUSED.get(info.name)
    if reason is not None:
        return Placement(Where.REFUSED, False, reason.format(name=info.name))
    if info.name in STATE_NEUTRAL:
        return _SHARED
    if info.blocking or info.name in _WAITS:
        return Placement(Where.RESERVED, reusable=True)
    if "noscript" in info.flags or info.categories & _CONNECTION_CATEGORIES:
        return Placement(Where.RESERVED, reusable=False)
    return _SHARED
