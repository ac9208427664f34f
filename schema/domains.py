"""Domains in GraphQL: the Domain node, the lookup, renew/restore/warranty mutations (DOM-*)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import strawberry

from gardien.models.enums import DomainStatus as DomainStatusModel
from gardien.resolvers import authz, domains
from gardien.resolvers.domains import DomainView, LookupAnswer
from gardien.resolvers.errors import DomainError
from gardien.schema.context import Info
from gardien.schema.errors import UserError
from gardien.schema.relay import (
    Connection,
    Node,
    counted_connection,
    decode_cursor,
    decode_id,
    encode_id,
)

if TYPE_CHECKING:
    from gardien.schema.organisations import OrganisationNode

DomainStatus = strawberry.enum(DomainStatusModel, name="DomainStatus")
DomainLookupAnswer = strawberry.enum(
    LookupAnswer,
    name="DomainLookupAnswer",
    description=(
        "IN_YOUR_ORGANISATION: held by one of your organisations; RELEASED: one of your"
        " organisations let it go and it is free to register; NOT_REACHABLE: not in your"
        " organisations (whether someone else holds it or nobody does)."
    ),
)


@strawberry.type(description="An amount of money in a currency (ISO 4217).")
class Money:
    amount: Decimal
    currency: str


@strawberry.type(name="Domain", description="A domain name of an organisation (DOM-1…DOM-4).")
class DomainNode(Node):
    name: str
    status: DomainStatus  # type: ignore[valid-type]
    expires_at: datetime
    redemption_ends_at: datetime | None
    renewal_warranty: bool = strawberry.field(
        description="Renewed for one year at expiry instead of entering redemption (DOM-4)."
    )
    restore_fee: Money = strawberry.field(
        description="Restoring during redemption costs this: the provider's price list (DOM-3)."
    )

    @classmethod
    def from_view(cls, view: DomainView) -> DomainNode:
        domain = view.domain
        return cls(
            id=encode_id("Domain", domain.id),
            name=domain.name,
            status=domain.status,
            expires_at=domain.expires_at,
            redemption_ends_at=domain.redemption_ends_at,
            renewal_warranty=domain.renewal_warranty,
            restore_fee=Money(amount=view.restore_fee, currency=view.currency),
        )


@strawberry.type(description="What a domain lookup may say to this caller (DOM-5).")
class DomainLookup:
    name: str = strawberry.field(description="The name as normalised: lower case, IDNA, no dot.")
    answer: DomainLookupAnswer  # type: ignore[valid-type]
    organisation: (
        Annotated[OrganisationNode, strawberry.lazy("gardien.schema.organisations")] | None
    ) = strawberry.field(description="Your organisation that holds or released the name.")
    domain: DomainNode | None = strawberry.field(
        description="The domain, when you may see that organisation's domains."
    )


async def domain_lookup(info: Info, name: str) -> DomainLookup:
    from gardien.schema.organisations import OrganisationNode

    found = await domains.lookup_domain(info.context.services, info.context.scope, name)
    return DomainLookup(
        name=found.name,
        answer=found.answer,
        organisation=OrganisationNode.of_caller(found.caller) if found.caller else None,
        domain=DomainNode.from_view(found.view) if found.view else None,
    )


async def organisation_domains(
    info: Info,
    organisation_id: int,
    first: int | None,
    after: str | None,
    status: DomainStatusModel | None,
) -> Connection[DomainNode]:
    counted = await domains.organisation_domains(
        info.context.scope,
        organisation_id,
        first=first,
        after_id=decode_cursor(after),
        status=status,
    )
    return counted_connection(counted, DomainNode.from_view, lambda view: view.domain.id)


async def domain_by_id(info: Info, domain_id: int) -> DomainNode:
    """node(id:): a domain the caller may see; NOT_FOUND for any other."""
    view = await domains.visible_domain(info.context.scope, domain_id)
    if view is None:
        raise authz.not_found("domain")
    return DomainNode.from_view(view)


@strawberry.input
class RenewDomainInput:
    domain_id: strawberry.ID
    years: int = strawberry.field(description="1 to 10, added to the current expiry (DOM-2).")


@strawberry.input
class RestoreDomainInput:
    domain_id: strawberry.ID


@strawberry.input
class SetDomainRenewalWarrantyInput:
    domain_id: strawberry.ID
    enabled: bool


@strawberry.type
class RenewDomainPayload:
    domain: DomainNode | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RestoreDomainPayload:
    domain: DomainNode | None = None
    charge: Money | None = strawberry.field(
        default=None, description="The restore fee recorded as charged (DOM-3)."
    )
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class SetDomainRenewalWarrantyPayload:
    domain: DomainNode | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class DomainMutations:
    @strawberry.mutation(description="Extend a domain from its current expiry (DOM-2; managers).")
    async def renew_domain(self, info: Info, input: RenewDomainInput) -> RenewDomainPayload:
        try:
            view = await domains.renew_domain(
                info.context.services,
                info.context.meta,
                info.context.scope,
                decode_id(input.domain_id, "Domain", "domainId"),
                input.years,
            )
        except DomainError as error:
            return RenewDomainPayload(errors=[UserError.from_domain(error)])
        return RenewDomainPayload(domain=DomainNode.from_view(view))

    @strawberry.mutation(
        description="Restore a domain in redemption; its restore fee is charged (DOM-3; managers)."
    )
    async def restore_domain(self, info: Info, input: RestoreDomainInput) -> RestoreDomainPayload:
        try:
            restored = await domains.restore_domain(
                info.context.services,
                info.context.meta,
                info.context.scope,
                decode_id(input.domain_id, "Domain", "domainId"),
            )
        except DomainError as error:
            return RestoreDomainPayload(errors=[UserError.from_domain(error)])
        return RestoreDomainPayload(
            domain=DomainNode.from_view(restored.view),
            charge=Money(amount=restored.charge.amount, currency=restored.charge.currency),
        )

    @strawberry.mutation(description="Switch the renewal warranty on or off (DOM-4; managers).")
    async def set_domain_renewal_warranty(
        self, info: Info, input: SetDomainRenewalWarrantyInput
    ) -> SetDomainRenewalWarrantyPayload:
        try:
            view = await domains.set_renewal_warranty(
                info.context.services,
                info.context.meta,
                info.context.scope,
                decode_id(input.domain_id, "Domain", "domainId"),
                input.enabled,
            )
        except DomainError as error:
            return SetDomainRenewalWarrantyPayload(errors=[UserError.from_domain(error)])
        return SetDomainRenewalWarrantyPayload(domain=DomainNode.from_view(view))
