"""Who sees a member's account security events: decided when they happen (ACT-4, EVT-2)."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

import pytest
from tortoise.connection import get_connection

from gardien.models.activity import ActivityEvent, ActivityEventAudience
from gardien.models.enums import Role
from gardien.models.organisations import Membership
from gardien.resolvers import activity, activity_log, events, members, organisations
from gardien.resolvers.activity_log import activity_filter
from gardien.resolvers.authz import RequestScope
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from tests import factories
from tests.conftest import BACKEND
from tests.querycount import count_queries

pytestmark = pytest.mark.usefixtures("database")


async def _failed(services: Services, meta: RequestMeta, user_id: int, login: str) -> None:
    await activity.sign_in_failed(services, meta, user_id=user_id, login=login, reason="password")


async def _listed(scope: RequestScope, organisation_id: int, **kwargs: Any) -> list[ActivityEvent]:
    counted = await organisations.activity(
        scope, organisation_id, first=kwargs.pop("first", 100), after_id=None, **kwargs
    )
    return counted.page.items


async def _replayed(organisation_id: int, user_id: int) -> list[ActivityEvent]:
    stream = events.Stream(organisation_id=organisation_id, user_id=user_id, types=None, after_id=0)
    return await events.replay(stream, 0)


def _failures(listed: list[ActivityEvent], user_id: int) -> list[int]:
    return [e.id for e in listed if e.type == "sign_in.failed" and e.subject_id == user_id]


async def test_act4_removed_members_past_sign_in_failures_stay_in_the_organisations_history(
    services: Services, meta: RequestMeta
) -> None:
    legal = await factories.sign_up(services)
    member = await factories.add_member(services, legal.organisation, Role.COLLABORATOR)
    await _failed(services, meta, member.user.id, member.user.email or "")
    (attack,) = await ActivityEvent.filter(type="sign_in.failed", subject_id=member.user.id)
    scope = await factories.signed_in_scope(services, legal.user.email or "")

    await members.remove_member(services, meta, scope, member.membership.id)
    await _failed(services, meta, member.user.id, member.user.email or "")

    listed = await _listed(scope, legal.organisation.id)
    replayed = await _replayed(legal.organisation.id, legal.user.id)
    # The failure while a member stays; the one after leaving is no business of the organisation.
    assert _failures(listed, member.user.id) == [attack.id]
    assert _failures(replayed, member.user.id) == [attack.id]
    assert "member.removed" in {e.type for e in listed}


async def test_act4_newcomers_earlier_account_events_stay_out_of_the_organisations_history(
    services: Services, meta: RequestMeta
) -> None:
    legal = await factories.sign_up(services)
    newcomer = await factories.sign_up(services)
    await _failed(services, meta, newcomer.user.id, newcomer.user.email or "")
    await Membership.create(
        organisation=legal.organisation,
        user=newcomer.user,
        role=Role.COLLABORATOR,
        created_at=services.clock.now(),
    )
    scope = await factories.signed_in_scope(services, legal.user.email or "")

    await _failed(services, meta, newcomer.user.id, newcomer.user.email or "")

    (since_joining,) = (
        await ActivityEvent.filter(type="sign_in.failed", subject_id=newcomer.user.id)
        .order_by("-id")
        .limit(1)
    )
    listed = await _listed(scope, legal.organisation.id)
    replayed = await _replayed(legal.organisation.id, legal.user.id)
    assert _failures(listed, newcomer.user.id) == [since_joining.id]
    assert _failures(replayed, newcomer.user.id) == [since_joining.id]
    # Its own organisation saw both, and still does.
    own = await _replayed(newcomer.organisation.id, newcomer.user.id)
    assert len(_failures(own, newcomer.user.id)) == 2


async def test_act4_members_account_event_in_the_organisations_history_is_found_by_its_id(
    services: Services, meta: RequestMeta
) -> None:
    """node(id:) answers for an event exactly when the organisation's history lists it."""
    legal = await factories.sign_up(services)
    member = await factories.add_member(services, legal.organisation, Role.COLLABORATOR)
    newcomer = await factories.sign_up(services)
    await _failed(services, meta, newcomer.user.id, newcomer.user.email or "")
    (before_joining,) = await ActivityEvent.filter(
        type="sign_in.failed", subject_id=newcomer.user.id
    )
    await Membership.create(
        organisation=legal.organisation,
        user=newcomer.user,
        role=Role.COLLABORATOR,
        created_at=services.clock.now(),
    )
    await _failed(services, meta, member.user.id, member.user.email or "")
    (attack,) = await ActivityEvent.filter(type="sign_in.failed", subject_id=member.user.id)
    manager = await factories.signed_in_scope(services, legal.user.email or "")
    collaborator = await factories.signed_in_scope(services, member.user.email or "")

    found = await organisations.visible_activity_event(manager, attack.id)
    await members.remove_member(services, meta, manager, member.membership.id)
    found_after_leaving = await organisations.visible_activity_event(manager, attack.id)
    refused: list[ErrorCode] = []
    for scope, event_id in ((manager, before_joining.id), (collaborator, attack.id)):
        with pytest.raises(DomainError) as raised:
            await organisations.visible_activity_event(scope, event_id)
        refused.append(raised.value.code)

    assert attack.id in {e.id for e in await _listed(manager, legal.organisation.id)}
    assert (found.id, found_after_leaving.id) == (attack.id, attack.id)
    assert refused == [ErrorCode.NOT_FOUND, ErrorCode.NOT_FOUND]


