"""Domains: listing, lookup, renew/restore/warranty, and the lifecycle jobs (DOM-1…DOM-5)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from gardien.mail.templates import Template
from gardien.models.domains import Domain, DomainCharge, DomainReminder, TldPolicy
from gardien.models.enums import DomainStatus
from gardien.models.organisations import Membership, Organisation
from gardien.resolvers import activity, authz, ratelimits
from gardien.resolvers.authz import RequestScope
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.pagination import Page, forward_page
from gardien.resolvers.services import RequestMeta, Services

# DOM-1: reminders this many days before expiry; only the most urgent pending one goes out.
REMINDER_DAYS = (30, 7, 1)
MAX_RENEWAL_YEARS = 10  # the longest registration term registries accept
# DOM-3: a restored domain is registered again for one year from the day of the restore.
RESTORE_TERM_YEARS = 1
# DOM-4: the warranty renews for one year from the expiry it saved the domain from.
WARRANTY_TERM_YEARS = 1
RESTORE_CHARGE = "RESTORE"
# DOM-5: a domain name is a guessable input; a generous budget per account stops enumeration.
DOMAIN_LOOKUPS_PER_ACCOUNT = ratelimits.Rule("domain_lookup_account", 120, timedelta(minutes=10))

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True)
class DomainView:
    """A domain with its TLD's restore fee (DOM-3), as every read of a domain shows it."""

    domain: Domain
    restore_fee: Decimal
    currency: str


@dataclass(frozen=True)
class Restored:
    view: DomainView
    charge: DomainCharge


class LookupAnswer(StrEnum):
    IN_YOUR_ORGANISATION = "IN_YOUR_ORGANISATION"
    RELEASED = "RELEASED"
    NOT_REACHABLE = "NOT_REACHABLE"


@dataclass(frozen=True)
class Lookup:
    name: str
    answer: LookupAnswer
    organisation: Organisation | None = None
    # Only when the caller may see that organisation's domains.
    view: DomainView | None = None


@dataclass(frozen=True)
class JobReport:
    entered_redemption: int = 0
    renewed_by_warranty: int = 0
    released: int = 0
    reminders_sent: int = 0


# --- names and dates ---------------------------------------------------------------------------


def normalise_domain_name(raw: str) -> str:
    """Lower case, IDNA A-labels, no trailing dot; INVALID_INPUT for anything else."""
    invalid = DomainError(ErrorCode.INVALID_INPUT, "This is not a valid domain name.", "name")
    name = raw.strip().removesuffix(".")
    if not name or len(name) > 253:
        raise invalid
    try:
        name = name.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise invalid from None
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or labels[-1].isdigit():
        raise invalid
    if not all(_LABEL.match(label) for label in labels):
        raise invalid
    return name


