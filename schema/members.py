"""Membership (a user's role in an organisation) and the products it grants (ORG-3)."""

from __future__ import annotations

import strawberry

from gardien.models.enums import ProductKind as ProductKindModel
from gardien.models.products import Product
from gardien.resolvers import organisations
from gardien.resolvers.organisations import MemberEntry
from gardien.schema.context import Info
from gardien.schema.organisations import OrganisationNode, Role
from gardien.schema.relay import Node, encode_id
from gardien.schema.users import UserNode

ProductKind = strawberry.enum(ProductKindModel, name="ProductKind")


@strawberry.type(name="Product")
class ProductNode(Node):
    name: str
    kind: ProductKind  # type: ignore[valid-type]

    @classmethod
    def from_model(cls, product: Product) -> ProductNode:
        return cls(id=encode_id("Product", product.id), name=product.name, kind=product.kind)


@strawberry.type(name="Membership")
class MembershipNode(Node):
    role: Role  # type: ignore[valid-type]
    user: UserNode
    organisation: OrganisationNode
    product_access: list[ProductNode] = strawberry.field(
        description="Products this member may use or manage (ORG-3)."
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
                product_access=[
                    ProductNode(id=encode_id("Product", p.id), name=p.name, kind=p.kind)
                    for p in entry.products
                ],
            )
        )
    return nodes


async def membership_by_id(info: Info, membership_id: int) -> MembershipNode:
    """node(id:): a membership of an organisation the caller belongs to."""
    entry = await organisations.visible_member(info.context.scope, membership_id)
    return membership_nodes([entry])[0]


async def product_by_id(info: Info, product_id: int) -> ProductNode:
    """node(id:): a product of an organisation the caller belongs to."""
    return ProductNode.from_model(
        await organisations.visible_product(info.context.scope, product_id)
    )