async def test_act4_live_audience_is_the_stored_one(services: Services, meta: RequestMeta) -> None:
    legal = await factories.sign_up(services)
    member = await factories.add_member(services, legal.organisation, Role.COLLABORATOR)
    messages: list[dict[str, Any]] = []
    services.events.listen(messages.append)

    await _failed(services, meta, member.user.id, member.user.email or "")
    await activity.signed_out(services, meta, member.user.id)

    stored = {
        (a.event_id, a.organisation_id)
        for a in await ActivityEventAudience.filter(event__subject_id=member.user.id)
    }
    await _settle()
    published = {
        (m["id"], o) for m in messages if m.get("kind") == "activity" for o in m["audience"]
    }
    assert published == stored
    # The failure goes to the member's organisation; signing out concerns the member alone.
    assert [o for _, o in stored] == [legal.organisation.id]


async def _settle() -> None:
    await asyncio.sleep(0.01)  # in-process delivery is on the next loop iterations


async def test_act4_organisation_activity_filters_and_pages_read_the_stored_audience(
    services: Services, meta: RequestMeta
) -> None:
    legal = await factories.sign_up(services)
    member = await factories.add_member(services, legal.organisation, Role.COLLABORATOR)
    for _ in range(3):
        await _failed(services, meta, member.user.id, member.user.email or "")
    scope = await factories.signed_in_scope(services, legal.user.email or "")
    failures = activity_filter(types=["sign_in.failed"])

    first = await organisations.activity(
        scope, legal.organisation.id, first=2, after_id=None, filters=failures
    )
    with count_queries() as statements:
        second = await organisations.activity(
            scope,
            legal.organisation.id,
            first=2,
            after_id=first.page.items[-1].id,
            filters=failures,
        )

    ids = [e.id for e in first.page.items + second.page.items]
    expected = await ActivityEvent.filter(type="sign_in.failed").order_by("-id")
    assert ids == [e.id for e in expected]
    assert (first.page.has_next_page, second.page.has_next_page) == (True, False)
    assert await first.count() == await second.count() == 3
    # The cursor bounds the audience index, where PostgreSQL starts reading (not the newest).
    (page,) = statements
    assert '"activity_event_organisation"."event_id"<' in page, page


