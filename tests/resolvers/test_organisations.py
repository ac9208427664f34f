"""Organisation reads called without GraphQL: each asks authz before it reads (ACT-4, ORG-2)."""

from __future__ import annotations

import asyncio

import pytest

from gardien.models.enums import Role
from gardien.models.organisations import Membership
from gardien.resolvers import accounts, activity, organisations, sessions
from gardien.resolvers.authz import RequestScope
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from tests import factories
from tests.conftest import GraphQLClient
from tests.querycount import count_queries

pytestmark = pytest.mark.usefixtures("database")


async def _token(services: Services, email: str) -> str:
    result = await accounts.sign_in(
        services, RequestMeta(ip="198.51.100.1"), login=email, password=factories.PASSWORD
    )
    assert result.session is not None
    return result.session.token


async def _scope(services: Services, email: str) -> RequestScope:
    actor = await sessions.authenticate(services, await _token(services, email))
    assert actor is not None
    return RequestScope(actor)


@pytest.mark.parametrize("role", [Role.COLLABORATOR, Role.EXTERNAL])
async def test_act4_activity_and_its_count_refused_to_members_who_may_not_see_it(
    services: Services, role: Role
) -> None:
    """The count alone would tell a collaborator how busy the organisation's security log is;
    it comes only with the page, from the one function that checks ACT-4."""
    owner = await factories.sign_up(services, email="owner@example.test")
    member = await factories.add_member(services, owner.organisation, role)
    scope = await _scope(services, member.user.email or "")

    with pytest.raises(DomainError) as refused:
        await organisations.activity(scope, owner.organisation.id, first=0, after_id=None)

    assert (refused.value.code, refused.value.message) == (
        ErrorCode.FORBIDDEN,
        "Only administrators and legal representatives see the organisation's activity.",
    )


async def test_act4_activity_count_for_an_administrator(services: Services) -> None:
    owner = await factories.sign_up(services, email="owner@example.test")
    admin = await factories.add_member(services, owner.organisation, Role.ADMINISTRATOR)
    await activity.member_joined(
        services,
        RequestMeta(),
        user_id=admin.user.id,
        organisation_id=owner.organisation.id,
        membership_id=admin.membership.id,
        role=Role.ADMINISTRATOR.value,
        invited_by_id=None,
    )
    scope = await _scope(services, admin.user.email or "")

    counted = await organisations.activity(scope, owner.organisation.id, first=0, after_id=None)

    # The owner's sign-up, the administrator's arrival, and both members' sign-ins (ACT-4:
    # its members' account security events are the organisation's activity too).
    assert await counted.count() == 4


async def test_act4_members_are_not_found_for_non_members(
    services: Services,
) -> None:
    owner = await factories.sign_up(services, email="owner@example.test")
    await factories.sign_up(services, email="outsider@example.test")
    scope = await _scope(services, "outsider@example.test")

    with pytest.raises(DomainError) as page:
        await organisations.members(scope, owner.organisation.id, first=10, after_id=None)

    assert (page.value.code, page.value.message) == (ErrorCode.NOT_FOUND, "No such organisation.")


async def test_pol1_security_policy_is_not_found_for_non_members(services: Services) -> None:
    owner = await factories.sign_up(services, email="owner@example.test")
    await factories.sign_up(services, email="outsider@example.test")
    scope = await _scope(services, "outsider@example.test")

    with pytest.raises(DomainError) as refused:
        await organisations.security_policy(scope, owner.organisation.id)

    assert (refused.value.code, refused.value.message) == (
        ErrorCode.NOT_FOUND,
        "No such organisation.",
    )


async def test_api1_caller_membership_read_once_per_request_even_when_asked_concurrently(
    services: Services,
) -> None:
    """Fields resolved side by side share the request's lookup: one statement, not one each."""
    owner = await factories.sign_up(services, email="owner@example.test")
    scope = await _scope(services, "owner@example.test")

    with count_queries() as statements:
        found = await asyncio.gather(
            organisations.visible_organisation(scope, owner.organisation.id),
            organisations.security_policy(scope, owner.organisation.id),
            organisations.current_organisation(scope, owner.user.id),
        )

    assert found[0] == found[1] == found[2]
    assert found[0] is not None and found[0].role is Role.LEGAL_REPRESENTATIVE
    assert len(statements) == 1, statements


async def test_org2_current_organisation_is_null_once_removed_from_it(
    services: Services, gql: GraphQLClient
) -> None:
    """A user removed from their current organisation no longer sees it there (ORG-2)."""
    owner = await factories.sign_up(services, email="owner@example.test")
    member = await factories.add_member(services, owner.organisation, Role.COLLABORATOR)
    gql.token = await _token(services, member.user.email or "")
    query = "{ viewer { currentOrganisation { id name securityPolicy { requireTwoFactor } } } }"
    while_member = await gql(query)

    await Membership.filter(id=member.membership.id).delete()
    removed = await gql(query)

    assert while_member["data"]["viewer"]["currentOrganisation"]["name"] == "Ada Lovelace"
    assert "errors" not in while_member
    assert removed == {"data": {"viewer": {"currentOrganisation": None}}}
