"""Membership management without GraphQL, on SQLite and PostgreSQL: roles, removal, leaving,
product access, contact preferences, the current organisation, premium support (ORG-2…ORG-7)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from tortoise.connection import get_connection

from gardien.clock import ManualClock
from gardien.models.activity import ActivityEvent
from gardien.models.enums import ProductKind, Role, SupportPlan
from gardien.models.organisations import Membership, Organisation
from gardien.models.products import Product, ProductGrant
from gardien.models.sessions import Session
from gardien.models.users import User
from gardien.resolvers import members, organisations
from gardien.resolvers.authz import RequestScope
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.members import ContactPreferences
from gardien.resolvers.services import RequestMeta, Services
from tests import factories

pytestmark = pytest.mark.usefixtures("database")

FORBIDDEN_MESSAGE = (
    "Only administrators and legal representatives manage members; only a legal representative"
    " manages legal representatives."
)


@dataclass
class Team:
    organisation: Organisation
    legal: factories.Member
    admin: factories.Member
    collaborator: factories.Member
    external: factories.Member
    drive: Product
    mail: Product

    async def scope(self, services: Services, member: factories.Member) -> RequestScope:
        assert member.user.email is not None
        return await factories.signed_in_scope(services, member.user.email)


async def _team(services: Services) -> Team:
    owner = await factories.sign_up(services, email="legal@example.test")
    organisation = owner.organisation
    legal_membership = await Membership.get(user_id=owner.user.id)
    now = services.clock.now()
    drive = await Product.create(
        organisation=organisation, kind=ProductKind.WEB_DRIVE, name="Drive", created_at=now
    )
    mail = await Product.create(
        organisation=organisation, kind=ProductKind.MAIL_SERVICE, name="Mail", created_at=now
    )
    # Created in the order of the members list: legal, admin, collaborator, external.
    admin = await factories.add_member(
        services, organisation, Role.ADMINISTRATOR, "admin@example.test"
    )
    collaborator = await factories.add_member(
        services, organisation, Role.COLLABORATOR, "collab@example.test"
    )
    await ProductGrant.create(membership=collaborator.membership, product=drive)
    return Team(
        organisation=organisation,
        legal=factories.Member(owner.user, legal_membership),
        admin=admin,
        collaborator=collaborator,
        external=await factories.add_member(
            services, organisation, Role.EXTERNAL, "external@example.test"
        ),
        drive=drive,
        mail=mail,
    )


async def _state() -> tuple[Any, ...]:
    """Everything a membership operation could change, across every organisation."""
    memberships = await Membership.all().order_by("id").values()
    grants = await ProductGrant.all().order_by("id").values("membership_id", "product_id")
    events = await ActivityEvent.all().order_by("id").values("type", "data")
    plans = (
        await Organisation.all().order_by("id").values("support_plan", "support_plan_changed_at")
    )
    current = await User.all().order_by("id").values("id", "current_organisation_id")
    return memberships, grants, events, plans, current


async def _refused(call: Awaitable[Any]) -> tuple[ErrorCode, str, str | None]:
    before = await _state()
    with pytest.raises(DomainError) as raised:
        await call
    assert await _state() == before, "a refused operation changed something"
    return raised.value.code, raised.value.message, raised.value.field


async def _events(type_: str) -> list[ActivityEvent]:
    return await ActivityEvent.filter(type=type_).order_by("id")


async def _role(member: factories.Member) -> Role:
    return (await Membership.get(id=member.membership.id)).role


# --- roles (ORG-6) ---------------------------------------------------------------------------


async def test_org6_act1_legal_representative_appoints_another_and_the_change_is_recorded(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    scope = await team.scope(services, team.legal)

    entry = await members.change_member_role(
        services, meta, scope, team.admin.membership.id, Role.LEGAL_REPRESENTATIVE
    )

    assert (entry.membership_id, entry.role) == (
        team.admin.membership.id,
        Role.LEGAL_REPRESENTATIVE,
    )
    assert await _role(team.admin) == Role.LEGAL_REPRESENTATIVE
    (event,) = await _events("member.role_changed")
    assert (
        event.actor_id,
        event.subject_id,
        event.organisation_id,
        event.ip,
        event.country,
        event.device,
        event.occurred_at,
    ) == (
        team.legal.user.id,
        team.admin.user.id,
        team.organisation.id,
        "203.0.113.7",
        "CH",
        "pytest",
        services.clock.now(),
    )
    assert event.data == {
        "membership_id": team.admin.membership.id,
        "previous_role": "ADMINISTRATOR",
        "role": "LEGAL_REPRESENTATIVE",
    }


async def test_org6_administrator_changes_roles_of_members_other_than_legal_representatives(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    scope = await team.scope(services, team.admin)

    entry = await members.change_member_role(
        services, meta, scope, team.collaborator.membership.id, Role.EXTERNAL
    )
    on_legal = await _refused(
        members.change_member_role(
            services, meta, scope, team.legal.membership.id, Role.ADMINISTRATOR
        )
    )
    to_legal = await _refused(
        members.change_member_role(
            services, meta, scope, team.external.membership.id, Role.LEGAL_REPRESENTATIVE
        )
    )
    self_to_legal = await _refused(
        members.change_member_role(
            services, meta, scope, team.admin.membership.id, Role.LEGAL_REPRESENTATIVE
        )
    )

    assert entry.role == Role.EXTERNAL
    assert on_legal == to_legal == self_to_legal == (ErrorCode.FORBIDDEN, FORBIDDEN_MESSAGE, None)
    assert [e.data["role"] for e in await _events("member.role_changed")] == ["EXTERNAL"]


async def test_org6_the_same_role_again_changes_nothing_and_records_nothing(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    scope = await team.scope(services, team.admin)
    before = await _state()

    entry = await members.change_member_role(
        services, meta, scope, team.external.membership.id, Role.EXTERNAL
    )

    assert entry.role == Role.EXTERNAL
    assert await _state() == before


async def test_org6_last_legal_representative_is_neither_demoted_nor_removed_even_by_herself(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    scope = await team.scope(services, team.legal)
    last = (
        ErrorCode.LAST_LEGAL_REPRESENTATIVE,
        "An organisation keeps at least one legal representative: appoint another one first.",
        "membershipId",
    )

    demoted = [
        await _refused(
            members.change_member_role(services, meta, scope, team.legal.membership.id, role)
        )
        for role in (Role.ADMINISTRATOR, Role.COLLABORATOR, Role.EXTERNAL)
    ]
    removed = await _refused(members.remove_member(services, meta, scope, team.legal.membership.id))

    assert demoted == [last, last, last]
    assert removed == last
    assert await _role(team.legal) == Role.LEGAL_REPRESENTATIVE


async def test_org6_legal_representative_steps_down_when_another_remains(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    scope = await team.scope(services, team.legal)
    await members.change_member_role(
        services, meta, scope, team.admin.membership.id, Role.LEGAL_REPRESENTATIVE
    )

    entry = await members.change_member_role(
        services, meta, scope, team.legal.membership.id, Role.ADMINISTRATOR
    )

    assert entry.role == Role.ADMINISTRATOR
    legal_representatives = await Membership.filter(
        organisation_id=team.organisation.id, role=Role.LEGAL_REPRESENTATIVE
    )
    assert [m.user_id for m in legal_representatives] == [team.admin.user.id]


async def test_org6_administrator_may_not_remove_a_legal_representative(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    legal_scope = await team.scope(services, team.legal)
    await members.change_member_role(
        services, meta, legal_scope, team.collaborator.membership.id, Role.LEGAL_REPRESENTATIVE
    )
    scope = await team.scope(services, team.admin)

    refused = await _refused(members.remove_member(services, meta, scope, team.legal.membership.id))

    assert refused == (ErrorCode.FORBIDDEN, FORBIDDEN_MESSAGE, None)


async def test_org6_org3_org4_org7_collaborators_and_externals_manage_nothing(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    for member in (team.collaborator, team.external):
        scope = await team.scope(services, member)
        other = team.admin.membership.id
        refusals = [
            await _refused(members.change_member_role(services, meta, scope, other, Role.EXTERNAL)),
            await _refused(
                members.change_member_role(
                    services, meta, scope, member.membership.id, Role.ADMINISTRATOR
                )
            ),
            await _refused(members.remove_member(services, meta, scope, other)),
            await _refused(
                members.set_member_product_access(
                    services, meta, scope, member.membership.id, [team.drive.id, team.mail.id]
                )
            ),
            await _refused(
                members.set_contact_preferences(
                    services, meta, scope, other, ContactPreferences(True, True, True, True)
                )
            ),
        ]
        plan = await _refused(
            members.set_support_plan(
                services, meta, scope, team.organisation.id, SupportPlan.PREMIUM
            )
        )

        assert refusals == [(ErrorCode.FORBIDDEN, FORBIDDEN_MESSAGE, None)] * 4 + [
            (
                ErrorCode.FORBIDDEN,
                "Only administrators, legal representatives and the member themself set these"
                " preferences.",
                None,
            )
        ], member.membership.role
        assert plan == (
            ErrorCode.FORBIDDEN,
            "Only administrators and legal representatives manage the support plan.",
            None,
        )


async def test_org6_another_organisations_members_are_not_found(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    other = await factories.sign_up(services, email="other@example.test")
    other_membership = await Membership.get(user_id=other.user.id)
    scope = await team.scope(services, team.legal)
    no_member = (ErrorCode.NOT_FOUND, "No such member.", None)
    no_organisation = (ErrorCode.NOT_FOUND, "No such organisation.", None)
    target = other_membership.id

    refusals = [
        await _refused(members.change_member_role(services, meta, scope, target, Role.EXTERNAL)),
        await _refused(members.remove_member(services, meta, scope, target)),
        await _refused(members.set_member_product_access(services, meta, scope, target, [])),
        await _refused(
            members.set_contact_preferences(
                services, meta, scope, target, ContactPreferences(True, True, True, True)
            )
        ),
        await _refused(members.remove_member(services, meta, scope, 999_999)),
    ]
    organisation_refusals = [
        await _refused(members.leave_organisation(services, meta, scope, other.organisation.id)),
        await _refused(members.switch_organisation(services, meta, scope, other.organisation.id)),
        await _refused(
            members.set_support_plan(
                services, meta, scope, other.organisation.id, SupportPlan.PREMIUM
            )
        ),
    ]

    assert refusals == [no_member] * 5
    assert organisation_refusals == [no_organisation] * 3


# --- concurrency (ORG-6) ---------------------------------------------------------------------


async def _two_legal_representatives(services: Services, meta: RequestMeta) -> Team:
    team = await _team(services)
    scope = await team.scope(services, team.legal)
    await members.change_member_role(
        services, meta, scope, team.admin.membership.id, Role.LEGAL_REPRESENTATIVE
    )
    return team


async def _outcomes(*calls: Awaitable[Any]) -> list[str]:
    results = await asyncio.gather(*calls, return_exceptions=True)
    outcomes = []
    for result in results:
        if isinstance(result, DomainError):
            outcomes.append(result.code.value)
        elif isinstance(result, BaseException):
            raise result
        else:
            outcomes.append("OK")
    return sorted(outcomes)


@pytest.mark.parametrize("how", ["each demotes the other", "each demotes herself"])
async def test_org6_concurrent_demotions_of_the_last_two_legal_representatives_leave_one(
    services: Services, meta: RequestMeta, how: str
) -> None:
    """Two requests at once; the organisation's row lock makes the second see the first."""
    team = await _two_legal_representatives(services, meta)
    first, second = team.legal, team.admin
    first_scope = await team.scope(services, first)
    second_scope = await team.scope(services, second)
    targets = (second, first) if how == "each demotes the other" else (first, second)

    outcomes = await _outcomes(
        members.change_member_role(
            services, meta, first_scope, targets[0].membership.id, Role.COLLABORATOR
        ),
        members.change_member_role(
            services, meta, second_scope, targets[1].membership.id, Role.COLLABORATOR
        ),
    )

    remaining = await Membership.filter(
        organisation_id=team.organisation.id, role=Role.LEGAL_REPRESENTATIVE
    ).count()
    changes = [e.data["role"] for e in await _events("member.role_changed")]
    # The loser was refused either as the last legal representative or, demoted meanwhile, as
    # no longer allowed to manage one: both are refusals, and exactly one legal remains.
    assert outcomes[1] == "OK" and outcomes[0] in {"LAST_LEGAL_REPRESENTATIVE", "FORBIDDEN"}
    assert remaining == 1
    assert changes == ["LEGAL_REPRESENTATIVE", "COLLABORATOR"]


