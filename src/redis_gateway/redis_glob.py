"""Redis's glob patterns (``stringmatchlen``), matched exactly as Redis matches them.

ACL key and channel patterns are matched by Redis with its own glob, whose corners differ
from fnmatch's and from a naive translation to a regular expression:

- ``[...]`` without a closing bracket is a class of the remaining characters; ``[]`` never
  matches and ``[^]`` matches any character; a range written backwards (``[z-a]``) is
  swapped; inside a class ``\\x`` is a literal x and ``a-]`` is a range ending at ``]``
  (the class then goes on to the next ``]``);
- bytes compare as C ``char``, signed on the platforms Redis runs on, so a range that
  spans 0x7f/0x80 covers what signed arithmetic says it covers;
- an empty string matches only the empty pattern (even ``*`` does not match it).

The pattern is parsed once, the way Redis walks it (the walk does not depend on the string),
into a regular expression over bytes; matching is then ``fullmatch``.
"""

from __future__ import annotations

import re
from functools import lru_cache


def _signed(byte: int) -> int:
    return byte - 256 if byte > 127 else byte


def _class(members: set[int]) -> bytes:
    if not members:
        return b"(?!)"  # matches nothing
    return b"[" + b"".join(re.escape(bytes([m])) for m in sorted(members)) + b"]"


# A parsed pattern: per position, the bytes it matches (one byte each), or None for ``*``
# (any run of bytes, empty included).
_Tokens = tuple[frozenset[int] | None, ...]
_ANY = frozenset(range(256))


@lru_cache(maxsize=4096)
def _tokens(pattern: bytes) -> _Tokens:
    out: list[frozenset[int] | None] = []
    n, i = len(pattern), 0
    while i < n:
        c = pattern[i]
        if c == ord("*"):
            while i + 1 < n and pattern[i + 1] == ord("*"):
                i += 1
            out.append(None)
        elif c == ord("?"):
            out.append(_ANY)
        elif c == ord("["):
            i += 1
            negate = i < n and pattern[i] == ord("^")
            if negate:
                i += 1
            members: set[int] = set()
            while True:
                if i < n and pattern[i] == ord("\\") and n - i >= 2:
                    i += 1
                    members.add(pattern[i])
                elif i < n and pattern[i] == ord("]"):
                    break
                elif i >= n:
                    i -= 1  # Redis steps back onto the last character and stops
                    break
                elif n - i >= 3 and pattern[i + 1] == ord("-"):
                    start, end = _signed(pattern[i]), _signed(pattern[i + 2])
                    if start > end:
                        start, end = end, start
                    members |= {b for b in range(256) if start <= _signed(b) <= end}
                    i += 2
                else:
                    members.add(pattern[i])
                i += 1
            out.append(_ANY - members if negate else frozenset(members))
        elif c == ord("\\") and n - i >= 2:
            i += 1
            out.append(frozenset((pattern[i],)))
        else:
            out.append(frozenset((c,)))
        i += 1
    return tuple(out)


@lru_cache(maxsize=4096)
def _compile(pattern: bytes) -> re.Pattern[bytes]:
    out = bytearray()
    for token in _tokens(pattern):
        if token is None:
            out += b".*"
        elif token == _ANY:
            out += b"."
        elif len(token) == 1:
            out += re.escape(bytes(token))
        else:
            out += _class(set(token))
    return re.compile(bytes(out), re.DOTALL)


def glob_match(pattern: bytes, value: bytes) -> bool:
    """Whether Redis's ``stringmatchlen(pattern, value)`` matches."""
    if not value:
        return not pattern
    return _compile(pattern).fullmatch(value) is not None


def may_match_under(pattern: bytes, prefix: bytes) -> bool:
    """Whether some value starting with ``prefix`` matches ``pattern``: the pattern reaches
    keys under that prefix. The pattern's positions are walked over the prefix's bytes, as
    an automaton; a position still alive after them, with nothing impossible after it (an
    empty class), can go on to match."""
    tokens = _tokens(pattern)
    alive = _past_stars({0}, tokens)
    for byte in prefix:
        alive = _past_stars({i + (token is not None) for i in alive if i < len(tokens)
                             for token in [tokens[i]] if token is None or byte in token},
                            tokens)
        if not alive:
            return False
    return any(all(token is None or token for token in tokens[i:]) for i in alive)


def _past_stars(positions: set[int], tokens: _Tokens) -> set[int]:
    """The positions, and those after the ``*`` at any of them (a star may match nothing)."""
    out = set(positions)
    for i in sorted(positions):
        while i < len(tokens) and tokens[i] is None:
            i += 1
            out.add(i)
    return out
