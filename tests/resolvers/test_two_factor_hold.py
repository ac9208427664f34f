"""POL-4 below the root: a member held to 2FA reaches no organisation data through `viewer`.

The operation gate lets `viewer` run (the held member must see who they are, which organisation
requires 2FA and how to leave); the organisation's lists hanging from it must stay closed until
a second factor is enrolled, as they are through `organisation(id)`."""

from __future__ import annotations

import pytest

from gardien.models.enums import ProductKind, Role
from gardien.models.mail import Mailbox, MailMessage
from gardien.models.organisations import Membership
from gardien.models.products import Product, ProductGrant
from gardien.resolvers import accounts, security_policy, sessions
from gardien.resolvers.authz import RequestScope
from gardien.resolvers.errors import ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from tests import factories
from tests.conftest import GraphQLClient

pytestmark = pytest.mark.usefixtures("database")

# Every list an Organisation holds, each asked alone below viewer.currentOrganisation.
ORGANISATION_LISTS = {
    "members": "members(first: 5) { edges { node { role user { email twoFactorEnabled } } } }",
    "sharingRecipients": "sharingRecipients(first: 5) { edges { node { id } } }",
    "activity": "activity(first: 5) { edges { node { type } } }",
    "domains": "domains(first: 5) { edges { node { id } } }",
    "products": "products(first: 5) { edges { node { id } } }",
    "invitations": "invitations(first: 5) { totalCount }",
    "serviceAccounts": "serviceAccounts { id }",
    "webhookEndpoints": "webhookEndpoints { id }",
}


async def _held_administrator(services: Services, meta: RequestMeta) -> str:
    """An administrator of an organisation that now requires 2FA, signed in without it."""
    legal = await factories.sign_up(services, email="legal@example.test")
    await factories.add_member(services, legal.organisation, Role.ADMINISTRATOR, "adm@example.test")
    actor = await sessions.authenticate(services, legal.session.token)
    assert actor is not None
    await security_policy.update_policy(
        services, meta, RequestScope(actor), organisation_id=legal.organisation.id,
        require_two_factor=True, confirm=True,
    )  # fmt: skip
    signed_in = await accounts.sign_in(
        services, meta, login="adm@example.test", password=factories.PASSWORD
    )
    assert signed_in.session is not None
    return signed_in.session.token


@pytest.mark.parametrize("field", sorted(ORGANISATION_LISTS))
async def test_pol4_viewer_reaches_no_organisation_list_while_enrolment_is_required(
    services: Services, meta: RequestMeta, gql: GraphQLClient, field: str
) -> None:
    gql.token = await _held_administrator(services, meta)
    query = f"{{ viewer {{ email currentOrganisation {{ id {ORGANISATION_LISTS[field]} }} }} }}"
    through_memberships = (
        "{ viewer { memberships(first: 5) { edges { node { role organisation {"
        f" {ORGANISATION_LISTS[field]} }} }} }} }} }} }}"
    )

    body = await gql(query)
    nested = await gql(through_memberships)

    assert body["data"]["viewer"]["email"] == "adm@example.test"
    assert body["data"]["viewer"]["currentOrganisation"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == [
        ErrorCode.TWO_FACTOR_ENROLMENT_REQUIRED.value
    ]
    assert [e["extensions"]["code"] for e in nested["errors"]] == [
        ErrorCode.TWO_FACTOR_ENROLMENT_REQUIRED.value
    ]


async def test_pol4_viewer_still_names_the_organisation_and_its_policy_while_held(
    services: Services, meta: RequestMeta, gql: GraphQLClient
) -> None:
    """What the held member needs to understand the hold and to leave stays readable."""
    gql.token = await _held_administrator(services, meta)

    body = await gql(
        "{ viewer { email currentOrganisation { id name securityPolicy { requireTwoFactor } }"
        " memberships(first: 5) { edges { node { id role organisation { id name } } } } } }"
    )

    assert "errors" not in body, body
    viewer = body["data"]["viewer"]
    assert viewer["currentOrganisation"]["securityPolicy"] == {"requireTwoFactor": True}
    assert [e["node"]["role"] for e in viewer["memberships"]["edges"]] == ["ADMINISTRATOR"]


async def test_pol4_viewer_reaches_the_organisation_lists_once_not_held(
    services: Services, meta: RequestMeta, gql: GraphQLClient
) -> None:
    """The same query by the legal representative whose organisation requires nothing."""
    legal = await factories.sign_up(services, email="legal@example.test")
    gql.token = legal.session.token

    body = await gql(
        "{ viewer { currentOrganisation { "
        + " ".join(ORGANISATION_LISTS[f] for f in sorted(ORGANISATION_LISTS))
        + " } } }"
    )

    assert "errors" not in body, body
    members = body["data"]["viewer"]["currentOrganisation"]["members"]["edges"]
    assert [m["node"]["user"]["email"] for m in members] == ["legal@example.test"]


async def test_pol4_viewer_reaches_no_mail_through_product_access_while_held(
    services: Services, meta: RequestMeta, gql: GraphQLClient
) -> None:
    """viewer.memberships.productAccess leads to the mail service's mailboxes and messages:
    reading mail in a web session is not enrolling (POL-4; app sessions keep syncing it)."""
    gql.token = await _held_administrator(services, meta)
    membership = await Membership.get(user__email="adm@example.test")
    now = services.clock.now()
    mail = await Product.create(
        organisation_id=membership.organisation_id, kind=ProductKind.MAIL_SERVICE,
        name="Mail", created_at=now,
    )  # fmt: skip
    await ProductGrant.create(membership=membership, product=mail)
    mailbox = await Mailbox.create(product=mail, address="adm@team.example", created_at=now)
    await MailMessage.create(
        mailbox=mailbox, sender="a@b.example", subject="Payroll", body="secret", received_at=now
    )

    body = await gql(
        "{ viewer { memberships(first: 5) { edges { node { productAccess { name"
        " mailboxes(first: 5) { edges { node { address messages(first: 5)"
        " { edges { node { subject body } } } } } } } } } } } }"
    )

    assert "Payroll" not in str(body["data"])
    assert [e["extensions"]["code"] for e in body["errors"]] == [
        ErrorCode.TWO_FACTOR_ENROLMENT_REQUIRED.value
    ]
