"""What the gateway sends to Redis and reads back, named once for every module.

``Argv`` is one command as it goes to Redis: its name, then its arguments, all bytes.
``text`` and ``pairs`` read the flat arrays Redis answers with where another protocol
would have a map (``COMMAND``'s key specs, ``CLUSTER SHARDS``, ``SENTINEL MASTER``).
Redis error replies are ``resp.ReplyError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Argv = Sequence[bytes]


def text(value: Any) -> str:
    """A reply element as text: bytes decoded (never failing), anything else as ``str``."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def pairs(flat: Sequence[Any]) -> dict[str, Any]:
    """``[name, value, name, value, ...]`` as a dict by name; an odd last element is dropped."""
    return {text(flat[i]): flat[i + 1] for i in range(0, len(flat) - 1, 2)}
