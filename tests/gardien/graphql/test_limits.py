"""API-4: the limits on one document, measured before anything runs, each with its own code.

OWASP ASVS 4.0 V13.4.1 (query allow-list or depth and amount limiting for GraphQL) and
V11.1.4 (anti-automation against excessive calls): every hostile shape is refused at validation
with a stable code, and nothing of it executes (no sign-up is recorded by a refused signUp).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from graphql import (
    FragmentDefinitionNode,
    OperationDefinitionNode,
    parse,
)
from prometheus_client.parser import text_string_to_metric_families

from gardien.graphql.documents import DocumentPreparer
from gardien.graphql.limits import (
    MAX_PAIRS,
    MAX_REPEATS,
    MAX_SPREADS,
    Limits,
    Measure,
    measure_operations,
)
from gardien.models.users import PendingSignUp
from gardien.schema import schema
from tests.e2e.test_contract import CONTRACT
from tests.gardien.graphql.test_http import GRAPHQL_RESPONSE_JSON, body_of

LIMITS = Limits()
SIGN_UP_ARGUMENTS = (
    '(input: {email: "flood@example.test", password: "walnut behind the door", displayName: "F"})'
)


def measure(query: str, limits: Limits = LIMITS) -> tuple[list[Measure], list[Any]]:
    measures, codes, _ = timed_measure(query, limits)
    return measures, codes


def timed_measure(query: str, limits: Limits = LIMITS) -> tuple[list[Measure], list[Any], float]:
    """The measures, the codes of the limits broken, and the seconds measuring took (parse aside)."""
    document = parse(query, max_tokens=100_000)
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    started = time.monotonic()
    shapes, errors = measure_operations(schema._schema, limits, operations, fragments)
    elapsed = time.monotonic() - started
    codes = [(e.extensions or {})["code"] for e in errors]
    return [shapes[i].measure for i in sorted(shapes)], codes, elapsed


# --- the measure itself -------------------------------------------------------------------------


def test_api4_depth_counts_fragments_expanded() -> None:
    query = """
    query { viewer { ...Memberships } }
    fragment Memberships on User { memberships { edges { node { ...Organisation } } } }
    fragment Organisation on Membership { organisation { id } }
    """

    measures, codes = measure(query)

    assert measures[0].depth == 6  # viewer memberships edges node organisation id
    assert codes == []


def test_api4_inline_fragments_add_no_depth_but_their_fields_do() -> None:
    measures, _ = measure("{ viewer { ... on User { id ... { email } } } }")

    assert measures[0].depth == 2


def test_api4_cost_multiplies_connections_by_their_page_size() -> None:
    literal, _ = measure("{ viewer { memberships(first: 5) { edges { node { id } } } } }")
    absent, _ = measure("{ viewer { memberships { edges { node { id } } } } }")
    variable, _ = measure(
        "query($n: Int) { viewer { memberships(first: $n) { edges { node { id } } } } }"
    )

    # viewer 1 + memberships 1 + page × (edges 1 + node 1 + id 1)
    assert [literal[0].cost, absent[0].cost, variable[0].cost] == [
        2 + 5 * 3,
        2 + 20 * 3,
        2 + 100 * 3,
    ]


def test_api4_aliases_and_directives_count_at_every_spread() -> None:
    query = """
    query { viewer { ...A ... on User { ...A } } }
    fragment A on User { a: id b: email @include(if: true) }
    """

    measures, _ = measure(query)

    assert (measures[0].aliases, measures[0].directives) == (4, 2)


def test_api4_root_fields_exclude_typename_and_include_fragments() -> None:
    measures, _ = measure(
        "query { __typename viewer ...R } fragment R on Query { node(id: 1) { id } }"
    )

    assert measures[0].root_fields == 2


def test_api4_root_fields_are_counted_by_response_name() -> None:
    query = "{ " + " ".join(f"v{i}: viewer {{ id }}" for i in range(21)) + " }"

    measures, codes = measure(query, Limits(max_aliases=100))
    _, within = measure(query, Limits(max_aliases=100, max_root_fields=21))

    assert measures[0].root_fields == 21
    assert (codes, within) == (["TOO_MANY_ROOT_FIELDS"], [])


REPEATED = [
    pytest.param("{ viewer { %s } }", "currentOrganisation { id } ", id="in-place"),
    pytest.param("{ viewer { %s } }", "... on User { currentOrganisation { id } } ", id="inline"),
]


@pytest.mark.parametrize(("shape", "part"), REPEATED)
def test_api4_same_field_more_than_ten_times_in_one_selection_is_too_costly(
    shape: str, part: str
) -> None:
    """graphql-core compares such fields pairwise (quadratic): 500 of them took 1.5 s."""
    _, ten = measure(shape % (part * 10))
    _, eleven = measure(shape % (part * 11))

    assert (ten, eleven) == ([], ["QUERY_TOO_COSTLY"])


def test_api4_repeated_leaves_such_as_typename_pass_in_every_fragment() -> None:
    # Clients such as Apollo add __typename to every selection and every fragment.
    def spreading(count: int) -> str:
        fragments = " ".join(f"fragment F{i} on User {{ __typename id }}" for i in range(count))
        spreads = " ".join(f"...F{i}" for i in range(count))
        return f"{{ viewer {{ __typename {spreads} }} }} {fragments}"

    _, twenty = measure(spreading(MAX_SPREADS))
    _, more, seconds = timed_measure("{ viewer { " + "id " * 1990 + "} }")

    assert (twenty, more) == ([], ["QUERY_TOO_COSTLY"])
    assert seconds < 0.1


IDS = "id " * 100
# Shapes that make graphql-core's OverlappingFieldsCanBeMerged compare fields pairwise: each is a
# few KB, valid, anonymous and within the cost limit, and held the event loop 0.3 to 1 s.
QUADRATIC = [
    # graphql-core merges same-named fields: 7 × 100 `id` under one `viewer`.
    pytest.param("{ " + f"viewer {{ {IDS}}} " * 7 + "}", id="same-named-fields-merge"),
    pytest.param("{ " + f"v: viewer {{ {IDS}}} " * 7 + "}", id="same-alias-merges"),
    # Distinct aliases do not merge, but each copy is compared within itself: 15 × 990 pairs.
    pytest.param(
        "{ " + " ".join(f"a{i}: viewer {{ {'id ' * 45}}}" for i in range(15)) + " }",
        id="same-field-under-many-aliases",
    ),
    pytest.param(
        "{ viewer { " + f"... on User {{ {'id ' * 50}}} " * 7 + "} }",
        id="inline-fragments-on-the-same-type",
    ),
    pytest.param(
        "{ viewer { "
        + " ".join(f"...F{i}" for i in range(7))
        + " } } "
        + " ".join(f"fragment F{i} on User {{ {'id ' * 20}}}" for i in range(7)),
        id="distinct-fragments-with-the-same-fields",
    ),
    pytest.param(
        "{ " + "viewer { ...F } " * 7 + "} fragment F on User { " + "id " * 70 + "}",
        id="one-fragment-spread-in-many-merged-fields",
    ),
    pytest.param(
        "{ viewer { "
        + " ".join(f"...F{i}" for i in range(60))
        + " } } "
        + " ".join(f"fragment F{i} on User {{ __typename }}" for i in range(60)),
        id="many-distinct-fragments-in-one-place",
    ),
]


@pytest.mark.parametrize("query", QUADRATIC)
def test_api4_quadratic_overlap_shapes_are_refused_before_validation_quickly(query: str) -> None:
    """ASVS 4.0 V13.4.1: bounded before graphql-core's rules run, whatever the shape."""
    assert parse(query, max_tokens=LIMITS.max_tokens)  # within the token limit: a real threat

    _, codes, seconds = timed_measure(query)
    started = time.monotonic()
    prepared = DocumentPreparer(schema._schema, LIMITS, introspection=True).prepare(query)
    preparing = time.monotonic() - started

    assert codes == ["QUERY_TOO_COSTLY"]
    assert [(e.extensions or {})["code"] for e in prepared.errors] == ["QUERY_TOO_COSTLY"]
    assert seconds < 0.1
    assert preparing < 0.3  # parsing included, on a loaded machine; validation never ran


