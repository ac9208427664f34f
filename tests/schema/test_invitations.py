"""Invitations through GraphQL: payloads and typed errors, the session cookie of a newcomer, the
managers' list and node() (INV-1…INV-5, ORG-2, API-2)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from gardien.clock import ManualClock
from gardien.mail.templates import links_in
from gardien.models.activity import ActivityEvent
from gardien.models.enums import Role
from gardien.models.invitations import Invitation
from gardien.models.organisations import Membership
from gardien.models.outbox import OutboxMessage
from gardien.models.products import Product
from gardien.models.users import User
from gardien.resolvers import accounts
from gardien.resolvers.services import RequestMeta, Services
from gardien.schema.relay import encode_id
from tests import factories
from tests.conftest import GraphQLClient

pytestmark = pytest.mark.usefixtures("database")

ERRORS = "errors { code message field }"
INVITE = f"""
mutation InviteMember($input: InviteMemberInput!) {{
  inviteMember(input: $input) {{
    invitation {{ id email role status expiresAt sendCount productIds
                  contactPreferences {{ billing technical security domainExpiry }} }}
    {ERRORS}
  }}
}}"""
ACCEPT = f"""
mutation AcceptInvitation($input: AcceptInvitationInput!) {{
  acceptInvitation(input: $input) {{
    membership {{ id role organisation {{ id name }} user {{ email displayName }}
                  productAccess {{ id }} }}
    session {{ token expiresAt }}
    {ERRORS}
  }}
}}"""
DECLINE = f"""
mutation DeclineInvitation($input: DeclineInvitationInput!) {{
  declineInvitation(input: $input) {{ {ERRORS} }}
}}"""
REVOKE = f"""
mutation RevokeInvitation($input: RevokeInvitationInput!) {{
  revokeInvitation(input: $input) {{ invitation {{ id status }} {ERRORS} }}
}}"""
RESEND = f"""
mutation ResendInvitation($input: ResendInvitationInput!) {{
  resendInvitation(input: $input) {{ invitation {{ id status sendCount expiresAt }} {ERRORS} }}
}}"""
INVITATIONS = """
query Invitations($id: ID!, $status: InvitationStatus) {
  organisation(id: $id) {
    invitations(first: 10, status: $status) {
      totalCount
      edges { node { id email role status } }
    }
  }
}"""


async def _token(services: Services, email: str) -> str:
    result = await accounts.sign_in(
        services,
        RequestMeta(ip="198.51.100.1"),
        login=email,
        password=factories.PASSWORD,
        device_cookie=factories.device_cookie(email),
    )
    assert result.session is not None
    return result.session.token


async def _organisation(services: Services) -> tuple[int, dict[str, str]]:
    legal = await factories.sign_up(services, email="legal@example.test", name="Anna Legal")
    for role, email in (
        (Role.ADMINISTRATOR, "admin@example.test"),
        (Role.COLLABORATOR, "collab@example.test"),
    ):
        await factories.add_member(services, legal.organisation, role, email=email)
    tokens = {
        name: await _token(services, f"{name}@example.test")
        for name in ("legal", "admin", "collab")
    }
    return legal.organisation.id, tokens


def _invite_input(organisation_id: int, email: str, role: str = "COLLABORATOR", **more: Any) -> Any:
    return {
        "input": {
            "organisationId": encode_id("Organisation", organisation_id),
            "email": email,
            "role": role,
            **more,
        }
    }


async def _link_token(email: str) -> str:
    message = await OutboxMessage.filter(recipient=email).order_by("-id").first()
    assert message is not None
    (link,) = links_in(message.payload["text"])
    (token,) = parse_qs(urlsplit(link).fragment.partition("?")[2])["token"]
    return token


async def test_inv5_api2_invite_member_answers_the_invitation(
    services: Services, gql: GraphQLClient
) -> None:
    organisation_id, tokens = await _organisation(services)
    product = await Product.create(
        organisation_id=organisation_id,
        kind="WEB_DRIVE",
        name="Drive",
        created_at=services.clock.now(),
    )
    gql.token = tokens["admin"]

    body = await gql(
        INVITE,
        _invite_input(
            organisation_id,
            "newcomer@example.test",
            "EXTERNAL",
            productIds=[encode_id("Product", product.id)],
            contactPreferences={"billing": True, "security": False},
        ),
    )

    invitation = await Invitation.get(email="newcomer@example.test")
    assert body == {
        "data": {
            "inviteMember": {
                "invitation": {
                    "id": encode_id("Invitation", invitation.id),
                    "email": "newcomer@example.test",
                    "role": "EXTERNAL",
                    "status": "PENDING",
                    "expiresAt": (services.clock.now() + timedelta(days=7)).isoformat(),
                    "sendCount": 1,
                    "productIds": [encode_id("Product", product.id)],
                    "contactPreferences": {
                        "billing": True,
                        "technical": False,
                        "security": False,
                        "domainExpiry": False,
                    },
                },
                "errors": [],
            }
        }
    }


@pytest.mark.parametrize(
    ("caller", "email", "role", "extra", "expected"),
    [
        (
            "collab",
            "x@example.test",
            "COLLABORATOR",
            {},
            {
                "code": "FORBIDDEN",
                "message": "Only administrators and legal representatives manage invitations.",
                "field": None,
            },
        ),
        (
            "admin",
            "x@example.test",
            "LEGAL_REPRESENTATIVE",
            {},
            {
                "code": "FORBIDDEN",
                "message": "Only a legal representative may invite a legal representative.",
                "field": "role",
            },
        ),
        (
            "legal",
            "not an e-mail",
            "COLLABORATOR",
            {},
            {"code": "INVALID_INPUT", "message": "Enter a valid e-mail address.", "field": "email"},
        ),
        (
            "legal",
            "collab@example.test",
            "COLLABORATOR",
            {},
            {
                "code": "ALREADY_MEMBER",
                "message": "This person is already a member.",
                "field": "email",
            },
        ),
        (
            "legal",
            "x@example.test",
            "COLLABORATOR",
            {"productIds": [encode_id("Domain", 1)]},
            {"code": "NOT_FOUND", "message": "No such product.", "field": "productIds"},
        ),
        (
            "legal",
            "x@example.test",
            "COLLABORATOR",
            {"productIds": ["%%%"]},
            {"code": "INVALID_ID", "message": "This is not a valid ID.", "field": "productIds"},
        ),
    ],
)
async def test_inv1_inv5_api2_refused_invitations_are_typed_errors_with_nothing_queued(
    services: Services,
    gql: GraphQLClient,
    caller: str,
    email: str,
    role: str,
    extra: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    organisation_id, tokens = await _organisation(services)
    gql.token = tokens[caller]
    events = await ActivityEvent.all().count()

    body = await gql(INVITE, _invite_input(organisation_id, email, role, **extra))

    assert body == {"data": {"inviteMember": {"invitation": None, "errors": [expected]}}}
    assert await Invitation.all().count() == 0
    assert await OutboxMessage.all().count() == 0
    assert await ActivityEvent.all().count() == events


async def test_inv1_an_unknown_role_is_refused_before_anything_runs(
    services: Services, gql: GraphQLClient
) -> None:
    organisation_id, tokens = await _organisation(services)
    gql.token = tokens["legal"]

    response = await gql.post(INVITE, _invite_input(organisation_id, "x@example.test", "OWNER"))

    body = response.json()
    assert response.status_code == 400
    assert "data" not in body
    assert [error["extensions"]["code"] for error in body["errors"]] == ["BAD_USER_INPUT"]
    assert await Invitation.all().count() == 0
    assert await OutboxMessage.all().count() == 0


async def test_inv2_org2_accepting_as_a_newcomer_opens_a_session_with_its_cookie(
    services: Services, gql: GraphQLClient
) -> None:
    organisation_id, tokens = await _organisation(services)
    gql.token = tokens["legal"]
    await gql(INVITE, _invite_input(organisation_id, "newcomer@example.test"))
    gql.token = None

    response = await gql.post(
        ACCEPT,
        {
            "input": {
                "token": await _link_token("newcomer@example.test"),
                "password": "lantern over the river",
                "displayName": "New Comer",
            }
        },
    )

    payload = response.json()["data"]["acceptInvitation"]
    membership = await Membership.get(user__email="newcomer@example.test")
    assert payload["errors"] == []
    assert payload["membership"] == {
        "id": encode_id("Membership", membership.id),
        "role": "COLLABORATOR",
        "organisation": {"id": encode_id("Organisation", organisation_id), "name": "Anna Legal"},
        "user": {"email": "newcomer@example.test", "displayName": "New Comer"},
        "productAccess": [],
    }
    assert len(payload["session"]["token"]) >= 43
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and payload["session"]["token"].lower() in cookie
    gql.token = payload["session"]["token"]
    viewer = await gql("{ viewer { email currentOrganisation { id } } }")
    assert viewer == {
        "data": {
            "viewer": {
                "email": "newcomer@example.test",
                "currentOrganisation": {"id": encode_id("Organisation", organisation_id)},
            }
        }
    }


async def test_inv3_org2_a_signed_in_user_accepts_without_a_new_session(
    services: Services, gql: GraphQLClient
) -> None:
    organisation_id, tokens = await _organisation(services)
    await factories.sign_up(services, email="known@example.test", name="Known")
    gql.token = tokens["legal"]
    await gql(INVITE, _invite_input(organisation_id, "known@example.test", "ADMINISTRATOR"))
    gql.token = await _token(services, "known@example.test")

    response = await gql.post(
        ACCEPT, {"input": {"token": await _link_token("known@example.test"), "makeCurrent": True}}
    )

    payload = response.json()["data"]["acceptInvitation"]
    user = await User.get(email="known@example.test")
    assert (payload["membership"]["role"], payload["session"], payload["errors"]) == (
        "ADMINISTRATOR",
        None,
        [],
    )
    assert "set-cookie" not in response.headers
    assert user.current_organisation_id == organisation_id


async def test_inv4_api2_token_errors_are_typed(
    services: Services, gql: GraphQLClient, clock: ManualClock
) -> None:
    organisation_id, tokens = await _organisation(services)
    gql.token = tokens["legal"]
    await gql(INVITE, _invite_input(organisation_id, "late@example.test"))
    token = await _link_token("late@example.test")
    gql.token = None
    clock.advance(timedelta(days=7, seconds=1))

    expired = await gql(ACCEPT, {"input": {"token": token, "password": "x", "displayName": "x"}})
    forged = await gql(DECLINE, {"input": {"token": "forged"}})

    assert expired == {
        "data": {
            "acceptInvitation": {
                "membership": None,
                "session": None,
                "errors": [
                    {
                        "code": "INVITATION_EXPIRED",
                        "message": "This invitation has expired; ask the organisation to send"
                        " it again.",
                        "field": "token",
                    }
                ],
            }
        }
    }
    assert forged == {
        "data": {
            "declineInvitation": {
                "errors": [
                    {
                        "code": "INVITATION_INVALID",
                        "message": "This invitation link is not valid; it may have been used or"
                        " withdrawn.",
                        "field": "token",
                    }
                ]
            }
        }
    }
    assert await User.filter(email="late@example.test").count() == 0


async def test_inv3_inv4_decline_resend_revoke_and_the_list(
    services: Services, gql: GraphQLClient
) -> None:
    organisation_id, tokens = await _organisation(services)
    gql.token = tokens["admin"]
    for email in ("decline@example.test", "resend@example.test"):
        await gql(INVITE, _invite_input(organisation_id, email))
    declined_id = (await Invitation.get(email="decline@example.test")).id
    resent_id = (await Invitation.get(email="resend@example.test")).id

    gql.token = None
    declined = await gql(DECLINE, {"input": {"token": await _link_token("decline@example.test")}})
    gql.token = tokens["admin"]
    resent = await gql(RESEND, {"input": {"invitationId": encode_id("Invitation", resent_id)}})
    revoked = await gql(REVOKE, {"input": {"invitationId": encode_id("Invitation", resent_id)}})
    revoked_again = await gql(
        REVOKE, {"input": {"invitationId": encode_id("Invitation", resent_id)}}
    )
    wrong_type = await gql(
        REVOKE, {"input": {"invitationId": encode_id("Organisation", organisation_id)}}
    )
    listed = await gql(INVITATIONS, {"id": encode_id("Organisation", organisation_id)})
    declined_only = await gql(
        INVITATIONS, {"id": encode_id("Organisation", organisation_id), "status": "DECLINED"}
    )
    node = await gql(
        "query($id: ID!) { node(id: $id) { ... on Invitation { email status } } }",
        {"id": encode_id("Invitation", declined_id)},
    )
    gql.token = tokens["collab"]
    hidden_node = await gql(
        "query($id: ID!) { node(id: $id) { id } }", {"id": encode_id("Invitation", declined_id)}
    )

    assert declined == {"data": {"declineInvitation": {"errors": []}}}
    assert resent["data"]["resendInvitation"]["invitation"]["sendCount"] == 2
    assert resent["data"]["resendInvitation"]["errors"] == []
    assert revoked == {
        "data": {
            "revokeInvitation": {
                "invitation": {"id": encode_id("Invitation", resent_id), "status": "REVOKED"},
                "errors": [],
            }
        }
    }
    assert revoked_again["data"]["revokeInvitation"]["errors"] == [
        {
            "code": "INVITATION_NOT_PENDING",
            "message": "Only a pending invitation can be revoked or sent again.",
            "field": "invitationId",
        }
    ]
    assert wrong_type["data"]["revokeInvitation"]["errors"] == [
        {"code": "NOT_FOUND", "message": "No such invitation.", "field": "invitationId"}
    ]
    invitations = listed["data"]["organisation"]["invitations"]
    assert invitations["totalCount"] == 2
    assert [(e["node"]["email"], e["node"]["status"]) for e in invitations["edges"]] == [
        ("resend@example.test", "REVOKED"),
        ("decline@example.test", "DECLINED"),
    ]
    assert declined_only["data"]["organisation"]["invitations"]["totalCount"] == 1
    assert node == {"data": {"node": {"email": "decline@example.test", "status": "DECLINED"}}}
    assert hidden_node == {"data": {"node": None}}
