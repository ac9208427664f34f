"""Domains: listing, lookup, renew/restore/warranty (DOM-1…DOM-5); the jobs are domain_lifecycle."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from gardien.models.domains import Domain, DomainCharge, TldPolicy
from gardien.models.enums import DomainStatus
from gardien.resolvers import activity, authz, ratelimits
from gardien.resolvers.authz import CallerMembership, RequestScope
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.pagination import Counted, Page, forward_page
from gardien.resolvers.services import RequestMeta, Services

MAX_RENEWAL_YEARS = 10  # the longest registration term registries accept
# DOM-3: a restored domain is registered again for one year from the day of the restore.
RESTORE_TERM_YEARS = 1
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
    # The caller's membership in the organisation that holds or released the name.
    caller: CallerMembership | None = None
    # Only when the caller may see that organisation's domains.
    view: DomainView | None = None


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
) -> Counted[DomainView]:
    """DOM-1: an organisation's domains, oldest first, with their count, for those who may see
    them (managers, members granted the DOMAIN product)."""
    authz.refuse_held_to_enrolment(scope.actor)
    await authz.require_domain_viewer(scope, organisation_id)
    query = _domain_query(organisation_id, status)
    page = await forward_page(query, first, after_id)
    return Counted(
        Page(items=await _views(page.items), has_next_page=page.has_next_page),
        lambda: query.count(),
    )


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
        caller = await _membership(scope, live.organisation_id)
        if caller is None:
            return Lookup(name, LookupAnswer.NOT_REACHABLE)
        shown = await authz.may_view_domains(scope, live.organisation_id)
        return Lookup(
            name, LookupAnswer.IN_YOUR_ORGANISATION, caller, await _view(live) if shown else None
        )
    released = await Domain.filter(name=name, status=DomainStatus.RELEASED).order_by("-id")
    for domain in released:
        caller = await _membership(scope, domain.organisation_id)
        if caller is not None:
            return Lookup(name, LookupAnswer.RELEASED, caller)
    return Lookup(name, LookupAnswer.NOT_REACHABLE)


async def _membership(scope: RequestScope, organisation_id: int) -> CallerMembership | None:
    """The caller's membership there, read with the organisation's name; None for a stranger."""
    try:
        return await authz.require_visible_organisation(scope, organisation_id)
    except DomainError:
        return None


# --- operations of managers --------------------------------------------------------------------


async def _require_manager_of_domain(scope: RequestScope, domain_id: int) -> int:
    """The domain's organisation, once the caller is one of its managers.

    An unknown domain and another organisation's domain get the same NOT_FOUND (DOM-5). Called
    inside the operation's transaction, so the DOMAIN product's block state is read locked there
    (BLK-1): a block placed after the caller started still stops a collaborator.
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
    async with in_transaction():
        organisation_id = await _require_manager_of_domain(scope, domain_id)
        if not 1 <= years <= MAX_RENEWAL_YEARS:
            raise DomainError(
                ErrorCode.INVALID_INPUT,
                f"A renewal is for 1 to {MAX_RENEWAL_YEARS} years.",
                "years",
            )
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
    now = services.clock.now()
    async with in_transaction():
        organisation_id = await _require_manager_of_domain(scope, domain_id)
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
    async with in_transaction():
        organisation_id = await _require_manager_of_domain(scope, domain_id)
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
