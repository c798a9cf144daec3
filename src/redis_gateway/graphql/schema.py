"""The executable schema: schema.graphql plus AppSync's prelude, scalars and resolvers."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

import orjson
from graphql import (
    GraphQLError,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
    build_schema,
)
from graphql.language import ValueNode
from graphql.utilities import value_from_ast_untyped

from .resolvers import RESOLVERS, Context, Resolver
from .subscriptions import SUBSCRIPTIONS, Source


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
    subscription = schema.subscription_type
    for field_name, (source, shape) in SUBSCRIPTIONS.items():
        assert subscription is not None
        subscription.fields[field_name].subscribe = _adapt_source(source)
        subscription.fields[field_name].resolve = _adapt_event(shape)
    missing = [f"{t.name}.{f}" for t in (schema.query_type, schema.mutation_type) if t
               for f in t.fields if (t.name, f) not in RESOLVERS]
    missing += [f"Subscription.{f}" for f in subscription.fields if f not in SUBSCRIPTIONS
                ] if subscription else []
    if missing:  # a field in the schema file without code would answer null forever
        raise RuntimeError(f"schema fields without a resolver: {', '.join(missing)}")
    return schema


def _adapt(fn: Resolver) -> Any:
    async def resolve(_root: Any, info: GraphQLResolveInfo[Context], **args: Any) -> Any:
        return await fn(info.context, args)

    return resolve


def _adapt_source(fn: Source) -> Any:
    async def subscribe(_root: Any, info: GraphQLResolveInfo[Context], **args: Any) -> Any:
        return await fn(info.context, args)

    return subscribe


def _adapt_event(fn: Callable[[Any, dict[str, Any]], Any]) -> Any:
    def resolve(event: Any, _info: GraphQLResolveInfo[Context], **args: Any) -> Any:
        return fn(event, args)

    return resolve


def _bind_awsjson(scalar: GraphQLScalarType) -> None:
    """AWSJSON as AppSync has it: JSON text on the wire, a JSON value inside."""

    def parse_value(value: Any) -> Any:
        if not isinstance(value, str):
            raise GraphQLError("AWSJSON input must be a string holding JSON")
        try:
            return orjson.loads(value)  # unlike json, refuses deep nesting with a ValueError
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
