"""The domain lifecycle run by gardien.jobs: expiry reminders, redemption, warranty, release."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from gardien.mail.templates import Template
from gardien.models.domains import Domain, DomainReminder, TldPolicy
from gardien.models.enums import DomainStatus
from gardien.resolvers import activity, authz
from gardien.resolvers.domains import add_years
from gardien.resolvers.services import Services

# DOM-1: reminders this many days before expiry; only the most urgent pending one goes out.
REMINDER_DAYS = (30, 7, 1)
# DOM-4: the warranty renews for one year from the expiry it saved the domain from.
WARRANTY_TERM_YEARS = 1


@dataclass(frozen=True)
class JobReport:
    entered_redemption: int = 0
    renewed_by_warranty: int = 0
    released: int = 0
    reminders_sent: int = 0
    # ORG-1: unconfirmed (or confirmed) sign-ups past their expiry, forgotten.
    sign_ups_purged: int = 0
    # ACT-2: known (country, device) pairs not seen for 13 months, forgotten.
    known_devices_purged: int = 0


# Safe with several runners at once: each domain is handled in its own transaction that takes its
# row with FOR UPDATE SKIP LOCKED (PostgreSQL; SQLite runs one transaction at a time), re-checks
# the condition under the lock, and changes state with a conditional UPDATE. A reminder is also
# guarded by the unique (domain, expiry, days_before) row of DomainReminder.


async def _claim(domain_id: int, **conditions: Any) -> Domain | None:
    return (
        await Domain.filter(id=domain_id, **conditions).select_for_update(skip_locked=True).first()
    )


async def _ids(query: QuerySet[Domain]) -> list[int]:
    return [int(row["id"]) for row in await query.order_by("id").values("id")]


async def expire_due(services: Services) -> tuple[int, int]:
    """ACTIVE domains past expiry: into redemption, or renewed by the warranty (DOM-3, DOM-4).

    Returns (entered redemption, renewed by warranty).
    """
    now = services.clock.now()
    due = await _ids(Domain.filter(status=DomainStatus.ACTIVE, expires_at__lte=now))
    redeemed = renewed = 0
    for domain_id in due:
        async with in_transaction():
            domain = await _claim(domain_id, status=DomainStatus.ACTIVE, expires_at__lte=now)
            if domain is None:
                continue
            if domain.renewal_warranty:
                renewed += await _renew_by_warranty(services, domain)
            else:
                redeemed += await _enter_redemption(services, domain)
    return redeemed, renewed


async def _renew_by_warranty(services: Services, domain: Domain) -> int:
    new_expiry = add_years(domain.expires_at, WARRANTY_TERM_YEARS)
    if not await _expire(domain, expires_at=new_expiry):
        return 0
    await activity.domain_renewed_by_warranty(
        services,
        organisation_id=domain.organisation_id,
        domain_id=domain.id,
        name=domain.name,
        previous_expires_at=domain.expires_at.isoformat(),
        expires_at=new_expiry.isoformat(),
    )
    return 1


async def _enter_redemption(services: Services, domain: Domain) -> int:
    policy = await TldPolicy.get(tld=domain.tld_id)
    ends = domain.expires_at + timedelta(days=policy.redemption_days)
    if not await _expire(domain, status=DomainStatus.REDEMPTION, redemption_ends_at=ends):
        return 0
    await activity.domain_entered_redemption(
        services,
        organisation_id=domain.organisation_id,
        domain_id=domain.id,
        name=domain.name,
        expired_at=domain.expires_at.isoformat(),
        redemption_ends_at=ends.isoformat(),
    )
    return 1


async def _expire(domain: Domain, **changes: Any) -> bool:
    """Applies what expiry does to a claimed domain, only while it is still as it was read:
    ACTIVE, with the same expiry and warranty. A renewal or a switch of the warranty committed
    meanwhile wins, and the runner leaves the domain alone (DOM-2, DOM-4)."""
    updated = await Domain.filter(
        id=domain.id,
        status=DomainStatus.ACTIVE,
        expires_at=domain.expires_at,
        renewal_warranty=domain.renewal_warranty,
    ).update(**changes)
    return bool(updated)


async def release_due(services: Services) -> int:
    """Domains whose redemption period is over are released: anyone may register them (DOM-3)."""
    now = services.clock.now()
    due = await _ids(Domain.filter(status=DomainStatus.REDEMPTION, redemption_ends_at__lte=now))
    released = 0
    for domain_id in due:
        async with in_transaction():
            domain = await _claim(
                domain_id, status=DomainStatus.REDEMPTION, redemption_ends_at__lte=now
            )
            if domain is None:
                continue
            updated = await Domain.filter(
                id=domain.id, status=DomainStatus.REDEMPTION, redemption_ends_at__lte=now
            ).update(status=DomainStatus.RELEASED, live_name=None, released_at=now)
            if not updated:
                continue
            await activity.domain_released(
                services,
                organisation_id=domain.organisation_id,
                domain_id=domain.id,
                name=domain.name,
            )
            released += 1
    return released


def most_urgent_reminder(expires_at: datetime, now: datetime) -> int | None:
    """The reminder due now: the one with the fewest days left (a late 30-day one is skipped
    when the 7-day one is due), or None before 30 days or after expiry."""
    if expires_at <= now:
        return None
    due = [days for days in REMINDER_DAYS if expires_at - timedelta(days=days) <= now]
    return min(due) if due else None


async def send_due_reminders(services: Services) -> int:
    """DOM-1: e-mail the most urgent pending expiry reminder of each domain, once."""
    now = services.clock.now()
    horizon = now + timedelta(days=max(REMINDER_DAYS))
    due = await _ids(
        Domain.filter(status=DomainStatus.ACTIVE, expires_at__gt=now, expires_at__lte=horizon)
    )
    sent = 0
    for domain_id in due:
        try:
            sent += await _send_reminder(services, domain_id, now)
        except IntegrityError:
            # Another runner recorded this very reminder first; it is sent, once.
            continue
    return sent


async def _send_reminder(services: Services, domain_id: int, now: datetime) -> int:
    async with in_transaction():
        domain = await _claim(domain_id, status=DomainStatus.ACTIVE, expires_at__gt=now)
        if domain is None:
            return 0
        days_before = most_urgent_reminder(domain.expires_at, now)
        if days_before is None or await DomainReminder.exists(
            domain_id=domain.id, expires_at=domain.expires_at, days_before=days_before
        ):
            return 0
        await DomainReminder.create(
            domain=domain, expires_at=domain.expires_at, days_before=days_before, sent_at=now
        )
        queued = 0
        for membership in await authz.domain_notice_recipients(domain.organisation_id):
            user = membership.user
            if user.email is None:
                continue
            # Queued in this transaction: the e-mail exists exactly when its DomainReminder does.
            await services.mail.enqueue(
                Template.DOMAIN_EXPIRY_REMINDER,
                to=user.email,
                language=user.language,
                timezone=user.timezone,
                context={
                    "domain": domain.name,
                    "organisation": membership.organisation.name,
                    "expires_at": domain.expires_at,
                    "days_before": days_before,
                    "renewal_warranty": domain.renewal_warranty,
                    "link": f"{services.settings.public_url}/console/#/domains",
                },
            )
            queued += 1
        await activity.domain_expiry_reminder_sent(
            services,
            organisation_id=domain.organisation_id,
            domain_id=domain.id,
            name=domain.name,
            expires_at=domain.expires_at.isoformat(),
            days_before=days_before,
            recipients=queued,
        )
    return 1