def test_api4_merged_fields_share_one_count_across_the_operation() -> None:
    within = "{ " + f"viewer {{ {'id ' * 20}}} " * 3 + "}"  # 60 `id`: 1,770 pairs
    nested = "{ viewer { currentOrganisation { id } } viewer { currentOrganisation { id } } }"

    _, accepted = measure(within)
    _, apart = measure(nested)
    _, merged = measure("{ " + "viewer { currentOrganisation { id } } " * (MAX_REPEATS + 1) + "}")

    assert (accepted, apart, merged) == ([], [], ["QUERY_TOO_COSTLY"])


def test_api4_overlap_messages_say_what_is_repeated() -> None:
    def message(query: str) -> str:
        document = parse(query)
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        _, errors = measure_operations(schema._schema, LIMITS, operations, fragments)
        return errors[0].message

    assert message("{ " + "viewer { id } " * 200 + "}") == (
        "The operation selects 'viewer' more than 10 times in one selection (fields of the"
        " same name merge, fragments included); select each field once."
    )
    assert message("{ viewer { " + "id " * 64 + "} }") == (
        f"The operation repeats the same fields too often (more than {MAX_PAIRS} pairs of"
        " fields with one name in one selection, fragments included); select each field once."
    )


def test_api4_same_field_repeated_through_fragments_is_too_costly() -> None:
    def spreading(count: int) -> str:
        spreads = " ".join(f"...F{i}" for i in range(count))
        fragments = " ".join(
            f"fragment F{i} on User {{ memberships {{ totalCount }} }}" for i in range(count)
        )
        return f"{{ viewer {{ {spreads} ...F0 ...F0 }} }} {fragments}"

    _, ten = measure(spreading(10))  # F0 spread three times counts once, as graphql-core merges
    _, eleven = measure(spreading(11))
    _, codes, seconds = timed_measure(spreading(160))

    assert (ten, eleven, codes) == ([], ["QUERY_TOO_COSTLY"], ["QUERY_TOO_COSTLY"])
    assert seconds < 0.1


