"""Bounds on the work one document may ask for (API-4): depth, aliases, fields, directives, cost.

Measured on the syntax tree before graphql-core's own validation rules run (some of those are
super-linear in the number of fields, so a hostile document must never reach them), and so
written to stay cheap on any document:
- each fragment is measured once and its measure reused at every spread (never expanded);
- a fragment spread that is being measured already (a cycle, which graphql-core's
  NoFragmentCycles refuses afterwards) counts as empty;
- a merged selection may select an object field (by response name) at most MAX_REPEATS times, a
  leaf at most MAX_LEAF_REPEATS times, and spread at most MAX_SPREADS distinct fragments
  (QUERY_TOO_COSTLY): graphql-core's overlapping-fields rule compares such fields pairwise. A
  selection is merged as graphql-core merges it: fields with the same response name under the
  same parent share one count (`viewer { id id } viewer { id }` selects `id` three times), and so
  do inline fragments and the fragments spread there (a fragment spread twice in one merged
  selection counts once). Fragments' counts are merged into every place they are spread, within
  a budget (MAX_MERGED): a document that needs more merging than that is refused as too costly;
- the document may hold at most MAX_PAIRS pairs of same-named fields (summed over its merged
  selections, distinct fragments spread in one place counted as pairs too);
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
# graphql-core compares every pair of distinct fragments spread in one merged selection too.
MAX_SPREADS = 20
# Pairs of same-named fields (and of distinct fragments) in merged selections, summed over the
# document: what the overlapping-fields rule compares (about 20 µs a pair: 2,000 pairs ≈ 40 ms).
# Fifteen aliased copies of `viewer { id ×45 }` (15 × 990 pairs) held the event loop 0.3 s.
MAX_PAIRS = 2000
# Fields merged from fragments into the places they are spread (the one step that expands
# fragments): a real document merges a few hundred; past this, it is refused as too costly.
MAX_MERGED = 1000
SPREADS_KEY = "..."  # counts the distinct spreads of a group; never a response name


class _Group:
    """Fields of one response name in a merged selection: how many, and their merged selection."""

    __slots__ = ("children", "count")

    def __init__(self) -> None:
        self.count = 0
        self.children: dict[str, _Group] = {}


Names = dict[str, _Group]


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
    """One merged selection selects the same response name (or fragments) too often, or the
    document repeats fields so often that comparing them would take too long (what is None)."""

    def __init__(self, what: str | None, limit: int) -> None:
        super().__init__(what)
        self.what = what
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
        self.cost_cap = limits.max_cost + 1
        self._count_cap = max(limits.max_aliases, limits.max_directives) + 1
        # Fields, inline fragments and spreads on one path: a legitimate document stays far
        # below (depth 15 with a few fragments). Each level costs two Python frames at most, so
        # the guard stays well inside the interpreter's recursion limit whatever is configured.
        self._guard = min(max(4 * limits.max_depth, 64), MAX_NESTING)
        self._nesting = 0
        self._memo: dict[str, tuple[Measure, Names]] = {}
        self._measuring: set[str] = set()
        # Merging fragments' counts into the places they are spread is the one step that
        # expands fragments: each group merged costs one unit of this budget.
        self._merge_budget = MAX_MERGED
        self.over_budget = False
        self._pairs = 0

    def selection_set(
        self,
        selection_set: SelectionSetNode,
        parent: GraphQLNamedType | None,
        names: Names | None = None,
    ) -> Measure:
        """The measure of a selection set; `names` counts the response names of the merged
        selection it belongs to (inline fragments merge into their parent's selection, and
        fields of one response name merge their sub-selections, so they share one count)."""
        self._nesting += 1
        if self._nesting > self._guard:
            raise _TooDeep
        if names is None:
            names = {}
        depth = aliases = directives = cost = 0
        for selection in selection_set.selections:
            directives += len(selection.directives or ())
            if isinstance(selection, FieldNode):
                group = self._count_name(names, _name_key(selection), 1)
                child, multiplier = self._field(selection, parent, group.children)
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
            cost=min(cost, self.cost_cap),
        )

    def _field(
        self, node: FieldNode, parent: GraphQLNamedType | None, names: Names
    ) -> tuple[Measure, int]:
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
        return self.selection_set(node.selection_set, field_type, names), multiplier

    def _spread(self, name: str, names: Names) -> Measure:
        """A fragment's measure, its response names merged into the spreading selection's."""
        measure, fragment_names = self._fragment(name)
        self._merge_spread(names, "..." + name, fragment_names)
        return measure

    def _merge_spread(self, names: Names, spread_key: str, fragment_names: Names) -> None:
        # graphql-core merges repeated spreads of one fragment in a merged selection: count once.
        if spread_key in names:
            return
        names[spread_key] = _Group()
        self._count_name(names, SPREADS_KEY, 1)
        self._merge(names, fragment_names)

    def _merge(self, names: Names, merged: Names) -> None:
        for key, group in merged.items():
            if self.over_budget:
                return
            self._merge_budget -= 1
            if self._merge_budget < 0:
                self.over_budget = True
                return
            if key == SPREADS_KEY:
                continue
            if key.startswith("..."):
                # A spread nested in the fragment: its names are merged in `merged` already.
                names.setdefault(key, _Group())
                continue
            target = self._count_name(names, key, group.count)
            if group.children:
                self._merge(target.children, group.children)

    def _count_name(self, names: Names, key: str, count: int) -> _Group:
        """Adds `count` fields (or spreads) of one response name to a merged selection."""
        group = names.get(key)
        if group is None:
            group = names[key] = _Group()
        # The pairs graphql-core's overlapping-fields rule will compare, document-wide.
        self._pairs += count * group.count + count * (count - 1) // 2
        group.count += count
        if key == SPREADS_KEY:
            limit, what = MAX_SPREADS, "distinct fragments"
        elif key.startswith("#"):
            limit, what = MAX_LEAF_REPEATS, f"'{key[1:]}'"
        else:
            limit, what = MAX_REPEATS, f"'{key}'"
        if group.count > limit:
            raise _Repeated(what, limit)
        if self._pairs > MAX_PAIRS:
            raise _Repeated(None, MAX_PAIRS)
        return group

    def _fragment(self, name: str) -> tuple[Measure, Names]:
        known = self._memo.get(name)
        if known is not None:
            return known
        fragment = self._fragments.get(name)
        if fragment is None or name in self._measuring:
            return Measure(), {}  # unknown or cyclic: graphql-core's rules refuse the document
        self._measuring.add(name)
        self._nesting += 1
        names: Names = {}
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
            measure = walker.selection_set(operation.selection_set, root_type, {})
            root_fields = walker.root_fields(operation.selection_set, set(), {})
        except _TooDeep:
            errors.append(_too_deep(operation, limits))
            continue
        except _Repeated as repeated:
            errors.append(_repeated(operation, repeated))
            continue
        shape = OperationShape(
            Measure(
                depth=measure.depth,
                aliases=measure.aliases,
                directives=measure.directives + len(operation.directives or ()),
                # Past the merging budget, the document has more fields than it may cost.
                cost=walker.cost_cap if walker.over_budget else measure.cost,
                root_fields=len(root_fields),
            ),
            frozenset(root_fields.values()),
        )
        shapes[index] = shape
        errors.extend(_broken_limits(operation, shape.measure, limits))
    return shapes, errors


def _name(operation: OperationDefinitionNode) -> str:
    return f"Operation '{operation.name.value}'" if operation.name else "The operation"


def _repeated(operation: OperationDefinitionNode, repeated: _Repeated) -> GraphQLError:
    if repeated.what is None:
        message = (
            f"{_name(operation)} repeats the same fields too often (more than"
            f" {repeated.limit} pairs of fields with one name in one selection, fragments"
            " included); select each field once."
        )
    else:
        message = (
            f"{_name(operation)} selects {repeated.what} more than {repeated.limit} times in one"
            " selection (fields of the same name merge, fragments included); select each"
            " field once."
        )
    return limit_error(ErrorCode.QUERY_TOO_COSTLY, message, operation)


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
