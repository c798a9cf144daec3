"""The executable schema: schema.graphql plus AppSync's prelude, scalars and resolvers.

Also the operation limits the validator does not have: depth and aliases.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    build_schema,
)
from graphql.language import DocumentNode, ValueNode
from graphql.utilities import value_from_ast_untyped

from .resolvers import RESOLVERS, Context, Resolver


def schema_text() -> str:
    """The schema file as deployed to AppSync."""
    return (resources.files(__package__) / "schema.graphql").read_text()


@cache
def executable_schema() -> GraphQLSchema:
    prelude = (resources.files(__package__) / "appsync.graphql").read_text()
    schema = build_schema(prelude + "\n" + schema_text())
    _bind_awsjson(schema.type_map["AWSJSON"])  # type: ignore[arg-type]
    for (type_name, field_name), fn in RESOLVERS.items():
        owner = schema.type_map[type_name]
        assert isinstance(owner, GraphQLObjectType)
        owner.fields[field_name].resolve = _adapt(fn)
    missing = [f"{t.name}.{f}" for t in (schema.query_type, schema.mutation_type) if t
               for f in t.fields if (t.name, f) not in RESOLVERS]
    if missing:  # a field in the schema file without code would answer null forever
        raise RuntimeError(f"schema fields without a resolver: {', '.join(missing)}")
    return schema


def _adapt(fn: Resolver) -> Any:
    async def resolve(_root: Any, info: GraphQLResolveInfo[Context], **args: Any) -> Any:
        return await fn(info.context, args)

    return resolve


def _bind_awsjson(scalar: GraphQLScalarType) -> None:
    """AWSJSON as AppSync has it: JSON text on the wire, a JSON value inside."""

    def parse_value(value: Any) -> Any:
        if not isinstance(value, str):
            raise GraphQLError("AWSJSON input must be a string holding JSON")
        try:
            return json.loads(value)
        except ValueError as exc:
            raise GraphQLError(f"AWSJSON input is not valid JSON: {exc}") from None

    def parse_literal(node: ValueNode, variables: Any = None) -> Any:
        return parse_value(value_from_ast_untyped(node, variables))

    def serialize(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    # graphql-core 3.3 reads the coerce_* names, 3.2 the older ones: set both.
    for name, fn in (("serialize", serialize), ("coerce_output_value", serialize),
                     ("parse_value", parse_value), ("coerce_input_value", parse_value),
                     ("parse_literal", parse_literal)):
        setattr(scalar, name, fn)


def limit_errors(document: DocumentNode, max_depth: int, max_aliases: int) -> list[GraphQLError]:
    """Depth and alias limits, checked before anything runs."""
    fragments = {d.name.value: d for d in document.definitions
                 if isinstance(d, FragmentDefinitionNode)}
    errors = []
    aliases = 0
    for definition in document.definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        depth, count = _measure(definition.selection_set, fragments, set())
        aliases += count
        if depth > max_depth:
            errors.append(GraphQLError(
                f"the operation is {depth} levels deep; the limit is {max_depth} "
                "(graphql.max_depth)", definition))
    if aliases > max_aliases:
        errors.append(GraphQLError(
            f"the document uses {aliases} aliases; the limit is {max_aliases} "
            "(graphql.max_aliases)"))
    return errors


def _measure(selection_set: SelectionSetNode | None,
             fragments: dict[str, FragmentDefinitionNode],
             visiting: set[str]) -> tuple[int, int]:
    """(depth, aliases) of a selection set, fragments expanded."""
    if selection_set is None:
        return 0, 0
    depth = aliases = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            if selection.name.value.startswith("__"):
                continue  # introspection has its own switch; its query is deep by design
            inner, count = _measure(selection.selection_set, fragments, visiting)
            depth = max(depth, 1 + inner)
            aliases += count + (selection.alias is not None)
        elif isinstance(selection, InlineFragmentNode):
            inner, count = _measure(selection.selection_set, fragments, visiting)
            depth, aliases = max(depth, inner), aliases + count
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in visiting or name not in fragments:
                continue  # cycles and unknown fragments are the validator's to report
            inner, count = _measure(fragments[name].selection_set, fragments,
                                    visiting | {name})
            depth, aliases = max(depth, inner), aliases + count
    return depth, aliases
