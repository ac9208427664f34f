"""Document preparation: token limit, codes of parse and validation errors, hidden suggestions in
production, and a document cache bounded in bytes that never keeps large refused documents."""

from __future__ import annotations

import gc
import secrets
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import GraphQLSyntaxError, Lexer, Source, TokenKind, parse

from gardien.app import create_app
from gardien.clock import ManualClock
from gardien.graphql.documents import (
    ENTRY_OVERHEAD_BYTES,
    MAX_CACHED_FAILURE_BYTES,
    TOKEN_BYTES,
    DocumentPreparer,
)
from gardien.graphql.limits import Limits
from gardien.schema import schema
from gardien.settings import load_settings
from tests.gardien.graphql.test_http import GRAPHQL_RESPONSE_JSON, body_of


def preparer(**options: Any) -> DocumentPreparer:
    limits = options.pop("limits", Limits())
    return DocumentPreparer(schema._schema, limits, introspection=True, **options)


def codes(prepared: Any) -> list[str]:
    return [e.extensions["code"] for e in prepared.errors]


def _token_count(text: str) -> int:
    lexer = Lexer(Source(text))
    count = 0
    while lexer.advance().kind is not TokenKind.EOF:
        count += 1
    return count


def test_api4_document_over_the_token_limit_is_query_too_large() -> None:
    documents = preparer(limits=Limits(max_tokens=100))
    # Exactly 100 tokens; three names share the repeats (the pairs limit of limits.py).
    fitting = "{ viewer { " + "id email __typename " * 31 + "id email } }"
    assert _token_count(fitting) == 100

    accepted = documents.prepare(fitting)
    refused = documents.prepare(fitting.replace("{ viewer {", "{ viewer { id"))

    assert accepted.errors == ()
    assert codes(refused) == ["QUERY_TOO_LARGE"]
    assert refused.errors[0].message == (
        "The document has more than 100 tokens; send a smaller document."
    )


def test_api4_comments_count_as_tokens_as_the_parser_counts_them() -> None:
    documents = preparer(limits=Limits(max_tokens=100))

    refused = documents.prepare("{ viewer { id } }\n" + "# padding\n" * 200)

    assert codes(refused) == ["QUERY_TOO_LARGE"]


def test_api3_syntax_error_within_the_token_limit_is_parse_failed() -> None:
    prepared = preparer().prepare("{ viewer { id }")

    assert codes(prepared) == ["GRAPHQL_PARSE_FAILED"]


def test_api3_validation_errors_are_graphql_validation_failed() -> None:
    prepared = preparer().prepare("{ viewer { nope } node { id } }")

    assert codes(prepared) == ["GRAPHQL_VALIDATION_FAILED", "GRAPHQL_VALIDATION_FAILED"]


# --- the cache ----------------------------------------------------------------------------------


def charge(text: str) -> int:
    """What the cache charges for a document: its text, the entry, and the tokens its syntax
    tree keeps alive (comments, start and end of text included; none after a syntax error)."""
    try:
        token: Any = parse(text).loc.start_token  # type: ignore[union-attr]
    except GraphQLSyntaxError:
        token = None
    tokens = 0
    while token is not None:
        tokens += 1
        token = token.next
    return len(text) + ENTRY_OVERHEAD_BYTES + TOKEN_BYTES * tokens


def test_api4_prepared_document_is_cached_under_a_digest_of_its_text() -> None:
    documents = preparer()

    first = documents.prepare("{ viewer { id } }")
    second = documents.prepare("{ viewer { id } }")

    assert first is second
    assert documents.cached_bytes == charge("{ viewer { id } }")


def test_api4_cache_is_bounded_in_bytes_and_evicts_the_oldest() -> None:
    texts = [f"query Q{i} {{ viewer {{ id }} }}" + " " * 300 for i in range(5)]
    documents = preparer(cache_bytes=3 * charge(texts[0]))

    for text in texts:
        documents.prepare(text)

    assert documents.cached_bytes == 3 * charge(texts[0])
    assert [text in documents for text in texts] == [False, False, True, True, True]


def test_api4_cache_is_bounded_in_entries_too() -> None:
    documents = preparer(cache_entries=3)
    texts = [f"{{ viewer {{ id }} }} # {i}" for i in range(5)]

    for text in texts:
        documents.prepare(text)

    assert documents.cached_entries == 3
    assert [text in documents for text in texts] == [False, False, True, True, True]


def test_api4_large_refused_documents_are_never_cached_small_ones_are() -> None:
    documents = preparer()
    small = "{ viewer { nope } }"
    large = "{ viewer { nope } }" + " " * MAX_CACHED_FAILURE_BYTES

    documents.prepare(small)
    documents.prepare(large)

    assert small in documents
    assert large not in documents
    assert documents.cached_bytes == charge(small)


