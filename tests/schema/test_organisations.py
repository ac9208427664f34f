"""Organisation reads through GraphQL: visibility, roles, private fields, pagination, batching."""

from __future__ import annotations

from typing import Any

import pytest

from gardien.models.enums import Role
from gardien.models.products import Product, ProductGrant
from gardien.resolvers import accounts, activity
from gardien.resolvers.services import RequestMeta, Services
from gardien.schema.relay import encode_id
from tests import factories
from tests.conftest import GraphQLClient
from tests.querycount import count_queries

pytestmark = pytest.mark.usefixtures("database")

MEMBERS = """
query OrganisationMembers($id: ID!, $first: Int, $after: String, $twoFactorEnabled: Boolean, $role: Role) {
  organisation(id: $id) {
    id name supportPlan
    securityPolicy { requireTwoFactor updatedAt }
    members(first: $first, after: $after, twoFactorEnabled: $twoFactorEnabled, role: $role) {
      totalCount
      pageInfo { hasNextPage endCursor }
      edges { cursor node { id role productAccess { id name }
        user { id email displayName twoFactorEnabled recoveryPhone supportCode } } }
    }
  }
}"""
ACTIVITY = """
query OrganisationActivity($id: ID!, $first: Int, $after: String) {
  organisation(id: $id) {
    activity(first: $first, after: $after) {
      totalCount
      edges { cursor node { id type occurredAt ip country device actor { id email } subject { id email } } }
      pageInfo { hasNextPage endCursor }
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


def _codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


async def test_act4_organisation_invisible_to_non_members_same_as_unknown_id(
    services: Services, gql: GraphQLClient
) -> None:
    owner = await factories.sign_up(services, email="owner@example.test")
    outsider = await factories.sign_up(services, email="outsider@example.test")
    gql.token = outsider.session.token

    foreign = await gql(MEMBERS, {"id": encode_id("Organisation", owner.organisation.id)})
    unknown = await gql(MEMBERS, {"id": encode_id("Organisation", 999_999)})

    assert foreign["data"] == unknown["data"] == {"organisation": None}
    assert foreign["errors"][0]["message"] == unknown["errors"][0]["message"]
    assert _codes(foreign) == _codes(unknown) == ["NOT_FOUND"]


async def test_api1_members_connection_pages_with_cursors_and_total_count(
    services: Services, gql: GraphQLClient
) -> None:
    owner = await factories.sign_up(services, email="owner@example.test")
    for role in (Role.ADMINISTRATOR, Role.COLLABORATOR, Role.EXTERNAL, Role.COLLABORATOR):
        await factories.add_member(services, owner.organisation, role)
    gql.token = owner.session.token
    org_id = encode_id("Organisation", owner.organisation.id)

    first = await gql(MEMBERS, {"id": org_id, "first": 2})
    page = first["data"]["organisation"]["members"]
    second = await gql(MEMBERS, {"id": org_id, "first": 10, "after": page["pageInfo"]["endCursor"]})
    rest = second["data"]["organisation"]["members"]

    roles = [e["node"]["role"] for e in page["edges"] + rest["edges"]]
    assert roles == [
        "LEGAL_REPRESENTATIVE",
        "ADMINISTRATOR",
        "COLLABORATOR",
        "EXTERNAL",
        "COLLABORATOR",
    ]
    assert (page["totalCount"], page["pageInfo"]["hasNextPage"]) == (5, True)
    assert (rest["totalCount"], rest["pageInfo"]["hasNextPage"]) == (5, False)
    assert rest["pageInfo"]["endCursor"] == rest["edges"][-1]["cursor"]


async def test_pol2_members_filter_on_two_factor_status_and_role(
    services: Services, gql: GraphQLClient
) -> None:
    owner = await factories.sign_up(services, email="owner@example.test")
    with_2fa = await factories.add_member(services, owner.organisation, Role.COLLABORATOR)
    await factories.add_member(services, owner.organisation, Role.COLLABORATOR)
    await factories.confirm_totp(services, with_2fa.user)
    gql.token = owner.session.token
    org_id = encode_id("Organisation", owner.organisation.id)

    enabled = await gql(MEMBERS, {"id": org_id, "twoFactorEnabled": True})
    disabled = await gql(MEMBERS, {"id": org_id, "twoFactorEnabled": False})
    collaborators = await gql(
        MEMBERS, {"id": org_id, "role": "COLLABORATOR", "twoFactorEnabled": False}
    )

    def emails(body: dict[str, Any]) -> list[tuple[str, bool]]:
        edges = body["data"]["organisation"]["members"]["edges"]
        return [(e["node"]["user"]["email"], e["node"]["user"]["twoFactorEnabled"]) for e in edges]

    assert emails(enabled) == [(with_2fa.user.email, True)]
    assert [flag for _, flag in emails(disabled)] == [False, False]
    assert enabled["data"]["organisation"]["members"]["totalCount"] == 1
    assert disabled["data"]["organisation"]["members"]["totalCount"] == 2
    assert collaborators["data"]["organisation"]["members"]["totalCount"] == 1


async def test_org3_members_show_product_access(services: Services, gql: GraphQLClient) -> None:
    owner = await factories.sign_up(services, email="owner@example.test")
    collaborator = await factories.add_member(services, owner.organisation, Role.COLLABORATOR)
    await factories.add_member(services, owner.organisation, Role.EXTERNAL)
    external = await factories.add_member(services, owner.organisation, Role.EXTERNAL)
    products = [
        await Product.create(
            organisation=owner.organisation, kind=kind, name=name, created_at=services.clock.now()
        )
        for kind, name in (("WEB_DRIVE", "Drive"), ("MAIL_SERVICE", "Mail"), ("HOSTING", "Web"))
    ]
    for product in reversed(products):
        await ProductGrant.create(membership=collaborator.membership, product=product)
    await ProductGrant.create(membership=external.membership, product=products[1])
    gql.token = owner.session.token

    body = await gql(MEMBERS, {"id": encode_id("Organisation", owner.organisation.id)})

    access = [
        [p["name"] for p in e["node"]["productAccess"]]
        for e in body["data"]["organisation"]["members"]["edges"]
    ]
    assert access == [[], ["Drive", "Mail", "Web"], [], ["Mail"]]
    assert body["data"]["organisation"]["members"]["totalCount"] == 4


async def test_api1_page_past_the_end_is_empty_with_the_total(
    services: Services, gql: GraphQLClient
) -> None:
    owner = await factories.sign_up(services, email="owner@example.test")
    await factories.add_member(services, owner.organisation, Role.COLLABORATOR)
    gql.token = owner.session.token
    org_id = encode_id("Organisation", owner.organisation.id)
    everything = await gql(MEMBERS, {"id": org_id, "first": 2})
    last = everything["data"]["organisation"]["members"]["pageInfo"]["endCursor"]

    after_last = await gql(MEMBERS, {"id": org_id, "after": last})
    empty_page = await gql(MEMBERS, {"id": org_id, "first": 0})

    for body in (after_last, empty_page):
        members = body["data"]["organisation"]["members"]
        assert (members["edges"], members["totalCount"]) == ([], 2)
        assert members["pageInfo"] == {"hasNextPage": body is empty_page, "endCursor": None}


async def test_pro4_other_members_private_fields_are_hidden(
    services: Services, gql: GraphQLClient
) -> None:
    owner = await factories.sign_up(services, email="owner@example.test")
    member = await factories.add_member(services, owner.organisation, Role.ADMINISTRATOR)
    for user, code in ((owner.user, b"482913"), (member.user, b"771204")):
        user.recovery_phone = "+41791234567"
        user.support_code_encrypted = services.keyring.encrypt(code, "support-code")
        await user.save()
    gql.token = await _token(services, member.user.email or "")

    body = await gql(MEMBERS, {"id": encode_id("Organisation", owner.organisation.id)})
    viewer = await gql("{ viewer { recoveryPhone supportCode } }")

    users = [e["node"]["user"] for e in body["data"]["organisation"]["members"]["edges"]]
    # The owner's entry is someone else's profile; the caller's own entry is theirs to see.
    assert [(u["recoveryPhone"], u["supportCode"]) for u in users] == [
        (None, None),
        ("+41791234567", "771204"),
    ]
    assert viewer["data"]["viewer"] == {"recoveryPhone": "+41791234567", "supportCode": "771204"}


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.LEGAL_REPRESENTATIVE, True),
        (Role.ADMINISTRATOR, True),
        (Role.COLLABORATOR, False),
        (Role.EXTERNAL, False),
    ],
)
async def test_act4_organisation_activity_only_for_administrators(
    services: Services, gql: GraphQLClient, role: Role, allowed: bool
) -> None:
    owner = await factories.sign_up(services, email="owner@example.test")
    caller = (
        owner.user
        if role == Role.LEGAL_REPRESENTATIVE
        else (await factories.add_member(services, owner.organisation, role)).user
    )
    gql.token = await _token(services, caller.email or "")

    body = await gql(ACTIVITY, {"id": encode_id("Organisation", owner.organisation.id), "first": 5})

    if allowed:
        edges = body["data"]["organisation"]["activity"]["edges"]
        # Newest first; members' sign-ins are the organisation's activity too (ACT-4).
        assert [e["node"]["type"] for e in edges] == [
            "sign_in.succeeded",
            "sign_in.succeeded",
            "account.signed_up",
        ]
        assert edges[0]["node"]["actor"]["email"] == caller.email
        assert edges[-1]["node"]["actor"]["email"] == "owner@example.test"
        assert "errors" not in body
    else:
        assert body["data"] == {"organisation": None}
        assert _codes(body) == ["FORBIDDEN"]


async def test_api1_node_resolves_only_what_the_caller_may_see(
    services: Services, gql: GraphQLClient
) -> None:
    owner = await factories.sign_up(services, email="owner@example.test")
    outsider = await factories.sign_up(services, email="outsider@example.test")
    query = "query($id: ID!) { node(id: $id) { id ... on Organisation { name } } }"

    gql.token = owner.session.token
    own = await gql(query, {"id": encode_id("Organisation", owner.organisation.id)})
    gql.token = outsider.session.token
    foreign = await gql(query, {"id": encode_id("Organisation", owner.organisation.id)})
    other_user = await gql(query, {"id": encode_id("User", owner.user.id)})

    assert own["data"]["node"] == {
        "id": encode_id("Organisation", owner.organisation.id),
        "name": "Ada Lovelace",
    }
    assert foreign["data"]["node"] is None
    assert other_user["data"]["node"] is None


async def test_api1_members_sql_statements_do_not_grow_with_page_size(
    services: Services, gql: GraphQLClient
) -> None:
    owner = await factories.sign_up(services, email="owner@example.test")
    drive = await Product.create(
        organisation=owner.organisation,
        kind="WEB_DRIVE",
        name="Drive",
        created_at=services.clock.now(),
    )
    for index in range(100):
        member = await factories.add_member(services, owner.organisation, Role.COLLABORATOR)
        await ProductGrant.create(membership=member.membership, product=drive)
        if index % 3 == 0:
            await factories.confirm_totp(services, member.user)
    gql.token = owner.session.token
    org_id = encode_id("Organisation", owner.organisation.id)
    await gql(MEMBERS, {"id": org_id, "first": 1})  # warm caches outside the measurement

    with count_queries() as small:
        small_body = await gql(MEMBERS, {"id": org_id, "first": 10})
    with count_queries() as large:
        large_body = await gql(MEMBERS, {"id": org_id, "first": 100})

    assert len(small_body["data"]["organisation"]["members"]["edges"]) == 10
    assert len(large_body["data"]["organisation"]["members"]["edges"]) == 100
    # Session, caller's membership with organisation and policy, the page: as by hand.
    assert len(small) == len(large) == 3, (small, large)


async def test_act4_activity_sql_statements_do_not_grow_with_page_size(
    services: Services, gql: GraphQLClient
) -> None:
    owner = await factories.sign_up(services, email="owner@example.test")
    for _ in range(30):
        member = await factories.add_member(services, owner.organisation, Role.COLLABORATOR)
        await activity.member_joined(
            services,
            RequestMeta(),
            user_id=member.user.id,
            organisation_id=owner.organisation.id,
            membership_id=member.membership.id,
            role=Role.COLLABORATOR.value,
            invited_by_id=owner.user.id,
        )
    gql.token = owner.session.token
    org_id = encode_id("Organisation", owner.organisation.id)
    await gql(ACTIVITY, {"id": org_id, "first": 1})

    with count_queries() as small:
        small_body = await gql(ACTIVITY, {"id": org_id, "first": 3})
    with count_queries() as large:
        large_body = await gql(ACTIVITY, {"id": org_id, "first": 30})

    assert len(small_body["data"]["organisation"]["activity"]["edges"]) == 3
    assert len(large_body["data"]["organisation"]["activity"]["edges"]) == 30
    # Session, caller's membership, the page, its count, the actors and subjects, their 2FA
    # status: counted, so a silent query log (0 == 0) cannot pass.
    assert len(small) == len(large) == 6, (small, large)
