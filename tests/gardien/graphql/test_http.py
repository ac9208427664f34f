"""GraphQL over HTTP at /graphql (API-3), with the error conventions of API-1 and API-2.

Every case goes through the real Starlette application and a real migrated database: media types
and content negotiation, request errors (4xx, no `data` entry), GET never running a mutation,
bearer and cookie authentication, global-ID and cursor errors, request IDs, typed payload errors
and the masking of unexpected exceptions.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from gardien.app import create_app
from gardien.clock import ManualClock
from gardien.graphql.http import DEFAULT_MAX_BODY_BYTES as MAX_BODY_BYTES
from gardien.models.enums import Role
from gardien.models.outbox import OutboxMessage
from gardien.models.users import PendingSignUp, User
from gardien.resolvers import organisations as organisation_resolvers
from gardien.resolvers.accounts import SignUpResult
from gardien.resolvers.services import Services
from gardien.resolvers.sessions import IDLE_TIMEOUT
from gardien.schema.relay import encode_id
from gardien.settings import load_settings
from tests import factories
from tests.conftest import GraphQLClient

pytestmark = pytest.mark.usefixtures("database")

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
APPLICATION_JSON = "application/json"
VIEWER = "{ viewer { id } }"
ORGANISATION = "query Organisation($id: ID!) { organisation(id: $id) { id name } }"
MEMBERS = """
query Members($id: ID!, $first: Int, $after: String) {
  organisation(id: $id) {
    id
    members(first: $first, after: $after) { totalCount edges { cursor node { id } } }
  }
}
"""
SIGN_UP = """
mutation SignUp($input: SignUpInput!) {
  signUp(input: $input) { user { id email } session { token } errors { code field message } }
}
"""
CONFIRM_SIGN_UP = """
mutation ConfirmSignUp($input: ConfirmSignUpInput!) {
  confirmSignUp(input: $input) { user { id email } session { token } errors { code field message } }
}
"""
GENERATED_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


# --- helpers ------------------------------------------------------------------------------------


def body_of(response: httpx.Response) -> dict[str, Any]:
    assert "Traceback" not in response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


def assert_request_error(
    response: httpx.Response,
    status: int,
    content_type: str,
    message: str,
    code: str = "BAD_REQUEST",
) -> None:
    """A request error: the exact status, media type and body, and no `data` entry at all."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == content_type
    assert body_of(response) == {"errors": [{"message": message, "extensions": {"code": code}}]}
    assert response.headers["x-request-id"]
    assert response.headers["cache-control"] == "no-store"


def assert_no_data_errors(response: httpx.Response, status: int, content_type: str) -> list[Any]:
    """A GraphQL response without `data` (parse, validation or variable errors)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == content_type
    assert response.headers["cache-control"] == "no-store"
    body = body_of(response)
    assert set(body) == {"errors"}, body
    errors = body["errors"]
    assert isinstance(errors, list)
    assert errors
    for error in errors:
        assert isinstance(error["message"], str)
        assert error["message"]
    return errors


def single_error(response: httpx.Response) -> dict[str, Any]:
    """The one execution error of a 200 response to an organisation(id:) query: the field is
    nullable, so its error nulls it alone, not the whole data (issue 5, item 17)."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == GRAPHQL_RESPONSE_JSON
    assert response.headers["cache-control"] == "no-store"
    body = body_of(response)
    assert set(body) == {"data", "errors"}
    assert body["data"] == {"organisation": None}
    assert len(body["errors"]) == 1
    error = body["errors"][0]
    assert isinstance(error, dict)
    return error


async def post_raw(
    client: httpx.AsyncClient,
    content: bytes | str,
    content_type: str | None = APPLICATION_JSON,
    accept: str = GRAPHQL_RESPONSE_JSON,
) -> httpx.Response:
    headers = {"accept": accept}
    if content_type is not None:
        headers["content-type"] = content_type
    return await client.post("/graphql", content=content, headers=headers)


async def signed_in(gql: GraphQLClient, services: Services) -> SignUpResult:
    result = await factories.sign_up(services, email="ada@example.test")
    gql.token = result.session.token
    return result


def sign_up_variables(email: str, password: str = factories.PASSWORD) -> dict[str, Any]:
    return {"input": {"email": email, "password": password, "displayName": "Grace Hopper"}}


# --- content negotiation ------------------------------------------------------------------------


async def test_api3_post_accepting_graphql_response_json_answers_that_media_type(
    gql: GraphQLClient,
) -> None:
    response = await gql.post(VIEWER)

    assert response.status_code == 200
    assert response.headers["content-type"] == GRAPHQL_RESPONSE_JSON
    assert body_of(response) == {"data": {"viewer": None}}


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        (APPLICATION_JSON, APPLICATION_JSON),
        ("*/*", APPLICATION_JSON),
        ("application/*", GRAPHQL_RESPONSE_JSON),
        (f"{APPLICATION_JSON}, {GRAPHQL_RESPONSE_JSON}", GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON};q=0.5, {APPLICATION_JSON}", APPLICATION_JSON),
        (f"text/plain, {APPLICATION_JSON};q=0.1", APPLICATION_JSON),
    ],
)
async def test_api3_accept_header_chooses_the_response_media_type(
    gql: GraphQLClient, accept: str, media_type: str
) -> None:
    response = await gql.post(VIEWER, accept=accept)

    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert body_of(response) == {"data": {"viewer": None}}


