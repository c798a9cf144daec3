"""Per-token rules in Redis ACL syntax, checked against the live command table.

A rule set is a space-separated list such as ``+@read -@dangerous +set ~app:*``,
optionally starting from a preset (``read-only``, ``read-write``, ``admin``). As in
Redis, later rules override earlier ones: a command is allowed when the last rule
that mentions it (by name, subcommand, category or ``@all``) is a ``+``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from .commands import READ_FLAGS, WRITE_FLAGS, CommandInfo

PRESETS: dict[str, str] = {
    "read-only": "+@read +ping +echo +subscribe +psubscribe +ssubscribe "
    "-@write -@dangerous -@admin allkeys allchannels",
    "read-write": "+@all -@dangerous -@admin allkeys allchannels",
    "admin": "+@all allkeys allchannels",
}


class RuleError(ValueError):
    """A rule that is not valid ACL syntax."""


@dataclass(frozen=True)
class _CommandRule:
    allow: bool
    category: str | None  # "all" for @all
    command: str | None  # "get" or "config|get"

    def matches(self, info: CommandInfo) -> bool:
        if self.category is not None:
            return self.category == "all" or self.category in info.categories
        assert self.command is not None
        return info.name == self.command or info.name.startswith(self.command + "|")


@dataclass(frozen=True)
class Policy:
    text: str
    command_rules: tuple[_CommandRule, ...]
    read_patterns: tuple[bytes, ...]
    write_patterns: tuple[bytes, ...]
    channel_patterns: tuple[bytes, ...]
    # Decided once per command name: the rules are fixed, and this is on every request.
    _decisions: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    # Keys no pattern may reach (the gateway's own, e.g. its token store), as a prefix.
    reserved_prefix: bytes = b""

    def __post_init__(self) -> None:
        # Derived here, not per request: most tokens have allkeys and allchannels.
        read_all, write_all = b"*" in self.read_patterns, b"*" in self.write_patterns
        object.__setattr__(self, "all_channels", b"*" in self.channel_patterns)
        # Every command, key and channel: the rules of the server's own administrator, for
        # whom database and key boundaries mean nothing (it may FLUSHALL, ACL SETUSER, ...).
        last_all = max((i for i, r in enumerate(self.command_rules)
                        if r.allow and r.category == "all"), default=-1)
        unrestricted = (last_all >= 0 and all(r.allow for r in self.command_rules[last_all:])
                        and read_all and write_all and self.all_channels)
        object.__setattr__(self, "unrestricted", unrestricted)
        guarded = bool(self.reserved_prefix) and not unrestricted
        object.__setattr__(self, "all_keys", read_all and write_all and not guarded)
        # What Redis calls unrestricted key access (SORT ... BY pattern/GET needs it).
        object.__setattr__(self, "all_keys_readable", read_all and not guarded)

    all_keys: bool = field(init=False, compare=False)
    all_keys_readable: bool = field(init=False, compare=False)
    all_channels: bool = field(init=False, compare=False)
    unrestricted: bool = field(init=False, compare=False)

    def guarding(self, prefix: bytes) -> Policy:
        """These rules with keys under ``prefix`` out of reach (unless unrestricted)."""
        return dataclasses.replace(self, reserved_prefix=prefix, _decisions={})

    def allows_command(self, info: CommandInfo) -> bool:
        allowed = self._decisions.get(info.name)
        if allowed is None:
            allowed = self._decisions[info.name] = _allows(self.command_rules, info)
        return allowed

    def denied_key(self, keys: Sequence[tuple[bytes, frozenset[str]]]) -> bytes | None:
        """The first key these rules do not grant in the way the command uses it."""
        if self.all_keys:
            return None
        for key, flags in keys:
            if self.reserved_prefix and key.startswith(self.reserved_prefix) and \
                    not self.unrestricted:
                return key
            reads, writes = bool(flags & READ_FLAGS), bool(flags & WRITE_FLAGS)
            if not reads and not writes:  # e.g. EXISTS: either permission will do
                if not (_match_any(self.read_patterns, key) or
                        _match_any(self.write_patterns, key)):
                    return key
                continue
            if reads and not _match_any(self.read_patterns, key):
                return key
            if writes and not _match_any(self.write_patterns, key):
                return key
        return None

    def denied_channel(self, channels: Sequence[bytes]) -> bytes | None:
        if self.all_channels:
            return None
        return next((c for c in channels if not _match_any(self.channel_patterns, c)), None)


def _allows(rules: tuple[_CommandRule, ...], info: CommandInfo) -> bool:
    for rule in reversed(rules):
        if rule.matches(info):
            return rule.allow
    return False


@lru_cache(maxsize=256)
def parse(text: str) -> Policy:
    """Compile a rule string; raises ``RuleError`` naming the rule it cannot read."""
    commands: list[_CommandRule] = []
    reads: list[bytes] = []
    writes: list[bytes] = []
    channels: list[bytes] = []
    words = text.split()
    if not words:
        raise RuleError("no rules given; use a preset such as read-only, or ACL rules")
    for word in _expand(words):
        low = word.lower()
        if low in ("allcommands", "+@all"):
            commands.append(_CommandRule(True, "all", None))
        elif low in ("nocommands", "-@all"):
            commands.append(_CommandRule(False, "all", None))
        elif low == "allkeys":
            reads.append(b"*")
            writes.append(b"*")
        elif low == "resetkeys":
            reads.clear()
            writes.clear()
        elif low == "allchannels":
            channels.append(b"*")
        elif low == "resetchannels":
            channels.clear()
        elif low == "reset":
            commands.clear()
            reads.clear()
            writes.clear()
            channels.clear()
        elif word[:1] in "+-" and len(word) > 1:
            allow = word[0] == "+"
            if word[1] == "@":
                commands.append(_CommandRule(allow, low[2:], None))
            else:
                commands.append(_CommandRule(allow, None, low[1:]))
        elif word.startswith("~") and len(word) > 1:
            reads.append(word[1:].encode())
            writes.append(word[1:].encode())
        elif word.startswith("%") and "~" in word:
            perms, pattern = word[1:].split("~", 1)
            if not pattern or not perms or set(perms.upper()) - {"R", "W"}:
                raise RuleError(f"rule '{word}' is not valid: use %R~pattern, %W~pattern "
                                "or %RW~pattern")
            if "R" in perms.upper():
                reads.append(pattern.encode())
            if "W" in perms.upper():
                writes.append(pattern.encode())
        elif word.startswith("&") and len(word) > 1:
            channels.append(word[1:].encode())
        else:
            raise RuleError(
                f"rule '{word}' is not understood; expected a preset "
                f"({', '.join(PRESETS)}), +@category, -@category, +command, -command, "
                "+command|subcommand, ~pattern, %R~pattern, %W~pattern, allkeys, resetkeys, "
                "&channel, allchannels or resetchannels"
            )
    return Policy(text, tuple(commands), tuple(reads), tuple(writes), tuple(channels))


def _expand(words: list[str]) -> list[str]:
    out: list[str] = []
    for word in words:
        preset = PRESETS.get(word.lower())
        out += preset.split() if preset else [word]
    return out


def _match_any(patterns: tuple[bytes, ...], value: bytes) -> bool:
    return any(p == b"*" or _glob(p).fullmatch(value) for p in patterns)


@lru_cache(maxsize=1024)
def _glob(pattern: bytes) -> re.Pattern[bytes]:
    """Redis glob-style pattern (``*``, ``?``, ``[a-z]``, ``[^x]``, ``\\``) as a regex."""
    out = bytearray()
    i = 0
    while i < len(pattern):
        c = pattern[i : i + 1]
        if c == b"*":
            out += b".*"
        elif c == b"?":
            out += b"."
        elif c == b"\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i : i + 1])
        elif c == b"[":
            end = pattern.find(b"]", i + 1)
            if end < 0:
                out += re.escape(c)
            else:
                body = pattern[i + 1 : end]
                negate = body.startswith(b"^")
                body = body[1:] if negate else body
                escaped = bytes(body).replace(b"\\", b"\\\\").replace(b"]", b"\\]")
                out += b"[" + (b"^" if negate else b"") + escaped + b"]"
                i = end
        else:
            out += re.escape(c)
        i += 1
    return re.compile(bytes(out), re.DOTALL)