def add_years(moment: datetime, years: int) -> datetime:
    """The same calendar day `years` later; 29 February becomes 28 February."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:
        return moment.replace(year=moment.year + years, day=28)


# --- reads -------------------------------------------------------------------------------------


async def _views(domains: Iterable[Domain]) -> list[DomainView]:
    rows = list(domains)
    policies = (
        {p.tld: p for p in await TldPolicy.filter(tld__in={d.tld_id for d in rows})} if rows else {}
    )
    return [
        DomainView(d, policies[d.tld_id].restore_fee, policies[d.tld_id].currency) for d in rows
    ]


async def _view(domain: Domain) -> DomainView:
    return (await _views([domain]))[0]


async def organisation_domains(
    scope: RequestScope,
    organisation_id: int,
    *,
    first: int | None,
    after_id: int | None,
    status: DomainStatus | None,
) -> Page[DomainView]:
    await authz.require_domain_viewer(scope, organisation_id)
    page = await forward_page(_domain_query(organisation_id, status), first, after_id)
    return Page(items=await _views(page.items), has_next_page=page.has_next_page)


async def count_organisation_domains(organisation_id: int, status: DomainStatus | None) -> int:
    return await _domain_query(organisation_id, status).count()


def _domain_query(organisation_id: int, status: DomainStatus | None) -> QuerySet[Domain]:
    query = Domain.filter(organisation_id=organisation_id)
    return query.filter(status=status) if status is not None else query


async def visible_domain(scope: RequestScope, domain_id: int) -> DomainView | None:
    """The domain when the caller may see it (node lookups); None when not, or unknown."""
    domain = await Domain.get_or_none(id=domain_id)
    if domain is None or not await authz.may_view_domains(scope, domain.organisation_id):
        return None
    return await _view(domain)


async def lookup_domain(services: Services, scope: RequestScope, raw_name: str) -> Lookup:
    """DOM-5: in one of the caller's organisations, released by one of them, or not reachable.

    "Not reachable" is the one answer for a name another customer holds, a name nobody holds and
    a name another customer released, so the lookup says nothing about other customers.
    """
    user = authz.require_user(scope.actor)
    await ratelimits.require_allowed(services, DOMAIN_LOOKUPS_PER_ACCOUNT, str(user.id))
    name = normalise_domain_name(raw_name)
    live = await Domain.get_or_none(live_name=name)
    if live is not None:
        if not await _is_member(scope, live.organisation_id):
            return Lookup(name, LookupAnswer.NOT_REACHABLE)
        organisation = await Organisation.get(id=live.organisation_id)
        shown = await authz.may_view_domains(scope, live.organisation_id)
        return Lookup(
            name,
            LookupAnswer.IN_YOUR_ORGANISATION,
            organisation,
            await _view(live) if shown else None,
        )
    released = await Domain.filter(name=name, status=DomainStatus.RELEASED).order_by("-id")
    for domain in released:
        if await _is_member(scope, domain.organisation_id):
            organisation = await Organisation.get(id=domain.organisation_id)
            return Lookup(name, LookupAnswer.RELEASED, organisation)
    return Lookup(name, LookupAnswer.NOT_REACHABLE)


async def _is_member(scope: RequestScope, organisation_id: int) -> bool:
    try:
        await authz.require_visible_organisation(scope, organisation_id)
    except DomainError:
        return False
    return True


# --- operations of managers --------------------------------------------------------------------


async def _require_manager_of_domain(scope: RequestScope, domain_id: int) -> int:
    """The domain's organisation, once the caller is one of its managers.

    An unknown domain and another organisation's domain get the same NOT_FOUND (DOM-5).
    """
    authz.require_user(scope.actor)
    domain = await Domain.get_or_none(id=domain_id)
    if domain is None:
        raise _no_such_domain()
    try:
        await authz.require_domain_manager(scope, domain.organisation_id)
    except DomainError as error:
        if error.code == ErrorCode.NOT_FOUND:
            raise _no_such_domain() from None
        raise
    return domain.organisation_id


def _no_such_domain() -> DomainError:
    return DomainError(ErrorCode.NOT_FOUND, "No such domain.", "domainId")


async def _locked(domain_id: int) -> Domain:
    # Waits for a job runner or another operation holding the row, so no update is lost.
    domain = await Domain.filter(id=domain_id).select_for_update().first()
    if domain is None:
        raise _no_such_domain()
    return domain


def _refuse_released(domain: Domain) -> None:
    if domain.status == DomainStatus.RELEASED:
        raise DomainError(
            ErrorCode.DOMAIN_RELEASED,
            "This domain was released; it can only be registered again.",
            "domainId",
        )


async def renew_domain(
    services: Services, meta: RequestMeta, scope: RequestScope, domain_id: int, years: int
) -> DomainView:
    """DOM-2: extend from the current expiry, not from today."""
    organisation_id = await _require_manager_of_domain(scope, domain_id)
    if not 1 <= years <= MAX_RENEWAL_YEARS:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"A renewal is for 1 to {MAX_RENEWAL_YEARS} years.",
            "years",
        )
    async with in_transaction():
        domain = await _locked(domain_id)
        _refuse_released(domain)
        if domain.status == DomainStatus.REDEMPTION:
            raise DomainError(
                ErrorCode.DOMAIN_IN_REDEMPTION,
                "This domain expired and is in redemption: restore it first.",
                "domainId",
            )
        previous = domain.expires_at
        domain.expires_at = add_years(previous, years)
        await domain.save(update_fields=["expires_at"])
        await activity.domain_renewed(
            services,
            meta,
            actor_id=_user_id(scope),
            organisation_id=organisation_id,
            domain_id=domain.id,
            name=domain.name,
            years=years,
            previous_expires_at=previous.isoformat(),
            expires_at=domain.expires_at.isoformat(),
        )
    return await _view(domain)


async def restore_domain(
    services: Services, meta: RequestMeta, scope: RequestScope, domain_id: int
) -> Restored:
    """DOM-3: during redemption only; the TLD's restore fee is charged, one year from today."""
    organisation_id = await _require_manager_of_domain(scope, domain_id)
    now = services.clock.now()
    async with in_transaction():
        domain = await _locked(domain_id)
        _refuse_released(domain)
        if domain.status != DomainStatus.REDEMPTION:
            raise DomainError(
                ErrorCode.DOMAIN_NOT_IN_REDEMPTION,
                "Only a domain in redemption can be restored; renew an active one.",
                "domainId",
            )
        if domain.redemption_ends_at is not None and domain.redemption_ends_at <= now:
            # The period is over even if the job runner has not released it yet.
            raise DomainError(
                ErrorCode.DOMAIN_RELEASED,
                "The redemption period of this domain has ended.",
                "domainId",
            )
        policy = await TldPolicy.get(tld=domain.tld_id)
        charge = await DomainCharge.create(
            domain=domain,
            kind=RESTORE_CHARGE,
            amount=policy.restore_fee,
            currency=policy.currency,
            charged_at=now,
            charged_by_id=_user_id(scope),
        )
        domain.status = DomainStatus.ACTIVE
        domain.expires_at = add_years(now, RESTORE_TERM_YEARS)
        domain.redemption_ends_at = None
        domain.restored_at = now
        domain.restore_fee_paid = policy.restore_fee
        await domain.save(
            update_fields=[
                "status",
                "expires_at",
                "redemption_ends_at",
                "restored_at",
                "restore_fee_paid",
            ]
        )
        await activity.domain_restored(
            services,
            meta,
            actor_id=_user_id(scope),
            organisation_id=organisation_id,
            domain_id=domain.id,
            name=domain.name,
            amount=str(policy.restore_fee),
            currency=policy.currency,
            expires_at=domain.expires_at.isoformat(),
        )
    return Restored(DomainView(domain, policy.restore_fee, policy.currency), charge)