async def test_act4_organisation_activity_costs_the_same_statements_for_few_or_many_members(
    services: Services, meta: RequestMeta
) -> None:
    legal = await factories.sign_up(services)
    scope = await factories.signed_in_scope(services, legal.user.email or "")
    await _listed(scope, legal.organisation.id)  # the caller's membership, read once per request

    async def page_statements() -> list[str]:
        with count_queries() as statements:
            await _listed(scope, legal.organisation.id, first=20)
        return statements

    member = await factories.add_member(services, legal.organisation, Role.COLLABORATOR)
    await _failed(services, meta, member.user.id, member.user.email or "")
    few = await page_statements()
    for _ in range(15):
        member = await factories.add_member(services, legal.organisation, Role.COLLABORATOR)
        await _failed(services, meta, member.user.id, member.user.email or "")
    many = await page_statements()

    assert len(few) == len(many), many
    (page,) = [s for s in many if "activity_event_organisation" in s]
    assert "membership" not in page  # the audience was decided when each event was recorded


async def test_act4_recording_an_account_event_costs_one_audience_statement(
    services: Services, meta: RequestMeta
) -> None:
    legal = await factories.sign_up(services)
    member = await factories.add_member(services, legal.organisation, Role.COLLABORATOR)
    for _ in range(3):
        other = await factories.sign_up(services)
        await Membership.create(
            organisation=other.organisation,
            user=member.user,
            role=Role.EXTERNAL,
            created_at=services.clock.now(),
        )

    with count_queries() as statements:
        await _failed(services, meta, member.user.id, member.user.email or "")

    # One INSERT … SELECT gives the event its four audience rows from the memberships; on
    # PostgreSQL, in the statement that writes the event.
    audience = [s for s in statements if "activity_event_organisation" in s]
    events_written = [s for s in statements if "INTO activity_event (" in s.replace('"', "")]
    assert len(audience) == len(events_written) == 1, statements
    assert [s for s in statements if "membership" in s] == audience
    assert (audience == events_written) == (BACKEND == "postgres")
    assert await ActivityEventAudience.filter(event__subject_id=member.user.id).count() == 4


async def test_act4_backfill_gives_existing_events_the_audience_the_recording_rule_gives(
    services: Services, meta: RequestMeta
) -> None:
    legal = await factories.sign_up(services)
    member = await factories.add_member(services, legal.organisation, Role.COLLABORATOR)
    await _failed(services, meta, member.user.id, member.user.email or "")
    await activity.signed_out(services, meta, member.user.id)
    await activity.two_factor_enrolled(services, meta, member.user.id, kind="totp", method_id=1)
    recorded = await _audience_rows()
    migration = importlib.import_module(
        "gardien.models.migrations.0013_activity_event_audience"
    ).Migration
    (backfill,) = [op for op in migration.operations if type(op).__name__ == "RunSQL"]
    await ActivityEventAudience.all().delete()

    connection = get_connection("default")
    for statement in backfill.sql:
        await connection.execute_script(statement)

    assert await _audience_rows() == recorded
    assert len(recorded) >= 4  # sign-up, member joined, the failure, the enrolment


async def _audience_rows() -> set[tuple[int, int]]:
    return {(a.event_id, a.organisation_id) for a in await ActivityEventAudience.all()}


def test_act4_account_security_rule_covers_the_types_the_spec_names() -> None:
    spec_names = {
        "sign_in.succeeded",
        "sign_in.failed",
        "sign_in.new_location",
        "sign_in.second_factor_failed",
        "two_factor.enrolled",
        "two_factor.removed",
        "two_factor.backup_codes_generated",
        "app_password.created",
        "app_password.revoked",
        "account.secured",
    }
    families = {
        # Types of second factors, recovery and contacts are covered by their family's name.
        "two_factor.push_denied",
        "security_key.registered",
        "recovery.code_rejected",
        "password.reset",
        "login_email.changed",
        "recovery_phone.changed",
        "recovery_email.changed",
        "account.password_check_failed",
    }
    organisation_or_private = {
        "member.removed",
        "invitation.sent",
        "organisation.switched",
        "security_emails.preferences_changed",
        "session.signed_out",
        "webhook.endpoint_created",
        "profile.updated",
        "account.signed_up",
    }

    assert spec_names <= activity_log.EVENT_TYPES
    assert all(activity_log.is_account_security_event(t) for t in spec_names | families)
    assert not any(activity_log.is_account_security_event(t) for t in organisation_or_private)
