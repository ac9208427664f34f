"""The engine: the operation gate before execution, a code on every error, errors counted by code."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from graphql import GraphQLError

from gardien.graphql.engine import GraphQLEngine
from gardien.graphql.limits import Limits
from gardien.models.users import PendingSignUp
from gardien.observability import Metrics
from gardien.resolvers import authz
from gardien.resolvers.authz import Actor
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.schema import schema
from gardien.schema.context import Context
from gardien.schema.relay import encode_id
from gardien.schema.users import UserNode
from tests import factories
from tests.gardien.graphql.test_http import GRAPHQL_RESPONSE_JSON, body_of
from tests.gardien.graphql.test_limits import _error_count

pytestmark = pytest.mark.usefixtures("database")

SIGN_UP = """
mutation SignUp($input: SignUpInput!) {
  __typename
  signUp(input: $input) { user { id } errors { code message field } }
}
"""
SIGN_UP_INPUT = {
    "input": {"email": "gate@example.test", "password": factories.PASSWORD, "displayName": "G"}
}


class RefusingGate:
    """A gate that refuses everything and remembers what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[Actor, str, frozenset[str]]] = []

    def __call__(self, actor: Actor, operation_type: str, root_fields: frozenset[str]) -> None:
        self.asked.append((actor, operation_type, root_fields))
        raise DomainError(ErrorCode.TWO_FACTOR_ENROLMENT_REQUIRED, "Set up a second factor first.")


def engine_with(gate: Any = authz.check_operation) -> GraphQLEngine:
    return GraphQLEngine(schema, Metrics(), limits=Limits(), introspection=True, gate=gate)


async def test_pol4_operation_gate_refusal_runs_nothing_and_answers_its_code(
    services: Services,
) -> None:
    gate = RefusingGate()
    engine = engine_with(gate)
    prepared = engine.prepare(SIGN_UP)
    operation = prepared.operation("SignUp")
    assert operation is not None
    actor = Actor()

    result = await engine.execute(
        prepared, operation, SIGN_UP_INPUT, Context(services, actor, RequestMeta())
    )

    assert result.data is None
    assert engine.format_errors(result.errors or [], "req-1") == [
        {
            "message": "Set up a second factor first.",
            "locations": [{"line": 2, "column": 1}],
            "extensions": {"code": "TWO_FACTOR_ENROLMENT_REQUIRED"},
        }
    ]
    assert gate.asked == [(actor, "mutation", frozenset({"signUp"}))]
    assert await PendingSignUp.all().count() == 0  # the resolver never ran


async def test_pol4_default_gate_is_authz_and_lets_the_operation_run(services: Services) -> None:
    engine = engine_with()
    prepared = engine.prepare(SIGN_UP)
    operation = prepared.operation(None)
    assert operation is not None

    result = await engine.execute(
        prepared, operation, SIGN_UP_INPUT, Context(services, Actor(), RequestMeta())
    )

    assert result.errors is None
    assert result.data is not None and result.data["signUp"]["errors"] == []
    assert await PendingSignUp.all().count() == 1


def test_pol4_gate_is_told_the_root_fields_with_fragments_and_without_typename() -> None:
    engine = engine_with()
    prepared = engine.prepare(
        "query Q { __typename me: viewer { id } ...Root } fragment Root on Query { node(id: 1) { id } }"
    )

    operation = prepared.operation("Q")

    assert operation is not None
    assert (operation.kind, operation.root_fields) == ("query", frozenset({"viewer", "node"}))


# --- every error has a code; each is counted ----------------------------------------------------


async def post(client: httpx.AsyncClient, query: str, variables: Any = None) -> Any:
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"accept": GRAPHQL_RESPONSE_JSON},
    )
    return body_of(response)


async def test_api2_every_kind_of_error_carries_a_code_of_the_enum(
    client: httpx.AsyncClient, services: Services
) -> None:
    owner = await factories.sign_up(services)
    answers = [
        await post(client, "{ viewer { id }"),  # parse
        await post(client, "{ viewer { nope } }"),  # validation
        await post(client, "query($id: ID!) { organisation(id: $id) { id } }", {"id": 1.5}),
        await post(client, '{ organisation(id: "!!!") { id } }'),  # execution, a DomainError
        await post(client, "query A { viewer { id } } query B { viewer { id } }"),  # request
        await post(client, "{ viewer { id } }" + " " * 200_000),  # transport: too large
    ]

    codes = [[e["extensions"]["code"] for e in answer["errors"]] for answer in answers]
    assert codes == [
        ["GRAPHQL_PARSE_FAILED"],
        ["GRAPHQL_VALIDATION_FAILED"],
        ["BAD_USER_INPUT"],
        ["INVALID_ID"],
        ["BAD_REQUEST"],
        ["REQUEST_TOO_LARGE"],
    ]
    assert all(code in ErrorCode.__members__ for answer in codes for code in answer)
    assert owner.user.id  # signed up, so the database is in use


