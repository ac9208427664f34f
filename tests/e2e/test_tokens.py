"""Personal access tokens on a served gateway: revoked, and the owner removed (API-6)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gardien.demo import DEMO_PASSWORD
from tests.e2e.conftest import ServedGateway, fresh_gateway_env, start_gateway

SIGN_IN = (
    "mutation($input: SignInInput!) { signIn(input: $input) { session { token } errors { code } } }"
)
CREATE = (
    "mutation($input: CreatePersonalAccessTokenInput!) { createPersonalAccessToken(input: $input)"
    " { token { id } secret errors { code } } }"
)
REVOKE = (
    "mutation($input: RevokePersonalAccessTokenInput!) { revokePersonalAccessToken(input: $input)"
    " { errors { code } } }"
)
ORGANISATION = "{ viewer { currentOrganisation { id } } }"
MEMBERS = "query($id: ID!) { organisation(id: $id) { members(first: 10) { totalCount } } }"
MEMBER_IDS = (
    "query($id: ID!) { organisation(id: $id) { members(first: 10) { edges { node { id"
    " user { email } } } } } }"
)
REMOVE = "mutation($input: RemoveMemberInput!) { removeMember(input: $input) { errors { code } } }"
TOKENS = "{ viewer { personalAccessTokens { id lastUsedAt lastUsedIp useCount } } }"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    """A gateway of this module's own: its tests remove a demo member."""
    with start_gateway(fresh_gateway_env(tmp_path_factory.mktemp("tokens"))) as served:
        yield served


def _post(
    gateway: ServedGateway, query: str, variables: dict[str, Any] | None, token: str
) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/graphql",
        json={"query": query, "variables": variables or {}},
        headers={
            "accept": "application/graphql-response+json",
            "authorization": f"Bearer {token}",
        },
        timeout=30,
    )


def _data(gateway: ServedGateway, query: str, variables: dict[str, Any] | None, token: str) -> Any:
    body = _post(gateway, query, variables, token).json()
    assert "errors" not in body, body
    return body["data"]


def _sign_in(gateway: ServedGateway, login: str) -> str:
    body = httpx.post(
        f"{gateway.url}/graphql",
        json={
            "query": SIGN_IN,
            "variables": {"input": {"login": login, "password": DEMO_PASSWORD}},
        },
        timeout=30,
    ).json()
    token: str = body["data"]["signIn"]["session"]["token"]
    return token


def _token(gateway: ServedGateway, session: str, scopes: list[str]) -> tuple[str, str]:
    variables = {"input": {"label": "Script", "scopes": scopes}}
    payload = _data(gateway, CREATE, variables, session)["createPersonalAccessToken"]
    assert payload["errors"] == []
    return payload["token"]["id"], payload["secret"]


def test_api6_revoked_token_is_refused_served(gateway: ServedGateway) -> None:
    session = _sign_in(gateway, "marc.admin@demo.example")
    organisation_id = _data(gateway, ORGANISATION, None, session)["viewer"]["currentOrganisation"]
    token_id, secret = _token(gateway, session, ["members:read"])

    before = _post(gateway, MEMBERS, {"id": organisation_id["id"]}, secret)
    listed = _data(gateway, TOKENS, None, session)["viewer"]["personalAccessTokens"]
    revoked = _data(gateway, REVOKE, {"input": {"tokenId": token_id}}, session)
    after = _post(gateway, MEMBERS, {"id": organisation_id["id"]}, secret)

    assert before.json()["data"]["organisation"]["members"]["totalCount"] == 4
    assert [(t["id"], t["useCount"], t["lastUsedIp"]) for t in listed] == [
        (token_id, 1, "127.0.0.1")
    ]
    assert listed[0]["lastUsedAt"] is not None
    assert revoked["revokePersonalAccessToken"] == {"errors": []}
    assert after.status_code == 401
    assert after.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_api6_token_of_a_removed_member_reaches_nothing_served(gateway: ServedGateway) -> None:
    legal = _sign_in(gateway, "anna.legal@demo.example")
    collaborator = _sign_in(gateway, "lea.collab@demo.example")
    organisation_id = _data(gateway, ORGANISATION, None, legal)["viewer"]["currentOrganisation"][
        "id"
    ]
    _, secret = _token(gateway, collaborator, ["members:read"])
    edges = _data(gateway, MEMBER_IDS, {"id": organisation_id}, legal)["organisation"]["members"]
    membership_id = next(
        e["node"]["id"]
        for e in edges["edges"]
        if e["node"]["user"]["email"] == "lea.collab@demo.example"
    )

    before = _post(gateway, MEMBERS, {"id": organisation_id}, secret)
    removed = _data(gateway, REMOVE, {"input": {"membershipId": membership_id}}, legal)
    after = _post(gateway, MEMBERS, {"id": organisation_id}, secret)

    assert before.json()["data"]["organisation"]["members"]["totalCount"] == 4
    assert removed["removeMember"] == {"errors": []}
    assert after.json()["data"] == {"organisation": None}
    assert after.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"


CREATE_SERVICE_ACCOUNT = (
    "mutation($input: CreateServiceAccountInput!) { createServiceAccount(input: $input)"
    " { serviceAccount { id role } secret errors { code } } }"
)
CHANGE_ROLE = "mutation($input: ChangeMemberRoleInput!) { changeMemberRole(input: $input) { errors { code } } }"


def test_api6_service_account_dies_when_its_creator_is_demoted_served(
    gateway: ServedGateway,
) -> None:
    legal = _sign_in(gateway, "anna.legal@demo.example")
    admin = _sign_in(gateway, "marc.admin@demo.example")
    organisation_id = _data(gateway, ORGANISATION, None, legal)["viewer"]["currentOrganisation"][
        "id"
    ]
    variables = {
        "input": {
            "organisationId": organisation_id,
            "name": "Directory sync",
            "role": "ADMINISTRATOR",
            "scopes": ["members:read"],
        }
    }
    payload = _data(gateway, CREATE_SERVICE_ACCOUNT, variables, admin)["createServiceAccount"]
    edges = _data(gateway, MEMBER_IDS, {"id": organisation_id}, legal)["organisation"]["members"]
    admin_membership = next(
        e["node"]["id"]
        for e in edges["edges"]
        if e["node"]["user"]["email"] == "marc.admin@demo.example"
    )

    before = _post(gateway, MEMBERS, {"id": organisation_id}, payload["secret"])
    demoted = _data(
        gateway,
        CHANGE_ROLE,
        {"input": {"membershipId": admin_membership, "role": "COLLABORATOR"}},
        legal,
    )
    after = _post(gateway, MEMBERS, {"id": organisation_id}, payload["secret"])

    assert payload["errors"] == [] and payload["secret"].startswith("gdn_sa_")
    assert payload["serviceAccount"]["role"] == "ADMINISTRATOR"
    # Works before (how many members depends on the module's other tests: not asserted).
    assert before.status_code == 200 and "errors" not in before.json()
    assert demoted["changeMemberRole"] == {"errors": []}
    assert after.status_code == 401
    assert after.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
