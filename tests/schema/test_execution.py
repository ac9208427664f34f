"""The executor's shortcut for plain leaf fields answers exactly what graphql-core answers."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import ExecutionResult, execute, parse

from gardien.graphql_execution import executor_for, is_awaitable, plain_leaf_fields
from gardien.models.enums import Role
from gardien.models.products import Product, ProductGrant
from gardien.resolvers import sessions
from gardien.resolvers.organisations import UserSummary
from gardien.resolvers.services import RequestMeta, Services
from gardien.schema import schema
from gardien.schema.context import Context
from gardien.schema.relay import encode_id
from gardien.schema.users import UserNode
from tests import factories

pytestmark = pytest.mark.usefixtures("database")

QUERY = """
query Everything($id: ID!) {
  viewer { id email displayName language country timezone twoFactorEnabled recoveryPhone
    memberships(first: 5) { totalCount edges { cursor node { id role organisation { id name supportPlan } } } } }
  organisation(id: $id) {
    id name supportPlan securityPolicy { requireTwoFactor updatedAt }
    members(first: 10) { totalCount pageInfo { hasNextPage endCursor }
      edges { cursor node { id role productAccess { id name kind } user { id email displayName twoFactorEnabled } } } }
    activity(first: 10) { edges { cursor node { id type occurredAt ip country device actor { id } subject { email } } } }
  }
  renamed: viewer { who: email mail: email }
}"""


async def _run(services: Services, token: str, variables: dict[str, Any], fast: bool) -> Any:
    actor = await sessions.authenticate(services, token)
    assert actor is not None
    context = Context(services=services, actor=actor, meta=RequestMeta())
    result = execute(
        schema._schema,
        parse(QUERY),
        context_value=context,
        variable_values=variables,
        executor_class=executor_for(schema) if fast else None,
        is_awaitable=is_awaitable if fast else None,
    )
    if not isinstance(result, ExecutionResult):
        result = await result
    return result.formatted


async def test_api1_plain_leaf_shortcut_matches_graphql_core(services: Services) -> None:
    owner = await factories.sign_up(services, email="owner@example.test")
    drive = await Product.create(
        organisation=owner.organisation,
        kind="WEB_DRIVE",
        name="Drive",
        created_at=services.clock.now(),
    )
    for role in (Role.ADMINISTRATOR, Role.COLLABORATOR, Role.EXTERNAL):
        member = await factories.add_member(services, owner.organisation, role)
        await ProductGrant.create(membership=member.membership, product=drive)
    await factories.confirm_totp(services, member.user)
    variables = {"id": encode_id("Organisation", owner.organisation.id)}

    fast = await _run(services, owner.session.token, variables, fast=True)
    reference = await _run(services, owner.session.token, variables, fast=False)

    assert "errors" not in reference
    assert fast == reference
    assert len(fast["data"]["organisation"]["members"]["edges"]) == 4


def test_api1_shortcut_only_for_plain_scalar_and_enum_fields() -> None:
    fields = plain_leaf_fields(schema)

    assert fields[("User", "displayName")][0] == "display_name"
    assert ("Membership", "role") in fields and ("User", "twoFactorEnabled") in fields
    # Resolvers (private fields, connections) and object fields keep graphql-core's path.
    for kept in [
        ("User", "recoveryPhone"),
        ("User", "memberships"),
        ("Organisation", "members"),
        ("Membership", "user"),
        ("Organisation", "securityPolicy"),
    ]:
        assert kept not in fields


async def test_api1_awaitable_check_learns_per_type_but_asks_generators_each_time() -> None:
    import types

    async def coroutine() -> int:
        return 1

    @types.coroutine
    def generator_coroutine() -> Any:
        yield

    def plain_generator() -> Any:
        yield

    pending = coroutine()
    checks = [is_awaitable(v) for v in ("x", 1, None, {"a": 1}, [1], pending)]
    generators = [is_awaitable(generator_coroutine()), is_awaitable(plain_generator())]
    pending.close()

    assert checks == [False, False, False, False, False, True]
    assert generators == [True, False]


async def test_api2_null_in_non_null_field_propagates_as_graphql_core_does(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await factories.sign_up(services, email="owner@example.test")
    member = await factories.add_member(services, owner.organisation, Role.COLLABORATOR)
    variables = {"id": encode_id("Organisation", owner.organisation.id)}
    from_summary = UserNode.from_summary

    def broken(summary: UserSummary) -> UserNode:
        node = from_summary(summary)
        if summary.id == member.user.id:
            node.display_name = None  # type: ignore[assignment]  # a bug the executor must report
        return node

    monkeypatch.setattr(UserNode, "from_summary", staticmethod(broken))
    fast = await _run(services, owner.session.token, variables, fast=True)
    reference = await _run(services, owner.session.token, variables, fast=False)

    assert fast == reference
    # Up through the non-null members connection to organisation(id:), which is nullable: the
    # rest of the data stays.
    assert reference["data"]["organisation"] is None
    assert reference["data"]["renamed"] == {"who": owner.user.email, "mail": owner.user.email}
    assert [e["path"] for e in reference["errors"]] == [
        ["organisation", "members", "edges", 1, "node", "user", "displayName"]
    ]
