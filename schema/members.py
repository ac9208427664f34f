"""Membership (a user's role in an organisation) and the products it grants (ORG-3)."""

from __future__ import annotations

from typing import Annotated, TypeVar

import strawberry
from gardien.models.enums import ProductKind as ProductKindModel
from gardien.models.organisations import Membership, Organisation
from gardien.models.products import Product
from gardien.models.users import User
from gardien.schema.context import Info
from gardien.schema.organisations import OrganisationNode, Role
from gardien.schema.relay import Node, encode_id
from gardien.schema.users import UserNode

R = TypeVar("R")


def _prefetched(instance: object, relation: str, kind: type[R]) -> R | None:
    """The related object when select_related already fetched it (Tortoise keeps it in _<name>)."""
    value = vars(instance).get(f"_{relation}")
    return value if isinstance(value, kind) else None


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
    _model: strawberry.Private[Membership]

    @classmethod
    def from_model(cls, membership: Membership) -> MembershipNode:
        return cls(
            id=encode_id("Membership", membership.id), role=membership.role, _model=membership
        )

    @strawberry.field
    async def user(
        self, info: Info
    ) -> Annotated[UserNode, strawberry.lazy("gardien.schema.users")]:
        # Member lists select the user with the membership; other paths batch through a loader.
        user = _prefetched(self._model, "user", User)
        if user is None:
            user = await info.context.loaders.user.load(self._model.user_id)
        assert user is not None  # the foreign key guarantees it
        return UserNode.from_model(user)

    @strawberry.field
    async def organisation(self, info: Info) -> OrganisationNode:
        organisation = _prefetched(self._model, "organisation", Organisation)
        if organisation is None:
            organisation = await info.context.loaders.organisation.load(self._model.organisation_id)
        assert organisation is not None
        return OrganisationNode.from_model(organisation)

    @strawberry.field(description="Products this member may use or manage (ORG-3).")
    async def product_access(self, info: Info) -> list[ProductNode]:
        products = await info.context.loaders.product_access.load(self._model.id)
        return [ProductNode.from_model(p) for p in products]
