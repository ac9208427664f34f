"""Executing documents: graphql-core's own executor, with a shortcut for plain leaf fields.

Most fields of a page are plain attributes of the returned objects (an id, a name, a role):
graphql-core still builds a resolve-info object, calls Strawberry's attribute resolver and walks
its completion machinery for each. For a field that Strawberry itself marks as a plain
attribute (no resolver, no extension) and whose type is a scalar or an enum, the executor here
reads the attribute and coerces it directly; anything else — and a null, so errors stay
graphql-core's — takes the normal path. The answer is the same; the profile of the members
query showed a third of its time in that machinery.
"""

from __future__ import annotations

from typing import Any, TypeGuard

from graphql import (
    GraphQLEnumType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    Undefined,
)
from graphql.execution.incremental.incremental_executor import IncrementalExecutor
from graphql.pyutils import is_awaitable as graphql_is_awaitable
from strawberry import Schema
from strawberry.types.base import StrawberryObjectDefinition

PlainFields = dict[tuple[str, str], tuple[str, GraphQLScalarType | GraphQLEnumType]]

# Values that resolvers return directly and that are never awaitable: checked by type first.
_PLAIN_VALUES = frozenset({str, int, float, bool, type(None), list, dict, tuple})


def is_awaitable(value: Any) -> TypeGuard[Any]:
    return type(value) not in _PLAIN_VALUES and graphql_is_awaitable(value)


def plain_leaf_fields(schema: Schema) -> PlainFields:
    """(type, field) → (attribute, leaf type) for every plain scalar or enum field."""
    graphql_schema = schema._schema
    found: PlainFields = {}
    for name, concrete in schema.schema_converter.type_map.items():
        definition = concrete.definition
        graphql_type = graphql_schema.type_map.get(name)
        if not isinstance(definition, StrawberryObjectDefinition) or not isinstance(
            graphql_type, GraphQLObjectType
        ):
            continue
        for field in definition.fields:
            field_name = schema.config.name_converter.get_graphql_name(field)
            graphql_field = graphql_type.fields.get(field_name)
            if graphql_field is None or graphql_field.args:
                continue
            if not getattr(graphql_field.resolve, "_is_default", False):
                continue  # a resolver, an extension or an exception handler: the normal path
            leaf = graphql_field.type
            if isinstance(leaf, GraphQLNonNull):
                leaf = leaf.of_type
            if isinstance(leaf, GraphQLScalarType | GraphQLEnumType):
                found[(name, field_name)] = (field.python_name, leaf)
    return found


def executor_for(schema: Schema) -> type[IncrementalExecutor]:
    fields = plain_leaf_fields(schema)

    class PlainLeafExecutor(IncrementalExecutor):
        def execute_field(
            self,
            parent_type: GraphQLObjectType,
            source: Any,
            field_details_list: Any,
            path: Any,
            position_context: Any,
        ) -> Any:
            node = field_details_list[0].node
            plain = fields.get((parent_type.name, node.name.value))
            if plain is not None and not node.arguments:
                value = getattr(source, plain[0], None)
                if value is not None:
                    coerced = plain[1].coerce_output_value(value)
                    if coerced is not Undefined and coerced is not None:
                        return coerced
            return super().execute_field(
                parent_type, source, field_details_list, path, position_context
            )

    return PlainLeafExecutor
