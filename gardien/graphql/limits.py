"""Bounds on the work one document may ask for (API-4): depth, aliases, fields, directives, cost.

Measured on the syntax tree before graphql-core's own validation rules run (some of those are
super-linear in the number of fields, so a hostile document must never reach them), and so
written to stay cheap on any document:
- each fragment is measured once and its measure reused at every spread (never expanded);
- a fragment spread that is being measured already (a cycle, which graphql-core's
  NoFragmentCycles refuses afterwards) counts as empty;
- one selection set may select an object field (by response name) at most MAX_REPEATS times, a
  leaf at most MAX_LEAF_REPEATS times (QUERY_TOO_COSTLY): graphql-core's overlapping-fields rule
  compares such fields pairwise;
- the walk stops with QUERY_TOO_DEEP once the nesting of selections (fields, inline fragments and
  fragment spreads on one path) passes a guard, so neither a deep document nor a long chain of
  fragments can exhaust the stack.

Cost: every field costs 1; a connection field (one that takes a `first` argument) costs 1 plus its
sub-selection's cost times the page size it may return: the literal `first`, the largest page
size (100) when `first` is a variable, the default page size (20) when it is absent. Variables
are deliberately not looked at: a document's cost then depends on its text alone, is computed
once and cached with the document, and a refusal never depends on values a client can vary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
)

from gardien.resolvers.errors import ErrorCode
from gardien.resolvers.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from gardien.settings import REQUEST_LIMITS

MAX_NESTING = 200
# graphql-core's OverlappingFieldsCanBeMerged compares every pair of fields that share a response
# name in one selection set, sub-selections included: quadratic (500 copies of one object field
# held the event loop 1.5 s; 2,000 copies of `id`, 0.4 s). No client needs the same object field
# ten times in one place; leaves (__typename in every fragment, as some clients add it) get more.
MAX_REPEATS = 10
MAX_LEAF_REPEATS = 100


@dataclass(frozen=True)
class Limits:
    """What one document may ask for; the defaults are the settings' (GARDIEN_MAX_*)."""

    max_depth: int = REQUEST_LIMITS["MAX_DEPTH"]
    max_aliases: int = REQUEST_LIMITS["MAX_ALIASES"]
    max_root_fields: int = REQUEST_LIMITS["MAX_ROOT_FIELDS"]
    max_directives: int = REQUEST_LIMITS["MAX_DIRECTIVES"]
    max_tokens: int = REQUEST_LIMITS["MAX_TOKENS"]
    max_cost: int = REQUEST_LIMITS["MAX_COST"]


@dataclass(frozen=True)
class Measure:
    """What an operation asks for, fragments expanded. Values past a limit are capped."""

    depth: int = 0
    aliases: int = 0
    directives: int = 0
    cost: int = 0
    root_fields: int = 0


class _TooDeep(Exception):
    """The walk passed its nesting guard: the document is refused as too deep."""


class _Repeated(Exception):
    """One selection set selects the same response name too often."""

    def __init__(self, response_name: str, limit: int) -> None:
        super().__init__(response_name)
        self.response_name = response_name
        self.limit = limit