async def test_api3_no_accept_header_means_legacy_application_json(
    client: httpx.AsyncClient,
) -> None:
    request = client.build_request("POST", "/graphql", json={"query": VIEWER})
    del request.headers["accept"]  # httpx adds Accept: */* by default
    assert "accept" not in request.headers

    response = await client.send(request)

    assert response.status_code == 200
    assert response.headers["content-type"] == APPLICATION_JSON
    assert body_of(response) == {"data": {"viewer": None}}


@pytest.mark.parametrize("accept", ["text/plain", "text/html", f"{APPLICATION_JSON};q=0"])
async def test_api3_unacceptable_accept_header_is_406(gql: GraphQLClient, accept: str) -> None:
    response = await gql.post(VIEWER, accept=accept)

    assert_request_error(
        response,
        406,
        APPLICATION_JSON,
        f"Accept {GRAPHQL_RESPONSE_JSON} or {APPLICATION_JSON}.",
    )


# --- request errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("content", ['{"query": "{ viewer { id } }"', "{query: 1}", "", "\xff"])
async def test_api3_malformed_json_body_is_400(client: httpx.AsyncClient, content: str) -> None:
    response = await post_raw(client, content.encode("latin-1"))

    assert_request_error(response, 400, GRAPHQL_RESPONSE_JSON, "The body is not valid JSON.")


async def test_api3_hostile_deeply_nested_json_body_is_400(client: httpx.AsyncClient) -> None:
    response = await post_raw(client, "[" * 40_000 + "]" * 40_000)

    assert_request_error(response, 400, GRAPHQL_RESPONSE_JSON, "The body is not valid JSON.")


@pytest.mark.parametrize("payload", [[{"query": VIEWER}], VIEWER, 42, None, True])
async def test_api3_body_not_a_json_object_is_400(client: httpx.AsyncClient, payload: Any) -> None:
    response = await post_raw(client, json.dumps(payload))

    assert_request_error(
        response, 400, GRAPHQL_RESPONSE_JSON, "The request body must be a JSON object."
    )


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"variables": {}},
        {"query": ""},
        {"query": "   "},
        {"query": None},
        {"query": 42},
        {"query": ["{ viewer { id } }"]},
    ],
)
async def test_api3_missing_query_is_400(
    client: httpx.AsyncClient, payload: dict[str, Any]
) -> None:
    response = await post_raw(client, json.dumps(payload))

    assert_request_error(response, 400, GRAPHQL_RESPONSE_JSON, "The request has no query.")


@pytest.mark.parametrize("variables", [[], [{"id": "x"}], "{}", 7, True])
async def test_api3_variables_not_an_object_is_400(
    client: httpx.AsyncClient, variables: Any
) -> None:
    response = await post_raw(client, json.dumps({"query": VIEWER, "variables": variables}))

    assert_request_error(response, 400, GRAPHQL_RESPONSE_JSON, "variables must be a JSON object.")


async def test_api3_null_variables_are_accepted_as_none(client: httpx.AsyncClient) -> None:
    response = await post_raw(client, json.dumps({"query": VIEWER, "variables": None}))

    assert response.status_code == 200
    assert body_of(response) == {"data": {"viewer": None}}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("operationName", 3, "operationName must be a string."),
        ("extensions", [], "extensions must be a JSON object."),
    ],
)
async def test_api3_other_malformed_request_parameters_are_400(
    client: httpx.AsyncClient, field: str, value: Any, message: str
) -> None:
    response = await post_raw(client, json.dumps({"query": VIEWER, field: value}))

    assert_request_error(response, 400, GRAPHQL_RESPONSE_JSON, message)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/graphql",
        None,
    ],
)
async def test_api3_wrong_content_type_is_415(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    response = await post_raw(client, json.dumps({"query": VIEWER}), content_type=content_type)

    assert_request_error(
        response, 415, GRAPHQL_RESPONSE_JSON, "Send the request body as application/json."
    )


async def test_api3_form_post_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql", data={"query": VIEWER}, headers={"accept": GRAPHQL_RESPONSE_JSON}
    )

    assert response.request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert_request_error(
        response, 415, GRAPHQL_RESPONSE_JSON, "Send the request body as application/json."
    )


async def test_api3_json_content_type_with_charset_is_accepted(client: httpx.AsyncClient) -> None:
    response = await post_raw(
        client, json.dumps({"query": VIEWER}), content_type="Application/JSON; charset=utf-8"
    )

    assert response.status_code == 200
    assert body_of(response) == {"data": {"viewer": None}}


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_api3_other_methods_are_405_with_allow(
    client: httpx.AsyncClient, method: str
) -> None:
    response = await client.request(
        method, "/graphql", json={"query": VIEWER}, headers={"accept": GRAPHQL_RESPONSE_JSON}
    )

    assert response.headers["allow"] == "GET, POST"
    assert_request_error(response, 405, APPLICATION_JSON, "Use GET or POST.")


