"""Invitations in GraphQL: the Invitation node and the invite/accept/decline/revoke/resend
mutations (INV-1…INV-5, ORG-2)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from gardien.models.enums import InvitationStatus as InvitationStatusModel
from gardien.resolvers import authz, invitations
from gardien.resolvers.errors import DomainError
from gardien.resolvers.invitations import ContactPreferences, InvitationView, InviteRequest
from gardien.schema.accounts import Session
from gardien.schema.context import Info
from gardien.schema.errors import UserError
from gardien.schema.members import MembershipNode, membership_nodes
from gardien.schema.organisations import Role
from gardien.schema.relay import Connection, Node, connection, decode_cursor, decode_id, encode_id

InvitationStatus = strawberry.enum(
    InvitationStatusModel,
    name="InvitationStatus",
    description="EXPIRED: past its expiry date without an answer (INV-4).",
)


@strawberry.type(
    name="InvitationContactPreferences",
    description="Administrative notices the invitee will receive once a member (ORG-4, INV-5).",
)
class InvitationContactPreferencesType:
    billing: bool
    technical: bool
    security: bool
    domain_expiry: bool


@strawberry.type(name="Invitation", description="An invitation to join an organisation (INV-*).")
class InvitationNode(Node):
    email: str
    role: Role  # type: ignore[valid-type]
    status: InvitationStatus  # type: ignore[valid-type]
    expires_at: datetime
    created_at: datetime
    last_sent_at: datetime
    send_count: int
    product_ids: list[strawberry.ID] = strawberry.field(
        description="Products the invitee will be granted (ORG-3, INV-5)."
    )
    contact_preferences: InvitationContactPreferencesType

    @classmethod
    def from_view(cls, view: InvitationView) -> InvitationNode:
        invitation = view.invitation
        preferences = {
            **invitations.DEFAULT_CONTACT_PREFERENCES,
            **invitation.contact_preferences,
        }
        return cls(
            id=encode_id("Invitation", invitation.id),
            email=invitation.email,
            role=invitation.role,
            status=view.status,
            expires_at=invitation.expires_at,
            created_at=invitation.created_at,
            last_sent_at=invitation.last_sent_at,
            send_count=invitation.send_count,
            product_ids=[encode_id("Product", pk) for pk in invitation.product_ids],
            contact_preferences=InvitationContactPreferencesType(
                billing=preferences["billing"],
                technical=preferences["technical"],
                security=preferences["security"],
                domain_expiry=preferences["domain_expiry"],
            ),
        )


async def organisation_invitations(
    info: Info,
    organisation_id: int,
    first: int | None,
    after: str | None,
    status: InvitationStatusModel | None,
) -> Connection[InvitationNode]:
    services = info.context.services
    page = await invitations.organisation_invitations(
        services,
        info.context.scope,
        organisation_id,
        first=first,
        after_id=decode_cursor(after),
        status=status,
    )
    return connection(
        [InvitationNode.from_view(view) for view in page.items],
        [view.invitation.id for view in page.items],
        page.has_next_page,
        lambda: invitations.count_organisation_invitations(services, organisation_id, status),
    )


async def invitation_by_id(info: Info, invitation_id: int) -> InvitationNode:
    """node(id:): an invitation of an organisation the caller manages; NOT_FOUND for any other."""
    view = await invitations.visible_invitation(
        info.context.services, info.context.scope, invitation_id
    )
    if view is None:
        raise authz.not_found("invitation")
    return InvitationNode.from_view(view)


@strawberry.input(description="Notices the member will receive (ORG-4); security on by default.")
class InvitationContactPreferencesInput:
    billing: bool = False
    technical: bool = False
    security: bool = True
    domain_expiry: bool = False


@strawberry.input
class InviteMemberInput:
    organisation_id: strawberry.ID
    email: str
    role: Role  # type: ignore[valid-type]
    product_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Products of the organisation to grant (ORG-3)."
    )
    contact_preferences: InvitationContactPreferencesInput | None = None


@strawberry.input
class AcceptInvitationInput:
    token: str
    password: str | None = strawberry.field(
        default=None, description="For a new account: its password."
    )
    display_name: str | None = strawberry.field(
        default=None, description="For a new account: the name fellow members see."
    )
    language: str | None = strawberry.field(
        default=None,
        description="For a new account: fr, en, de or it; by default the invitation's language.",
    )
    make_current: bool = strawberry.field(
        default=False,
        description="Work in this organisation from now on (ORG-2); always so for a new account.",
    )


@strawberry.input
class DeclineInvitationInput:
    token: str


@strawberry.input
class RevokeInvitationInput:
    invitation_id: strawberry.ID


@strawberry.input
class ResendInvitationInput:
    invitation_id: strawberry.ID


@strawberry.type
class InviteMemberPayload:
    invitation: InvitationNode | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class AcceptInvitationPayload:
    membership: MembershipNode | None = None
    session: Session | None = strawberry.field(
        default=None, description="For a new account: its first web session; else null."
    )
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class DeclineInvitationPayload:
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RevokeInvitationPayload:
    invitation: InvitationNode | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ResendInvitationPayload:
    invitation: InvitationNode | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


def _invite_request(input: InviteMemberInput) -> InviteRequest:
    preferences = input.contact_preferences or InvitationContactPreferencesInput()
    return InviteRequest(
        organisation_id=decode_id(input.organisation_id, "Organisation", "organisationId"),
        email=input.email,
        role=input.role,
        product_ids=[decode_id(pk, "Product", "productIds") for pk in input.product_ids or []],
        contact_preferences=ContactPreferences(
            billing=preferences.billing,
            technical=preferences.technical,
            security=preferences.security,
            domain_expiry=preferences.domain_expiry,
        ),
    )


@strawberry.type
class InvitationMutations:
    @strawberry.mutation(
        description="Invite someone by e-mail with a role, products and notices (INV-1…INV-5;"
        " managers; only a legal representative invites a legal representative)."
    )
    async def invite_member(self, info: Info, input: InviteMemberInput) -> InviteMemberPayload:
        try:
            view = await invitations.invite_member(
                info.context.services,
                info.context.meta,
                info.context.scope,
                _invite_request(input),
            )
        except DomainError as error:
            return InviteMemberPayload(errors=[UserError.from_domain(error)])
        return InviteMemberPayload(invitation=InvitationNode.from_view(view))

    @strawberry.mutation(
        description="Accept with the token of the e-mail (INV-2, INV-3): a new account is created"
        " with its password and name; an existing account must be signed in."
    )
    async def accept_invitation(
        self, info: Info, input: AcceptInvitationInput
    ) -> AcceptInvitationPayload:
        try:
            accepted = await invitations.accept_invitation(
                info.context.services,
                info.context.meta,
                info.context.scope,
                token=input.token,
                password=input.password,
                display_name=input.display_name,
                language=input.language,
                make_current=input.make_current,
            )
        except DomainError as error:
            return AcceptInvitationPayload(errors=[UserError.from_domain(error)])
        if accepted.device_cookie is not None:
            info.context.new_device_cookie = accepted.device_cookie
        return AcceptInvitationPayload(
            membership=membership_nodes([accepted.membership])[0],
            session=Session.issued(info, accepted.session) if accepted.session else None,
        )

    @strawberry.mutation(description="Decline with the token of the e-mail (INV-3).")
    async def decline_invitation(
        self, info: Info, input: DeclineInvitationInput
    ) -> DeclineInvitationPayload:
        try:
            await invitations.decline_invitation(
                info.context.services, info.context.meta, info.context.scope, input.token
            )
        except DomainError as error:
            return DeclineInvitationPayload(errors=[UserError.from_domain(error)])
        return DeclineInvitationPayload()

    @strawberry.mutation(description="Withdraw a pending invitation; its link stops working.")
    async def revoke_invitation(
        self, info: Info, input: RevokeInvitationInput
    ) -> RevokeInvitationPayload:
        try:
            view = await invitations.revoke_invitation(
                info.context.services,
                info.context.meta,
                info.context.scope,
                decode_id(input.invitation_id, "Invitation", "invitationId"),
            )
        except DomainError as error:
            return RevokeInvitationPayload(errors=[UserError.from_domain(error)])
        return RevokeInvitationPayload(invitation=InvitationNode.from_view(view))

    @strawberry.mutation(
        description="Send a pending invitation again with a new link and a new week (INV-4);"
        " the previous link stops working."
    )
    async def resend_invitation(
        self, info: Info, input: ResendInvitationInput
    ) -> ResendInvitationPayload:
        try:
            view = await invitations.resend_invitation(
                info.context.services,
                info.context.meta,
                info.context.scope,
                decode_id(input.invitation_id, "Invitation", "invitationId"),
            )
        except DomainError as error:
            return ResendInvitationPayload(errors=[UserError.from_domain(error)])
        return ResendInvitationPayload(invitation=InvitationNode.from_view(view))
