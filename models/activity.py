"""The append-only security activity log (ACT-1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from gardien.models.organisations import Organisation
    from gardien.models.users import User


class AppendOnlyError(RuntimeError):
    """An activity row may be written once and never changed or deleted."""


class AppendOnly:
    """ACT-1: a row of the activity log is written once, then never changed or deleted."""

    _saved_in_db: bool

    async def save(self, *args: Any, **kwargs: Any) -> None:
        if self._saved_in_db:
            raise AppendOnlyError(f"{type(self).__name__} rows are append-only")
        await super().save(*args, **kwargs)  # type: ignore[misc]

    async def delete(self, *args: Any, **kwargs: Any) -> None:
        raise AppendOnlyError(f"{type(self).__name__} rows are append-only")


class ActivityEvent(AppendOnly, Model):
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


class ActivityEventAudience(AppendOnly, Model):
    """ACT-4, EVT-2: an organisation whose managers see the event, decided when it is recorded.

    A member's account security events belong to the organisations they were a member of at the
    time: leaving does not erase an attack from the history, and joining does not bring a
    newcomer's past into it. The organisation's own events are listed here too, so that its
    history, its filters, its pages and its replay read one index in event order. Being part of
    that history, a row is append-only like the event (ACT-1); it goes only with its
    organisation.
    """

    id = fields.BigIntField(primary_key=True)
    event: fields.ForeignKeyRelation[ActivityEvent] = fields.ForeignKeyField(
        "models.ActivityEvent", related_name="audience", on_delete=fields.CASCADE
    )
    event_id: int
    organisation: fields.ForeignKeyRelation[Organisation] = fields.ForeignKeyField(
        "models.Organisation", related_name=False, on_delete=fields.CASCADE
    )
    organisation_id: int

    class Meta:
        table = "activity_event_organisation"
        # Listed and replayed per organisation in event order: this index serves both.
        unique_together = (("organisation", "event"),)