TOO_LARGE = f"The request body is larger than {MAX_BODY_BYTES} bytes."


async def test_api4_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    content = json.dumps({"query": VIEWER + " " * MAX_BODY_BYTES})
    assert len(content) > MAX_BODY_BYTES

    response = await post_raw(client, content)

    assert_request_error(response, 413, GRAPHQL_RESPONSE_JSON, TOO_LARGE, code="REQUEST_TOO_LARGE")


async def test_api4_body_of_500_kb_is_413_and_90_kb_is_accepted(
    client: httpx.AsyncClient,
) -> None:
    """ASVS 4 V13.1.3 / V12.1.1: request size bounded before parsing; 100 KB by default."""
    large = json.dumps({"query": VIEWER, "variables": {"pad": "x" * 500_000}})
    fitting = json.dumps({"query": VIEWER, "variables": {"pad": "x" * 90_000}})
    assert MAX_BODY_BYTES == 100_000
    assert 90_000 < len(fitting) < MAX_BODY_BYTES

    refused = await post_raw(client, large)
    accepted = await post_raw(client, fitting)

    assert_request_error(refused, 413, GRAPHQL_RESPONSE_JSON, TOO_LARGE, code="REQUEST_TOO_LARGE")
    assert accepted.status_code == 200
    assert body_of(accepted) == {"data": {"viewer": None}}


@pytest.mark.usefixtures("database")
async def test_api4_get_query_string_over_the_body_limit_is_414(var_dir: Path) -> None:
    settings = load_settings(
        {
            "GARDIEN_SECRET_KEY": secrets.token_urlsafe(48),
            "GARDIEN_VAR_DIR": str(var_dir),
            "GARDIEN_MAX_BODY_BYTES": "2000",
        }
    )
    app = create_app(settings, clock=ManualClock(), manage_database=False)
    headers = {"accept": GRAPHQL_RESPONSE_JSON}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        refused = await client.get(
            "/graphql", params={"query": VIEWER + " " * 2000}, headers=headers
        )
        fitting = await client.get(
            "/graphql", params={"query": VIEWER + " " * 1000}, headers=headers
        )

    assert_request_error(
        refused,
        414,
        GRAPHQL_RESPONSE_JSON,
        "The query string is longer than 2000 bytes; use POST.",
        code="REQUEST_TOO_LARGE",
    )
    assert body_of(fitting) == {"data": {"viewer": None}}


async def test_api4_streamed_body_over_the_limit_without_length_is_413(
    client: httpx.AsyncClient,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"query": "{ viewer { id } }'
        for _ in range(11):
            yield b" " * 100_000
        yield b'"}'

    response = await client.post(
        "/graphql",
        content=chunks(),
        headers={"content-type": APPLICATION_JSON, "accept": GRAPHQL_RESPONSE_JSON},
    )

    assert "content-length" not in response.request.headers
    assert_request_error(response, 413, GRAPHQL_RESPONSE_JSON, TOO_LARGE, code="REQUEST_TOO_LARGE")


async def test_api4_body_of_exactly_the_limit_is_accepted(client: httpx.AsyncClient) -> None:
    prefix = json.dumps({"query": VIEWER})[:-2]  # without the closing '"}'
    content = prefix + " " * (MAX_BODY_BYTES - len(prefix) - 2) + '"}'
    assert len(content) == MAX_BODY_BYTES

    response = await post_raw(client, content)

    assert response.status_code == 200
    assert body_of(response) == {"data": {"viewer": None}}


# --- parse, validation and variable errors ------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "status"), [(GRAPHQL_RESPONSE_JSON, 400), (APPLICATION_JSON, 200)]
)
async def test_api3_parse_error_has_no_data_400_or_legacy_200(
    gql: GraphQLClient, accept: str, status: int
) -> None:
    response = await gql.post("{ viewer { id }", accept=accept)

    errors = assert_no_data_errors(response, status, accept)
    assert errors == [
        {
            "message": "Syntax Error: Expected Name, found <EOF>.",
            "locations": [{"line": 1, "column": 16}],
            "extensions": {"code": "GRAPHQL_PARSE_FAILED"},
        }
    ]


@pytest.mark.parametrize(
    ("accept", "status"), [(GRAPHQL_RESPONSE_JSON, 400), (APPLICATION_JSON, 200)]
)
async def test_api3_validation_error_unknown_field_has_no_data_400_or_legacy_200(
    gql: GraphQLClient, accept: str, status: int
) -> None:
    response = await gql.post("{ viewer { id } zzz }", accept=accept)

    errors = assert_no_data_errors(response, status, accept)
    assert errors == [
        {
            "message": "Cannot query field 'zzz' on type 'Query'.",
            "locations": [{"line": 1, "column": 17}],
            "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"},
        }
    ]


