"""Membership (a user's role in an organisation) and the products it grants (ORG-3)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import strawberry

from gardien.models.enums import ProductKind as ProductKindModel
from gardien.models.enums import Role as RoleModel
from gardien.models.enums import SupportPlan as SupportPlanModel
from gardien.models.products import Product
from gardien.resolvers import members, organisations
from gardien.resolvers.errors import DomainError
from gardien.resolvers.organisations import ContactPreferencesSummary, MemberEntry, ProductSummary
from gardien.schema.context import Info
from gardien.schema.errors import UserError
from gardien.schema.organisations import OrganisationNode, Role, SupportPlan
from gardien.schema.relay import Connection, Node, decode_id, encode_id
from gardien.schema.users import UserNode

if TYPE_CHECKING:
    from gardien.schema.blocking import MailboxNode

ProductKind = strawberry.enum(ProductKindModel, name="ProductKind")


@strawberry.type(name="Product")
class ProductNode(Node):
    name: str
    kind: ProductKind  # type: ignore[valid-type]
    management_blocked: bool = strawberry.field(
        description="Managers blocked its management: collaborators and external members may"
        " not manage it (BLK-1)."
    )
    mail_maintenance: bool = strawberry.field(
        description="A mail service in maintenance: mail is still received, mailboxes cannot be"
        " read (BLK-2); false for other products."
    )
    _product_id: strawberry.Private[int]

    @classmethod
    def from_model(cls, product: Product) -> ProductNode:
        return cls(
            id=encode_id("Product", product.id),
            name=product.name,
            kind=product.kind,
            management_blocked=product.management_blocked_at is not None,
            mail_maintenance=product.maintenance_since is not None,
            _product_id=product.id,
        )

    @classmethod
    def from_summary(cls, product: ProductSummary) -> ProductNode:
        return cls(
            id=encode_id("Product", product.id),
            name=product.name,
            kind=product.kind,
            management_blocked=product.management_blocked,
            mail_maintenance=product.mail_maintenance,
            _product_id=product.id,
        )

    @strawberry.field(description="The mailboxes of a mail service, for those who use it.")
    async def mailboxes(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[Annotated[MailboxNode, strawberry.lazy("gardien.schema.blocking")]]:
        from gardien.schema.blocking import product_mailboxes

        return await product_mailboxes(info, self._product_id, first, after)


@strawberry.type(name="ContactPreferences", description="Notices a member receives (ORG-4).")
class ContactPreferencesType:
    billing: bool
    technical: bool
    security: bool
    domain_expiry: bool


@strawberry.type(name="Membership")
class MembershipNode(Node):
    role: Role  # type: ignore[valid-type]
    user: UserNode
    organisation: OrganisationNode
    product_access: list[ProductNode] | None = strawberry.field(
        description="Products this member may use or manage (ORG-3); null to fellow members"
        " other than administrators and legal representatives (POL-2)."
    )
    contact_preferences: ContactPreferencesType | None = strawberry.field(
        description="Administrative notices this member receives (ORG-4); for administrators,"
        " legal representatives and the member themself, else null."
    )


def membership_nodes(entries: list[MemberEntry]) -> list[MembershipNode]:
    """Nodes with every value in place: graphql-core then completes a page of members
    synchronously, without one asyncio task per member field."""
    organisations: dict[int, OrganisationNode] = {}
    nodes = []
    for entry in entries:
        organisation = organisations.get(entry.organisation_id)
        if organisation is None:
            organisation = organisations[entry.organisation_id] = OrganisationNode.of(
                entry.organisation_id, entry.organisation_name, entry.support_plan
            )
        nodes.append(
            MembershipNode(
                id=encode_id("Membership", entry.membership_id),
                role=entry.role,
                user=UserNode.from_summary(entry.user),
                organisation=organisation,
                product_access=None
                if entry.products is None
                else [ProductNode.from_summary(p) for p in entry.products],
                contact_preferences=_contact_preferences(entry.contact_preferences),
            )
        )
    return nodes


def _contact_preferences(
    preferences: ContactPreferencesSummary | None,
) -> ContactPreferencesType | None:
    if preferences is None:
        return None
    return ContactPreferencesType(
        billing=preferences.billing,
        technical=preferences.technical,
        security=preferences.security,
        domain_expiry=preferences.domain_expiry,
    )


async def membership_by_id(info: Info, membership_id: int) -> MembershipNode:
    """node(id:): a membership of an organisation the caller belongs to."""
    entry = await organisations.visible_member(info.context.scope, membership_id)
    return membership_nodes([entry])[0]


async def product_by_id(info: Info, product_id: int) -> ProductNode:
    """node(id:): a product of an organisation the caller belongs to."""
    return ProductNode.from_model(
        await organisations.visible_product(info.context.scope, product_id)
    )


# --- Membership management (ORG-2…ORG-7) -------------------------------------------------------


@strawberry.input
class ChangeMemberRoleInput:
    membership_id: strawberry.ID
    role: Role  # type: ignore[valid-type]


@strawberry.input
class RemoveMemberInput:
    membership_id: strawberry.ID


@strawberry.input
class LeaveOrganisationInput:
    organisation_id: strawberry.ID


@strawberry.input
class SetMemberProductAccessInput:
    membership_id: strawberry.ID
    product_ids: list[strawberry.ID] = strawberry.field(
        description="Every product of the organisation the member may use; the others are ended."
    )


@strawberry.input
class SetContactPreferencesInput:
    membership_id: strawberry.ID
    billing: bool
    technical: bool
    security: bool
    domain_expiry: bool


@strawberry.input
class SwitchOrganisationInput:
    organisation_id: strawberry.ID


@strawberry.input
class SetSupportPlanInput:
    organisation_id: strawberry.ID
    plan: SupportPlan  # type: ignore[valid-type]


@strawberry.type
class ChangeMemberRolePayload:
    membership: MembershipNode | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RemoveMemberPayload:
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class LeaveOrganisationPayload:
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class SetMemberProductAccessPayload:
    membership: MembershipNode | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class SetContactPreferencesPayload:
    membership: MembershipNode | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class SwitchOrganisationPayload:
    organisation: OrganisationNode | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class SetSupportPlanPayload:
    organisation: OrganisationNode | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class MemberMutations:
    @strawberry.mutation(
        description="Change a member's role (ORG-6; managers; legal representatives for that"
        " role). The last legal representative keeps it."
    )
    async def change_member_role(
        self, info: Info, input: ChangeMemberRoleInput
    ) -> ChangeMemberRolePayload:
        context = info.context
        try:
            entry = await members.change_member_role(
                context.services,
                context.meta,
                context.scope,
                decode_id(input.membership_id, "Membership", "membershipId"),
                RoleModel(input.role),
            )
        except DomainError as error:
            return ChangeMemberRolePayload(errors=[UserError.from_domain(error)])
        return ChangeMemberRolePayload(membership=membership_nodes([entry])[0])

    @strawberry.mutation(
        description="Remove a member and end their product access (ORG-6; managers). The last"
        " legal representative stays."
    )
    async def remove_member(self, info: Info, input: RemoveMemberInput) -> RemoveMemberPayload:
        context = info.context
        try:
            await members.remove_member(
                context.services,
                context.meta,
                context.scope,
                decode_id(input.membership_id, "Membership", "membershipId"),
            )
        except DomainError as error:
            return RemoveMemberPayload(errors=[UserError.from_domain(error)])
        return RemoveMemberPayload()

    @strawberry.mutation(description="Leave an organisation (ORG-6; external members).")
    async def leave_organisation(
        self, info: Info, input: LeaveOrganisationInput
    ) -> LeaveOrganisationPayload:
        context = info.context
        try:
            await members.leave_organisation(
                context.services,
                context.meta,
                context.scope,
                decode_id(input.organisation_id, "Organisation", "organisationId"),
            )
        except DomainError as error:
            return LeaveOrganisationPayload(errors=[UserError.from_domain(error)])
        return LeaveOrganisationPayload()

    @strawberry.mutation(
        description="Set which of the organisation's products a collaborator or external member"
        " may use (ORG-3; managers)."
    )
    async def set_member_product_access(
        self, info: Info, input: SetMemberProductAccessInput
    ) -> SetMemberProductAccessPayload:
        context = info.context
        try:
            entry = await members.set_member_product_access(
                context.services,
                context.meta,
                context.scope,
                decode_id(input.membership_id, "Membership", "membershipId"),
                [decode_id(pid, "Product", "productIds") for pid in input.product_ids],
            )
        except DomainError as error:
            return SetMemberProductAccessPayload(errors=[UserError.from_domain(error)])
        return SetMemberProductAccessPayload(membership=membership_nodes([entry])[0])

    @strawberry.mutation(
        description="Choose the administrative notices a member receives (ORG-4; managers for"
        " anyone, a member for themself)."
    )
    async def set_contact_preferences(
        self, info: Info, input: SetContactPreferencesInput
    ) -> SetContactPreferencesPayload:
        context = info.context
        try:
            entry = await members.set_contact_preferences(
                context.services,
                context.meta,
                context.scope,
                decode_id(input.membership_id, "Membership", "membershipId"),
                members.ContactPreferences(
                    billing=input.billing,
                    technical=input.technical,
                    security=input.security,
                    domain_expiry=input.domain_expiry,
                ),
            )
        except DomainError as error:
            return SetContactPreferencesPayload(errors=[UserError.from_domain(error)])
        return SetContactPreferencesPayload(membership=membership_nodes([entry])[0])

    @strawberry.mutation(description="Work in another of your organisations (ORG-2).")
    async def switch_organisation(
        self, info: Info, input: SwitchOrganisationInput
    ) -> SwitchOrganisationPayload:
        context = info.context
        try:
            caller = await members.switch_organisation(
                context.services,
                context.meta,
                context.scope,
                decode_id(input.organisation_id, "Organisation", "organisationId"),
            )
        except DomainError as error:
            return SwitchOrganisationPayload(errors=[UserError.from_domain(error)])
        return SwitchOrganisationPayload(organisation=OrganisationNode.of_caller(caller))

    @strawberry.mutation(
        description="Subscribe to premium support (PREMIUM), or cancel it (STANDARD) (ORG-7;"
        " managers). Who and when are recorded."
    )
    async def set_support_plan(
        self, info: Info, input: SetSupportPlanInput
    ) -> SetSupportPlanPayload:
        context = info.context
        try:
            caller = await members.set_support_plan(
                context.services,
                context.meta,
                context.scope,
                decode_id(input.organisation_id, "Organisation", "organisationId"),
                SupportPlanModel(input.plan),
            )
        except DomainError as error:
            return SetSupportPlanPayload(errors=[UserError.from_domain(error)])
        return SetSupportPlanPayload(organisation=OrganisationNode.of_caller(caller))
