"""Membership management through GraphQL: payloads with their whole errors lists, the member
directory by role (POL-2) at a fixed statement count, bad input refused with stable codes."""

from __future__ import annotations

from typing import Any

import pytest

from gardien.models.activity import ActivityEvent
from gardien.models.enums import ProductKind, Role
from gardien.models.organisations import Membership, Organisation
from gardien.models.products import Product, ProductGrant
from gardien.resolvers import accounts
from gardien.resolvers.services import RequestMeta, Services
from gardien.schema.relay import encode_id
from tests import factories
from tests.conftest import GraphQLClient
from tests.querycount import count_queries

pytestmark = pytest.mark.usefixtures("database")

MEMBERS = """
query($id: ID!, $first: Int, $twoFactorEnabled: Boolean) {
  organisation(id: $id) {
    members(first: $first, twoFactorEnabled: $twoFactorEnabled) {
      totalCount
      edges { node { id role productAccess { id } contactPreferences { billing security }
        user { email twoFactorEnabled } } }
    }
  }
}"""
CHANGE_ROLE = """
mutation($input: ChangeMemberRoleInput!) {
  changeMemberRole(input: $input) {
    membership { id role }
    errors { code message field }
  }
}"""
SET_PRODUCTS = """
mutation($input: SetMemberProductAccessInput!) {
  setMemberProductAccess(input: $input) {
    membership { id productAccess { id } }
    errors { code message field }
  }
}"""
SET_PREFERENCES = """
mutation($input: SetContactPreferencesInput!) {
  setContactPreferences(input: $input) {
    membership { id contactPreferences { billing technical security domainExpiry } }
    errors { code message field }
  }
}"""
SWITCH = """
mutation($input: SwitchOrganisationInput!) {
  switchOrganisation(input: $input) { organisation { id name } errors { code message field } }
}"""
SUPPORT_PLAN = """
mutation($input: SetSupportPlanInput!) {
  setSupportPlan(input: $input) { organisation { id supportPlan } errors { code message field } }
}"""
SHARING = """
query($id: ID!) {
  organisation(id: $id) {
    sharingRecipients(first: 10) { totalCount edges { node { role user { email } } } }
  }
}"""


async def _token(services: Services, email: str) -> str:
    result = await accounts.sign_in(
        services, RequestMeta(ip="198.51.100.1"), login=email, password=factories.PASSWORD
    )
    assert result.session is not None
    return result.session.token


async def _organisation(services: Services) -> tuple[Organisation, dict[Role, int], Product]:
    owner = await factories.sign_up(services, email="legal@example.test")
    organisation = owner.organisation
    ids = {Role.LEGAL_REPRESENTATIVE: (await Membership.get(user_id=owner.user.id)).id}
    for role, email in (
        (Role.ADMINISTRATOR, "admin@example.test"),
        (Role.COLLABORATOR, "collab@example.test"),
        (Role.EXTERNAL, "external@example.test"),
    ):
        ids[role] = (await factories.add_member(services, organisation, role, email)).membership.id
    drive = await Product.create(
        organisation=organisation,
        kind=ProductKind.WEB_DRIVE,
        name="Drive",
        created_at=services.clock.now(),
    )
    await ProductGrant.create(membership_id=ids[Role.COLLABORATOR], product=drive)
    return organisation, ids, drive


def _membership(membership_id: int) -> str:
    return encode_id("Membership", membership_id)


async def test_pol2_collaborator_sees_names_emails_and_roles_of_others_only(
    services: Services, gql: GraphQLClient
) -> None:
    organisation, _, _ = await _organisation(services)
    gql.token = await _token(services, "collab@example.test")
    org_id = encode_id("Organisation", organisation.id)

    body = await gql(MEMBERS, {"id": org_id, "first": 10})
    filtered = await gql(MEMBERS, {"id": org_id, "first": 10, "twoFactorEnabled": False})

    nodes = [e["node"] for e in body["data"]["organisation"]["members"]["edges"]]
    assert [
        (n["user"]["email"], n["role"], n["user"]["twoFactorEnabled"], n["productAccess"])
        for n in nodes
    ] == [
        ("legal@example.test", "LEGAL_REPRESENTATIVE", None, None),
        ("admin@example.test", "ADMINISTRATOR", None, None),
        (
            "collab@example.test",
            "COLLABORATOR",
            False,
            [{"id": nodes[2]["productAccess"][0]["id"]}],
        ),
        ("external@example.test", "EXTERNAL", None, None),
    ]
    assert [n["contactPreferences"] for n in nodes] == [
        None,
        None,
        {"billing": False, "security": True},
        None,
    ]
    assert filtered["data"] == {"organisation": None}
    assert [(e["extensions"]["code"], e["message"]) for e in filtered["errors"]] == [
        (
            "FORBIDDEN",
            "Only administrators and legal representatives may filter members on their 2FA status.",
        )
    ]