async def test_api3_repeated_invalid_document_answers_the_same_each_time(
    gql: GraphQLClient,
) -> None:
    # Parse/validation results are cached per document text; the cached answer must not drift.
    first = await gql.post("{ nope }")
    second = await gql.post("{ nope }")

    assert assert_no_data_errors(first, 400, GRAPHQL_RESPONSE_JSON) == assert_no_data_errors(
        second, 400, GRAPHQL_RESPONSE_JSON
    )


async def test_api3_several_operations_need_an_existing_operation_name(
    gql: GraphQLClient,
) -> None:
    document = "query A { viewer { id } } query B { viewer { email } }"

    without_name = await gql.http.post(
        "/graphql", json={"query": document}, headers={"accept": GRAPHQL_RESPONSE_JSON}
    )
    unknown_name = await gql.http.post(
        "/graphql",
        json={"query": document, "operationName": "C"},
        headers={"accept": GRAPHQL_RESPONSE_JSON},
    )
    named = await gql.http.post(
        "/graphql",
        json={"query": document, "operationName": "B"},
        headers={"accept": GRAPHQL_RESPONSE_JSON},
    )

    message = "Name an operation of the document in operationName."
    assert_request_error(without_name, 400, GRAPHQL_RESPONSE_JSON, message)
    assert_request_error(unknown_name, 400, GRAPHQL_RESPONSE_JSON, message)
    assert named.status_code == 200
    assert body_of(named) == {"data": {"viewer": None}}


INVALID_VARIABLES = [
    pytest.param({"id": 1.5}, id="float-for-ID"),
    pytest.param({"id": {"nested": "object"}}, id="object-for-ID"),
    pytest.param({"id": ["a"]}, id="list-for-ID"),
    pytest.param({}, id="missing-non-null"),
    pytest.param({"id": None}, id="null-for-non-null"),
]


@pytest.mark.parametrize("variables", INVALID_VARIABLES)
async def test_api3_invalid_variables_are_400_without_data(
    gql: GraphQLClient, services: Services, variables: dict[str, Any]
) -> None:
    await signed_in(gql, services)

    response = await gql.post(ORGANISATION, variables)

    errors = assert_no_data_errors(response, 400, GRAPHQL_RESPONSE_JSON)
    assert len(errors) == 1
    assert errors[0]["locations"] == [{"line": 1, "column": 20}]
    assert errors[0]["extensions"] == {"code": "BAD_USER_INPUT"}
    assert "path" not in errors[0]


@pytest.mark.parametrize("variables", INVALID_VARIABLES)
async def test_api3_invalid_variables_under_legacy_json_are_200_without_data(
    gql: GraphQLClient, variables: dict[str, Any]
) -> None:
    response = await gql.post(ORGANISATION, variables, accept=APPLICATION_JSON)

    assert len(assert_no_data_errors(response, 200, APPLICATION_JSON)) == 1


async def test_api3_invalid_first_variable_type_is_400_without_data(
    gql: GraphQLClient, services: Services
) -> None:
    result = await signed_in(gql, services)
    organisation_id = encode_id("Organisation", result.organisation.id)

    response = await gql.post(MEMBERS, {"id": organisation_id, "first": "ten"})

    assert len(assert_no_data_errors(response, 400, GRAPHQL_RESPONSE_JSON)) == 1


@pytest.mark.parametrize("variables", INVALID_VARIABLES)
async def test_api3_invalid_variables_are_explained_not_masked_as_internal_errors(
    gql: GraphQLClient, variables: dict[str, Any]
) -> None:
    response = await gql.post(ORGANISATION, variables)

    errors = assert_no_data_errors(response, 400, GRAPHQL_RESPONSE_JSON)
    assert errors[0]["message"].startswith("Variable '$id'")
    assert errors[0].get("extensions", {}).get("code") != "INTERNAL_ERROR"


async def test_api3_subscription_over_http_is_a_request_error(gql: GraphQLClient) -> None:
    response = await gql.post("subscription Events { viewerSecurityEvents { cursor } }")

    errors = assert_no_data_errors(response, 400, GRAPHQL_RESPONSE_JSON)
    assert errors == [
        {
            "message": "Subscriptions run over WebSocket (graphql-transport-ws).",
            "extensions": {"code": "BAD_REQUEST"},
        }
    ]


# --- GET ----------------------------------------------------------------------------------------