def _held_per_entry(make: Any, count: int = 100) -> float:
    """Heap that `count` cached entries hold, per entry, as tracemalloc sees it."""
    documents = preparer(cache_bytes=10**9)
    documents.prepare(make(-1))  # warm graphql-core's and the schema's own caches
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            documents.prepare(make(i))
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert documents.cached_entries == count + 1
    return held / count


LARGE = " ".join(f"f{i}: viewer {{ id email displayName }}" for i in range(14))
SHAPES = [
    pytest.param(lambda i: f"{{ viewer {{ id }} }} # {i}", id="tiny"),
    pytest.param(
        lambda i: (
            f"query Q{i} {{ viewer {{ id email memberships(first: 5) {{ edges {{ node"
            " { id role organisation { id name } } } } } }"
        ),
        id="page",
    ),
    pytest.param(lambda i: "query Big { " + " ".join([LARGE] * 1) + f" }} # {i}", id="many-tokens"),
    pytest.param(lambda i: f"{{ viewer {{ nope{i} }} }}", id="refused-by-validation"),
    pytest.param(lambda i: f"{{ viewer {{ id }} # {i}", id="syntax-error"),
]


@pytest.mark.parametrize("make", SHAPES)
def test_api4_cache_charge_over_estimates_the_memory_an_entry_holds(make: Any) -> None:
    """The charge is what bounds memory: it must never be less than what an entry holds."""
    held = _held_per_entry(make)

    assert held <= charge(make(0)), (held, charge(make(0)))


def test_api4_cache_flooded_with_tiny_documents_holds_at_most_its_budget() -> None:
    """Documents that differ by a comment only: the cache keeps no more memory than allowed."""
    budget = 256 * 1024
    documents = preparer(cache_bytes=budget)
    documents.prepare("{ viewer { id } }")  # warm
    gc.collect()
    tracemalloc.start()
    try:
        for i in range(2000):
            documents.prepare(f"{{ viewer {{ id }} }} # {i}")
        gc.collect()
        flooded = tracemalloc.get_traced_memory()[0]
        # What the cache holds, apart from graphql-core's own one-time caches.
        documents._cache.clear()
        gc.collect()
        held = flooded - tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()

    assert documents.cached_bytes <= budget
    assert budget / 4 < held <= budget, held  # over-estimated, but not absurdly


# --- production hides the schema ---------------------------------------------------------------


def app_with_introspection(var_dir: Path, enabled: bool) -> Any:
    settings = load_settings(
        {
            "GARDIEN_SECRET_KEY": secrets.token_urlsafe(48),
            "GARDIEN_VAR_DIR": str(var_dir),
            "GARDIEN_INTROSPECTION": "true" if enabled else "false",
        }
    )
    return create_app(settings, clock=ManualClock(), manage_database=False)


SUGGESTING = [
    pytest.param("{ viewer { supportCod } }", {}, id="validation"),
    pytest.param(
        "query($id: ID!, $role: Role) { organisation(id: $id) { members(role: $role) { totalCount } } }",
        {"id": "x", "role": "ADMINISTRATO"},
        id="variables",
    ),
]


@pytest.mark.usefixtures("database")
@pytest.mark.parametrize(("query", "variables"), SUGGESTING)
@pytest.mark.parametrize("introspection", [True, False])
async def test_api4_without_introspection_no_suggestion_reveals_the_schema(
    var_dir: Path, query: str, variables: dict[str, Any], introspection: bool
) -> None:
    """ASVS 4 V13.4.2 (introspection off in production); the suggestions would reveal names."""
    app = app_with_introspection(var_dir, introspection)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"accept": GRAPHQL_RESPONSE_JSON},
        )

    errors = body_of(response)["errors"]
    messages = " ".join(e["message"] for e in errors)
    assert response.status_code == 400
    assert ("Did you mean" in messages) is introspection
    assert ("supportCode" in messages or "ADMINISTRATOR" in messages) is introspection


@pytest.mark.usefixtures("database")
async def test_api4_without_introspection_the_schema_cannot_be_queried(var_dir: Path) -> None:
    app = app_with_introspection(var_dir, False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post(
            "/graphql",
            json={"query": '{ __type(name: "User") { name } }'},
            headers={"accept": GRAPHQL_RESPONSE_JSON},
        )

    assert body_of(response) == {
        "errors": [
            {
                "message": "GraphQL introspection has been disabled, but the requested query"
                " contained the field '__type'.",
                "locations": [{"line": 1, "column": 3}],
                "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"},
            }
        ]
    }