async def test_ops5_metrics_count_errors_by_code_payload_errors_included(
    client: httpx.AsyncClient,
) -> None:
    weak = {"input": {"email": "weak@example.test", "password": "short", "displayName": "W"}}

    payload = await post(client, SIGN_UP, weak)
    # Selected without `code`: still an error answered, still counted.
    await post(
        client,
        "mutation($input: SignUpInput!) { signUp(input: $input) { errors { message } } }",
        weak,
    )
    await post(client, "{ viewer { nope } }")
    await post(client, "{ viewer { id }")
    metrics = (await client.get("/metrics")).text

    assert payload["data"]["signUp"]["errors"] == [
        {"code": "PASSWORD_TOO_SHORT", "message": "Use at least 8 characters.", "field": "password"}
    ]
    assert [
        _error_count(metrics, code)
        for code in ("PASSWORD_TOO_SHORT", "GRAPHQL_VALIDATION_FAILED", "GRAPHQL_PARSE_FAILED")
    ] == [2.0, 1.0, 1.0]


async def test_ops5_payload_error_counts_once_whatever_the_client_selects(
    client: httpx.AsyncClient, services: Services
) -> None:
    """Counted when the DomainError becomes a payload error, not when `errors` is completed."""
    owner = await factories.sign_up(services)
    wrong = {"input": {"login": owner.user.email, "password": "not the password at all"}}
    weak = {"input": {"email": "weak@example.test", "password": "short", "displayName": "W"}}

    unselected = await post(
        client,
        "mutation($input: SignInInput!) { signIn(input: $input) { session { token } } }",
        wrong,
    )
    twice = await post(
        client,
        "mutation($input: SignUpInput!) { signUp(input: $input) {"
        " a: errors { code } b: errors { code } } }",
        weak,
    )
    metrics = (await client.get("/metrics")).text

    assert unselected == {"data": {"signIn": {"session": None}}}
    assert twice == {
        "data": {
            "signUp": {"a": [{"code": "PASSWORD_TOO_SHORT"}], "b": [{"code": "PASSWORD_TOO_SHORT"}]}
        }
    }
    assert [
        _error_count(metrics, code) for code in ("INVALID_CREDENTIALS", "PASSWORD_TOO_SHORT")
    ] == [1.0, 1.0]


def test_api2_top_level_error_keeps_the_retry_after_hint() -> None:
    """ASVS 4.0 V2.2.1: a throttled client is told when to come back, in every error shape."""
    engine = engine_with()
    throttled = DomainError(
        ErrorCode.TOO_MANY_ATTEMPTS, "Too many attempts; try again later.", retry_after_seconds=42
    )
    plain = DomainError(ErrorCode.INVALID_INPUT, "Not a domain name.", "name")

    formatted = engine.format_errors(
        [
            GraphQLError(throttled.message, original_error=throttled),
            GraphQLError(plain.message, original_error=plain),
        ],
        "request-1",
    )

    assert formatted == [
        {
            "message": "Too many attempts; try again later.",
            "extensions": {"code": "TOO_MANY_ATTEMPTS", "retryAfterSeconds": 42},
        },
        {
            "message": "Not a domain name.",
            "extensions": {"code": "INVALID_INPUT", "field": "name"},
        },
    ]


async def test_api2_graphql_core_execution_error_is_internal_error_with_its_code(
    client: httpx.AsyncClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A null in a non-null field is a bug of ours: coded INTERNAL_ERROR, masked, counted."""
    owner = await factories.sign_up(services)

    def broken(summary: Any) -> Any:
        node = from_summary(summary)
        node.display_name = None  # type: ignore[assignment]  # the bug to report
        return node

    from_summary = UserNode.from_summary
    monkeypatch.setattr(UserNode, "from_summary", staticmethod(broken))
    response = await client.post(
        "/graphql",
        json={
            "query": "query($id: ID!) { organisation(id: $id) { members { edges { node { user { displayName } } } } } }",
            "variables": {"id": encode_id("Organisation", owner.organisation.id)},
        },
        headers={
            "accept": GRAPHQL_RESPONSE_JSON,
            "authorization": f"Bearer {owner.session.token}",
        },
    )

    body = body_of(response)
    assert body["data"] == {"organisation": None}  # nullable: the error stops there
    request_id = response.headers["x-request-id"]
    assert [e["extensions"] for e in body["errors"]] == [
        {"code": "INTERNAL_ERROR", "requestId": request_id}
    ]
    assert _error_count((await client.get("/metrics")).text, "INTERNAL_ERROR") == 1