class _Walker:
    def __init__(
        self,
        schema: GraphQLSchema,
        limits: Limits,
        fragments: Mapping[str, FragmentDefinitionNode],
    ) -> None:
        self._schema = schema
        self._fragments = fragments
        # Sums are capped just past their limit: a refused document needs no exact figure,
        # and fragment doubling would otherwise build astronomically large integers.
        self._cost_cap = limits.max_cost + 1
        self._count_cap = max(limits.max_aliases, limits.max_directives) + 1
        # Fields, inline fragments and spreads on one path: a legitimate document stays far
        # below (depth 15 with a few fragments). Each level costs two Python frames at most, so
        # the guard stays well inside the interpreter's recursion limit whatever is configured.
        self._guard = min(max(4 * limits.max_depth, 64), MAX_NESTING)
        self._nesting = 0
        self._memo: dict[str, tuple[Measure, dict[str, int]]] = {}
        self._measuring: set[str] = set()

    def selection_set(
        self,
        selection_set: SelectionSetNode,
        parent: GraphQLNamedType | None,
        names: dict[str, int] | None = None,
    ) -> Measure:
        """The measure of a selection set; `names` counts its response names (inline fragments
        merge into their parent's selection, so they share the parent's count)."""
        self._nesting += 1
        if self._nesting > self._guard:
            raise _TooDeep
        if names is None:
            names = {}
        depth = aliases = directives = cost = 0
        for selection in selection_set.selections:
            directives += len(selection.directives or ())
            if isinstance(selection, FieldNode):
                _count_name(names, _name_key(selection), 1)
                child, multiplier = self._field(selection, parent)
                aliases += child.aliases + (1 if selection.alias else 0)
                directives += child.directives
                depth = max(depth, 1 + child.depth)
                cost += 1 + multiplier * child.cost
            else:
                if isinstance(selection, InlineFragmentNode):
                    condition = selection.type_condition
                    scope = self._schema.get_type(condition.name.value) if condition else parent
                    child = self.selection_set(selection.selection_set, scope, names)
                else:
                    assert isinstance(selection, FragmentSpreadNode)
                    child = self._spread(selection.name.value, names)
                aliases += child.aliases
                directives += child.directives
                depth = max(depth, child.depth)
                cost += child.cost
        self._nesting -= 1
        return Measure(
            depth=depth,
            aliases=min(aliases, self._count_cap),
            directives=min(directives, self._count_cap),
            cost=min(cost, self._cost_cap),
        )

    def _field(self, node: FieldNode, parent: GraphQLNamedType | None) -> tuple[Measure, int]:
        field_type: GraphQLNamedType | None = None
        definition = None
        if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            definition = parent.fields.get(node.name.value)
        if definition is not None:
            field_type = get_named_type(definition.type)
            is_connection = "first" in definition.args
        else:
            # Unknown here (validation refuses it later): judged by its arguments alone.
            is_connection = any(a.name.value == "first" for a in node.arguments or ())
        multiplier = _page_size(node) if is_connection else 1
        if node.selection_set is None:
            return Measure(), multiplier
        return self.selection_set(node.selection_set, field_type), multiplier

    def _spread(self, name: str, names: dict[str, int]) -> Measure:
        """A fragment's measure, its response names added to the spreading selection's."""
        measure, fragment_names = self._fragment(name)
        spread_key = "..." + name  # never a response name; graphql-core merges repeated spreads
        if spread_key not in names:
            names[spread_key] = 1
            for key, count in fragment_names.items():
                if not key.startswith("..."):
                    _count_name(names, key, count)
        return measure

    def _fragment(self, name: str) -> tuple[Measure, dict[str, int]]:
        known = self._memo.get(name)
        if known is not None:
            return known
        fragment = self._fragments.get(name)
        if fragment is None or name in self._measuring:
            return Measure(), {}  # unknown or cyclic: graphql-core's rules refuse the document
        self._measuring.add(name)
        self._nesting += 1
        names: dict[str, int] = {}
        measure = self.selection_set(
            fragment.selection_set,
            self._schema.get_type(fragment.type_condition.name.value),
            names,
        )
        self._nesting -= 1
        self._measuring.discard(name)
        self._memo[name] = (measure, names)
        return measure, names

    def root_fields(
        self, selection_set: SelectionSetNode, seen: set[str], found: dict[str, str]
    ) -> dict[str, str]:
        """The fields an operation may run at its root, __typename aside: response name → name."""
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if selection.name.value != "__typename":
                    response_name = selection.alias or selection.name
                    found[response_name.value] = selection.name.value
            elif isinstance(selection, InlineFragmentNode):
                self.root_fields(selection.selection_set, seen, found)
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
                seen.add(selection.name.value)
                fragment = self._fragments.get(selection.name.value)
                if fragment is not None:
                    self.root_fields(fragment.selection_set, seen, found)
        return found


def _name_key(field: FieldNode) -> str:
    """The field's response name, marked "#" for a leaf (neither mark can begin a name)."""
    response_name = (field.alias or field.name).value
    return response_name if field.selection_set is not None else "#" + response_name


def _count_name(names: dict[str, int], key: str, count: int) -> None:
    names[key] = names.get(key, 0) + count
    is_leaf = key.startswith("#")
    if names[key] > (MAX_LEAF_REPEATS if is_leaf else MAX_REPEATS):
        raise _Repeated(key.removeprefix("#"), MAX_LEAF_REPEATS if is_leaf else MAX_REPEATS)