async def test_org6_concurrent_removals_of_the_last_two_legal_representatives_leave_one(
    services: Services, meta: RequestMeta
) -> None:
    team = await _two_legal_representatives(services, meta)
    first_scope = await team.scope(services, team.legal)
    second_scope = await team.scope(services, team.admin)

    outcomes = await _outcomes(
        members.remove_member(services, meta, first_scope, team.admin.membership.id),
        members.remove_member(services, meta, second_scope, team.legal.membership.id),
    )

    remaining = await Membership.filter(
        organisation_id=team.organisation.id, role=Role.LEGAL_REPRESENTATIVE
    ).count()
    assert outcomes[1] == "OK" and outcomes[0] in {"LAST_LEGAL_REPRESENTATIVE", "NOT_FOUND"}
    assert remaining == 1
    assert len(await _events("member.removed")) == 1


# --- removal and leaving (ORG-6) -------------------------------------------------------------


async def test_org6_removal_ends_product_grants_and_the_current_organisation_not_the_session(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    signed_in = await factories.signed_in_scope(services, "collab@example.test")
    assert signed_in.actor.session is not None
    token_actor_id = signed_in.actor.user_id
    scope = await team.scope(services, team.admin)

    await members.remove_member(services, meta, scope, team.collaborator.membership.id)

    assert not await Membership.exists(id=team.collaborator.membership.id)
    assert await ProductGrant.filter(membership_id=team.collaborator.membership.id).count() == 0
    user = await User.get(id=team.collaborator.user.id)
    assert user.current_organisation_id is None
    (event,) = await _events("member.removed")
    assert (event.actor_id, event.subject_id, event.organisation_id) == (
        team.admin.user.id,
        team.collaborator.user.id,
        team.organisation.id,
    )
    assert event.data == {
        "membership_id": team.collaborator.membership.id,
        "role": "COLLABORATOR",
        "ended_product_ids": [team.drive.id],
    }
    # The user's sessions stay; they no longer open the organisation.
    session = await Session.get(id=signed_in.actor.session.id)
    assert session.revoked_at is None and token_actor_id == team.collaborator.user.id
    with pytest.raises(DomainError) as raised:
        await organisations.visible_organisation(
            RequestScope(signed_in.actor), team.organisation.id
        )
    assert raised.value.code is ErrorCode.NOT_FOUND


async def test_org6_an_external_member_leaves_and_others_are_told_who_may_remove_them(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    organisation_id = team.organisation.id
    legal_says = (
        ErrorCode.FORBIDDEN,
        "Only external members may leave; another legal representative may remove you.",
        None,
    )
    others_say = (
        ErrorCode.FORBIDDEN,
        "Only external members may leave; a legal representative or an administrator may"
        " remove you.",
        None,
    )
    refusals = [
        await _refused(
            members.leave_organisation(
                services, meta, await team.scope(services, member), organisation_id
            )
        )
        for member in (team.legal, team.admin, team.collaborator)
    ]
    external_scope = await team.scope(services, team.external)

    await members.leave_organisation(services, meta, external_scope, organisation_id)

    assert refusals == [legal_says, others_say, others_say]
    assert not await Membership.exists(id=team.external.membership.id)
    (event,) = await _events("member.left")
    assert (event.actor_id, event.subject_id, event.organisation_id) == (
        team.external.user.id,
        team.external.user.id,
        organisation_id,
    )
    assert event.data == {"membership_id": team.external.membership.id, "ended_product_ids": []}


# --- product access (ORG-3) and contact preferences (ORG-4) ----------------------------------


async def test_org3_act1_managers_set_exactly_the_products_a_member_may_use(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    scope = await team.scope(services, team.admin)

    entry = await members.set_member_product_access(
        services, meta, scope, team.collaborator.membership.id, [team.mail.id, team.mail.id]
    )
    unchanged = await _state()
    again = await members.set_member_product_access(
        services, meta, scope, team.collaborator.membership.id, [team.mail.id]
    )

    assert entry.products is not None and [p.id for p in entry.products] == [team.mail.id]
    assert again.products == entry.products
    assert await _state() == unchanged, "the same grants again are no change"
    (event,) = await _events("member.product_access_changed")
    assert event.data == {
        "membership_id": team.collaborator.membership.id,
        "granted": [team.mail.id],
        "revoked": [team.drive.id],
    }


async def test_org3_products_of_another_organisation_and_manager_targets_are_refused(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    other = await factories.sign_up(services, email="other@example.test")
    foreign = await Product.create(
        organisation=other.organisation,
        kind=ProductKind.VPS,
        name="Their VPS",
        created_at=services.clock.now(),
    )
    scope = await team.scope(services, team.legal)
    target = team.collaborator.membership.id

    foreign_product = await _refused(
        members.set_member_product_access(services, meta, scope, target, [team.mail.id, foreign.id])
    )
    unknown_product = await _refused(
        members.set_member_product_access(services, meta, scope, target, [999_999])
    )
    manager = await _refused(
        members.set_member_product_access(
            services, meta, scope, team.admin.membership.id, [team.mail.id]
        )
    )
    too_many = await _refused(
        members.set_member_product_access(services, meta, scope, target, list(range(1, 102)))
    )

    assert (
        foreign_product
        == unknown_product
        == (
            ErrorCode.NOT_FOUND,
            "No such product.",
            "productIds",
        )
    )
    assert manager == (
        ErrorCode.INVALID_INPUT,
        "Administrators and legal representatives use every product already.",
        "membershipId",
    )
    assert too_many == (ErrorCode.INVALID_INPUT, "At most 100 products.", "productIds")


async def test_org4_act1_members_set_their_own_preferences_and_managers_anyones(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    wanted = ContactPreferences(billing=True, technical=True, security=False, domain_expiry=True)
    own_scope = await team.scope(services, team.external)
    admin_scope = await team.scope(services, team.admin)

    own = await members.set_contact_preferences(
        services, meta, own_scope, team.external.membership.id, wanted
    )
    by_admin = await members.set_contact_preferences(
        services, meta, admin_scope, team.legal.membership.id, wanted
    )
    refused = await _refused(
        members.set_contact_preferences(
            services, meta, own_scope, team.collaborator.membership.id, wanted
        )
    )

    for entry in (own, by_admin):
        assert entry.contact_preferences is not None
        assert (
            entry.contact_preferences.billing,
            entry.contact_preferences.technical,
            entry.contact_preferences.security,
            entry.contact_preferences.domain_expiry,
        ) == (True, True, False, True)
    assert refused[0] is ErrorCode.FORBIDDEN
    events = await _events("member.contact_preferences_changed")
    assert [(e.actor_id, e.subject_id) for e in events] == [
        (team.external.user.id, team.external.user.id),
        (team.admin.user.id, team.legal.user.id),
    ]
    assert events[0].data == {
        "membership_id": team.external.membership.id,
        "billing": True,
        "technical": True,
        "security": False,
        "domain_expiry": True,
    }


# --- the member directory by role (POL-2) and sharing recipients (ORG-5) ---------------------


async def test_pol2_collaborators_see_names_and_roles_only_managers_see_2fa_and_grants(
    services: Services,
) -> None:
    team = await _team(services)
    collaborator = await team.scope(services, team.collaborator)
    admin = await team.scope(services, team.admin)
    await factories.confirm_totp(services, team.admin.user)

    seen_by_collaborator = (
        await organisations.members(collaborator, team.organisation.id, first=10, after_id=None)
    ).page
    seen_by_admin = (
        await organisations.members(admin, team.organisation.id, first=10, after_id=None)
    ).page
    filtered = await _refused(
        organisations.members(
            collaborator, team.organisation.id, first=10, after_id=None, two_factor_enabled=True
        )
    )
    counted = await _refused(
        organisations.members(
            collaborator, team.organisation.id, first=0, after_id=None, two_factor_enabled=False
        )
    )

    assert [
        (e.user.email, e.role, e.user.two_factor_enabled, e.products is None)
        for e in seen_by_collaborator.items
    ] == [
        ("legal@example.test", Role.LEGAL_REPRESENTATIVE, None, True),
        ("admin@example.test", Role.ADMINISTRATOR, None, True),
        ("collab@example.test", Role.COLLABORATOR, False, False),
        ("external@example.test", Role.EXTERNAL, None, True),
    ]
    assert [e.user.two_factor_enabled for e in seen_by_admin.items] == [False, True, False, False]
    assert [len(e.products or []) for e in seen_by_admin.items] == [0, 0, 1, 0]
    refusal = (
        ErrorCode.FORBIDDEN,
        "Only administrators and legal representatives may filter members on their 2FA status.",
        None,
    )
    assert filtered == counted == refusal


async def test_org5_sharing_recipients_exclude_external_members(services: Services) -> None:
    team = await _team(services)
    scope = await team.scope(services, team.external)

    counted = await organisations.sharing_recipients(
        scope, team.organisation.id, first=10, after_id=None
    )
    page, total = counted.page, await counted.count()

    assert [e.user.email for e in page.items] == [
        "legal@example.test",
        "admin@example.test",
        "collab@example.test",
    ]
    assert page.total_count == total == 3


# --- the current organisation (ORG-2) and premium support (ORG-7) -----------------------------


async def test_org2_act1_a_member_of_two_organisations_switches_between_them(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    other = await factories.sign_up(services, email="other@example.test")
    await Membership.create(
        organisation=other.organisation,
        user=team.collaborator.user,
        role=Role.EXTERNAL,
        created_at=services.clock.now(),
    )
    scope = await team.scope(services, team.collaborator)

    switched = await members.switch_organisation(services, meta, scope, other.organisation.id)

    assert (switched.organisation_id, switched.role) == (other.organisation.id, Role.EXTERNAL)
    user = await User.get(id=team.collaborator.user.id)
    assert user.current_organisation_id == other.organisation.id
    (event,) = await _events("organisation.switched")
    # An account event: not in either organisation's activity.
    assert (event.actor_id, event.subject_id, event.organisation_id) == (
        team.collaborator.user.id,
        team.collaborator.user.id,
        None,
    )
    assert event.data == {
        "organisation_id": other.organisation.id,
        "previous_organisation_id": team.organisation.id,
    }


async def test_org7_act1_managers_subscribe_and_cancel_premium_support_with_who_and_when(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    team = await _team(services)
    admin = await team.scope(services, team.admin)
    legal = await team.scope(services, team.legal)

    subscribed = await members.set_support_plan(
        services, meta, admin, team.organisation.id, SupportPlan.PREMIUM
    )
    subscribed_at = clock.now()
    after_subscription = await Organisation.get(id=team.organisation.id)
    clock.advance(timedelta(hours=1))
    await members.set_support_plan(
        services, meta, legal, team.organisation.id, SupportPlan.STANDARD
    )

    organisation = await Organisation.get(id=team.organisation.id)
    assert subscribed.support_plan == SupportPlan.PREMIUM
    assert after_subscription.support_plan == SupportPlan.PREMIUM
    assert after_subscription.support_plan_changed_at == subscribed_at
    assert organisation.support_plan == SupportPlan.STANDARD
    assert organisation.support_plan_changed_at == clock.now()
    events = await _events("support_plan.changed")
    assert [(e.actor_id, e.organisation_id, e.occurred_at, e.data) for e in events] == [
        (
            team.admin.user.id,
            team.organisation.id,
            subscribed_at,
            {"previous_plan": "STANDARD", "plan": "PREMIUM"},
        ),
        (
            team.legal.user.id,
            team.organisation.id,
            clock.now(),
            {"previous_plan": "PREMIUM", "plan": "STANDARD"},
        ),
    ]


# --- atomicity (ACT-1) -----------------------------------------------------------------------


@asynccontextmanager
async def activity_log_refusing_writes(database: str) -> AsyncIterator[None]:
    """A real database trigger that refuses every new activity event, so the transaction of an
    operation fails at its last step: what it changed before must roll back with it."""
    connection = get_connection("default")
    sqlite = database.startswith("sqlite")
    if sqlite:
        await connection.execute_script(
            "CREATE TRIGGER refuse_activity BEFORE INSERT ON activity_event"
            " BEGIN SELECT RAISE(ABORT, 'activity log refused'); END;"
        )
    else:
        await connection.execute_script(
            "CREATE FUNCTION refuse_activity() RETURNS trigger AS $$"
            " BEGIN RAISE EXCEPTION 'activity log refused'; END; $$ LANGUAGE plpgsql;"
            " CREATE TRIGGER refuse_activity BEFORE INSERT ON activity_event"
            " FOR EACH ROW EXECUTE FUNCTION refuse_activity();"
        )
    try:
        yield
    finally:
        await connection.execute_script(
            "DROP TRIGGER refuse_activity"
            if sqlite
            else "DROP TRIGGER refuse_activity ON activity_event; DROP FUNCTION refuse_activity();"
        )


async def test_act1_a_change_whose_event_cannot_be_written_does_not_happen(
    services: Services, meta: RequestMeta, database: str
) -> None:
    team = await _team(services)
    scope = await team.scope(services, team.admin)
    before = await _state()

    async with activity_log_refusing_writes(database):
        with pytest.raises(Exception, match="activity log refused"):
            await members.change_member_role(
                services, meta, scope, team.collaborator.membership.id, Role.EXTERNAL
            )
        with pytest.raises(Exception, match="activity log refused"):
            await members.remove_member(services, meta, scope, team.external.membership.id)

    assert await _state() == before
    assert await _role(team.collaborator) == Role.COLLABORATOR
