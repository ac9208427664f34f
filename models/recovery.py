"""Account recovery: reset and reminder requests, identity-verification cases (REC-*)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

from gardien.models.enums import CaseStatus, RecoveryChannel, RecoveryKind

if TYPE_CHECKING:
    from gardien.models.users import User


class RecoveryRequest(Model):
    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="recovery_requests", on_delete=fields.CASCADE
    )
    user_id: int
    kind = fields.CharEnumField(RecoveryKind, max_length=24)
    channel = fields.CharEnumField(RecoveryChannel, max_length=16)
    token_hash = fields.CharField(max_length=64, unique=True)
    ip = fields.CharField(max_length=45, null=True)
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "recovery_request"


class IdentityVerificationCase(Model):
    """REC-2 and REC-3: no recovery option matched, so support reviews the evidence."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="verification_cases", null=True, on_delete=fields.SET_NULL
    )
    user_id: int | None
    contact_email = fields.CharField(max_length=254)
    details = fields.TextField()
    status = fields.CharEnumField(CaseStatus, default=CaseStatus.OPEN, max_length=16)
    reviewed_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    reviewed_by_id: int | None
    created_at = fields.DatetimeField()
    reviewed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "identity_verification_case"