def _page_size(node: FieldNode) -> int:
    for argument in node.arguments or ():
        if argument.name.value != "first":
            continue
        if isinstance(argument.value, VariableNode):
            return MAX_PAGE_SIZE
        if isinstance(argument.value, IntValueNode):
            # An out-of-range literal is refused when the field runs; cost it at the bound.
            return max(0, min(int(argument.value.value), MAX_PAGE_SIZE))
        return DEFAULT_PAGE_SIZE  # null
    return DEFAULT_PAGE_SIZE


@dataclass(frozen=True)
class OperationShape:
    """An operation's measure and the root fields it may run (for the operation gate)."""

    measure: Measure
    root_fields: frozenset[str]


def measure_operations(
    schema: GraphQLSchema,
    limits: Limits,
    operations: list[OperationDefinitionNode],
    fragments: Mapping[str, FragmentDefinitionNode],
) -> tuple[dict[int, OperationShape], list[GraphQLError]]:
    """Each operation's shape (by position in `operations`), and the limits it breaks."""
    walker = _Walker(schema, limits, fragments)
    shapes: dict[int, OperationShape] = {}
    errors: list[GraphQLError] = []
    for index, operation in enumerate(operations):
        root_type = schema.get_root_type(operation.operation)
        try:
            measure = walker.selection_set(operation.selection_set, root_type)
            root_fields = walker.root_fields(operation.selection_set, set(), {})
        except _TooDeep:
            errors.append(_too_deep(operation, limits))
            continue
        except _Repeated as repeated:
            errors.append(
                limit_error(
                    ErrorCode.QUERY_TOO_COSTLY,
                    f"{_name(operation)} selects '{repeated.response_name}' more than"
                    f" {repeated.limit} times in one selection set; select each field once.",
                    operation,
                )
            )
            continue
        shape = OperationShape(
            Measure(
                depth=measure.depth,
                aliases=measure.aliases,
                directives=measure.directives + len(operation.directives or ()),
                cost=measure.cost,
                root_fields=len(root_fields),
            ),
            frozenset(root_fields.values()),
        )
        shapes[index] = shape
        errors.extend(_broken_limits(operation, shape.measure, limits))
    return shapes, errors


def _name(operation: OperationDefinitionNode) -> str:
    return f"Operation '{operation.name.value}'" if operation.name else "The operation"


def _too_deep(operation: OperationDefinitionNode, limits: Limits) -> GraphQLError:
    return limit_error(
        ErrorCode.QUERY_TOO_DEEP,
        f"{_name(operation)} nests fields more than {limits.max_depth} levels deep"
        " (fragments included); ask for less at once.",
        operation,
    )


def _broken_limits(
    operation: OperationDefinitionNode, measure: Measure, limits: Limits
) -> list[GraphQLError]:
    name = _name(operation)
    errors = []
    if measure.depth > limits.max_depth:
        errors.append(_too_deep(operation, limits))
    if measure.aliases > limits.max_aliases:
        errors.append(
            limit_error(
                ErrorCode.TOO_MANY_ALIASES,
                f"{name} uses more than {limits.max_aliases} aliases (fragments included).",
                operation,
            )
        )
    if measure.root_fields > limits.max_root_fields:
        errors.append(
            limit_error(
                ErrorCode.TOO_MANY_ROOT_FIELDS,
                f"{name} asks for {measure.root_fields} root fields; at most"
                f" {limits.max_root_fields} are allowed in one operation.",
                operation,
            )
        )
    if measure.directives > limits.max_directives:
        errors.append(
            limit_error(
                ErrorCode.TOO_MANY_DIRECTIVES,
                f"{name} uses more than {limits.max_directives} directives (fragments included).",
                operation,
            )
        )
    if measure.cost > limits.max_cost:
        errors.append(
            limit_error(
                ErrorCode.QUERY_TOO_COSTLY,
                f"{name} may cost more than {limits.max_cost}: every field costs 1 and a"
                " connection multiplies its selection by its page size (first, 20 when absent,"
                " 100 when a variable); ask for smaller pages or fewer fields.",
                operation,
            )
        )
    return errors


def limit_error(
    code: ErrorCode, message: str, node: OperationDefinitionNode | None = None
) -> GraphQLError:
    return GraphQLError(message, node, extensions={"code": code.value})