async def test_api3_get_runs_a_query(client: httpx.AsyncClient, services: Services) -> None:
    result = await factories.sign_up(services, email="ada@example.test")

    response = await client.get(
        "/graphql",
        params={
            "query": "query Me($id: ID!) { viewer { id } organisation(id: $id) { name } }",
            "variables": json.dumps({"id": encode_id("Organisation", result.organisation.id)}),
            "operationName": "Me",
        },
        headers={
            "accept": GRAPHQL_RESPONSE_JSON,
            "authorization": f"Bearer {result.session.token}",
        },
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == GRAPHQL_RESPONSE_JSON
    assert body_of(response) == {
        "data": {
            "viewer": {"id": encode_id("User", result.user.id)},
            "organisation": {"name": "Ada Lovelace"},
        }
    }


async def test_api3_get_mutation_is_405_and_never_executed(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/graphql",
        params={
            "query": SIGN_UP,
            "variables": json.dumps(sign_up_variables("get@example.test")),
        },
        headers={"accept": GRAPHQL_RESPONSE_JSON},
    )

    assert response.headers["allow"] == "POST"
    assert_request_error(response, 405, GRAPHQL_RESPONSE_JSON, "Mutations are sent with POST.")
    assert "set-cookie" not in response.headers
    assert await PendingSignUp.all().count() == 0
    assert await OutboxMessage.all().count() == 0

    # The very same request by POST does record the sign-up: the check above is meaningful.
    posted = await client.post(
        "/graphql",
        json={"query": SIGN_UP, "variables": sign_up_variables("get@example.test")},
        headers={"accept": GRAPHQL_RESPONSE_JSON},
    )
    assert posted.status_code == 200
    assert body_of(posted)["data"]["signUp"] == {"user": None, "session": None, "errors": []}
    assert await PendingSignUp.filter(email="get@example.test").count() == 1
    assert await OutboxMessage.filter(recipient="get@example.test").count() == 1


async def test_api3_get_selecting_the_mutation_of_a_mixed_document_is_405(
    client: httpx.AsyncClient,
) -> None:
    document = f"query Me {VIEWER} {SIGN_UP}"
    variables = json.dumps(sign_up_variables("mixed@example.test"))
    headers = {"accept": GRAPHQL_RESPONSE_JSON}

    mutation = await client.get(
        "/graphql",
        params={"query": document, "variables": variables, "operationName": "SignUp"},
        headers=headers,
    )
    query = await client.get(
        "/graphql",
        params={"query": document, "variables": variables, "operationName": "Me"},
        headers=headers,
    )

    assert mutation.headers["allow"] == "POST"
    assert_request_error(mutation, 405, GRAPHQL_RESPONSE_JSON, "Mutations are sent with POST.")
    assert query.status_code == 200
    assert body_of(query) == {"data": {"viewer": None}}
    assert await PendingSignUp.all().count() == 0


async def test_api3_get_with_accept_html_and_no_query_serves_graphiql(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(
        "/graphql", headers={"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text.lstrip().lower().startswith("<!doctype html>")
    assert "<title>Strawberry GraphiQL</title>" in response.text
    assert response.headers["x-request-id"]


async def test_api3_get_without_query_for_a_json_client_is_400(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"accept": GRAPHQL_RESPONSE_JSON})

    assert_request_error(response, 400, GRAPHQL_RESPONSE_JSON, "The request has no query.")


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ("{not json", "The variables is not valid JSON."),
        ("[1]", "variables must be a JSON object."),
    ],
)
async def test_api3_get_with_malformed_variables_is_400(
    client: httpx.AsyncClient, variables: str, message: str
) -> None:
    response = await client.get(
        "/graphql",
        params={"query": VIEWER, "variables": variables},
        headers={"accept": GRAPHQL_RESPONSE_JSON},
    )

    assert_request_error(response, 400, GRAPHQL_RESPONSE_JSON, message)


# --- authentication -----------------------------------------------------------------------------

INVALID_TOKEN_MESSAGE = "The session token is invalid or has expired; sign in again."


def assert_unauthenticated(response: httpx.Response) -> None:
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert_request_error(
        response, 401, GRAPHQL_RESPONSE_JSON, INVALID_TOKEN_MESSAGE, code="UNAUTHENTICATED"
    )


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer forged-token-that-was-never-issued",
        "Bearer " + "x" * 300,
        "Bearer",
        "Bearer ",
        "Basic YWRhOnBsdW0=",
    ],
)
async def test_api3_forged_or_unknown_bearer_token_is_401(
    gql: GraphQLClient, services: Services, authorization: str
) -> None:
    await factories.sign_up(services)  # a real session exists; the forged token is not it

    response = await gql.post(VIEWER, authorization=authorization)

    assert_unauthenticated(response)


async def test_api3_valid_bearer_token_identifies_the_viewer(
    gql: GraphQLClient, services: Services
) -> None:
    result = await signed_in(gql, services)

    response = await gql.post(VIEWER)

    assert response.status_code == 200
    assert body_of(response) == {"data": {"viewer": {"id": encode_id("User", result.user.id)}}}


async def test_api3_idle_expired_bearer_token_is_401(
    gql: GraphQLClient, services: Services, clock: ManualClock
) -> None:
    await signed_in(gql, services)
    clock.advance(IDLE_TIMEOUT + timedelta(seconds=1))

    response = await gql.post(VIEWER)

    assert_unauthenticated(response)