async def test_pol2_members_page_as_a_collaborator_stays_at_three_statements(
    services: Services, gql: GraphQLClient
) -> None:
    organisation, _, drive = await _organisation(services)
    for index in range(30):
        member = await factories.add_member(services, organisation, Role.COLLABORATOR)
        await ProductGrant.create(membership=member.membership, product=drive)
        if index % 3 == 0:
            await factories.confirm_totp(services, member.user)
    gql.token = await _token(services, "collab@example.test")
    org_id = encode_id("Organisation", organisation.id)
    await gql(MEMBERS, {"id": org_id, "first": 1})  # warm caches outside the measurement

    with count_queries() as statements:
        body = await gql(MEMBERS, {"id": org_id, "first": 34})

    assert len(body["data"]["organisation"]["members"]["edges"]) == 34
    # Session, caller's membership with organisation and policy, the page.
    assert len(statements) == 3, statements


async def test_pol2_membership_node_hides_others_security_from_a_collaborator(
    services: Services, gql: GraphQLClient
) -> None:
    _, ids, _ = await _organisation(services)
    gql.token = await _token(services, "collab@example.test")
    query = (
        "query($id: ID!) { node(id: $id) { ... on Membership { role productAccess { id }"
        " user { twoFactorEnabled } } } }"
    )

    other = await gql(query, {"id": _membership(ids[Role.ADMINISTRATOR])})
    own = await gql(query, {"id": _membership(ids[Role.COLLABORATOR])})

    assert other == {
        "data": {
            "node": {
                "role": "ADMINISTRATOR",
                "productAccess": None,
                "user": {"twoFactorEnabled": None},
            }
        }
    }
    assert own["data"]["node"]["user"] == {"twoFactorEnabled": False}
    assert len(own["data"]["node"]["productAccess"]) == 1


async def test_org6_change_member_role_payload_and_whole_errors_lists(
    services: Services, gql: GraphQLClient
) -> None:
    _, ids, _ = await _organisation(services)
    gql.token = await _token(services, "admin@example.test")

    changed = await gql(
        CHANGE_ROLE,
        {"input": {"membershipId": _membership(ids[Role.EXTERNAL]), "role": "COLLABORATOR"}},
    )
    on_legal = await gql(
        CHANGE_ROLE,
        {
            "input": {
                "membershipId": _membership(ids[Role.LEGAL_REPRESENTATIVE]),
                "role": "ADMINISTRATOR",
            }
        },
    )
    malformed = await gql(
        CHANGE_ROLE, {"input": {"membershipId": "not-an-id", "role": "COLLABORATOR"}}
    )
    wrong_type = await gql(
        CHANGE_ROLE,
        {"input": {"membershipId": encode_id("Product", 1), "role": "COLLABORATOR"}},
    )

    assert changed["data"]["changeMemberRole"] == {
        "membership": {"id": _membership(ids[Role.EXTERNAL]), "role": "COLLABORATOR"},
        "errors": [],
    }
    assert on_legal["data"]["changeMemberRole"] == {
        "membership": None,
        "errors": [
            {
                "code": "FORBIDDEN",
                "message": "Only administrators and legal representatives manage members;"
                " only a legal representative manages legal representatives.",
                "field": None,
            }
        ],
    }
    assert malformed["data"]["changeMemberRole"] == {
        "membership": None,
        "errors": [
            {"code": "INVALID_ID", "message": "This is not a valid ID.", "field": "membershipId"}
        ],
    }
    # Another type's ID names no membership: not found, as everywhere in the API.
    assert wrong_type["data"]["changeMemberRole"] == {
        "membership": None,
        "errors": [
            {"code": "NOT_FOUND", "message": "No such membership.", "field": "membershipId"}
        ],
    }


async def test_org6_unknown_role_is_refused_before_anything_runs(
    services: Services, gql: GraphQLClient
) -> None:
    _, ids, _ = await _organisation(services)
    gql.token = await _token(services, "legal@example.test")
    events_before = await ActivityEvent.all().count()

    body = await gql(
        CHANGE_ROLE,
        {"input": {"membershipId": _membership(ids[Role.EXTERNAL]), "role": "OWNER"}},
    )

    assert "data" not in body or body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
    assert (await Membership.get(id=ids[Role.EXTERNAL])).role == Role.EXTERNAL
    assert await ActivityEvent.all().count() == events_before


