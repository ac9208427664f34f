"""The domain lifecycle driven by the job runner: reminders, redemption, warranty, release.

The clock is moved across every boundary; each reminder and each transition must happen once,
also when two runners work at the same moment (separate connections on PostgreSQL).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from gardien.clock import ManualClock
from gardien.jobs import run_due
from gardien.models.activity import ActivityEvent
from gardien.models.domains import Domain, DomainReminder
from gardien.models.enums import DomainStatus, OutboxChannel, ProductKind, Role
from gardien.models.organisations import Membership, UserBlock
from gardien.models.outbox import OutboxMessage
from gardien.models.products import Product, ProductGrant
from gardien.models.users import User
from gardien.resolvers import domains
from gardien.resolvers.domain_lifecycle import JobReport
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from tests import factories

pytestmark = pytest.mark.usefixtures("database")

NOTHING = JobReport()


async def _organisation_with_recipient(services: Services) -> tuple[Any, User]:
    """An organisation whose administrator (German) wants domain notices; its owner does not."""
    owner = await factories.sign_up(services)
    admin = await factories.add_member(services, owner.organisation, Role.ADMINISTRATOR)
    await Membership.filter(id=admin.membership.id).update(notify_domain_expiry=True)
    await User.filter(id=admin.user.id).update(language="de")
    await factories.add_member(services, owner.organisation, Role.COLLABORATOR)
    return owner.organisation, admin.user


async def _domain_events() -> list[tuple[str, dict[str, Any]]]:
    return [
        (e.type, e.data)
        for e in await ActivityEvent.filter(type__startswith="domain.").order_by("id")
    ]


async def test_dom1_dom3_act1_every_boundary_crossed_once(
    services: Services, clock: ManualClock
) -> None:
    organisation, admin = await _organisation_with_recipient(services)
    domain = await factories.add_domain(
        services, organisation, "boundary.fr", expires_in=timedelta(days=31)
    )
    expiry = domain.expires_at
    reports: list[JobReport] = []

    reports.append(await run_due(services))  # 31 days before: nothing yet
    for days_before in (30, 7, 1):
        clock.advance(expiry - timedelta(days=days_before) - clock.now())
        reports.append(await run_due(services))
        reports.append(await run_due(services))  # the same moment again: nothing more
    clock.advance(expiry - timedelta(seconds=1) - clock.now())
    reports.append(await run_due(services))  # one second before expiry: still active
    clock.advance(timedelta(seconds=1))
    reports.append(await run_due(services))
    reports.append(await run_due(services))
    at_redemption = await Domain.get(id=domain.id)
    clock.advance(timedelta(days=30) - timedelta(seconds=1))
    reports.append(await run_due(services))  # .fr: 30 days of redemption, not over yet
    clock.advance(timedelta(seconds=1))
    reports.append(await run_due(services))
    reports.append(await run_due(services))

    released = await Domain.get(id=domain.id)
    assert reports == [
        NOTHING,
        JobReport(reminders_sent=1),
        NOTHING,
        JobReport(reminders_sent=1),
        NOTHING,
        JobReport(reminders_sent=1),
        NOTHING,
        NOTHING,
        JobReport(entered_redemption=1),
        NOTHING,
        NOTHING,
        JobReport(released=1),
        NOTHING,
    ]
    assert (at_redemption.status, at_redemption.redemption_ends_at) == (
        DomainStatus.REDEMPTION,
        expiry + timedelta(days=30),
    )
    assert (released.status, released.live_name, released.released_at) == (
        DomainStatus.RELEASED,
        None,
        expiry + timedelta(days=30),
    )
    assert [
        r.days_before for r in await DomainReminder.filter(domain_id=domain.id).order_by("id")
    ] == [30, 7, 1]
    mails = await OutboxMessage.all().order_by("id")
    assert [(m.channel, m.recipient, m.template, m.language) for m in mails] == [
        (OutboxChannel.EMAIL, admin.email, "domain_expiry_reminder", "de")
    ] * 3
    assert [m.payload["subject"] for m in mails] == [
        "Die Domain boundary.fr läuft in 30 Tagen ab",
        "Die Domain boundary.fr läuft in 7 Tagen ab",
        "Die Domain boundary.fr läuft in 1 Tag ab",
    ]
    assert all("/console/#/domains" in m.payload["text"] for m in mails)
    events = await _domain_events()
    assert [t for t, _ in events] == [
        "domain.expiry_reminder_sent",
        "domain.expiry_reminder_sent",
        "domain.expiry_reminder_sent",
        "domain.entered_redemption",
        "domain.released",
    ]
    assert [d.get("days_before") for _, d in events[:3]] == [30, 7, 1]
    assert all(d["recipients"] == 1 for _, d in events[:3])
    assert await ActivityEvent.filter(
        type__startswith="domain.", organisation_id=organisation.id, actor_id=None
    ).count() == len(events)


async def test_dom1_late_runner_sends_only_the_most_urgent_pending_reminder(
    services: Services, clock: ManualClock
) -> None:
    organisation, _ = await _organisation_with_recipient(services)
    domain = await factories.add_domain(
        services, organisation, "late.ch", expires_in=timedelta(days=5)
    )

    first = await run_due(services)  # the runner never ran at 30 days: only the 7-day one
    clock.advance(timedelta(days=4, hours=1))  # 23 hours left
    second = await run_due(services)
    third = await run_due(services)

    assert (first, second, third) == (
        JobReport(reminders_sent=1),
        JobReport(reminders_sent=1),
        NOTHING,
    )
    assert [
        r.days_before for r in await DomainReminder.filter(domain_id=domain.id).order_by("id")
    ] == [7, 1]
    assert await OutboxMessage.all().count() == 2


async def test_dom1_no_reminder_after_expiry_nor_to_members_who_opted_out(
    services: Services, clock: ManualClock
) -> None:
    owner = await factories.sign_up(services)  # notify_domain_expiry is off by default
    await factories.add_domain(
        services, owner.organisation, "quiet.com", expires_in=timedelta(days=2)
    )
    expired = await factories.add_domain(
        services, owner.organisation, "gone.com", expires_in=-timedelta(hours=1)
    )

    report = await run_due(services)

    assert report == JobReport(entered_redemption=1, reminders_sent=1)
    assert await OutboxMessage.all().count() == 0
    assert not await DomainReminder.filter(domain_id=expired.id).exists()
    sent = await ActivityEvent.get(type="domain.expiry_reminder_sent")
    assert (sent.data["domain"], sent.data["days_before"], sent.data["recipients"]) == (
        "quiet.com",
        7,
        0,
    )


async def test_dom1_reminders_go_only_to_members_who_may_see_the_domains(
    services: Services,
) -> None:
    """A reminder names the domain and its expiry: it goes to those organisation.domains shows
    them to (ORG-3: EXTERNAL only with the DOMAIN product), never to a blocked user (BLK-3).
    OWASP ASVS 4.0.3 V4.1.3 (least privilege) holds for e-mail as for the API."""
    owner = await factories.sign_up(services)
    organisation = owner.organisation
    without = await factories.add_member(services, organisation, Role.EXTERNAL)
    granted = await factories.add_member(services, organisation, Role.EXTERNAL)
    blocked = await factories.add_member(services, organisation, Role.ADMINISTRATOR)
    admin = await factories.add_member(services, organisation, Role.ADMINISTRATOR)
    for member in (without, granted, blocked, admin):
        await Membership.filter(id=member.membership.id).update(notify_domain_expiry=True)
    domain_product = await Product.create(
        organisation=organisation,
        kind=ProductKind.DOMAIN,
        name="Domains",
        created_at=services.clock.now(),
    )
    await ProductGrant.create(membership=granted.membership, product=domain_product)
    await UserBlock.create(
        organisation=organisation,
        user=blocked.user,
        justification="Phone lost, reported by the legal representative",
        created_at=services.clock.now(),
    )
    await factories.add_domain(services, organisation, "private.ch", expires_in=timedelta(days=5))

    report = await run_due(services)

    assert report == JobReport(reminders_sent=1)
    recipients: list[Any] = (
        await OutboxMessage.all().order_by("id").values_list("recipient", flat=True)
    )
    assert recipients == [granted.user.email, admin.user.email]
    sent = await ActivityEvent.get(type="domain.expiry_reminder_sent")
    assert sent.data["recipients"] == 2


async def test_dom1_renewal_starts_a_new_reminder_cycle(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    organisation, _ = await _organisation_with_recipient(services)
    owner = await Membership.get(organisation_id=organisation.id, role=Role.LEGAL_REPRESENTATIVE)
    domain = await factories.add_domain(
        services, organisation, "cycle.be", expires_in=timedelta(days=6)
    )
    actor = await factories.signed_in_scope(
        services, (await User.get(id=owner.user_id)).email or ""
    )

    await run_due(services)
    await domains.renew_domain(services, meta, actor, domain.id, 1)
    after_renewal = await run_due(services)
    clock.advance(timedelta(days=365 + 6 - 7))
    next_year = await run_due(services)

    assert after_renewal == NOTHING
    assert next_year == JobReport(reminders_sent=1)
    reminders = await DomainReminder.filter(domain_id=domain.id).order_by("id")
    assert [(r.days_before, r.expires_at.year) for r in reminders] == [(7, 2026), (7, 2027)]


async def test_dom4_warranty_renews_for_one_year_from_expiry_instead_of_redemption(
    services: Services, clock: ManualClock
) -> None:
    owner = await factories.sign_up(services)
    domain = await factories.add_domain(
        services,
        owner.organisation,
        "kept.ch",
        expires_in=timedelta(hours=1),
        renewal_warranty=True,
    )
    expiry = domain.expires_at

    clock.advance(timedelta(hours=1))
    first = await run_due(services)
    second = await run_due(services)

    kept = await Domain.get(id=domain.id)
    assert (first, second) == (JobReport(renewed_by_warranty=1), NOTHING)
    assert (kept.status, kept.expires_at, kept.redemption_ends_at, kept.live_name) == (
        DomainStatus.ACTIVE,
        expiry.replace(year=expiry.year + 1),
        None,
        "kept.ch",
    )
    assert await _domain_events() == [
        (
            "domain.renewed_by_warranty",
            {
                "domain_id": domain.id,
                "domain": "kept.ch",
                "previous_expires_at": expiry.isoformat(),
                "expires_at": kept.expires_at.isoformat(),
            },
        )
    ]


async def test_dom3_a_runner_that_missed_the_whole_redemption_releases_in_one_run(
    services: Services, clock: ManualClock
) -> None:
    owner = await factories.sign_up(services)
    domain = await factories.add_domain(
        services, owner.organisation, "forgotten.de", expires_in=timedelta(days=1)
    )

    clock.advance(timedelta(days=60))
    report = await run_due(services)

    released = await Domain.get(id=domain.id)
    assert report == JobReport(entered_redemption=1, released=1)
    assert released.status == DomainStatus.RELEASED
    assert [t for t, _ in await _domain_events()] == [
        "domain.entered_redemption",
        "domain.released",
    ]


async def test_dom1_dom3_two_runners_at_once_do_everything_exactly_once(
    services: Services, clock: ManualClock
) -> None:
    organisation, _ = await _organisation_with_recipient(services)
    for index in range(6):
        await factories.add_domain(
            services, organisation, f"remind{index}.com", expires_in=timedelta(days=6)
        )
        await factories.add_domain(
            services, organisation, f"expire{index}.com", expires_in=-timedelta(minutes=1)
        )
        await factories.add_domain(
            services,
            organisation,
            f"release{index}.com",
            expires_in=-timedelta(days=40),
            status=DomainStatus.REDEMPTION,
            redemption_ends_in=-timedelta(minutes=1),
        )
        await factories.add_domain(
            services,
            organisation,
            f"warranty{index}.com",
            expires_in=-timedelta(minutes=1),
            renewal_warranty=True,
        )

    reports = await asyncio.gather(run_due(services), run_due(services), run_due(services))

    assert JobReport(
        entered_redemption=sum(r.entered_redemption for r in reports),
        renewed_by_warranty=sum(r.renewed_by_warranty for r in reports),
        released=sum(r.released for r in reports),
        reminders_sent=sum(r.reminders_sent for r in reports),
    ) == JobReport(entered_redemption=6, renewed_by_warranty=6, released=6, reminders_sent=6)
    assert await DomainReminder.all().count() == 6
    assert await OutboxMessage.all().count() == 6
    events = [t for t, _ in await _domain_events()]
    assert sorted(events) == sorted(
        ["domain.expiry_reminder_sent"] * 6
        + ["domain.entered_redemption"] * 6
        + ["domain.renewed_by_warranty"] * 6
        + ["domain.released"] * 6
    )
    assert await Domain.filter(status=DomainStatus.REDEMPTION).count() == 6
    assert await Domain.filter(status=DomainStatus.RELEASED).count() == 6


async def test_dom2_renewal_racing_the_runner_loses_no_update(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    owner = await factories.sign_up(services)
    domain = await factories.add_domain(
        services, owner.organisation, "race.com", expires_in=-timedelta(hours=1)
    )
    expiry = domain.expires_at
    actor = await factories.signed_in_scope(services, owner.user.email or "")

    async def renew() -> ErrorCode | None:
        try:
            await domains.renew_domain(services, meta, actor, domain.id, 1)
        except DomainError as error:
            return error.code
        return None

    renewal, report = await asyncio.gather(renew(), run_due(services))

    after = await Domain.get(id=domain.id)
    events = [t for t, _ in await _domain_events()]
    if renewal is None:  # the renewal took the row first: the runner found nothing due
        assert (after.status, after.expires_at) == (
            DomainStatus.ACTIVE,
            expiry.replace(year=expiry.year + 1),
        )
        assert (report, events) == (NOTHING, ["domain.renewed"])
    else:  # the runner took it first: the renewal is refused, the domain untouched by it
        assert renewal == ErrorCode.DOMAIN_IN_REDEMPTION
        assert (after.status, after.expires_at) == (DomainStatus.REDEMPTION, expiry)
        assert (report, events) == (
            JobReport(entered_redemption=1),
            ["domain.entered_redemption"],
        )