async def test_api3_idle_timeout_slides_with_use_then_expires(
    gql: GraphQLClient, services: Services, clock: ManualClock
) -> None:
    result = await signed_in(gql, services)
    viewer = {"data": {"viewer": {"id": encode_id("User", result.user.id)}}}

    clock.advance(IDLE_TIMEOUT - timedelta(minutes=1))
    assert body_of(await gql.post(VIEWER)) == viewer
    clock.advance(IDLE_TIMEOUT - timedelta(minutes=1))  # long past sign-up, not idle
    assert body_of(await gql.post(VIEWER)) == viewer
    clock.advance(IDLE_TIMEOUT)

    assert_unauthenticated(await gql.post(VIEWER))


async def test_api3_signed_out_bearer_token_is_401(gql: GraphQLClient, services: Services) -> None:
    await signed_in(gql, services)
    signed_out = await gql.post("mutation { signOut { errors { code } } }")
    assert body_of(signed_out) == {"data": {"signOut": {"errors": []}}}

    response = await gql.post(VIEWER)

    assert_unauthenticated(response)


async def test_api3_stale_session_cookie_is_anonymous_not_an_error(
    client: httpx.AsyncClient, services: Services
) -> None:
    await factories.sign_up(services)

    response = await client.post(
        "/graphql",
        json={"query": VIEWER},
        headers={"accept": GRAPHQL_RESPONSE_JSON, "cookie": "gardien_session=stale-or-forged"},
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == GRAPHQL_RESPONSE_JSON
    assert body_of(response) == {"data": {"viewer": None}}


async def test_api3_valid_session_cookie_identifies_the_viewer(
    client: httpx.AsyncClient, services: Services
) -> None:
    result = await factories.sign_up(services)

    response = await client.post(
        "/graphql",
        json={"query": VIEWER},
        headers={
            "accept": GRAPHQL_RESPONSE_JSON,
            "cookie": f"gardien_session={result.session.token}",
        },
    )

    assert response.status_code == 200
    assert body_of(response) == {"data": {"viewer": {"id": encode_id("User", result.user.id)}}}


# --- global IDs (API-1) -------------------------------------------------------------------------


async def test_api1_unknown_organisation_id_is_not_found(
    gql: GraphQLClient, services: Services
) -> None:
    await signed_in(gql, services)

    response = await gql.post(ORGANISATION, {"id": encode_id("Organisation", 999_999)})

    error = single_error(response)
    assert error["message"] == "No such organisation."
    assert error["extensions"]["code"] == "NOT_FOUND"
    assert error["path"] == ["organisation"]


async def test_api1_another_organisations_id_answers_exactly_like_an_unknown_one(
    gql: GraphQLClient, services: Services
) -> None:
    await signed_in(gql, services)
    stranger = await factories.sign_up(services, email="stranger@example.test")

    theirs = await gql.post(
        ORGANISATION, {"id": encode_id("Organisation", stranger.organisation.id)}
    )
    unknown = await gql.post(ORGANISATION, {"id": encode_id("Organisation", 999_999)})

    assert single_error(theirs) == single_error(unknown)


async def test_api1_wrong_type_global_id_is_not_found(
    gql: GraphQLClient, services: Services
) -> None:
    result = await signed_in(gql, services)

    response = await gql.post(ORGANISATION, {"id": encode_id("User", result.user.id)})

    error = single_error(response)
    assert error["message"] == "No such organisation."
    assert error["extensions"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    "global_id",
    [
        "!!!",
        "",
        "not base64 at all",
        encode_id("Organisation", "-1"),
        encode_id("Organisation", "1" * 19),
        encode_id("Organisation", str(2**31)),  # past the 32-bit keys: PostgreSQL refused it
        encode_id("Organisation", str(2**63 - 1)),
        encode_id("Organisation", ""),
        "T3JnYW5pc2F0aW9u",
    ],
)
async def test_api1_malformed_global_id_is_invalid_id(
    gql: GraphQLClient, services: Services, global_id: str
) -> None:
    await signed_in(gql, services)

    response = await gql.post(ORGANISATION, {"id": global_id})

    error = single_error(response)
    assert error["message"] == "This is not a valid ID."
    assert error["extensions"] == {"code": "INVALID_ID", "field": "id"}


async def test_api1_malformed_global_id_literal_is_invalid_id(
    gql: GraphQLClient, services: Services
) -> None:
    await signed_in(gql, services)

    response = await gql.post('{ organisation(id: "!!!") { id } }')

    error = single_error(response)
    assert error["extensions"] == {"code": "INVALID_ID", "field": "id"}
    assert error["path"] == ["organisation"]


async def test_api1_malformed_node_id_is_invalid_id_with_null_node(
    gql: GraphQLClient, services: Services
) -> None:
    await signed_in(gql, services)

    response = await gql.post('{ node(id: "!!!") { id } }')

    assert response.status_code == 200
    body = body_of(response)
    assert body["data"] == {"node": None}
    assert [e["extensions"]["code"] for e in body["errors"]] == ["INVALID_ID"]


@pytest.mark.parametrize("type_name", ["Membership", "Product", "Domain", "TwoFactorMethod"])
async def test_api1_node_id_past_32_bit_keys_is_invalid_id_on_every_backend(
    gql: GraphQLClient, services: Services, type_name: str
) -> None:
    await signed_in(gql, services)

    response = await gql.post(
        "query($id: ID!) { node(id: $id) { id } }", {"id": encode_id(type_name, str(2**31))}
    )

    body = body_of(response)
    assert body["data"] == {"node": None}
    assert [e["extensions"]["code"] for e in body["errors"]] == ["INVALID_ID"]


async def test_api1_cursor_past_32_bit_keys_is_invalid(
    gql: GraphQLClient, services: Services
) -> None:
    owner = await signed_in(gql, services)

    response = await gql.post(
        MEMBERS,
        {
            "id": encode_id("Organisation", owner.organisation.id),
            "after": encode_id("cursor", str(2**31)),
        },
    )

    assert single_error(response)["extensions"] == {"code": "INVALID_INPUT", "field": "after"}


@pytest.mark.parametrize("pk", ["²", "1²", "①"])
async def test_api1_global_id_with_unicode_digit_key_is_invalid_id(
    gql: GraphQLClient, services: Services, pk: str
) -> None:
    await signed_in(gql, services)

    response = await gql.post(ORGANISATION, {"id": encode_id("Organisation", pk)})

    assert single_error(response)["extensions"] == {"code": "INVALID_ID", "field": "id"}


# --- pagination arguments (API-1, API-4) ---------------------------------------------------------


@pytest.mark.parametrize(
    "after", ["not-a-cursor", "!!!", encode_id("Organisation", 1), encode_id("cursor", "-5"), ""]
)
async def test_api1_invalid_after_cursor_is_invalid_input(
    gql: GraphQLClient, services: Services, after: str
) -> None:
    result = await signed_in(gql, services)

    response = await gql.post(
        MEMBERS, {"id": encode_id("Organisation", result.organisation.id), "after": after}
    )

    error = single_error(response)
    assert error["message"] == "This cursor is not valid."
    assert error["extensions"] == {"code": "INVALID_INPUT", "field": "after"}
    assert error["path"] == ["organisation", "members"]


async def test_api1_cursor_with_unicode_digit_key_is_invalid_input(
    gql: GraphQLClient, services: Services
) -> None:
    result = await signed_in(gql, services)

    response = await gql.post(
        MEMBERS,
        {
            "id": encode_id("Organisation", result.organisation.id),
            "after": encode_id("cursor", "²"),
        },
    )

    assert single_error(response)["extensions"] == {"code": "INVALID_INPUT", "field": "after"}


@pytest.mark.parametrize("first", [1000, 101, -1])
async def test_api4_page_size_out_of_bounds_is_invalid_input(
    gql: GraphQLClient, services: Services, first: int
) -> None:
    result = await signed_in(gql, services)

    response = await gql.post(
        MEMBERS, {"id": encode_id("Organisation", result.organisation.id), "first": first}
    )

    error = single_error(response)
    assert error["message"] == "first must be between 0 and 100."
    assert error["extensions"] == {"code": "INVALID_INPUT", "field": "first"}


async def test_api1_valid_cursor_pages_members(gql: GraphQLClient, services: Services) -> None:
    result = await signed_in(gql, services)
    organisation_id = encode_id("Organisation", result.organisation.id)
    await factories.add_member(services, result.organisation, Role.COLLABORATOR)

    first_page = body_of(await gql.post(MEMBERS, {"id": organisation_id, "first": 1}))
    members = first_page["data"]["organisation"]["members"]
    second_page = body_of(
        await gql.post(
            MEMBERS, {"id": organisation_id, "first": 100, "after": members["edges"][0]["cursor"]}
        )
    )

    assert members["totalCount"] == 2
    assert len(members["edges"]) == 1
    assert len(second_page["data"]["organisation"]["members"]["edges"]) == 1
    assert "errors" not in second_page


# --- request IDs (OPS-5, API-2) -------------------------------------------------------------------


async def test_api3_every_response_carries_a_request_id_and_no_store(
    client: httpx.AsyncClient,
) -> None:
    json_headers = {"accept": GRAPHQL_RESPONSE_JSON}
    responses = [
        await client.post("/graphql", json={"query": VIEWER}, headers=json_headers),
        await client.post("/graphql", json={"query": "{ nope }"}, headers=json_headers),
        await post_raw(client, "{", APPLICATION_JSON),
        await post_raw(client, "{}", "text/plain"),
        await client.post("/graphql", json={"query": VIEWER}, headers={"accept": "text/plain"}),
        await client.put("/graphql", json={"query": VIEWER}),
        await client.get("/graphql", headers={"accept": "text/html"}),
        await client.post(
            "/graphql",
            json={"query": VIEWER},
            headers={**json_headers, "authorization": "Bearer forged"},
        ),
    ]

    assert [r.status_code for r in responses] == [200, 400, 400, 415, 406, 405, 200, 401]
    # Item 14: no answer of /graphql may be stored (signIn's token, private data), error or not.
    assert [r.headers["cache-control"] for r in responses] == ["no-store"] * len(responses)
    ids = [r.headers["x-request-id"] for r in responses]
    assert all(GENERATED_REQUEST_ID.match(i) for i in ids), ids
    assert len(set(ids)) == len(ids)


async def test_api3_sane_incoming_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql",
        json={"query": VIEWER},
        headers={"accept": GRAPHQL_RESPONSE_JSON, "x-request-id": "edge-proxy.Req_0042"},
    )

    assert response.status_code == 200
    assert response.headers["x-request-id"] == "edge-proxy.Req_0042"


