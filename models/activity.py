"""The append-only security activity log (ACT-1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from gardien.models.organisations import Organisation
    from gardien.models.users import User


class AppendOnlyError(RuntimeError):
    """An ActivityEvent row may be written once and never changed or deleted."""


class ActivityEvent(Model):
    id = fields.BigIntField(primary_key=True)
    type = fields.CharField(max_length=64)
    occurred_at = fields.DatetimeField()
    actor: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    actor_id: int | None
    subject: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    subject_id: int | None
    # Kept when the subject has no account (failed sign-in on an unknown login, invitations).
    subject_email = fields.CharField(max_length=254, null=True)
    organisation: fields.ForeignKeyNullableRelation[Organisation] = fields.ForeignKeyField(
        "models.Organisation", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    organisation_id: int | None
    ip = fields.CharField(max_length=45, null=True)
    country = fields.CharField(max_length=2, null=True)
    device = fields.CharField(max_length=200, null=True)
    data: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)

    class Meta:
        table = "activity_event"
        indexes = (("organisation_id", "id"), ("subject_id", "id"), ("type", "occurred_at"))

    async def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._saved_in_db:
            await super().save(*args, **kwargs)
            return
        raise AppendOnlyError("activity events are append-only")

    async def delete(self, *args: Any, **kwargs: Any) -> None:
        raise AppendOnlyError("activity events are append-only")
