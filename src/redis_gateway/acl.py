"""Token rules as Redis ACL users: what the gateway asks Redis to enforce.

Each distinct rule set runs on connections authenticated as a Redis user that carries
exactly those rules, so that whatever the gateway cannot see into (a script's
``redis.call``, a function) is checked by Redis itself, command by command and key by key.
The user is named after a hash of its rules (``rgw-<16 hex>``), so every gateway process
with the same rules agrees on the name, and its password is derived from the gateway's own
Redis password, so they agree on that too: no process's ``ACL SETUSER`` undoes another's.

To what the token's rules say, the user adds the gateway's own boundaries:
- its database: ``SELECT`` only of the token's own database (the connection's handshake
  needs that one), no ``MOVE``, no ``SWAPDB``;
- keys under the reserved prefix (the token store) are out of every pattern ``*``: Redis
  has no pattern that excludes, so ``*`` becomes the patterns that match every key not
  starting with the prefix (``[^r]*``, ``r[^e]*``, ..., and the prefix's own prefixes);
- the server's code is everyone's: no loading, deleting, flushing or killing functions
  and scripts (``SHARED_CODE``).
None applies to an unrestricted token (``admin``): it may run ``ACL SETUSER`` anyway.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from dataclasses import dataclass, field
from functools import lru_cache

from .policy import READ, WRITE, Policy

USER_PREFIX = "rgw-"
# Commands that change or stop the server's code, which every token shares: a function runs
# with the rights of whoever calls it, so a token that could replace one would choose what
# other tokens' FCALLs do with their keys; flushing or killing breaks or stops their calls.
SHARED_CODE = ("function|load", "function|delete", "function|flush", "function|restore",
               "function|kill", "script|flush", "script|kill")
# "%RW~", not "~": Redis reads "~*" as allkeys, which reaches the empty key; the pattern
# "*" of "%RW~*" does not.
_KINDS = {READ: "%R~", WRITE: "%W~", READ | WRITE: "%RW~"}


@dataclass(frozen=True)
class RedisUser:
    """A Redis user connections authenticate as, and whose connections they are.

    ``lane`` names a token whose commands have shared connections of their own under this
    user (``lane_of``): its replies, however large, never hold up another token's on the
    same socket. Connections are grouped by the whole value, lane included; ``AUTH`` uses
    the username and password only.
    """

    username: str
    password: str
    # ACL SETUSER that makes it exist with its rules (managed); None: it must exist already.
    create: tuple[bytes, ...] | None = None
    lane: str = ""
    # For a lane: the user whose connections the lane's token shares when a node has no
    # room for more groups (max_user_groups).
    base: RedisUser | None = field(default=None, compare=False, repr=False)
    # Every shared command looks its connections up by this value: hashed once, not its
    # fields (the ACL SETUSER arguments among them) on every request.
    _hash: int = field(default=0, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.username, self.password, self.create,
                                                self.lane)))

    def __hash__(self) -> int:
        return self._hash

    def lane_of(self, token: str) -> RedisUser:
        return dataclasses.replace(self, lane=token, base=self)


@dataclass(frozen=True)
class AclUser:
    """A Redis user the gateway authenticates as for one rule set."""

    name: str
    password: str
    rules: tuple[str, ...]  # the ACL SETUSER arguments after the password

    def setuser(self) -> list[bytes]:
        """The command that makes this user exist with exactly these rules."""
        digest = hashlib.sha256(self.password.encode()).hexdigest()
        return [b"ACL", b"SETUSER", self.name.encode(), b"reset", b"on",
                f"#{digest}".encode(), *(r.encode("latin-1") for r in self.rules)]


def acl_user(policy: Policy, db: int, secret: bytes) -> AclUser:
    """The user for ``policy`` on a connection to database ``db``.

    ``secret`` (the gateway's own Redis password) keys the password derivation: whoever can
    log in to Redis as the gateway can create such users anyway.
    """
    rules = acl_rules(policy, db)
    name = USER_PREFIX + hashlib.sha256(" ".join(rules).encode()).hexdigest()[:16]
    return AclUser(name, password_of(name, secret), rules)


def password_of(name: str, secret: bytes) -> str:
    """The password of the managed user ``name``: whoever can compute it can create it."""
    return hmac.new(secret, b"redis-gateway acl user " + name.encode(),
                    hashlib.sha256).hexdigest()


@lru_cache(maxsize=1024)
def acl_rules(policy: Policy, db: int) -> tuple[str, ...]:
    """``policy`` in ACL SETUSER syntax, with the gateway's boundaries added."""
    rules: list[str] = []
    for rule in policy.command_rules:
        sign = "+" if rule.allow else "-"
        rules.append(f"{sign}@{rule.category}" if rule.category else f"{sign}{rule.command}")
    guard = b"" if policy.unrestricted else policy.reserved_prefix
    if policy.all_keys_flag:
        rules += _key_rules("~", [b"*"], guard, empty_key=True) if guard else ["allkeys"]
    for pattern, perms in policy.key_patterns:
        rules += _key_rules(_KINDS[perms], [pattern], guard, empty_key=False)
    if policy.all_channels:
        rules.append("allchannels")
    rules += [f"&{_text(p)}" for p in dict.fromkeys(policy.channel_patterns)]
    if not policy.unrestricted:
        rules += ["-select", f"+select|{db}", "-move", "-swapdb"]
        rules += [f"-{command}" for command in SHARED_CODE]
    return tuple(rules)


def _key_rules(kind: str, patterns: list[bytes], guard: bytes, *, empty_key: bool
               ) -> list[str]:
    out: list[str] = []
    for pattern in dict.fromkeys(patterns):
        expanded = everything_but(guard, empty_key=empty_key) if guard and pattern == b"*" \
            else [pattern]
        out += [kind + _text(p) for p in expanded]
    return out


def everything_but(prefix: bytes, *, empty_key: bool = True) -> list[bytes]:
    """Glob patterns that together match every key not starting with ``prefix``, the
    empty key too if ``empty_key``: ``~*`` (allkeys) reaches it, but the pattern ``*``
    (``%RW~*``) does not, as Redis's glob needs a character to match ``*`` against."""
    patterns = []
    for i in range(len(prefix)):
        head = _escape(prefix[:i])
        if head or empty_key:
            patterns.append(head)  # a key that is a proper prefix of ``prefix``
        patterns.append(head + b"[^" + _escape_in_class(prefix[i : i + 1]) + b"]*")
    return patterns


def _escape(literal: bytes) -> bytes:
    out = bytearray()
    for byte in literal:
        if byte in b"*?[]\\":
            out += b"\\"
        out.append(byte)
    return bytes(out)


def _escape_in_class(char: bytes) -> bytes:
    return b"\\" + char if char in (b"]", b"\\", b"^", b"-") else char


def _text(pattern: bytes) -> str:
    # Rules travel as arguments of ACL SETUSER: any byte is fine; latin-1 keeps each byte.
    return pattern.decode("latin-1")
