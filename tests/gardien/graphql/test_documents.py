"""Document preparation: token limit, codes of parse and validation errors, hidden suggestions in
production, and a document cache bounded in bytes that never keeps large refused documents."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import Lexer, Source, TokenKind

from gardien.app import create_app
from gardien.clock import ManualClock
from gardien.graphql.documents import MAX_CACHED_FAILURE_BYTES, DocumentPreparer
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


def test_api4_prepared_document_is_cached_under_a_digest_of_its_text() -> None:
    documents = preparer()

    first = documents.prepare("{ viewer { id } }")
    second = documents.prepare("{ viewer { id } }")

    assert first is second
    assert documents.cached_bytes == len("{ viewer { id } }")


def test_api4_cache_is_bounded_in_bytes_and_evicts_the_oldest() -> None:
    documents = preparer(cache_bytes=1000)
    texts = [f"query Q{i} {{ viewer {{ id }} }}" + " " * 300 for i in range(5)]

    for text in texts:
        documents.prepare(text)

    assert documents.cached_bytes <= 1000
    assert [text in documents for text in texts] == [False, False, True, True, True]


def test_api4_large_refused_documents_are_never_cached_small_ones_are() -> None:
    documents = preparer()
    small = "{ viewer { nope } }"
    large = "{ viewer { nope } }" + " " * MAX_CACHED_FAILURE_BYTES

    documents.prepare(small)
    documents.prepare(large)

    assert small in documents
    assert large not in documents
    assert documents.cached_bytes == len(small)


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
