"""Products of an organisation and the per-membership grants to them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

from gardien.models.enums import ProductKind

if TYPE_CHECKING:
    from gardien.models.organisations import Membership, Organisation
    from gardien.models.users import User


class Product(Model):
    id = fields.IntField(primary_key=True)
    organisation: fields.ForeignKeyRelation[Organisation] = fields.ForeignKeyField(
        "models.Organisation", related_name="products", on_delete=fields.CASCADE
    )
    organisation_id: int
    kind = fields.CharEnumField(ProductKind, max_length=16)
    name = fields.CharField(max_length=200)
    # BLK-1: management blocked for the whole organisation.
    management_blocked_at = fields.DatetimeField(null=True)
    management_blocked_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    management_blocked_by_id: int | None
    # BLK-2: a mail service in maintenance still accepts mail but refuses reading.
    maintenance_since = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "product"

    def __str__(self) -> str:
        return f"Product {self.id}"


class ProductGrant(Model):
    """ORG-3: a COLLABORATOR or EXTERNAL member may use this product."""

    id = fields.IntField(primary_key=True)
    membership: fields.ForeignKeyRelation[Membership] = fields.ForeignKeyField(
        "models.Membership", related_name="product_grants", on_delete=fields.CASCADE
    )
    membership_id: int
    product: fields.ForeignKeyRelation[Product] = fields.ForeignKeyField(
        "models.Product", related_name="grants", on_delete=fields.CASCADE
    )
    product_id: int

    class Meta:
        table = "product_grant"
        unique_together = (("membership", "product"),)
