"""Actions through an integrator token name the token in their activity events (API-6)."""

from __future__ import annotations

import pytest

from gardien.models.activity import ActivityEvent
from gardien.models.enums import Role
from gardien.resolvers import accounts, tokens
from gardien.resolvers.services import RequestMeta, Services
from gardien.schema.relay import encode_id
from tests import factories
from tests.conftest import GraphQLClient

pytestmark = pytest.mark.usefixtures("database")

CHANGE_ROLE = """
mutation($input: ChangeMemberRoleInput!) {
  changeMemberRole(input: $input) { membership { role } errors { code } }
}"""


async def test_api6_act1_role_change_through_a_service_account_names_it_in_the_event(
    services: Services, gql: GraphQLClient
) -> None:
    legal = await factories.sign_up(services, email="legal@example.test")
    await factories.add_member(services, legal.organisation, Role.ADMINISTRATOR, "adm@example.test")
    member = await factories.add_member(services, legal.organisation, Role.COLLABORATOR)
    admin = await factories.signed_in_scope(services, "adm@example.test")
    issued = await tokens.create_service_account(
        services,
        RequestMeta(),
        admin,
        legal.organisation.id,
        name="HR sync",
        role=Role.ADMINISTRATOR,
        scopes=["members:write"],
    )
    gql.token = issued.secret

    body = await gql(
        CHANGE_ROLE,
        {
            "input": {
                "membershipId": encode_id("Membership", member.membership.id),
                "role": "EXTERNAL",
            }
        },
    )

    assert body["data"]["changeMemberRole"] == {"membership": {"role": "EXTERNAL"}, "errors": []}
    event = await ActivityEvent.get(type="member.role_changed")
    assert (event.actor_id, event.subject_id) == (admin.actor.user_id, member.user.id)
    assert event.data["via_token"] == {"id": issued.token.id, "kind": "service_account"}


async def test_api6_act1_role_change_through_a_personal_token_names_it_and_a_session_does_not(
    services: Services, gql: GraphQLClient
) -> None:
    legal = await factories.sign_up(services, email="legal@example.test")
    first = await factories.add_member(services, legal.organisation, Role.COLLABORATOR)
    second = await factories.add_member(services, legal.organisation, Role.COLLABORATOR)
    scope = await factories.signed_in_scope(services, "legal@example.test")
    issued = await tokens.create_personal_access_token(
        services, RequestMeta(), scope, label="Script", scopes=["members:write"]
    )

    signed_in = await accounts.sign_in(
        services, RequestMeta(), login="legal@example.test", password=factories.PASSWORD
    )
    assert signed_in.session is not None

    for credential, target in ((issued.secret, first), (signed_in.session.token, second)):
        gql.token = credential
        body = await gql(
            CHANGE_ROLE,
            {
                "input": {
                    "membershipId": encode_id("Membership", target.membership.id),
                    "role": "EXTERNAL",
                }
            },
        )
        assert body["data"]["changeMemberRole"]["errors"] == []

    by_token, by_session = await ActivityEvent.filter(type="member.role_changed").order_by("id")
    assert by_token.data["via_token"] == {"id": issued.token.id, "kind": "personal"}
    assert "via_token" not in by_session.data