async def set_renewal_warranty(
    services: Services, meta: RequestMeta, scope: RequestScope, domain_id: int, enabled: bool
) -> DomainView:
    """DOM-4: switch the renewal warranty on or off (not for a released domain)."""
    organisation_id = await _require_manager_of_domain(scope, domain_id)
    async with in_transaction():
        domain = await _locked(domain_id)
        _refuse_released(domain)
        if domain.renewal_warranty != enabled:
            domain.renewal_warranty = enabled
            await domain.save(update_fields=["renewal_warranty"])
            await activity.domain_renewal_warranty_changed(
                services,
                meta,
                actor_id=_user_id(scope),
                organisation_id=organisation_id,
                domain_id=domain.id,
                name=domain.name,
                enabled=enabled,
            )
    return await _view(domain)


def _user_id(scope: RequestScope) -> int:
    return authz.require_user(scope.actor).id


# --- the lifecycle, run by gardien.jobs ---------------------------------------------------------
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
                redeemed += await _enter_redemption(services, domain, now)
    return redeemed, renewed


async def _renew_by_warranty(services: Services, domain: Domain) -> int:
    new_expiry = add_years(domain.expires_at, WARRANTY_TERM_YEARS)
    updated = await Domain.filter(
        id=domain.id, status=DomainStatus.ACTIVE, expires_at=domain.expires_at
    ).update(expires_at=new_expiry)
    if not updated:
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


async def _enter_redemption(services: Services, domain: Domain, now: datetime) -> int:
    policy = await TldPolicy.get(tld=domain.tld_id)
    ends = domain.expires_at + timedelta(days=policy.redemption_days)
    updated = await Domain.filter(
        id=domain.id, status=DomainStatus.ACTIVE, expires_at__lte=now, renewal_warranty=False
    ).update(status=DomainStatus.REDEMPTION, redemption_ends_at=ends)
    if not updated:
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
        recipients = await Membership.filter(
            organisation_id=domain.organisation_id, notify_domain_expiry=True
        ).select_related("user", "organisation")
        queued = 0
        for membership in recipients:
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


# --- the TLD table (DOM-3), edited with `gardien tld set` -----------------------------------------

_TLD = re.compile(r"^(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
MAX_REDEMPTION_DAYS = 365


async def tld_policies() -> list[TldPolicy]:
    return await TldPolicy.all().order_by("tld")


async def set_tld_policy(
    tld: str,
    *,
    source: str,
    redemption_days: int | None = None,
    restore_fee: Decimal | None = None,
    currency: str | None = None,
) -> TldPolicy:
    """Create or change one TLD's row; every change says where its values come from."""
    tld = tld.strip().lower().removeprefix(".")
    if not _TLD.match(tld):
        raise DomainError(ErrorCode.INVALID_INPUT, f"{tld!r} is not a TLD.", "tld")
    if not source.strip():
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "Say where the values come from (registry rule, price list, or unconfirmed).",
            "source",
        )
    if redemption_days is not None and not 0 <= redemption_days <= MAX_REDEMPTION_DAYS:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"Redemption days must be from 0 to {MAX_REDEMPTION_DAYS}.",
            "redemptionDays",
        )
    if restore_fee is not None and (
        not restore_fee.is_finite()
        or restore_fee < 0
        or restore_fee != restore_fee.quantize(Decimal("0.01"))
        or restore_fee >= Decimal("100000000")
    ):
        raise DomainError(
            ErrorCode.INVALID_INPUT, "The restore fee is an amount such as 120.00.", "restoreFee"
        )
    if currency is not None and not _CURRENCY.match(currency):
        raise DomainError(
            ErrorCode.INVALID_INPUT, "The currency is an ISO 4217 code such as CHF.", "currency"
        )
    async with in_transaction():
        policy = await TldPolicy.filter(tld=tld).select_for_update().first()
        if policy is None:
            if redemption_days is None or restore_fee is None or currency is None:
                raise DomainError(
                    ErrorCode.INVALID_INPUT,
                    "A new TLD needs its redemption days, restore fee and currency.",
                    "tld",
                )
            return await TldPolicy.create(
                tld=tld,
                redemption_days=redemption_days,
                restore_fee=restore_fee,
                currency=currency,
                source=source.strip(),
            )
        if redemption_days is not None:
            policy.redemption_days = redemption_days
        if restore_fee is not None:
            policy.restore_fee = restore_fee
        if currency is not None:
            policy.currency = currency
        policy.source = source.strip()
        await policy.save()
    return policy