@pytest.mark.parametrize(
    "incoming", ["short", "has spaces in it", "x" * 65, "inject\\nheader", "<script>alert</script>"]
)
async def test_api3_unsafe_incoming_request_id_is_replaced(
    client: httpx.AsyncClient, incoming: str
) -> None:
    response = await client.post(
        "/graphql",
        json={"query": VIEWER},
        headers={"accept": GRAPHQL_RESPONSE_JSON, "x-request-id": incoming},
    )

    assert response.status_code == 200
    assert response.headers["x-request-id"] != incoming
    assert GENERATED_REQUEST_ID.match(response.headers["x-request-id"])


# --- mutation payload errors and masking (API-2) -------------------------------------------------


async def test_api2_sign_up_short_password_is_a_typed_payload_error(gql: GraphQLClient) -> None:
    response = await gql.post(SIGN_UP, sign_up_variables("short@example.test", password="short7!"))

    assert response.status_code == 200
    assert response.headers["content-type"] == GRAPHQL_RESPONSE_JSON
    assert body_of(response) == {
        "data": {
            "signUp": {
                "user": None,
                "session": None,
                "errors": [
                    {
                        "code": "PASSWORD_TOO_SHORT",
                        "field": "password",
                        "message": "Use at least 8 characters.",
                    }
                ],
            }
        }
    }
    assert "set-cookie" not in response.headers
    assert await User.all().count() == 0


