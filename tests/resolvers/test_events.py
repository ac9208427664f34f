"""Which events an organisation and a user see, and when they are published (ACT-4, EVT-1…EVT-4)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from tortoise.transactions import in_transaction

from gardien.models.enums import Role
from gardien.models.organisations import Membership
from gardien.resolvers import activity, events, sessions
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from tests import factories

pytestmark = pytest.mark.usefixtures("database")

ACTIVITY_SOURCE = Path(__file__).resolve().parents[2] / "resolvers" / "activity.py"


class Recorded:
    """The bus messages this process received: a real EventBus listener."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, services: Services) -> Recorded:
        """Listening from now on: what earlier steps published is delivered first."""
        await asyncio.sleep(0.01)
        recorded = cls()
        services.events.listen(recorded.messages.append)
        return recorded

    async def settled(self) -> list[dict[str, Any]]:
        await asyncio.sleep(0.01)  # in-process delivery is on the next loop iterations
        return self.messages


async def test_evt3_event_is_published_only_after_its_transaction_commits(
    services: Services, meta: RequestMeta
) -> None:
    user = (await factories.sign_up(services)).user
    recorded = await Recorded.start(services)

    async with in_transaction():
        await activity.sign_in_failed(
            services, meta, user_id=user.id, login=user.email or "", reason="password"
        )
        during = list(await recorded.settled())
    after = await recorded.settled()

    assert during == []
    assert [(m["kind"], m["type"], m["subject_id"]) for m in after] == [
        ("activity", "sign_in.failed", user.id)
    ]


async def test_evt3_rolled_back_event_is_never_published(
    services: Services, meta: RequestMeta
) -> None:
    user = (await factories.sign_up(services)).user
    recorded = await Recorded.start(services)

    async def failing_change() -> None:
        async with in_transaction():
            await activity.signed_out(services, meta, user.id)
            async with in_transaction():  # a nested transaction is the same outermost one
                await activity.sign_in_succeeded(services, meta, user.id, second_factor=None)
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError, match="the change failed"):
        await failing_change()

    assert await recorded.settled() == []


async def test_act4_member_account_event_is_published_to_each_of_the_members_organisations(
    services: Services, meta: RequestMeta
) -> None:
    legal = await factories.sign_up(services)
    other = await factories.sign_up(services)
    member = await factories.add_member(services, other.organisation, Role.COLLABORATOR)
    await Membership.create(
        organisation=legal.organisation,
        user=member.user,
        role=Role.EXTERNAL,
        created_at=services.clock.now(),
    )
    recorded = await Recorded.start(services)

    await activity.sign_in_failed(
        services, meta, user_id=member.user.id, login="x@example.test", reason="password"
    )

    (message,) = await recorded.settled()
    assert sorted(message["audience"]) == sorted([legal.organisation.id, other.organisation.id])


async def test_act4_organisation_events_has_its_changes_and_its_members_account_events(
    services: Services, meta: RequestMeta
) -> None:
    legal = await factories.sign_up(services)
    stranger = await factories.sign_up(services)
    member = await factories.add_member(services, legal.organisation, Role.COLLABORATOR)
    await activity.sign_in_failed(
        services, meta, user_id=member.user.id, login="m@example.test", reason="password"
    )
    await activity.sign_in_failed(
        services, meta, user_id=stranger.user.id, login="s@example.test", reason="password"
    )
    await activity.organisation_switched(
        services,
        meta,
        user_id=member.user.id,
        organisation_id=legal.organisation.id,
        previous_organisation_id=None,
    )

    seen = {(e.type, e.subject_id) for e in await events.organisation_events(legal.organisation.id)}

    assert ("account.signed_up", legal.user.id) in seen
    assert ("sign_in.failed", member.user.id) in seen
    assert ("sign_in.failed", stranger.user.id) not in seen
    # Which organisation a member works in is theirs, not the organisation's activity.
    assert ("organisation.switched", member.user.id) not in seen


async def test_evt4_role_change_and_session_revocation_publish_access_notices(
    services: Services, meta: RequestMeta
) -> None:
    legal = await factories.sign_up(services)
    scope = await factories.signed_in_scope(services, legal.user.email or "")
    assert scope.actor.session is not None
    recorded = await Recorded.start(services)

    await activity.member_role_changed(
        services,
        meta,
        actor_id=legal.user.id,
        subject_id=legal.user.id,
        organisation_id=legal.organisation.id,
        membership_id=(await Membership.get(user_id=legal.user.id)).id,
        previous_role="LEGAL_REPRESENTATIVE",
        role="ADMINISTRATOR",
    )
    await sessions.revoke(services, scope.actor.session.id)

    notices = [m for m in await recorded.settled() if m["kind"] == "access"]
    assert notices == [{"kind": "access", "user_id": legal.user.id}] * 2


async def test_evt1_stream_filters_and_refuses_unknown_types_and_forged_cursors(
    services: Services,
) -> None:
    legal = await factories.sign_up(services)
    scope = await factories.signed_in_scope(services, legal.user.email or "")

    with pytest.raises(DomainError) as unknown:
        await events.viewer_stream(scope, ["sign_in.nope"], None)
    with pytest.raises(DomainError) as beyond:
        await events.viewer_stream(scope, None, await events.newest_event_id() + 1)
    stream = await events.viewer_stream(scope, ["sign_in.succeeded"], None)
    replayed = await events.replay(stream, 0)

    assert (unknown.value.code, unknown.value.field) == (ErrorCode.INVALID_INPUT, "types")
    assert (beyond.value.code, beyond.value.field) == (ErrorCode.INVALID_INPUT, "after")
    assert {e.type for e in replayed} == {"sign_in.succeeded"}
    assert stream.shows({"type": "sign_in.succeeded", "subject_id": legal.user.id})
    assert not stream.shows({"type": "sign_in.failed", "subject_id": legal.user.id})


def test_evt1_every_recorded_type_can_be_filtered_on() -> None:
    """The `types` filter knows every type resolvers/activity.py records."""
    recorded = set(re.findall(r'"([a-z_]+\.[a-z_]+)"', ACTIVITY_SOURCE.read_text()))

    assert recorded - events.EVENT_TYPES == set()
