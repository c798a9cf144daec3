"""SharedResults: a pub/sub event is executed once per distinct operation, however many
subscribers receive it, and never confused with another event."""

from __future__ import annotations

from redis_gateway.graphql.operations import SharedResults, operation_key


def test_one_computation_per_event_and_operation() -> None:
    shared = SharedResults(entries=4)
    calls: list[tuple[object, str]] = []

    def compute(event: object, op: str) -> dict[str, object]:
        calls.append((event, op))
        return {"data": {"n": len(calls)}}

    first, second = object(), object()
    op = operation_key("subscription { messages(channels: $c) { message } }", {"c": ["a"]},
                       None)
    results = [shared.get(first, op, lambda: compute(first, op)) for _ in range(1000)]
    assert all(r is results[0] for r in results) and calls == [(first, op)]
    # Another event, or the same event for another operation: computed on its own.
    assert shared.get(second, op, lambda: compute(second, op)) == {"data": {"n": 2}}
    other = operation_key("subscription { messages(channels: $c) { message } }", {"c": ["b"]},
                          None)
    assert shared.get(first, other, lambda: compute(first, other)) == {"data": {"n": 3}}
    # Variables in another key order are the same operation.
    assert operation_key("q", {"a": 1, "b": 2}, "N") == operation_key("q", {"b": 2, "a": 1}, "N")


def test_bounded_and_never_served_for_a_new_event_at_a_reused_address() -> None:
    shared = SharedResults(entries=2)
    events = [object() for _ in range(5)]
    for i, event in enumerate(events):
        shared.get(event, "op", lambda i=i: {"n": i})  # type: ignore[misc]
    assert len(shared._cache) == 2
    # An entry is only a hit for the very same object (its id cannot be reused while the
    # entry holds it; after eviction a new object at that address is computed anew).
    assert shared.get(events[-1], "op", lambda: {"n": -1}) == {"n": 4}
    assert shared.get(object(), "op", lambda: {"n": -2}) == {"n": -2}
