"""Counting nested elements, stopping as soon as there are too many.

Shared by the limit on variables and the limit on typed list replies; free of
graphql-core, so AppSync's direct Lambda resolvers (resolvers.py) load without it.
"""

from __future__ import annotations

from typing import Any


def holds_more_than(value: list[Any] | dict[str, Any], limit: int) -> bool:
    """Whether a JSON value or Redis reply holds more than ``limit`` elements at all depths.

    Each list is counted by its length before its items are looked at, so a huge one is
    found over the limit at once."""
    count = 0
    stack = [value]
    while stack:
        container = stack.pop()
        count += len(container)
        if count > limit:
            return True
        items = container.values() if isinstance(container, dict) else container
        stack.extend(item for item in items if isinstance(item, list | dict))
    return False
