"""The limits a GraphQL request meets before any of it is validated or run.

Each check costs at most a pass over what it measures, so a request cannot make the
gateway do more work deciding whether to refuse it than the request's own size:

- ``document_size``: bytes, before the document is parsed.
- ``cost_errors``: depth, aliases and fields of each operation, with fragments
  expanded (what execution would do) but each fragment measured only once, so 22
  fragments that each spread the next one twice cost 22 steps to measure, not 2**22.
- ``variable_values_error``: how many values the variables hold, before graphql-core
  coerces them one by one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    Node,
    OperationDefinitionNode,
    SelectionSetNode,
)

from ..errors import LimitExceeded
from ..settings import GraphQLSettings
from .counting import holds_more_than

# Counts saturate here: a few hundred nested spreads would otherwise make numbers of
# thousands of digits, and anything this large is over every limit anyway.
_SATURATED = 1 << 62


def limit_error(message: str, node: Node | None = None) -> GraphQLError:
    """A refused request: ``errorType: LimitExceeded``, like the runtime limits."""
    return GraphQLError(message, node, original_error=LimitExceeded(message))


def document_size(query: str, max_bytes: int) -> tuple[int, GraphQLError | None]:
    """The document's size in UTF-8 bytes, and the error if it is over ``max_bytes``."""
    size = len(query)  # a character is at least one byte: a long text is not encoded
    if size <= max_bytes:
        size = len(query.encode("utf-8", "surrogatepass"))
        if size <= max_bytes:
            return size, None
    return size, limit_error(f"the document is {size} bytes or more; the limit is "
                             f"{max_bytes} bytes (graphql.max_document_bytes): send large "
                             "values as variables")


@dataclass(frozen=True)
class Cost:
    """What one selection set makes execution do, its fragments expanded."""

    depth: int = 0  # levels of fields below it (introspection fields not counted)
    fields: int = 0  # fields resolved, every fragment spread expanded where it stands
    aliases: int = 0

    def beside(self, other: Cost) -> Cost:
        """Two selections of one selection set."""
        return Cost(max(self.depth, other.depth),
                    min(self.fields + other.fields, _SATURATED),
                    min(self.aliases + other.aliases, _SATURATED))


_FREE = Cost()


def operation_costs(document: DocumentNode) -> dict[OperationDefinitionNode, Cost]:
    """Each operation's cost. Linear in the document: a fragment is measured once,
    after the fragments it spreads; a spread that closes a cycle, or names no fragment,
    costs nothing here (the validator reports both)."""
    fragments = {d.name.value: d for d in document.definitions
                 if isinstance(d, FragmentDefinitionNode)}
    measured: dict[str, Cost] = {}
    for name in _dependencies_first(fragments):
        measured[name] = _selection_cost(fragments[name].selection_set, measured)
    return {d: _selection_cost(d.selection_set, measured) for d in document.definitions
            if isinstance(d, OperationDefinitionNode)}


def cost_errors(document: DocumentNode, settings: GraphQLSettings) -> list[GraphQLError]:
    """The operations over ``max_depth``, ``max_aliases`` or ``max_fields``."""
    errors = []
    for operation, cost in operation_costs(document).items():
        for amount, limit, what, key in (
            (cost.depth, settings.max_depth, "is {} levels deep", "max_depth"),
            (cost.aliases, settings.max_aliases, "uses {} aliases", "max_aliases"),
            (cost.fields, settings.max_fields,
             "resolves {} fields with its fragments expanded", "max_fields"),
        ):
            if amount > limit:
                shown = "more than 2**62" if amount >= _SATURATED else str(amount)
                errors.append(limit_error(
                    f"the operation {what.format(shown)}; the limit is {limit} "
                    f"(graphql.{key})", operation))
    return errors


def _dependencies_first(fragments: dict[str, FragmentDefinitionNode]) -> Iterator[str]:
    """Fragment names, each after the fragments it spreads (depth-first, iterative:
    a chain of thousands of fragments must not exhaust Python's stack)."""
    done: set[str] = set()
    for root in fragments:
        if root in done:
            continue
        done.add(root)
        stack = [(root, iter(_spread_names(fragments[root].selection_set)))]
        while stack:
            name, pending = stack[-1]
            for spread in pending:
                if spread in fragments and spread not in done:
                    done.add(spread)  # marked on entry: a cycle back to it is not followed
                    stack.append((spread, iter(_spread_names(fragments[spread].selection_set))))
                    break
            else:
                stack.pop()
                yield name


def _spread_names(selection_set: SelectionSetNode) -> Iterable[str]:
    for selection in _walk(selection_set):
        if isinstance(selection, FragmentSpreadNode):
            yield selection.name.value


def _walk(selection_set: SelectionSetNode) -> Iterator[Node]:
    """Every selection below a selection set, without recursion."""
    stack = [selection_set]
    while stack:
        for selection in stack.pop().selections:
            yield selection
            inner = getattr(selection, "selection_set", None)
            if inner is not None:
                stack.append(inner)


def _selection_cost(selection_set: SelectionSetNode | None,
                    fragments: dict[str, Cost]) -> Cost:
    # Recursion follows the document's own nesting, which the parser has already bounded
    # (it stops documents nested deeper than Python's stack allows).
    if selection_set is None:
        return _FREE
    total = _FREE
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            inner = _selection_cost(selection.selection_set, fragments)
            # Introspection has its own switch and its standard query is deep by design:
            # its fields count as work, not as depth.
            depth = 0 if selection.name.value.startswith("__") else 1 + inner.depth
            cost = Cost(depth, inner.fields + 1, inner.aliases + (selection.alias is not None))
        elif isinstance(selection, InlineFragmentNode):
            cost = _selection_cost(selection.selection_set, fragments)
        elif isinstance(selection, FragmentSpreadNode):
            cost = fragments.get(selection.name.value, _FREE)
        else:  # pragma: no cover - the three kinds of selection are all there is
            continue
        total = total.beside(cost)
    return total


def variable_values_error(variables: dict[str, Any] | None, limit: int) -> GraphQLError | None:
    """graphql-core coerces variables value by value (about 4 µs each): count first."""
    if variables and holds_more_than(variables, limit):
        return limit_error(f"the variables hold more than {limit} values "
                           "(graphql.max_variable_values)")
    return None
