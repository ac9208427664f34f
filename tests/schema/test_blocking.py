"""Blocking through GraphQL: a support block ends the target's web access at once; products show
their block in the members list; mailboxes in maintenance (BLK-1…BLK-3)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gardien.models.enums import ProductKind, Role
from gardien.models.products import Product, ProductGrant
from gardien.resolvers import accounts, mailboxes, support
from gardien.resolvers.services import RequestMeta, Services
from gardien.schema.relay import encode_id
from tests import factories
from tests.conftest import GraphQLClient

pytestmark = pytest.mark.usefixtures("database")

SUPPORT_BLOCK = """
mutation SupportBlockUser($input: SupportBlockUserInput!) {
  supportBlockUser(input: $input) { blockedAt errors { code message field } }
}"""
SUPPORT_UNBLOCK = """
mutation SupportUnblockUser($input: SupportUnblockUserInput!) {
  supportUnblockUser(input: $input) { unblockedAt errors { code message field } }
}"""
SIGN_IN = """
mutation SignIn($input: SignInInput!) {
  signIn(input: $input) { session { token } errors { code } }
}"""
VIEWER = "{ viewer { id } }"


async def _token(services: Services, email: str) -> str:
    result = await accounts.sign_in(
        services, RequestMeta(ip="198.51.100.1"), login=email, password=factories.PASSWORD
    )
    assert result.session is not None
    return result.session.token


async def test_blk3_support_block_through_graphql_ends_the_targets_web_access_at_once(
    services: Services, gql: GraphQLClient
) -> None:
    legal = await factories.sign_up(services, email="legal@example.test")
    legal.user.support_code_encrypted = services.keyring.encrypt(b"246810", "support-code")
    await legal.user.save(update_fields=["support_code_encrypted"])
    target = await factories.add_member(
        services, legal.organisation, Role.EXTERNAL, "target@example.test"
    )
    await factories.sign_up(services, email="agent@provider.example")
    await support.set_support_agent(services, "agent@provider.example", agent=True)
    target_token = await _token(services, "target@example.test")
    agent_token = await _token(services, "agent@provider.example")
    request = {
        "organisationId": encode_id("Organisation", legal.organisation.id),
        "userId": encode_id("User", target.user.id),
        "requesterSupportCode": "246 810",
        "justification": "Account taken over, reported by the legal representative.",
    }
    gql.token = target_token
    before = await gql.post(VIEWER)

    gql.token = agent_token
    blocked = await gql(SUPPORT_BLOCK, {"input": request})
    gql.token = target_token
    after = await gql.post(VIEWER)
    gql.token = None
    sign_in = await gql(
        SIGN_IN, {"input": {"login": "target@example.test", "password": factories.PASSWORD}}
    )
    gql.token = agent_token
    unblocked = await gql(SUPPORT_UNBLOCK, {"input": {**request, "justification": "Resolved."}})
    gql.token = None
    again = await gql(
        SIGN_IN, {"input": {"login": "target@example.test", "password": factories.PASSWORD}}
    )

    assert before.status_code == 200
    assert blocked["data"]["supportBlockUser"]["errors"] == []
    assert blocked["data"]["supportBlockUser"]["blockedAt"] is not None
    assert after.status_code == 401
    assert sign_in["data"]["signIn"] == {"session": None, "errors": [{"code": "ACCOUNT_BLOCKED"}]}
    assert unblocked["data"]["supportUnblockUser"]["errors"] == []
    assert again["data"]["signIn"]["errors"] == []


async def test_blk3_support_block_with_a_bad_id_is_a_typed_error(
    services: Services, gql: GraphQLClient
) -> None:
    await factories.sign_up(services, email="agent@provider.example")
    await support.set_support_agent(services, "agent@provider.example", agent=True)
    gql.token = await _token(services, "agent@provider.example")

    body = await gql(
        SUPPORT_BLOCK,
        {
            "input": {
                "organisationId": "not-an-id",
                "userId": "not-an-id",
                "requesterSupportCode": "1",
                "justification": "x",
            }
        },
    )

    errors = body["data"]["supportBlockUser"]["errors"]
    assert [(e["code"], e["field"]) for e in errors] == [("INVALID_ID", "organisationId")]


MEMBERS_PRODUCTS = """
query($id: ID!) { organisation(id: $id) { members(first: 10) { edges { node {
  productAccess { name managementBlocked mailMaintenance } } } } } }"""
BLOCK = """
mutation($input: BlockProductManagementInput!) {
  blockProductManagement(input: $input) { product { managementBlocked } errors { code } }
}"""


async def test_blk1_members_list_shows_a_granted_products_block(
    services: Services, gql: GraphQLClient
) -> None:
    legal = await factories.sign_up(services, email="legal@example.test")
    member = await factories.add_member(services, legal.organisation, Role.COLLABORATOR)
    drive = await Product.create(
        organisation=legal.organisation,
        kind=ProductKind.WEB_DRIVE,
        name="Drive",
        created_at=services.clock.now(),
    )
    await ProductGrant.create(membership=member.membership, product=drive)
    gql.token = legal.session.token

    blocked = await gql(BLOCK, {"input": {"productId": encode_id("Product", drive.id)}})
    listed = await gql(MEMBERS_PRODUCTS, {"id": encode_id("Organisation", legal.organisation.id)})

    assert blocked["data"]["blockProductManagement"] == {
        "product": {"managementBlocked": True},
        "errors": [],
    }
    edges = listed["data"]["organisation"]["members"]["edges"]
    assert [e["node"]["productAccess"] for e in edges] == [
        [],
        [{"name": "Drive", "managementBlocked": True, "mailMaintenance": False}],
    ]


MAILBOX_MESSAGES = """
query($id: ID!) { node(id: $id) { ... on Product { mailboxes(first: 5) { edges { node {
  address messages(first: 5) { totalCount edges { node { subject sender } } } } } } } } }"""
MAINTENANCE = """
mutation($input: SetMailMaintenanceInput!) {
  setMailMaintenance(input: $input) { product { mailMaintenance } errors { code } }
}"""
CREATE_MAILBOX = """
mutation($input: CreateMailboxInput!) {
  createMailbox(input: $input) { mailbox { address } errors { code field } }
}"""


async def test_blk2_mailbox_messages_refused_in_maintenance_through_graphql(
    services: Services, gql: GraphQLClient
) -> None:
    legal = await factories.sign_up(services, email="legal@example.test")
    mail = await Product.create(
        organisation=legal.organisation,
        kind=ProductKind.MAIL_SERVICE,
        name="Mail",
        created_at=services.clock.now(),
    )
    await factories.add_domain(
        services, legal.organisation, "legal-mail.ch", expires_in=timedelta(days=200)
    )
    gql.token = legal.session.token
    product_id = encode_id("Product", mail.id)
    created = await gql(
        CREATE_MAILBOX, {"input": {"productId": product_id, "address": "hello@legal-mail.ch"}}
    )
    await gql(MAINTENANCE, {"input": {"productId": product_id, "enabled": True}})
    await mailboxes.accept_incoming_mail(
        services, "hello@legal-mail.ch", sender="a@example.test", subject="Hi", body="Body"
    )

    during = await gql(MAILBOX_MESSAGES, {"id": product_id})
    await gql(MAINTENANCE, {"input": {"productId": product_id, "enabled": False}})
    after = await gql(MAILBOX_MESSAGES, {"id": product_id})

    assert created["data"]["createMailbox"] == {
        "mailbox": {"address": "hello@legal-mail.ch"},
        "errors": [],
    }
    assert [e["extensions"]["code"] for e in during["errors"]] == ["MAIL_MAINTENANCE"]
    mailbox = after["data"]["node"]["mailboxes"]["edges"][0]["node"]
    assert mailbox["messages"] == {
        "totalCount": 1,
        "edges": [{"node": {"subject": "Hi", "sender": "a@example.test"}}],
    }
