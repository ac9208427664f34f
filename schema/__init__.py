"""The GraphQL surface: builds the one strawberry.Schema from the domain modules."""

from __future__ import annotations

import strawberry
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from gardien.models.activity import ActivityEvent
from gardien.resolvers import authz, organisations
from gardien.resolvers.errors import DomainError
from gardien.schema.accounts import AccountMutations
from gardien.schema.activity import ActivityEventNode
from gardien.schema.context import Info
from gardien.schema.domains import DomainLookup, DomainMutations, domain_lookup, domain_node
from gardien.schema.members import ProductNode, membership_nodes
from gardien.schema.organisations import OrganisationNode, organisation_by_id
from gardien.schema.relay import Node, decode_any_id, decode_id
from gardien.schema.users import UserNode


@strawberry.type
class Query:
    @strawberry.field(description="The signed-in user, or null.")
    async def viewer(self, info: Info) -> UserNode | None:
        user = info.context.actor.user
        return await UserNode.load(info, user) if user else None

    @strawberry.field(description="An organisation the caller is a member of.")
    async def organisation(self, info: Info, id: strawberry.ID) -> OrganisationNode:
        return await organisation_by_id(info, decode_id(id, "Organisation"))

    @strawberry.field(
        description="Whether a domain name is in one of your organisations, released by one, or"
        " not reachable by you; nothing about other customers (DOM-5)."
    )
    async def domain_lookup(self, info: Info, name: str) -> DomainLookup:
        return await domain_lookup(info, name)

    @strawberry.field(description="Any object by its global ID (API-1).")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        return await _node(info, id)


async def _node(info: Info, global_id: str) -> Node | None:
    """Each type answers only what its own field would answer, so node() leaks nothing more."""
    type_name, _ = decode_any_id(global_id)
    actor = info.context.actor
    authz.require_user(actor)
    try:
        if type_name == "Organisation":
            return await organisation_by_id(info, decode_id(global_id, "Organisation"))
        if type_name == "User":
            user_id = decode_id(global_id, "User")
            if authz.can_view_private_profile(actor, user_id) and actor.user:
                return await UserNode.load(info, actor.user)
            return None
        if type_name == "Membership":
            entry = await organisations.member_entry(actor, decode_id(global_id, "Membership"))
            return membership_nodes([entry])[0] if entry else None
            return None
        if type_name == "Domain":
            return await domain_node(info, global_id)
        if type_name == "ActivityEvent":
            event = await ActivityEvent.get_or_none(id=decode_id(global_id, "ActivityEvent"))
            if event and event.organisation_id is not None:
                caller = await authz.membership_of(actor, event.organisation_id)
                if authz.can_view_organisation_activity(caller):
                    return ActivityEventNode.from_model(event)
            return None
    except DomainError:
        return None
    return None


schema = strawberry.Schema(
    query=Query,
    mutation=merge_types("Mutation", (AccountMutations, DomainMutations)),
    types=[ProductNode],
    config=StrawberryConfig(auto_camel_case=True),
)
