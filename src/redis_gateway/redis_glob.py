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


@lru_cache(maxsize=4096)
def _compile(pattern: bytes) -> re.Pattern[bytes]:
    out = bytearray()
    n, i = len(pattern), 0
    while i < n:
        c = pattern[i]
        if c == ord("*"):
            while i + 1 < n and pattern[i + 1] == ord("*"):
                i += 1
            out += b".*"
        elif c == ord("?"):
            out += b"."
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
            out += _class(set(range(256)) - members if negate else members)
        elif c == ord("\\") and n - i >= 2:
            i += 1
            out += re.escape(pattern[i : i + 1])
        else:
            out += re.escape(pattern[i : i + 1])
        i += 1
    return re.compile(bytes(out), re.DOTALL)


def glob_match(pattern: bytes, value: bytes) -> bool:
    """Whether Redis's ``stringmatchlen(pattern, value)`` matches."""
    if not value:
        return not pattern
    return _compile(pattern).fullmatch(value) is not None
