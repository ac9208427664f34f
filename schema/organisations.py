"""Organisation and its security policy, members and activity as Relay connections."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from gardien.models.enums import Role as RoleModel
from gardien.models.enums import SupportPlan as SupportPlanModel
from gardien.resolvers import organisations
from gardien.resolvers.activity_log import activity_filter
from gardien.resolvers.authz import CallerMembership
from gardien.schema.context import Info
from gardien.schema.domains import DomainStatus
from gardien.schema.relay import (
    Connection,
    Node,
    connection,
    counted_connection,
    decode_cursor,
    encode_id,
)

if TYPE_CHECKING:
    from gardien.schema.activity import ActivityEventNode
    from gardien.schema.domains import DomainNode
    from gardien.schema.invitations import InvitationNode, InvitationStatus
    from gardien.schema.members import MembershipNode, ProductNode
    from gardien.schema.tokens import ServiceAccountNode
    from gardien.schema.webhooks import WebhookEndpointNode

Role = strawberry.enum(RoleModel, name="Role")
SupportPlan = strawberry.enum(SupportPlanModel, name="SupportPlan")


@strawberry.type(name="SecurityPolicy")
class SecurityPolicyType:
    require_two_factor: bool
    updated_at: datetime

    @classmethod
    def of(cls, caller: CallerMembership) -> SecurityPolicyType:
        # The caller's membership is read with the organisation's policy: no query of its own.
        return cls(
            require_two_factor=caller.require_two_factor, updated_at=caller.policy_updated_at
        )


@strawberry.type(name="Organisation")
class OrganisationNode(Node):
    name: str
    support_plan: SupportPlan  # type: ignore[valid-type]
    _organisation_id: strawberry.Private[int]

    @classmethod
    def of(
        cls, organisation_id: int, name: str, support_plan: SupportPlanModel
    ) -> OrganisationNode:
        return cls(
            id=encode_id("Organisation", organisation_id),
            name=name,
            support_plan=support_plan,
            _organisation_id=organisation_id,
        )

    @classmethod
    def of_caller(cls, caller: CallerMembership) -> OrganisationNode:
        return cls.of(caller.organisation_id, caller.organisation_name, caller.support_plan)

    @strawberry.field
    async def security_policy(self, info: Info) -> SecurityPolicyType | None:
        caller = await organisations.security_policy(info.context.scope, self._organisation_id)
        return SecurityPolicyType.of(caller)

    @strawberry.field(description="Members, oldest first; filter on 2FA status and role (POL-2).")
    async def members(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        two_factor_enabled: bool | None = None,
        role: Role | None = None,  # type: ignore[valid-type]
    ) -> Connection[Annotated[MembershipNode, strawberry.lazy("gardien.schema.members")]]:
        from gardien.schema.members import membership_nodes

        counted = await organisations.members(
            info.context.scope,
            self._organisation_id,
            first=first,
            after_id=decode_cursor(after),
            two_factor_enabled=two_factor_enabled,
            role=role,
        )
        page = counted.page
        return connection(
            membership_nodes(page.items),
            [entry.membership_id for entry in page.items],
            page.has_next_page,
            counted.count,
            page.total_count,
        )

    @strawberry.field(
        description="Members organisation-wide sharing reaches (calendars, address books):"
        " everyone but external members (ORG-5)."
    )
    async def sharing_recipients(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[Annotated[MembershipNode, strawberry.lazy("gardien.schema.members")]]:
        from gardien.schema.members import membership_nodes

        counted = await organisations.sharing_recipients(
            info.context.scope, self._organisation_id, first=first, after_id=decode_cursor(after)
        )
        page = counted.page
        return connection(
            membership_nodes(page.items),
            [entry.membership_id for entry in page.items],
            page.has_next_page,
            counted.count,
            page.total_count,
        )

    @strawberry.field(
        description="Security activity, newest first, filtered by type and time (ACT-4:"
        " administrators only)."
    )
    async def activity(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        types: list[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Connection[Annotated[ActivityEventNode, strawberry.lazy("gardien.schema.activity")]]:
        from gardien.schema.activity import ActivityEventNode

        counted = await organisations.activity(
            info.context.scope,
            self._organisation_id,
            first=first,
            after_id=decode_cursor(after),
            filters=activity_filter(types, since, until),
        )
        return counted_connection(counted, ActivityEventNode.from_model, lambda e: e.id)

    @strawberry.field(
        description="Domains, oldest first (DOM-1…DOM-4): managers, and members granted DOMAIN."
    )
    async def domains(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        status: DomainStatus | None = None,  # type: ignore[valid-type]
    ) -> Connection[Annotated[DomainNode, strawberry.lazy("gardien.schema.domains")]]:
        from gardien.schema.domains import organisation_domains

        return await organisation_domains(info, self._organisation_id, first, after, status)

    @strawberry.field(
        description="Products, oldest first, with their management block and mail maintenance"
        " (BLK-1, BLK-2): every member."
    )
    async def products(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[Annotated[ProductNode, strawberry.lazy("gardien.schema.members")]]:
        from gardien.schema.blocking import organisation_products

        return await organisation_products(info, self._organisation_id, first, after)

    @strawberry.field(description="Invitations, newest first (INV-4): managers only.")
    async def invitations(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        status: Annotated[InvitationStatus, strawberry.lazy("gardien.schema.invitations")]  # type: ignore[valid-type]
        | None = None,
    ) -> Connection[Annotated[InvitationNode, strawberry.lazy("gardien.schema.invitations")]]:
        from gardien.schema.invitations import organisation_invitations

        return await organisation_invitations(info, self._organisation_id, first, after, status)

    @strawberry.field(
        description="Service accounts not revoked, newest first, with their last use (API-6):"
        " managers only."
    )
    async def service_accounts(
        self, info: Info
    ) -> list[Annotated[ServiceAccountNode, strawberry.lazy("gardien.schema.tokens")]]:
        from gardien.schema.tokens import organisation_service_accounts

        return await organisation_service_accounts(info, self._organisation_id)

    @strawberry.field(
        description="Webhook endpoints, oldest first, with their latest deliveries (EVT-5):"
        " managers only."
    )
    async def webhook_endpoints(
        self, info: Info
    ) -> list[Annotated[WebhookEndpointNode, strawberry.lazy("gardien.schema.webhooks")]]:
        from gardien.schema.webhooks import organisation_webhook_endpoints

        return await organisation_webhook_endpoints(info, self._organisation_id)


async def organisation_by_id(info: Info, organisation_id: int) -> OrganisationNode:
    caller = await organisations.visible_organisation(info.context.scope, organisation_id)
    return OrganisationNode.of_caller(caller)
