"""The GraphQL surface: builds the one strawberry.Schema from the domain modules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import strawberry
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

# No resolver module is imported here by a name that a schema module also has: importing
# gardien.schema.organisations binds `organisations` in this very namespace, and would shadow it.
from gardien.resolvers import authz
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.schema.accounts import AccountMutations
from gardien.schema.activity import activity_event_by_id
from gardien.schema.blocking import BlockingMutations, MailboxNode, mailbox_by_id
from gardien.schema.context import Info
from gardien.schema.domains import DomainLookup, DomainMutations, domain_by_id, domain_lookup
from gardien.schema.events import Subscription
from gardien.schema.invitations import InvitationMutations, invitation_by_id
from gardien.schema.members import MemberMutations, ProductNode, membership_by_id, product_by_id
from gardien.schema.organisations import OrganisationNode, organisation_by_id
from gardien.schema.profile import ProfileMutations
from gardien.schema.push_approvals import PushApprovalMutations, PushApprovalSubscription
from gardien.schema.recovery import (
    CaseStatus,
    IdentityVerificationCaseType,
    RecoveryMutations,
    identity_verification_cases,
)
from gardien.schema.relay import Connection, Node, decode_any_id, decode_id
from gardien.schema.security import SecurityMutations, active_session_by_id
from gardien.schema.security_keys import SecurityKeyMutations
from gardien.schema.tokens import (
    TokenMutations,
    personal_access_token_by_id,
    service_account_by_id,
)
from gardien.schema.two_factor import AppPasswordNode, TwoFactorMutations, app_password_by_id
from gardien.schema.users import UserNode, two_factor_method_by_id, user_by_id
from gardien.schema.webhooks import WebhookMutations, webhook_endpoint_by_id, webhook_event_types


@strawberry.type
class Query:
    @strawberry.field(description="The signed-in user, or null.")
    async def viewer(self, info: Info) -> UserNode | None:
        user = info.context.actor.user
        return await UserNode.load(info, user) if user else None

    @strawberry.field(
        description="An organisation the caller is a member of; null, with a NOT_FOUND error, "
        "for any other."
    )
    async def organisation(self, info: Info, id: strawberry.ID) -> OrganisationNode | None:
        return await organisation_by_id(info, decode_id(id, "Organisation"))

    @strawberry.field(
        description="Whether a domain name is in one of your organisations, released by one, or"
        " not reachable by you; nothing about other customers (DOM-5)."
    )
    async def domain_lookup(self, info: Info, name: str) -> DomainLookup | None:
        return await domain_lookup(info, name)

    @strawberry.field(description="The activity types a webhook endpoint may subscribe to (EVT-5).")
    def webhook_event_types(self) -> list[str]:
        return webhook_event_types()

    @strawberry.field(description="Any object by its global ID (API-1).")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        return await _node(info, id)

    @strawberry.field(description="Support agents: identity-verification cases (REC-2).")
    async def identity_verification_cases(
        self,
        info: Info,
        status: CaseStatus | None = None,  # type: ignore[valid-type]
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[IdentityVerificationCaseType]:
        return await identity_verification_cases(info, status, first, after)


# One resolver per Node type, each answering what that type's own field answers to the caller.
NODE_RESOLVERS: dict[str, Callable[[Info, int], Awaitable[Node]]] = {
    "Organisation": organisation_by_id,
    "User": user_by_id,
    "Membership": membership_by_id,
    "ActivityEvent": activity_event_by_id,
    "Product": product_by_id,
    "TwoFactorMethod": two_factor_method_by_id,
    "Domain": domain_by_id,
    "Invitation": invitation_by_id,
    "Mailbox": mailbox_by_id,
    "ActiveSession": active_session_by_id,
    "PersonalAccessToken": personal_access_token_by_id,
    "ServiceAccount": service_account_by_id,
    "WebhookEndpoint": webhook_endpoint_by_id,
    "AppPassword": app_password_by_id,
}


async def _node(info: Info, global_id: str) -> Node | None:
    """Null for an object that does not exist and for one the caller may not see, alike."""
    type_name, _ = decode_any_id(global_id)
    authz.require_user(info.context.actor)
    resolve = NODE_RESOLVERS.get(type_name)
    if resolve is None:
        return None
    try:
        return await resolve(info, decode_id(global_id, type_name))
    except DomainError as error:
        if error.code is ErrorCode.NOT_FOUND:
            return None
        raise


schema = strawberry.Schema(
    query=Query,
    mutation=merge_types(
        "Mutation",
        (
            AccountMutations,
            DomainMutations,
            MemberMutations,
            InvitationMutations,
            BlockingMutations,
            SecurityMutations,
            TokenMutations,
            WebhookMutations,
            TwoFactorMutations,
            SecurityKeyMutations,
            ProfileMutations,
            RecoveryMutations,
            PushApprovalMutations,
        ),
    ),
    subscription=merge_types("Subscription", (Subscription, PushApprovalSubscription)),
    types=[ProductNode, MailboxNode, AppPasswordNode],
    config=StrawberryConfig(auto_camel_case=True),
)
