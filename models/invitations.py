"""Invitations to join an organisation (INV-*)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

from gardien.models.enums import InvitationStatus, Role

if TYPE_CHECKING:
    from gardien.models.organisations import Organisation
    from gardien.models.users import User


class Invitation(Model):
    id = fields.IntField(primary_key=True)
    organisation: fields.ForeignKeyRelation[Organisation] = fields.ForeignKeyField(
        "models.Organisation", related_name="invitations", on_delete=fields.CASCADE
    )
    organisation_id: int
    email = fields.CharField(max_length=254, db_index=True)
    role = fields.CharEnumField(Role, max_length=24)
    product_ids: fields.JSONField[list[int]] = fields.JSONField(default=list)
    contact_preferences: fields.JSONField[dict[str, bool]] = fields.JSONField(default=dict)
    token_hash = fields.CharField(max_length=64, unique=True)
    status = fields.CharEnumField(InvitationStatus, default=InvitationStatus.PENDING, max_length=16)
    invited_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    invited_by_id: int | None
    expires_at = fields.DatetimeField()
    last_sent_at = fields.DatetimeField()
    send_count = fields.IntField(default=1)
    responded_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "invitation"
        indexes = (("organisation_id", "status"),)