async def test_api2_sign_up_answer_sets_no_cookie(gql: GraphQLClient) -> None:
    response = await gql.post(SIGN_UP, sign_up_variables("grace@example.test"))

    assert body_of(response)["data"]["signUp"] == {"user": None, "session": None, "errors": []}
    assert "set-cookie" not in response.headers


async def test_api2_confirm_sign_up_sets_the_session_cookie(gql: GraphQLClient) -> None:
    await gql.post(SIGN_UP, sign_up_variables("grace@example.test"))
    token = await factories.sign_up_token_sent_to("grace@example.test")

    response = await gql.post(CONFIRM_SIGN_UP, {"input": {"token": token}})

    payload = body_of(response)["data"]["confirmSignUp"]
    assert payload["errors"] == []
    assert payload["user"]["email"] == "grace@example.test"
    session_token = payload["session"]["token"]
    assert response.headers["cache-control"] == "no-store"  # the answer carries the token
    (cookie,) = [
        c for c in response.headers.get_list("set-cookie") if c.startswith("gardien_session=")
    ]
    assert cookie.startswith(f"gardien_session={session_token};")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie


async def _raise_secret(*args: object, **kwargs: object) -> NoReturn:
    raise RuntimeError("secret detail")


@pytest.mark.parametrize("incoming_request_id", [None, "support-ticket-1234"])
async def test_api2_unexpected_exception_is_masked_with_the_request_id(
    gql: GraphQLClient,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    incoming_request_id: str | None,
) -> None:
    result = await signed_in(gql, services)
    monkeypatch.setattr(organisation_resolvers, "members", _raise_secret)
    headers = {"x_request_id": incoming_request_id} if incoming_request_id else {}

    response = await gql.post(
        MEMBERS, {"id": encode_id("Organisation", result.organisation.id)}, **headers
    )

    request_id = response.headers["x-request-id"]
    if incoming_request_id:
        assert request_id == incoming_request_id
    assert "secret detail" not in response.text
    assert "RuntimeError" not in response.text
    error = single_error(response)
    assert error == {
        "message": f"Internal error; quote request ID {request_id} to support.",
        "locations": [{"line": 5, "column": 5}],
        "path": ["organisation", "members"],
        "extensions": {"code": "INTERNAL_ERROR", "requestId": request_id},
    }


async def test_api2_client_disconnecting_mid_body_is_neither_a_traceback_nor_an_error(
    app: Any, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """starlette raises ClientDisconnect while reading the body: no INTERNAL_ERROR, no trace."""
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"query": "{ viewer', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")],
        "client": ("203.0.113.7", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    with caplog.at_level("INFO", logger="gardien"):
        await app(scope, receive, send)
    metrics = (await client.get("/metrics")).text

    assert "gardien_errors_total{" in metrics or "gardien_errors" in metrics
    assert 'code="INTERNAL_ERROR"' not in metrics  # a labelled counter appears once counted
    assert [r.exc_info for r in caplog.records if r.name == "gardien.graphql"] == [None]
    assert [r.getMessage() for r in caplog.records if r.name == "gardien.graphql"] == [
        "client disconnected before sending the whole request body"
    ]
