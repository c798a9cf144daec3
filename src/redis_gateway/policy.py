"""Per-token rules in Redis ACL syntax, checked against the live command table.

A rule set is a space-separated list such as ``+@read -@dangerous +set ~app:*``,
optionally starting from a preset (``read-only``, ``read-write``, ``admin``). As in
Redis, later rules override earlier ones: a command is allowed when the last rule
that mentions it (by name, subcommand, category or ``@all``) is a ``+``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from .commands import READ_FLAGS, WRITE_FLAGS, CommandInfo
from .redis_args import c_string
from .redis_glob import glob_match, may_match_under

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


READ, WRITE = 1, 2  # a key pattern's permissions, as Redis's ACL_READ/WRITE_PERMISSION
_ALLKEYS_AFTER = ("adding a pattern after the * pattern (or the 'allkeys' flag) has no effect "
                  "and Redis refuses it; use 'resetkeys' first")
_ALLCHANNELS_AFTER = ("adding a pattern after the * pattern (or the 'allchannels' flag) has no "
                      "effect and Redis refuses it; use 'resetchannels' first")


@dataclass(frozen=True, eq=False)
class Policy:
    """A compiled rule set, shaped as Redis keeps an ACL user's root selector.

    Equal when compiled from the same text with the same guard: the rest follows from
    those two, and hashing them (a str caches its hash) is cheap enough for a dict look-up
    on every request.
    """

    text: str
    command_rules: tuple[_CommandRule, ...]
    key_patterns: tuple[tuple[bytes, int], ...]  # (pattern, READ|WRITE)
    channel_patterns: tuple[bytes, ...]
    # allkeys or ~*: every key, the empty one included (a pattern * does not match it).
    all_keys_flag: bool = False
    all_channels: bool = False
    # Keys no pattern may reach (the gateway's own, e.g. its token store), as a prefix.
    reserved_prefix: bytes = b""
    # Decided once per command name: the rules are fixed, and this is on every request.
    _decisions: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Derived here, not per request: most tokens have allkeys and allchannels.
        # Every command, key and channel: the rules of the server's own administrator, for
        # whom database and key boundaries mean nothing (it may FLUSHALL, ACL SETUSER, ...).
        last_all = max((i for i, r in enumerate(self.command_rules)
                        if r.allow and r.category == "all"), default=-1)
        unrestricted = (last_all >= 0 and all(r.allow for r in self.command_rules[last_all:])
                        and self.all_keys_flag and self.all_channels)
        object.__setattr__(self, "unrestricted", unrestricted)
        guarded = bool(self.reserved_prefix) and not unrestricted
        object.__setattr__(self, "all_keys", self.all_keys_flag and not guarded)
        # What Redis calls unrestricted key access (SORT ... BY pattern/GET needs it).
        readable = self.all_keys_flag or any(p == b"*" and perms & READ
                                             for p, perms in self.key_patterns)
        object.__setattr__(self, "all_keys_readable", readable and not guarded)

    all_keys: bool = field(init=False, compare=False)
    all_keys_readable: bool = field(init=False, compare=False)
    unrestricted: bool = field(init=False, compare=False)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Policy) and (self.text, self.reserved_prefix) == \
            (other.text, other.reserved_prefix)

    def __hash__(self) -> int:
        return hash((self.text, self.reserved_prefix))

    def guarding(self, prefix: bytes) -> Policy:
        """These rules with keys under ``prefix`` out of reach (unless unrestricted)."""
        return dataclasses.replace(self, reserved_prefix=prefix, _decisions={})

    def reaching_reserved(self, *, star_guarded: bool) -> bytes | None:
        """A key pattern that reaches the reserved prefix's keys in Redis's eyes, if any
        (``allkeys`` as ``*``). ``star_guarded``: a pattern ``*`` is not one, as the
        managed Redis user writes it as the patterns of every other key (``acl.py``).
        The gateway's own check keeps such keys out of every command it sees; only Redis
        checks what a script does."""
        if self.unrestricted or not self.reserved_prefix:
            return None
        patterns = [b"*"] if self.all_keys_flag else []
        patterns += [p for p, _ in self.key_patterns]
        return next((p for p in patterns if not (star_guarded and p == b"*")
                     and may_match_under(p, self.reserved_prefix)), None)

    def allows_command(self, info: CommandInfo) -> bool:
        allowed = self._decisions.get(info.name)
        if allowed is None:
            allowed = self._decisions[info.name] = _allows(self.command_rules, info)
        return allowed

    def denied_key(self, keys: Sequence[tuple[bytes, frozenset[str]]]) -> bytes | None:
        """The first key these rules do not grant in the way the command uses it.

        As Redis's ACLSelectorCheckKey: one pattern must grant every permission the key
        needs (reading, writing, or both); a key used neither way (EXISTS) needs any.
        """
        if self.all_keys:
            return None
        guard = b"" if self.unrestricted else self.reserved_prefix
        for key, flags in keys:
            if guard and key.startswith(guard):
                return key
            if self.all_keys_flag:
                continue
            need = (READ if flags & READ_FLAGS else 0) | (WRITE if flags & WRITE_FLAGS else 0)
            if not any(perms & need == need and glob_match(pattern, key)
                       for pattern, perms in self.key_patterns):
                return key
        return None

    def denied_channel(self, channels: Sequence[bytes], *, patterns: bool = False
                       ) -> bytes | None:
        """The first channel not granted; ``patterns``: PSUBSCRIBE's, which Redis grants
        only when a rule names the very same pattern."""
        if self.all_channels:
            return None
        for channel in channels:
            if patterns:
                literal = c_string(channel)
                if not any(c_string(p) == literal for p in self.channel_patterns):
                    return channel
            elif not any(glob_match(p, channel) for p in self.channel_patterns):
                return channel
        return None


def _allows(rules: tuple[_CommandRule, ...], info: CommandInfo) -> bool:
    for rule in reversed(rules):
        if rule.matches(info):
            return rule.allow
    return False


@lru_cache(maxsize=256)
def parse(text: str) -> Policy:
    """Compile a rule string; raises ``RuleError`` naming the rule it cannot read.

    Key and channel rules follow Redis's ACL SETUSER: ``~*`` and ``allkeys`` set the
    all-keys flag and drop the patterns; a pattern after it is refused, as Redis does.
    """
    commands: list[_CommandRule] = []
    keys: list[tuple[bytes, int]] = []
    channels: list[bytes] = []
    all_keys = all_channels = False
    words = text.split()
    if not words:
        raise RuleError("no rules given; use a preset such as read-only, or ACL rules")
    for word in _expand(words):
        low = word.lower()
        if low in ("allcommands", "+@all"):
            commands.append(_CommandRule(True, "all", None))
        elif low in ("nocommands", "-@all"):
            commands.append(_CommandRule(False, "all", None))
        elif low in ("allkeys", "resetkeys"):
            all_keys = low == "allkeys"
            keys.clear()
        elif low in ("allchannels", "resetchannels"):
            all_channels = low == "allchannels"
            channels.clear()
        elif low == "reset":
            commands.clear()
            keys.clear()
            channels.clear()
            all_keys = all_channels = False
        elif word[:1] in "+-" and len(word) > 1:
            allow = word[0] == "+"
            if word[1] == "@":
                commands.append(_CommandRule(allow, low[2:], None))
            else:
                commands.append(_CommandRule(allow, None, low[1:]))
        elif word[:1] in "~%" and len(word) > 1:
            pattern, perms = _key_rule(word)
            if all_keys:
                raise RuleError(f"rule '{word}': {_ALLKEYS_AFTER}")
            if word == "~*":  # only this spelling: Redis keeps %RW~* as a pattern
                all_keys = True
                keys.clear()
            else:
                keys.append((pattern, perms))
        elif word.startswith("&") and len(word) > 1:
            if all_channels:
                raise RuleError(f"rule '{word}': {_ALLCHANNELS_AFTER}")
            if word == "&*":
                all_channels = True
                channels.clear()
            else:
                channels.append(word[1:].encode())
        else:
            raise RuleError(
                f"rule '{word}' is not understood; expected a preset "
                f"({', '.join(PRESETS)}), +@category, -@category, +command, -command, "
                "+command|subcommand, ~pattern, %R~pattern, %W~pattern, allkeys, resetkeys, "
                "&channel, allchannels or resetchannels"
            )
    return Policy(text, tuple(commands), tuple(keys), tuple(channels), all_keys, all_channels)


def _key_rule(word: str) -> tuple[bytes, int]:
    """``~p``, ``%R~p``, ``%W~p``, ``%RW~p`` as (pattern, permissions)."""
    if word[0] == "~":
        return word[1:].encode(), READ | WRITE
    perms, tilde, pattern = word[1:].partition("~")
    flags = 0
    for letter in perms.upper():
        bit = {"R": READ, "W": WRITE}.get(letter)
        if bit is None or flags & bit:
            flags = 0
            break
        flags |= bit
    if not tilde or not pattern or not flags:
        raise RuleError(f"rule '{word}' is not valid: use %R~pattern, %W~pattern or "
                        "%RW~pattern")
    return pattern.encode(), flags


def _expand(words: list[str]) -> list[str]:
    out: list[str] = []
    for word in words:
        preset = PRESETS.get(word.lower())
        out += preset.split() if preset else [word]
    return out
