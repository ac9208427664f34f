"""Recovery over GraphQL (REC-1, API-2): the answer a client sees for a known and an unknown
login, compared field by field, and typed errors."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from gardien.models.users import User
from gardien.resolvers.recovery_options import decoy_destinations
from gardien.resolvers.services import Services
from tests import factories
from tests.conftest import GraphQLClient

pytestmark = pytest.mark.usefixtures("database")

OWNER = "anna.muster@example.ch"
# The contract's selection, plus everything else a client could select of the payload.
REQUEST = """
mutation RequestPasswordReset($input: RequestPasswordResetInput!) {
  requestPasswordReset(input: $input) {
    __typename
    recoveryId
    options { __typename id channel maskedDestination }
    errors { code message field retryAfterSeconds }
  }
}
"""
RESET = """
mutation ResetPassword($input: ResetPasswordInput!) {
  resetPassword(input: $input) { errors { code message field } }
}
"""


def _abstract(value: Any) -> Any:
    """The answer with each opaque or masked value replaced by what its form is: what a client
    could compare without knowing the account behind it."""
    if isinstance(value, dict):
        return {key: _abstract(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_abstract(item) for item in value]
    if isinstance(value, str):
        if re.fullmatch(r"[A-Za-z0-9_-]{43}", value):
            return "<token>"
        if re.fullmatch(r"[0-9a-f]{24}", value):
            return "<option id>"
        if re.fullmatch(r"[^@]\*\*\*@[^.]\*\*\*\.[a-z]+", value):
            return "<masked e-mail>"
        if re.fullmatch(r"\+\d{1,3}( \*+)+ \d{2}", value):
            return "<masked phone>"
    return value


def _seen(response: httpx.Response) -> tuple[int, str, Any, list[str]]:
    return (
        response.status_code,
        response.headers["content-type"],
        _abstract(response.json()),
        sorted(h for h in response.headers if h not in {"x-request-id", "content-length"}),
    )


async def test_rec1_known_and_unknown_login_look_alike_to_a_client(
    services: Services, gql: GraphQLClient
) -> None:
    user = (await factories.sign_up(services, email=OWNER)).user
    await User.filter(id=user.id).update(
        recovery_email="a.m@bluewin.ch", recovery_phone="+41791234567"
    )
    stranger = next(
        login
        for login in (f"bea{n}@example.ch" for n in range(100))
        if len(decoy_destinations(services.keyring, login)) == 3
    )

    known = await gql.post(REQUEST, {"input": {"login": OWNER}})
    unknown = await gql.post(REQUEST, {"input": {"login": stranger}})

    assert _seen(known) == _seen(unknown)
    assert _abstract(known.json()) == {
        "data": {
            "requestPasswordReset": {
                "__typename": "RequestPasswordResetPayload",
                "recoveryId": "<token>",
                "options": [
                    {
                        "__typename": "RecoveryOption",
                        "id": "<option id>",
                        "channel": channel,
                        "maskedDestination": mask,
                    }
                    for channel, mask in (
                        ("LOGIN_EMAIL", "<masked e-mail>"),
                        ("RECOVERY_EMAIL", "<masked e-mail>"),
                        ("SMS", "<masked phone>"),
                    )
                ],
                "errors": [],
            }
        }
    }


async def test_rec1_bad_input_is_a_typed_payload_error(gql: GraphQLClient) -> None:
    blank = await gql(REQUEST, {"input": {"login": " "}})
    forged = await gql(
        RESET, {"input": {"recoveryId": "x", "code": "1", "newPassword": "granite harbour"}}
    )

    assert blank["data"]["requestPasswordReset"] == {
        "__typename": "RequestPasswordResetPayload",
        "recoveryId": None,
        "options": [],
        "errors": [
            {
                "code": "INVALID_INPUT",
                "message": "Enter your login e-mail or your username.",
                "field": "login",
                "retryAfterSeconds": None,
            }
        ],
    }
    assert forged == {
        "data": {
            "resetPassword": {
                "errors": [
                    {
                        "code": "RECOVERY_CODE_INVALID",
                        "message": "This code is not valid or was used already.",
                        "field": "code",
                    }
                ]
            }
        }
    }
