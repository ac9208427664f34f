"""The profile, contacts and login e-mail through GraphQL: payloads, typed errors, and the gate
that holds an account whose login e-mail was deleted (PRO-1…PRO-5, REC-4)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from gardien.models.enums import ProductKind
from gardien.models.outbox import OutboxMessage
from gardien.models.products import Product
from gardien.models.users import User
from gardien.resolvers import accounts, mailboxes, sessions
from gardien.resolvers.authz import RequestScope
from gardien.resolvers.services import RequestMeta, Services
from tests import factories
from tests.conftest import GraphQLClient
from tests.resolvers.test_login_email import _token_sent_to

pytestmark = pytest.mark.usefixtures("database")

UPDATE_PROFILE = """
mutation UpdateProfile($input: UpdateProfileInput!) {
  updateProfile(input: $input) {
    user { displayName language country timezone }
    errors { code message field retryAfterSeconds }
  }
}"""
SET_PHONE = """
mutation SetRecoveryPhone($input: SetRecoveryPhoneInput!) {
  setRecoveryPhone(input: $input) {
    user { recoveryPhone recoveryEmail }
    errors { code field }
  }
}"""
SET_EMAIL = """
mutation SetRecoveryEmail($input: SetRecoveryEmailInput!) {
  setRecoveryEmail(input: $input) { user { recoveryEmail } errors { code field } }
}"""
REGENERATE = "mutation { regenerateSupportCode { supportCode errors { code } } }"
REQUEST_CHANGE = """
mutation RequestLoginEmailChange($input: RequestLoginEmailChangeInput!) {
  requestLoginEmailChange(input: $input) { expiresAt errors { code field } }
}"""
CONFIRM_CHANGE = """
mutation ConfirmLoginEmailChange($input: ConfirmLoginEmailChangeInput!) {
  confirmLoginEmailChange(input: $input) { email errors { code field } }
}"""
VIEWER = "{ viewer { email mustSetLoginEmail supportCode recoveryPhone } }"


async def _signed_in(services: Services, gql: GraphQLClient, email: str) -> None:
    result = await accounts.sign_in(
        services,
        RequestMeta(ip="198.51.100.1"),
        login=email,
        password=factories.PASSWORD,
        device_cookie=factories.device_cookie(email),
    )
    assert result.session is not None
    gql.token = result.session.token


async def _data(gql: GraphQLClient, query: str, variables: dict[str, Any] | None = None) -> Any:
    body = await gql(query, variables)
    assert "errors" not in body, body
    return body["data"]


async def test_pro1_update_profile_answers_the_new_profile_and_null_removes_the_country(
    services: Services, gql: GraphQLClient
) -> None:
    await factories.sign_up(services, email="ada@example.test")
    await _signed_in(services, gql, "ada@example.test")

    first = await _data(
        gql,
        UPDATE_PROFILE,
        {"input": {"language": "it", "country": "li", "timezone": "Europe/Vaduz"}},
    )
    kept = await _data(gql, UPDATE_PROFILE, {"input": {"displayName": "Ada K"}})
    removed = await _data(gql, UPDATE_PROFILE, {"input": {"country": None}})
    bad = await _data(gql, UPDATE_PROFILE, {"input": {"timezone": "Europe/Atlantis"}})

    assert first["updateProfile"] == {
        "user": {
            "displayName": "Ada Lovelace",
            "language": "it",
            "country": "LI",
            "timezone": "Europe/Vaduz",
        },
        "errors": [],
    }
    assert kept["updateProfile"]["user"]["country"] == "LI"
    assert removed["updateProfile"]["user"]["country"] is None
    assert bad["updateProfile"] == {
        "user": None,
        "errors": [
            {
                "code": "INVALID_INPUT",
                "message": "Give an IANA time zone name, such as Europe/Zurich.",
                "field": "timezone",
                "retryAfterSeconds": None,
            }
        ],
    }


async def test_pro1_an_empty_country_is_refused_not_ignored(
    services: Services, gql: GraphQLClient
) -> None:
    await factories.sign_up(services, email="ada@example.test")
    await _signed_in(services, gql, "ada@example.test")
    await _data(gql, UPDATE_PROFILE, {"input": {"country": "CH"}})

    empty = await _data(gql, UPDATE_PROFILE, {"input": {"country": ""}})

    assert empty["updateProfile"] == {
        "user": None,
        "errors": [
            {
                "code": "INVALID_INPUT",
                "message": "Give a country as its ISO 3166-1 two-letter code, such as CH.",
                "field": "country",
                "retryAfterSeconds": None,
            }
        ],
    }
    assert (await User.get(email="ada@example.test")).country == "CH"


async def test_pro2_pro3_payload_shows_the_contacts_just_set(
    services: Services, gql: GraphQLClient
) -> None:
    await factories.sign_up(services, email="ada@example.test")
    await _signed_in(services, gql, "ada@example.test")

    phone = await _data(
        gql,
        SET_PHONE,
        {"input": {"phone": "+41 79 123 45 67", "currentPassword": factories.PASSWORD}},
    )
    email = await _data(
        gql,
        SET_EMAIL,
        {"input": {"email": "backup@example.test", "currentPassword": factories.PASSWORD}},
    )
    wrong = await _data(gql, SET_PHONE, {"input": {"phone": None, "currentPassword": "not it"}})

    assert phone["setRecoveryPhone"] == {
        "user": {"recoveryPhone": "+41791234567", "recoveryEmail": None},
        "errors": [],
    }
    assert email["setRecoveryEmail"] == {
        "user": {"recoveryEmail": "backup@example.test"},
        "errors": [],
    }
    assert wrong["setRecoveryPhone"] == {
        "user": None,
        "errors": [{"code": "INVALID_CREDENTIALS", "field": "currentPassword"}],
    }
    assert (await _data(gql, VIEWER))["viewer"]["recoveryPhone"] == "+41791234567"


async def test_pro4_the_regenerated_code_is_the_one_the_viewer_shows(
    services: Services, gql: GraphQLClient
) -> None:
    await factories.sign_up(services, email="ada@example.test")
    await _signed_in(services, gql, "ada@example.test")
    before = (await _data(gql, VIEWER))["viewer"]["supportCode"]

    regenerated = (await _data(gql, REGENERATE))["regenerateSupportCode"]

    assert regenerated["errors"] == []
    assert regenerated["supportCode"] != before
    assert (await _data(gql, VIEWER))["viewer"]["supportCode"] == regenerated["supportCode"]


async def test_pro5_a_taken_and_a_free_address_get_the_same_answer(
    services: Services, gql: GraphQLClient
) -> None:
    await factories.sign_up(services, email="ada@example.test")
    await factories.sign_up(services, email="grace@example.test")
    await _signed_in(services, gql, "ada@example.test")

    free = await gql(
        REQUEST_CHANGE,
        {"input": {"newEmail": "free@example.test", "currentPassword": factories.PASSWORD}},
    )
    taken = await gql(
        REQUEST_CHANGE,
        {"input": {"newEmail": "grace@example.test", "currentPassword": factories.PASSWORD}},
    )

    assert free == taken
    assert free["data"]["requestLoginEmailChange"]["errors"] == []
    assert free["data"]["requestLoginEmailChange"]["expiresAt"] is not None


async def test_pro5_confirm_sets_the_login_email_even_without_a_session(
    services: Services, gql: GraphQLClient
) -> None:
    await factories.sign_up(services, email="ada@example.test")
    await _signed_in(services, gql, "ada@example.test")
    await _data(
        gql,
        REQUEST_CHANGE,
        {"input": {"newEmail": "ada.new@example.test", "currentPassword": factories.PASSWORD}},
    )
    token = await _token_sent_to("ada.new@example.test")
    gql.token = None

    confirmed = await _data(gql, CONFIRM_CHANGE, {"input": {"token": token}})
    again = await _data(gql, CONFIRM_CHANGE, {"input": {"token": token}})

    assert confirmed["confirmLoginEmailChange"] == {"email": "ada.new@example.test", "errors": []}
    assert again["confirmLoginEmailChange"] == {
        "email": None,
        "errors": [{"code": "LOGIN_EMAIL_CHANGE_INVALID", "field": "token"}],
    }


async def test_rec4_an_account_in_recovery_is_refused_everything_but_its_login_email(
    services: Services, gql: GraphQLClient
) -> None:
    admin = await factories.sign_up(services, email="admin@example.test")
    await factories.add_domain(
        services, admin.organisation, "team-mail.ch", expires_in=timedelta(days=200)
    )
    mail = await Product.create(
        organisation=admin.organisation,
        kind=ProductKind.MAIL_SERVICE,
        name="Mail",
        created_at=services.clock.now(),
    )
    member = await factories.sign_up(services, email="ada@team-mail.ch")
    admin_signed_in = await accounts.sign_in(
        services,
        RequestMeta(ip="198.51.100.1"),
        login="admin@example.test",
        password=factories.PASSWORD,
        device_cookie=factories.device_cookie("admin@example.test"),
    )
    assert admin_signed_in.session is not None
    admin_actor = await sessions.authenticate(services, admin_signed_in.session.token)
    assert admin_actor is not None
    scope = RequestScope(admin_actor)
    mailbox = await mailboxes.create_mailbox(
        services, RequestMeta(), scope, mail.id, "ada@team-mail.ch"
    )
    await _signed_in(services, gql, "ada@team-mail.ch")  # a session from before the deletion
    await mailboxes.delete_mailbox(services, RequestMeta(), scope, mailbox.id)

    viewer = await _data(gql, VIEWER)
    refused = await gql("{ viewer { id } webhookEventTypes }")
    profile = await gql(UPDATE_PROFILE, {"input": {"language": "en"}})
    allowed = await _data(
        gql,
        REQUEST_CHANGE,
        {"input": {"newEmail": "ada@elsewhere.example", "currentPassword": factories.PASSWORD}},
    )

    assert viewer["viewer"]["email"] is None and viewer["viewer"]["mustSetLoginEmail"] is True
    for body in (refused, profile):
        assert body["data"] is None
        assert [e["extensions"]["code"] for e in body["errors"]] == ["LOGIN_EMAIL_REQUIRED"]
    assert allowed["requestLoginEmailChange"]["errors"] == []
    assert (await User.get(id=member.user.id)).language == "fr"
    assert await OutboxMessage.filter(recipient="ada@elsewhere.example").count() == 1
