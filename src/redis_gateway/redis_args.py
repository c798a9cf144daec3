"""Arguments read the way Redis reads them, byte for byte.

The gateway decides things from arguments that Redis decides too (which command, which
keyword, which timeout). Where the two readings differ, a request can mean one thing to
the check and another to Redis, so the gateway reads exactly as Redis 7 does:

- Keywords and names are compared with ``strcasecmp``: the comparison ends at the first
  NUL byte (``"STREAMS\\0x"`` is ``STREAMS``) and folds ASCII letters only.
- Integers (``string2ll``): an optional ``-``, no ``+``, no leading zeros, no spaces,
  fewer than 21 bytes, within a signed 64-bit range. Length-aware: a NUL is not a digit.
- Floats (``string2ld``, which calls ``strtold`` and checks that it used every byte):
  decimal or hexadecimal (``0x1p20``) with an optional sign, ``inf``/``infinity``; ``nan``,
  whitespace, a NUL or anything else left over is refused. Where the exact value matters
  (timeouts), the gateway rewrites the argument in a form both read alike.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_LONG_STR_SIZE = 21  # Redis's LONG_STR_SIZE: a valid integer is shorter
_MAX_LONG_DOUBLE_CHARS = 5 * 1024
_LLONG_MAX = (1 << 63) - 1
_LLONG_MIN = -(1 << 63)
_LDBL_MAX = Decimal("1.18973149535723176502e4932")
_LDBL_UNDERFLOW = Decimal("1.8225997659412373013e-4951")
_INTEGER = re.compile(rb"-?[1-9][0-9]*|0")
_DECIMAL = re.compile(rb"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_HEX = re.compile(rb"[+-]?0[xX]([0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)([pP][+-]?[0-9]+)?")
_INFINITY = re.compile(rb"[+-]?(inf|infinity)", re.IGNORECASE)


def c_string(arg: bytes) -> bytes:
    """What C code sees of an argument: the bytes before the first NUL."""
    end = arg.find(b"\0")
    return arg if end < 0 else arg[:end]


def keyword(arg: bytes) -> bytes:
    """An argument as ``strcasecmp`` compares it, in lower case: ``b"BLOCK\\0"`` -> ``b"block"``."""
    return c_string(arg).lower()  # bytes.lower() folds ASCII only, as the C locale does


def parse_long_long(arg: bytes) -> int | None:
    """The integer Redis reads from ``arg`` (``string2ll``), or None where Redis refuses it."""
    if len(arg) >= _LONG_STR_SIZE or not _INTEGER.fullmatch(arg):
        return None
    value = int(arg)
    return value if _LLONG_MIN <= value <= _LLONG_MAX else None


def parse_long_double(arg: bytes) -> Decimal | None:
    """The number Redis reads from ``arg`` (``string2ld``), or None where Redis refuses it.

    Decimal strings are read exactly and hexadecimal ones through ``float.fromhex``; Redis
    reads both into a long double, so the last bits of a long decimal can differ. Callers
    that act on the value rewrite the argument instead of trusting those bits.
    """
    text = arg  # unlike string2ll's callers, string2ld checks that strtold used every byte
    if not text or len(arg) >= _MAX_LONG_DOUBLE_CHARS:
        return None
    try:
        if _DECIMAL.fullmatch(text):
            value = Decimal(text.decode("ascii"))
        elif _HEX.fullmatch(text):
            value = Decimal(float.fromhex(text.decode("ascii")))
        elif _INFINITY.fullmatch(text):
            value = Decimal("-Infinity" if text.startswith(b"-") else "Infinity")
        else:
            return None
    except (InvalidOperation, OverflowError, ValueError):
        return None
    # strtold fails with ERANGE past the long double range: overflow, or underflow to zero
    # (below half the smallest subnormal; a subnormal result is accepted).
    if value.is_finite() and value != 0 and not _LDBL_UNDERFLOW <= abs(value) <= _LDBL_MAX:
        return None
    return value
