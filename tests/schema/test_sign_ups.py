"""signUp and confirmSignUp over GraphQL (ORG-1, API-2): one answer, typed errors, the cookie."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from gardien.clock import ManualClock
from gardien.models.activity import ActivityEvent
from gardien.models.organisations import Membership
from gardien.models.outbox import OutboxMessage
from gardien.models.sessions import Session
from gardien.models.users import PendingSignUp, User
from gardien.resolvers.services import Services
from tests import factories
from tests.conftest import GraphQLClient

pytestmark = pytest.mark.usefixtures("database")

# The contract's selection, plus everything else a client could select of the payload.
SIGN_UP = """
mutation SignUp($input: SignUpInput!) {
  signUp(input: $input) {
    __typename
    user { id email }
    session { token expiresAt }
    errors { code message field retryAfterSeconds }
  }
}
"""
CONFIRM = """
mutation ConfirmSignUp($input: ConfirmSignUpInput!) {
  confirmSignUp(input: $input) {
    user { id email displayName }
    session { token }
    errors { code message field }
  }
}
"""


def _input(email: str, password: str = factories.PASSWORD) -> dict[str, Any]:
    return {"input": {"email": email, "password": password, "displayName": "Someone"}}


async def _counts() -> tuple[int, ...]:
    return (
        await User.all().count(),
        await Membership.all().count(),
        await Session.all().count(),
        await PendingSignUp.all().count(),
        await OutboxMessage.all().count(),
        await ActivityEvent.filter(type="account.signed_up").count(),
    )


async def test_org1_signup_same_answer_for_taken_address(
    services: Services, gql: GraphQLClient
) -> None:
    await factories.sign_up(services, email="taken@example.test")

    taken = await gql.post(SIGN_UP, _input("taken@example.test"))
    free = await gql.post(SIGN_UP, _input("free@example.test"))

    assert taken.status_code == free.status_code == 200
    assert taken.json() == free.json()
    assert {k: v for k, v in taken.headers.items() if k != "x-request-id"} == {
        k: v for k, v in free.headers.items() if k != "x-request-id"
    }
    assert free.json() == {
        "data": {"signUp": {"__typename": "SignUpPayload", "user": None, "session": None,
                            "errors": []}}
    }  # fmt: skip
    assert await User.filter(email="free@example.test").count() == 0


async def test_org1_signup_same_refusal_for_taken_address_when_over_budget(
    services: Services, gql: GraphQLClient, clock: ManualClock
) -> None:
    await factories.sign_up(services, email="taken@example.test")
    clock.advance(timedelta(hours=1))
    for _ in range(3):
        await gql.post(SIGN_UP, _input("taken@example.test"))
        await gql.post(SIGN_UP, _input("free@example.test"))

    taken = await gql(SIGN_UP, _input("taken@example.test"))
    free = await gql(SIGN_UP, _input("free@example.test"))

    assert taken == free
    assert free["data"]["signUp"]["errors"][0]["code"] == "TOO_MANY_ATTEMPTS"


async def test_org1_api2_confirm_sign_up_opens_the_account_and_signs_in(
    gql: GraphQLClient,
) -> None:
    await gql.post(SIGN_UP, _input("ada@example.test"))
    token = await factories.sign_up_token_sent_to("ada@example.test")

    response = await gql.post(CONFIRM, {"input": {"token": token}})
    payload = response.json()["data"]["confirmSignUp"]
    gql.token = payload["session"]["token"]
    viewer = await gql("{ viewer { email currentOrganisation { name } } }")

    assert payload["errors"] == []
    assert payload["user"]["email"] == "ada@example.test"
    assert payload["user"]["displayName"] == "Someone"
    assert f"gardien_session={gql.token};" in [
        c.partition(" ")[0] for c in response.headers.get_list("set-cookie")
    ]
    assert viewer == {
        "data": {
            "viewer": {"email": "ada@example.test", "currentOrganisation": {"name": "Someone"}}
        }
    }


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("forged", "SIGN_UP_TOKEN_INVALID", "This confirmation link is not valid or was used already."),
        ("reused", "SIGN_UP_TOKEN_INVALID", "This confirmation link is not valid or was used already."),
        ("expired", "SIGN_UP_TOKEN_EXPIRED", "This confirmation link has expired; sign up again."),
    ],
)  # fmt: skip
async def test_org1_api2_refused_confirmations_are_typed_and_change_nothing(
    gql: GraphQLClient, clock: ManualClock, case: str, code: str, message: str
) -> None:
    await gql.post(SIGN_UP, _input("ada@example.test"))
    token = await factories.sign_up_token_sent_to("ada@example.test")
    if case == "forged":
        token = token[:-4] + "AAAA" if not token.endswith("AAAA") else token[:-4] + "BBBB"
    elif case == "reused":
        await gql.post(CONFIRM, {"input": {"token": token}})
    else:
        clock.advance(timedelta(hours=24))
    before = await _counts()

    response = await gql.post(CONFIRM, {"input": {"token": token}})

    assert response.json() == {
        "data": {
            "confirmSignUp": {
                "user": None,
                "session": None,
                "errors": [{"code": code, "message": message, "field": "token"}],
            }
        }
    }
    assert "set-cookie" not in response.headers
    assert await _counts() == before
