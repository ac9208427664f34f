"""Domain operations without GraphQL: renew, restore, warranty, lookup."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from gardien.clock import ManualClock
from gardien.models.activity import ActivityEvent
from gardien.models.domains import Domain, DomainCharge
from gardien.models.enums import DomainStatus, ProductKind, Role
from gardien.models.organisations import Organisation
from gardien.models.products import Product, ProductGrant
from gardien.resolvers import domains
from gardien.resolvers.authz import Actor, RequestScope
from gardien.resolvers.domains import LookupAnswer
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from tests import factories

pytestmark = pytest.mark.usefixtures("database")


async def _manager(services: Services) -> tuple[Organisation, RequestScope]:
    owner = await factories.sign_up(services)
    assert owner.user.email is not None
    return owner.organisation, await factories.signed_in_scope(services, owner.user.email)


async def _member(services: Services, organisation: Organisation, role: Role) -> RequestScope:
    member = await factories.add_member(services, organisation, role)
    assert member.user.email is not None
    return await factories.signed_in_scope(services, member.user.email)


async def _state(domain_id: int) -> tuple[dict[str, Any], int, int]:
    """Everything an operation could change: the row, domain events, charges."""
    row = await Domain.filter(id=domain_id).values()
    events = await ActivityEvent.filter(type__startswith="domain.").count()
    charges = await DomainCharge.filter(domain_id=domain_id).count()
    return row[0], events, charges


async def _refused(call: Any, domain_id: int) -> tuple[ErrorCode, str | None]:
    before = await _state(domain_id)
    with pytest.raises(DomainError) as raised:
        await call
    assert await _state(domain_id) == before, "a refused operation changed something"
    return raised.value.code, raised.value.field


async def test_dom2_act1_renewal_extends_from_the_current_expiry_not_from_today(
    services: Services, meta: RequestMeta
) -> None:
    organisation, manager = await _manager(services)
    domain = await factories.add_domain(
        services, organisation, "later.ch", expires_in=timedelta(days=200)
    )
    expiry = domain.expires_at

    view = await domains.renew_domain(services, meta, manager, domain.id, 2)

    stored = await Domain.get(id=domain.id)
    assert stored.expires_at == view.domain.expires_at == expiry.replace(year=expiry.year + 2)
    assert (view.restore_fee, view.currency) == (Decimal("120.00"), "CHF")
    event = await ActivityEvent.get(type="domain.renewed")
    assert (event.actor_id, event.organisation_id, event.ip) == (
        manager.actor.user_id,
        organisation.id,
        meta.ip,
    )
    assert event.data == {
        "domain_id": domain.id,
        "domain": "later.ch",
        "years": 2,
        "previous_expires_at": expiry.isoformat(),
        "expires_at": stored.expires_at.isoformat(),
    }


def test_dom2_renewal_of_29_february_lands_on_28_february() -> None:
    from datetime import UTC, datetime

    leap = datetime(2028, 2, 29, 12, 0, tzinfo=UTC)

    assert domains.add_years(leap, 1) == datetime(2029, 2, 28, 12, 0, tzinfo=UTC)
    assert domains.add_years(leap, 4) == leap.replace(year=2032)


@pytest.mark.parametrize("years", [0, -1, 11, 100])
async def test_dom2_renewal_years_outside_1_to_10_refused(
    services: Services, meta: RequestMeta, years: int
) -> None:
    organisation, manager = await _manager(services)
    domain = await factories.add_domain(
        services, organisation, "years.ch", expires_in=timedelta(days=20)
    )

    refused = await _refused(
        domains.renew_domain(services, meta, manager, domain.id, years), domain.id
    )

    assert refused == (ErrorCode.INVALID_INPUT, "years")


async def test_dom2_dom3_renewing_released_or_redeeming_domain_refused(
    services: Services, meta: RequestMeta
) -> None:
    organisation, manager = await _manager(services)
    released = await factories.add_domain(
        services,
        organisation,
        "old.be",
        expires_in=-timedelta(days=90),
        status=DomainStatus.RELEASED,
    )
    redeeming = await factories.add_domain(
        services,
        organisation,
        "late.be",
        expires_in=-timedelta(days=3),
        status=DomainStatus.REDEMPTION,
        redemption_ends_in=timedelta(days=37),
    )

    renew_released = await _refused(
        domains.renew_domain(services, meta, manager, released.id, 1), released.id
    )
    renew_redeeming = await _refused(
        domains.renew_domain(services, meta, manager, redeeming.id, 1), redeeming.id
    )
    restore_released = await _refused(
        domains.restore_domain(services, meta, manager, released.id), released.id
    )
    warranty_released = await _refused(
        domains.set_renewal_warranty(services, meta, manager, released.id, True), released.id
    )

    assert [renew_released, renew_redeeming, restore_released, warranty_released] == [
        (ErrorCode.DOMAIN_RELEASED, "domainId"),
        (ErrorCode.DOMAIN_IN_REDEMPTION, "domainId"),
        (ErrorCode.DOMAIN_RELEASED, "domainId"),
        (ErrorCode.DOMAIN_RELEASED, "domainId"),
    ]


async def test_dom3_restoring_an_active_domain_refused(
    services: Services, meta: RequestMeta
) -> None:
    organisation, manager = await _manager(services)
    domain = await factories.add_domain(
        services, organisation, "fine.fr", expires_in=timedelta(days=100)
    )

    refused = await _refused(domains.restore_domain(services, meta, manager, domain.id), domain.id)

    assert refused == (ErrorCode.DOMAIN_NOT_IN_REDEMPTION, "domainId")


async def test_dom3_restore_after_the_redemption_period_refused_before_the_runner_releases(
    services: Services, meta: RequestMeta
) -> None:
    organisation, manager = await _manager(services)
    domain = await factories.add_domain(
        services,
        organisation,
        "toolate.fr",
        expires_in=-timedelta(days=31),
        status=DomainStatus.REDEMPTION,
        redemption_ends_in=-timedelta(days=1),
    )

    refused = await _refused(domains.restore_domain(services, meta, manager, domain.id), domain.id)

    assert refused == (ErrorCode.DOMAIN_RELEASED, "domainId")


async def test_dom3_act1_restore_charges_the_tld_fee_and_reactivates_for_a_year(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    organisation, manager = await _manager(services)
    domain = await factories.add_domain(
        services,
        organisation,
        "back.com",
        expires_in=-timedelta(days=10),
        status=DomainStatus.REDEMPTION,
        redemption_ends_in=timedelta(days=20),
    )
    now = clock.now()

    restored = await domains.restore_domain(services, meta, manager, domain.id)

    stored = await Domain.get(id=domain.id)
    charge = await DomainCharge.get(domain_id=domain.id)
    assert (stored.status, stored.expires_at, stored.redemption_ends_at) == (
        DomainStatus.ACTIVE,
        now.replace(year=now.year + 1),
        None,
    )
    assert (stored.restored_at, stored.restore_fee_paid, stored.live_name) == (
        now,
        Decimal("80.00"),
        "back.com",
    )
    assert (charge.kind, charge.amount, charge.currency, charge.charged_by_id) == (
        "RESTORE",
        Decimal("80.00"),
        "USD",
        manager.actor.user_id,
    )
    assert (restored.charge.id, restored.view.domain.status) == (charge.id, DomainStatus.ACTIVE)
    event = await ActivityEvent.get(type="domain.restored")
    assert (event.actor_id, event.organisation_id) == (manager.actor.user_id, organisation.id)
    assert event.data == {
        "domain_id": domain.id,
        "domain": "back.com",
        "amount": "80.00",
        "currency": "USD",
        "expires_at": stored.expires_at.isoformat(),
    }


async def test_dom2_other_organisations_domain_is_not_found_like_an_unknown_id(
    services: Services, meta: RequestMeta
) -> None:
    organisation, _ = await _manager(services)
    _, stranger = await _manager(services)
    domain = await factories.add_domain(
        services, organisation, "theirs.ch", expires_in=timedelta(days=20)
    )

    other = await _refused(domains.renew_domain(services, meta, stranger, domain.id, 1), domain.id)
    unknown = await _refused(
        domains.renew_domain(services, meta, stranger, domain.id + 1000, 1), domain.id
    )
    restore = await _refused(domains.restore_domain(services, meta, stranger, domain.id), domain.id)

    assert other == unknown == restore == (ErrorCode.NOT_FOUND, "domainId")


@pytest.mark.parametrize("role", [Role.COLLABORATOR, Role.EXTERNAL])
async def test_dom2_org3_collaborators_and_externals_manage_domains_only_when_granted(
    services: Services, meta: RequestMeta, role: Role
) -> None:
    """The roles table: they manage only the products granted to them. A grant of another kind
    of product gives nothing; the DOMAIN product's grant lets them manage its domains (BLK-1
    may block that: tests/resolvers/test_blocking.py)."""
    organisation, _ = await _manager(services)
    member = await factories.add_member(services, organisation, role)
    drive = await Product.create(
        organisation=organisation,
        kind=ProductKind.WEB_DRIVE,
        name="Drive",
        created_at=services.clock.now(),
    )
    await ProductGrant.create(membership=member.membership, product=drive)
    assert member.user.email is not None
    actor = await factories.signed_in_scope(services, member.user.email)
    domain = await factories.add_domain(
        services, organisation, "team.ch", expires_in=timedelta(days=20)
    )

    refused = [
        await _refused(domains.renew_domain(services, meta, actor, domain.id, 1), domain.id),
        await _refused(domains.restore_domain(services, meta, actor, domain.id), domain.id),
        await _refused(
            domains.set_renewal_warranty(services, meta, actor, domain.id, True), domain.id
        ),
    ]
    product = await Product.create(
        organisation=organisation,
        kind=ProductKind.DOMAIN,
        name="Domains",
        created_at=services.clock.now(),
    )
    await ProductGrant.create(membership=member.membership, product=product)
    renewed = await domains.renew_domain(services, meta, actor, domain.id, 1)
    warranty = await domains.set_renewal_warranty(services, meta, actor, domain.id, True)

    assert refused == [(ErrorCode.FORBIDDEN, None)] * 3
    assert renewed.domain.expires_at.year == domain.expires_at.year + 1
    assert warranty.domain.renewal_warranty is True


async def test_dom4_act1_warranty_switch_recorded_once_per_change(
    services: Services, meta: RequestMeta
) -> None:
    organisation, manager = await _manager(services)
    domain = await factories.add_domain(
        services, organisation, "switch.ch", expires_in=timedelta(days=20)
    )

    on = await domains.set_renewal_warranty(services, meta, manager, domain.id, True)
    again = await domains.set_renewal_warranty(services, meta, manager, domain.id, True)
    off = await domains.set_renewal_warranty(services, meta, manager, domain.id, False)

    assert (on.domain.renewal_warranty, again.domain.renewal_warranty) == (True, True)
    assert off.domain.renewal_warranty is False
    assert not (await Domain.get(id=domain.id)).renewal_warranty
    events = await ActivityEvent.filter(type="domain.renewal_warranty_changed").order_by("id")
    assert [e.data["enabled"] for e in events] == [True, False]


# --- DOM-5: lookup --------------------------------------------------------------------------------


async def test_dom5_lookup_own_domain_normalised_with_its_organisation(
    services: Services,
) -> None:
    organisation, manager = await _manager(services)
    await factories.add_domain(
        services, organisation, "xn--cole-9oa.ch", expires_in=timedelta(days=9)
    )

    found = await domains.lookup_domain(services, manager, "  ÉCOLE.ch. ")

    assert (found.name, found.answer) == ("xn--cole-9oa.ch", LookupAnswer.IN_YOUR_ORGANISATION)
    assert found.caller is not None and found.caller.organisation_id == organisation.id
    assert found.view is not None and found.view.domain.name == "xn--cole-9oa.ch"


async def test_dom5_other_customers_domain_answers_like_an_unregistered_name(
    services: Services,
) -> None:
    theirs, _ = await _manager(services)
    _, caller = await _manager(services)
    await factories.add_domain(services, theirs, "taken.ch", expires_in=timedelta(days=9))
    await factories.add_domain(
        services,
        theirs,
        "dropped.ch",
        expires_in=-timedelta(days=90),
        status=DomainStatus.RELEASED,
    )

    held = await domains.lookup_domain(services, caller, "taken.ch")
    released_by_them = await domains.lookup_domain(services, caller, "dropped.ch")
    nobody = await domains.lookup_domain(services, caller, "nobody-has-this.ch")

    assert [(r.answer, r.caller, r.view) for r in (held, released_by_them, nobody)] == [
        (LookupAnswer.NOT_REACHABLE, None, None)
    ] * 3


async def test_dom5_lookup_released_name_of_own_organisation(services: Services) -> None:
    organisation, manager = await _manager(services)
    await factories.add_domain(
        services,
        organisation,
        "former.be",
        expires_in=-timedelta(days=90),
        status=DomainStatus.RELEASED,
    )

    found = await domains.lookup_domain(services, manager, "FORMER.be")

    assert found.answer == LookupAnswer.RELEASED
    assert found.caller is not None and found.caller.organisation_id == organisation.id
    assert found.view is None


async def test_dom5_member_without_domain_access_learns_the_organisation_not_the_domain(
    services: Services,
) -> None:
    organisation, _ = await _manager(services)
    collaborator = await _member(services, organisation, Role.COLLABORATOR)
    await factories.add_domain(services, organisation, "ours.ch", expires_in=timedelta(days=9))

    found = await domains.lookup_domain(services, collaborator, "ours.ch")

    assert found.answer == LookupAnswer.IN_YOUR_ORGANISATION
    assert found.caller is not None and found.caller.organisation_id == organisation.id
    assert found.view is None


@pytest.mark.parametrize(
    "name",
    [
        "",
        " ",
        ".",
        "nodot",
        "-lead.ch",
        "trail-.ch",
        "a..b.ch",
        "a b.ch",
        "under_score.ch",
        "x" * 64 + ".ch",
        "1.2.3.4",
        ("a" * 60 + ".") * 5 + "ch",
    ],
)
async def test_dom5_invalid_names_are_invalid_input(services: Services, name: str) -> None:
    _, manager = await _manager(services)

    with pytest.raises(DomainError) as raised:
        await domains.lookup_domain(services, manager, name)

    assert (raised.value.code, raised.value.field) == (ErrorCode.INVALID_INPUT, "name")


async def test_dom5_lookups_are_rate_limited_per_account(services: Services) -> None:
    """ASVS 4 V11.1.4: anti-automation on a guessable input."""
    _, manager = await _manager(services)
    _, other = await _manager(services)
    for _ in range(domains.DOMAIN_LOOKUPS_PER_ACCOUNT.limit):
        await domains.lookup_domain(services, manager, "probe.ch")

    with pytest.raises(DomainError) as raised:
        await domains.lookup_domain(services, manager, "probe.ch")
    still_allowed = await domains.lookup_domain(services, other, "probe.ch")

    assert raised.value.code == ErrorCode.TOO_MANY_ATTEMPTS
    assert still_allowed.answer == LookupAnswer.NOT_REACHABLE


async def test_dom5_lookup_needs_a_signed_in_caller(services: Services) -> None:
    with pytest.raises(DomainError) as raised:
        await domains.lookup_domain(services, RequestScope(Actor()), "demo.ch")

    assert raised.value.code == ErrorCode.UNAUTHENTICATED