def test_api4_cyclic_fragments_neither_loop_nor_count() -> None:
    query = """
    query { viewer { ...A } }
    fragment A on User { id ...B }
    fragment B on User { email ...A }
    """

    measures, codes = measure(query)

    assert (measures[0].depth, codes) == (2, [])  # graphql-core's NoFragmentCycles refuses it


def test_api4_long_fragment_chain_without_fields_is_too_deep_not_a_crash() -> None:
    chain = "\n".join(f"fragment F{i} on Query {{ ...F{i + 1} }}" for i in range(2000))
    query = "query { ...F0 }\n" + chain + "\nfragment F2000 on Query { viewer { id } }"

    _, codes, seconds = timed_measure(query)

    assert codes == ["QUERY_TOO_DEEP"]
    assert seconds < 0.1


def test_api4_fragment_doubling_is_measured_once_per_fragment() -> None:
    levels = 30
    fragments = "\n".join(
        f"fragment F{i} on Organisation {{ members {{ edges {{ node {{ organisation {{ ...F{i + 1} }} }} }} }}"
        f" again: members {{ edges {{ node {{ organisation {{ ...F{i + 1} }} }} }} }} }}"
        for i in range(levels)
    )
    query = f'query {{ organisation(id: "x") {{ ...F0 }} }}\n{fragments}\nfragment F{levels} on Organisation {{ id }}'

    _, codes, seconds = timed_measure(query, Limits(max_depth=1000, max_aliases=1000))

    # 2³⁰ paths, measured as 31 fragments: refused for what it would cost, quickly.
    assert codes == ["TOO_MANY_ALIASES", "QUERY_TOO_COSTLY"]
    assert seconds < 0.1


def test_api4_nesting_guard_holds_whatever_depth_is_configured() -> None:
    # The parser bounds nesting within one definition; a chain of fragments goes further.
    chain = "\n".join(
        f"fragment F{i} on User {{ memberships {{ edges {{ node {{ user {{ ...F{i + 1} }} }} }} }} }}"
        for i in range(60)
    )
    query = f"{{ viewer {{ ...F0 }} }}\n{chain}\nfragment F60 on User {{ id }}"

    _, codes = measure(query, Limits(max_depth=10_000, max_cost=10**9))

    assert codes == ["QUERY_TOO_DEEP"]  # 240 fields deep: past the guard, not a RecursionError


# --- every contract operation passes with room to spare -----------------------------------------


