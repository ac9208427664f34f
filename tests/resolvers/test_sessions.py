"""The session lookup: which bearer tokens still open a request (BLK-3, NIST SP 800-63B 4.2.3)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gardien.clock import ManualClock
from gardien.models.organisations import UserBlock
from gardien.resolvers import sessions
from gardien.resolvers.services import Services
from tests import factories
from tests.conftest import GraphQLClient
from tests.querycount import count_queries

pytestmark = pytest.mark.usefixtures("database")

VIEWER = "{ viewer { email } }"


async def _block(services: Services, user_id: int, organisation_id: int) -> UserBlock:
    return await UserBlock.create(
        organisation_id=organisation_id,
        user_id=user_id,
        justification="Laptop stolen, reported by the administrator",
        created_at=services.clock.now(),
    )


async def test_blk3_blocked_users_existing_session_answers_401_at_the_next_request(
    services: Services, gql: GraphQLClient
) -> None:
    """BLK-3: web access stops at once, sessions opened before the block included."""
    owner = await factories.sign_up(services, email="owner@example.test")
    gql.token = owner.session.token
    before = await gql.post(VIEWER)

    await _block(services, owner.user.id, owner.organisation.id)
    after = await gql.post(VIEWER)

    assert before.status_code == 200
    assert before.json() == {"data": {"viewer": {"email": "owner@example.test"}}}
    assert after.status_code == 401
    assert [e["extensions"]["code"] for e in after.json()["errors"]] == ["UNAUTHENTICATED"]
    assert after.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_blk3_lifted_block_lets_the_session_work_again_and_others_are_untouched(
    services: Services, clock: ManualClock
) -> None:
    """BLK-3: only an active block (lifted_at IS NULL) refuses, and only its own user."""
    blocked = await factories.sign_up(services, email="blocked@example.test")
    other = await factories.sign_up(services, email="other@example.test")
    block = await _block(services, blocked.user.id, blocked.organisation.id)

    while_blocked = await sessions.authenticate(services, blocked.session.token)
    other_actor = await sessions.authenticate(services, other.session.token)
    clock.advance(timedelta(minutes=5))
    block.lifted_at = clock.now()
    await block.save(update_fields=["lifted_at"])
    after_lift = await sessions.authenticate(services, blocked.session.token)

    assert while_blocked is None
    assert other_actor is not None and other_actor.user_id == other.user.id
    assert after_lift is not None and after_lift.user_id == blocked.user.id


async def test_blk3_block_check_costs_no_extra_statement(services: Services) -> None:
    """The block is read in the statement that finds the session: one statement per request."""
    owner = await factories.sign_up(services, email="owner@example.test")

    with count_queries() as statements:
        actor = await sessions.authenticate(services, owner.session.token)

    assert actor is not None and actor.user_id == owner.user.id
    assert len(statements) == 1, statements
    assert "user_block" in statements[0]
