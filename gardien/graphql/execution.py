"""Executing documents: graphql-core's own executor, with shortcuts for plain fields.

Most fields of a page are plain attributes of the returned objects (an id, a name, a role, the
user of a membership); graphql-core still makes a resolve-info object, calls Strawberry's
attribute resolver and walks its completion machinery for each. For fields that Strawberry marks
as plain attributes (no resolver, no field extension, no permission class, the default
attribute resolver):
- of a scalar or enum type, the value is read and coerced while executing the object's fields;
- of an object type, when the value is exactly that type's class, its sub-selection is completed
  directly, inside graphql-core's own error handling.
Anything else, and any null or coercion failure (so that errors stay graphql-core's), goes
through graphql-core unchanged; answers keep the order of the selection set. Tests compare both
executors' answers, errors included.

Sibling fields are gathered by gardien.graphql.gather, which never abandons a resolver unstarted.

The shortcut overrides graphql-core methods (execute_field, execute_fields,
collect_and_execute_subfields, handle_field_error): pyproject.toml pins graphql-core and
strawberry-graphql to the minor versions it was tested on, and a test compares the signatures.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import GeneratorType
from typing import Any, TypeGuard, cast

from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    Undefined,
)
from graphql.execution.incremental.incremental_executor import IncrementalExecutor
from graphql.pyutils import is_awaitable as graphql_is_awaitable
from strawberry import Schema
from strawberry.types.base import StrawberryObjectDefinition, StrawberryOptional
from strawberry.types.field import StrawberryField
from strawberry.types.lazy_type import LazyType

from gardien.graphql import gather

gather.install()

PlainFields = dict[tuple[str, str], tuple[str, GraphQLScalarType | GraphQLEnumType]]


class AwaitableCheck:
    """Whether values of a type can be awaited, learned once per type (a memo per engine):
    graphql-core asks for every field and list item. Generators are the one case decided per
    value (types.coroutine), so they are always asked."""

    def __init__(self) -> None:
        self._known: dict[type, bool] = {}

    def __call__(self, value: Any) -> TypeGuard[Any]:
        kind = type(value)
        known = self._known.get(kind)
        if known is None:
            known = graphql_is_awaitable(value)
            if kind is not GeneratorType:
                self._known[kind] = known
        return known


def is_plain_attribute(schema: Schema, field: StrawberryField, graphql_field: GraphQLField) -> bool:
    """Strawberry reads the field as an attribute and nothing else would run for it.

    Strawberry marks a resolver `_is_default` whenever the field has no resolver function, even
    when a field extension or a permission class wraps it; the shortcut must leave those (and any
    custom default resolver) to Strawberry.
    """
    return (
        getattr(graphql_field.resolve, "_is_default", False)
        and field.base_resolver is None
        and not field.extensions
        and not field.permission_classes
        and field.is_basic_field
        and schema.config.default_resolver is getattr
        and not graphql_field.args
    )


def _plain_fields(
    schema: Schema,
) -> Iterator[tuple[str, str, StrawberryField, GraphQLField]]:
    """Fields that Strawberry resolves as plain attributes: no resolver, extension, handler."""
    graphql_schema = schema._schema
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
            if graphql_field is not None and is_plain_attribute(schema, field, graphql_field):
                yield name, field_name, field, graphql_field


def _unwrap(graphql_type: GraphQLOutputType) -> GraphQLOutputType:
    return graphql_type.of_type if isinstance(graphql_type, GraphQLNonNull) else graphql_type


def plain_leaf_fields(schema: Schema) -> PlainFields:
    """(type, field) → (attribute, leaf type) for every plain scalar or enum field."""
    found: PlainFields = {}
    for type_name, field_name, field, graphql_field in _plain_fields(schema):
        leaf = _unwrap(graphql_field.type)
        if isinstance(leaf, GraphQLScalarType | GraphQLEnumType):
            found[(type_name, field_name)] = (field.python_name, leaf)
    return found


@dataclass(frozen=True)
class PlainObjectField:
    attribute: str
    python_class: type
    object_type: GraphQLObjectType
    return_type: GraphQLOutputType


def plain_object_fields(schema: Schema) -> dict[tuple[str, str], PlainObjectField]:
    """(type, field) → how to read it, for every plain field of a (non-list) object type."""
    found: dict[tuple[str, str], PlainObjectField] = {}
    for type_name, field_name, field, graphql_field in _plain_fields(schema):
        object_type = _unwrap(graphql_field.type)
        python_class = field.type
        if isinstance(python_class, StrawberryOptional):
            python_class = python_class.of_type
        if isinstance(python_class, LazyType):
            python_class = python_class.resolve_type()
        if isinstance(object_type, GraphQLObjectType) and isinstance(python_class, type):
            found[(type_name, field_name)] = PlainObjectField(
                field.python_name, python_class, object_type, graphql_field.type
            )
    return found


def executor_for(schema: Schema) -> type[IncrementalExecutor]:
    """An executor class for this schema; its lookup tables live with the class, per engine."""
    by_type: dict[str, dict[str, tuple[str, GraphQLScalarType | GraphQLEnumType]]] = {}
    for (type_name, field_name), plain in plain_leaf_fields(schema).items():
        by_type.setdefault(type_name, {})[field_name] = plain
    objects = plain_object_fields(schema)

    class PlainLeafExecutor(IncrementalExecutor):
        def execute_field(
            self,
            parent_type: GraphQLObjectType,
            source: Any,
            field_details_list: Any,
            path: Any,
            position_context: Any,
        ) -> Any:
            """graphql-core's execute_field for a plain object field, minus the resolver call,
            the resolve-info object and the type check that an exact class makes moot."""
            node = field_details_list[0].node
            plain = objects.get((parent_type.name, node.name.value))
            value = getattr(source, plain.attribute, None) if plain else None
            if plain is None or node.arguments or type(value) is not plain.python_class:
                return super().execute_field(
                    parent_type, source, field_details_list, path, position_context
                )
            try:
                completed = self.collect_and_execute_subfields(
                    plain.object_type, field_details_list, path, value, position_context
                )
            except Exception as raw_error:
                self.handle_field_error(raw_error, plain.return_type, field_details_list, path)
                return None
            if not self.is_awaitable(completed):
                return completed

            async def await_completed() -> Any:
                try:
                    return await completed
                except Exception as raw_error:
                    self.handle_field_error(raw_error, plain.return_type, field_details_list, path)
                    return None

            return await_completed()

        def execute_fields(
            self,
            parent_type: GraphQLObjectType,
            source_value: Any,
            path: Any,
            grouped_field_set: Any,
            position_context: Any,
        ) -> Any:
            plain = by_type.get(parent_type.name)
            if not plain:
                return super().execute_fields(
                    parent_type, source_value, path, grouped_field_set, position_context
                )
            done: dict[str, Any] = {}
            rest: dict[str, Any] = {}
            for response_name, field_details_list in grouped_field_set.items():
                node = field_details_list[0].node
                entry = plain.get(node.name.value)
                if entry is not None and not node.arguments:
                    coerced = _coerce(getattr(source_value, entry[0], None), entry[1])
                    if coerced is not None:
                        done[response_name] = coerced
                        continue
                rest[response_name] = field_details_list
            if not rest:
                return done
            others = super().execute_fields(parent_type, source_value, path, rest, position_context)
            if self.is_awaitable(others):

                async def merge_later() -> dict[str, Any]:
                    return _in_order(grouped_field_set, done, await others)

                return merge_later()
            return _in_order(grouped_field_set, done, cast("dict[str, Any]", others))

    return PlainLeafExecutor


def _coerce(value: Any, leaf: GraphQLScalarType | GraphQLEnumType) -> Any:
    """The output value, or None to let graphql-core complete the field (and report errors)."""
    if value is None:
        return None
    try:
        coerced = leaf.coerce_output_value(value)
    except Exception:  # graphql-core's own path raises it again, as a located field error
        return None
    return None if coerced is Undefined else coerced


def _in_order(
    grouped_field_set: Any, done: dict[str, Any], others: dict[str, Any]
) -> dict[str, Any]:
    """Both halves merged in the order of the selection set, as the response must be."""
    return {
        name: done[name] if name in done else others[name]
        for name in grouped_field_set
        if name in done or name in others
    }