def test_api4_every_contract_operation_uses_at_most_half_of_each_limit() -> None:
    measures, codes = measure(CONTRACT.read_text(encoding="utf-8"))

    assert codes == []
    assert len(measures) == 33
    for found in measures:
        assert found.depth * 2 <= LIMITS.max_depth, found
        assert found.aliases * 2 <= LIMITS.max_aliases, found
        assert found.root_fields * 2 <= LIMITS.max_root_fields, found
        assert found.directives * 2 <= LIMITS.max_directives, found
        assert found.cost * 2 <= LIMITS.max_cost, found
    longest = max(
        len(list(_tokens(definition)))
        for definition in parse(CONTRACT.read_text(encoding="utf-8")).definitions
    )
    assert longest * 2 <= LIMITS.max_tokens


def _tokens(definition: Any) -> Any:
    token = definition.loc.start_token
    while token is not definition.loc.end_token:
        yield token
        token = token.next


# --- refused over HTTP, with nothing executed ---------------------------------------------------


def _sign_up_with(selection: str, prefix: str = "") -> str:
    return f"mutation Flood {{ {prefix}signUp{SIGN_UP_ARGUMENTS} {{ {selection} }} }}"


DEEP = "user { memberships(first: 1) { edges { node { organisation { members(first: 1) { edges { node { user { memberships(first: 1) { edges { node { organisation { members(first: 1) { edges { node { id } } } } } } } } } } } } } } } }"
COSTLY = "user { memberships(first: 100) { edges { node { organisation { members(first: 100) { edges { node { user { memberships(first: 100) { totalCount } } } } } } } } } }"
ALIASES = "user { " + " ".join(f"a{i}: id" for i in range(16)) + " }"
DIRECTIVES = "user { id " + "@include(if: true) " * 51 + "}"
TOKENS = "user { " + "id " * 2000 + "}"

ATTACKS = [
    pytest.param(_sign_up_with(DEEP), "QUERY_TOO_DEEP", id="depth"),
    pytest.param(_sign_up_with(COSTLY), "QUERY_TOO_COSTLY", id="cost"),
    pytest.param(_sign_up_with(ALIASES), "TOO_MANY_ALIASES", id="aliases"),
    pytest.param(_sign_up_with(DIRECTIVES), "TOO_MANY_DIRECTIVES", id="directives"),
    pytest.param(_sign_up_with(TOKENS), "QUERY_TOO_LARGE", id="tokens"),
]


@pytest.mark.usefixtures("database")
@pytest.mark.parametrize(("query", "code"), ATTACKS)
async def test_api4_hostile_document_is_refused_with_its_code_and_runs_nothing(
    client: httpx.AsyncClient, query: str, code: str
) -> None:
    response = await client.post(
        "/graphql",
        json={"query": query, "operationName": "Flood"},
        headers={"accept": GRAPHQL_RESPONSE_JSON},
    )

    body = body_of(response)
    assert response.status_code == 400
    assert set(body) == {"errors"}
    assert [e["extensions"]["code"] for e in body["errors"]] == [code]
    assert await PendingSignUp.all().count() == 0  # signUp never ran
    metrics = (await client.get("/metrics")).text
    assert _error_count(metrics, code) == 1


@pytest.mark.usefixtures("database")
async def test_api4_same_sign_up_within_the_limits_does_run(client: httpx.AsyncClient) -> None:
    # The counterpart of the test above: the same mutation, reasonably shaped, records the
    # sign-up.
    response = await client.post(
        "/graphql",
        json={"query": _sign_up_with("user { id } errors { code }"), "operationName": "Flood"},
        headers={"accept": GRAPHQL_RESPONSE_JSON},
    )

    assert body_of(response)["data"]["signUp"]["errors"] == []
    assert await PendingSignUp.all().count() == 1


def test_api4_limit_messages_tell_the_client_what_to_change() -> None:
    document = parse(_sign_up_with(COSTLY))
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]

    _, errors = measure_operations(schema._schema, LIMITS, operations, {})

    assert [e.message for e in errors] == [
        "Operation 'Flood' may cost more than 5000: every field costs 1 and a connection"
        " multiplies its selection by its page size (first, 20 when absent, 100 when a"
        " variable); ask for smaller pages or fewer fields."
    ]


def _error_count(metrics: str, code: str) -> float:
    for family in text_string_to_metric_families(metrics):
        if family.name == "gardien_errors":
            for sample in family.samples:
                if sample.name == "gardien_errors_total" and sample.labels["code"] == code:
                    return sample.value
    return 0.0