async def test_org3_set_member_product_access_payload(
    services: Services, gql: GraphQLClient
) -> None:
    organisation, ids, drive = await _organisation(services)
    mail = await Product.create(
        organisation=organisation,
        kind=ProductKind.MAIL_SERVICE,
        name="Mail",
        created_at=services.clock.now(),
    )
    gql.token = await _token(services, "legal@example.test")
    target = _membership(ids[Role.EXTERNAL])

    granted = await gql(
        SET_PRODUCTS,
        {
            "input": {
                "membershipId": target,
                "productIds": [encode_id("Product", drive.id), encode_id("Product", mail.id)],
            }
        },
    )
    unknown = await gql(
        SET_PRODUCTS,
        {"input": {"membershipId": target, "productIds": [encode_id("Product", 999_999)]}},
    )

    assert granted["data"]["setMemberProductAccess"] == {
        "membership": {
            "id": target,
            "productAccess": [
                {"id": encode_id("Product", drive.id)},
                {"id": encode_id("Product", mail.id)},
            ],
        },
        "errors": [],
    }
    assert unknown["data"]["setMemberProductAccess"] == {
        "membership": None,
        "errors": [{"code": "NOT_FOUND", "message": "No such product.", "field": "productIds"}],
    }


async def test_org4_a_member_sets_their_own_contact_preferences(
    services: Services, gql: GraphQLClient
) -> None:
    _, ids, _ = await _organisation(services)
    gql.token = await _token(services, "external@example.test")
    preferences = {"billing": True, "technical": False, "security": True, "domainExpiry": True}

    own = await gql(
        SET_PREFERENCES,
        {"input": {"membershipId": _membership(ids[Role.EXTERNAL]), **preferences}},
    )
    other = await gql(
        SET_PREFERENCES,
        {"input": {"membershipId": _membership(ids[Role.COLLABORATOR]), **preferences}},
    )

    assert own["data"]["setContactPreferences"] == {
        "membership": {"id": _membership(ids[Role.EXTERNAL]), "contactPreferences": preferences},
        "errors": [],
    }
    assert other["data"]["setContactPreferences"] == {
        "membership": None,
        "errors": [
            {
                "code": "FORBIDDEN",
                "message": "Only administrators, legal representatives and the member themself"
                " set these preferences.",
                "field": None,
            }
        ],
    }


async def test_org2_switch_organisation_then_viewer_works_in_it(
    services: Services, gql: GraphQLClient
) -> None:
    _, ids, _ = await _organisation(services)
    other = await factories.sign_up(services, email="other@example.test", name="Other SA")
    collaborator_user_id = (await Membership.get(id=ids[Role.COLLABORATOR])).user_id
    await Membership.create(
        organisation=other.organisation,
        user_id=collaborator_user_id,
        role=Role.EXTERNAL,
        created_at=services.clock.now(),
    )
    stranger = await factories.sign_up(services, email="stranger@example.test")
    gql.token = await _token(services, "collab@example.test")
    other_id = encode_id("Organisation", other.organisation.id)

    switched = await gql(SWITCH, {"input": {"organisationId": other_id}})
    viewer = await gql("{ viewer { currentOrganisation { id } } }")
    refused = await gql(
        SWITCH,
        {"input": {"organisationId": encode_id("Organisation", stranger.organisation.id)}},
    )

    assert switched["data"]["switchOrganisation"] == {
        "organisation": {"id": other_id, "name": "Other SA"},
        "errors": [],
    }
    assert viewer["data"]["viewer"]["currentOrganisation"] == {"id": other_id}
    assert refused["data"]["switchOrganisation"] == {
        "organisation": None,
        "errors": [{"code": "NOT_FOUND", "message": "No such organisation.", "field": None}],
    }


async def test_org7_set_support_plan_payload(services: Services, gql: GraphQLClient) -> None:
    organisation, _, _ = await _organisation(services)
    org_id = encode_id("Organisation", organisation.id)
    variables = {"input": {"organisationId": org_id, "plan": "PREMIUM"}}
    gql.token = await _token(services, "collab@example.test")
    refused = await gql(SUPPORT_PLAN, variables)
    gql.token = await _token(services, "admin@example.test")

    subscribed = await gql(SUPPORT_PLAN, variables)

    assert refused["data"]["setSupportPlan"] == {
        "organisation": None,
        "errors": [
            {
                "code": "FORBIDDEN",
                "message": "Only administrators and legal representatives manage the support plan.",
                "field": None,
            }
        ],
    }
    assert subscribed["data"]["setSupportPlan"] == {
        "organisation": {"id": org_id, "supportPlan": "PREMIUM"},
        "errors": [],
    }


async def test_org5_sharing_recipients_leave_external_members_out(
    services: Services, gql: GraphQLClient
) -> None:
    organisation, _, _ = await _organisation(services)
    gql.token = await _token(services, "external@example.test")

    body: dict[str, Any] = await gql(SHARING, {"id": encode_id("Organisation", organisation.id)})

    recipients = body["data"]["organisation"]["sharingRecipients"]
    assert recipients["totalCount"] == 3
    assert [(e["node"]["role"], e["node"]["user"]["email"]) for e in recipients["edges"]] == [
        ("LEGAL_REPRESENTATIVE", "legal@example.test"),
        ("ADMINISTRATOR", "admin@example.test"),
        ("COLLABORATOR", "collab@example.test"),
    ]
