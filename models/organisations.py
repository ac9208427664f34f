"""The Organisation aggregate: organisation, memberships, security policy, user blocks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

from gardien.models.enums import Role, SupportPlan

if TYPE_CHECKING:
    from gardien.models.products import ProductGrant
    from gardien.models.users import User


class Organisation(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=200)
    support_plan = fields.CharEnumField(SupportPlan, default=SupportPlan.STANDARD, max_length=16)
    support_plan_changed_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()

    memberships: fields.ReverseRelation[Membership]

    class Meta:
        table = "organisation"

    def __str__(self) -> str:
        return f"Organisation {self.id}"


class Membership(Model):
    id = fields.IntField(primary_key=True)
    organisation: fields.ForeignKeyRelation[Organisation] = fields.ForeignKeyField(
        "models.Organisation", related_name="memberships", on_delete=fields.CASCADE
    )
    organisation_id: int
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="memberships", on_delete=fields.CASCADE
    )
    user_id: int
    role = fields.CharEnumField(Role, max_length=24)
    # ORG-4: administrative-contact preferences of this member.
    notify_billing = fields.BooleanField(default=False)
    notify_technical = fields.BooleanField(default=False)
    notify_security = fields.BooleanField(default=True)
    notify_domain_expiry = fields.BooleanField(default=False)
    created_at = fields.DatetimeField()

    product_grants: fields.ReverseRelation[ProductGrant]

    class Meta:
        table = "membership"
        unique_together = (("organisation", "user"),)
        # A user's organisations: read to decide who sees each of their account events (ACT-4).
        indexes = (("user_id",),)

    def __str__(self) -> str:
        return f"Membership {self.id}"


class SecurityPolicy(Model):
    """POL-1: one row per organisation."""

    id = fields.IntField(primary_key=True)
    organisation: fields.OneToOneRelation[Organisation] = fields.OneToOneField(
        "models.Organisation", related_name="security_policy", on_delete=fields.CASCADE
    )
    organisation_id: int
    require_two_factor = fields.BooleanField(default=False)
    updated_at = fields.DatetimeField()
    updated_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    updated_by_id: int | None

    class Meta:
        table = "security_policy"


class UserBlock(Model):
    """BLK-3: support blocks a member's web access at the verified request of an administrator."""

    id = fields.IntField(primary_key=True)
    organisation: fields.ForeignKeyRelation[Organisation] = fields.ForeignKeyField(
        "models.Organisation", related_name="user_blocks", on_delete=fields.CASCADE
    )
    organisation_id: int
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="blocks", on_delete=fields.CASCADE
    )
    user_id: int
    requested_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    requested_by_id: int | None
    agent: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    agent_id: int | None
    justification = fields.TextField()
    created_at = fields.DatetimeField()
    lifted_at = fields.DatetimeField(null=True)

    class Meta:
        table = "user_block"
        indexes = (("user_id", "lifted_at"),)
