"""The transactional outbox (OPS-6) and integrators' webhooks (EVT-5)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.models import Model

from gardien.models.enums import OutboxChannel, OutboxStatus

if TYPE_CHECKING:
    from gardien.models.activity import ActivityEvent
    from gardien.models.organisations import Organisation


class OutboxMessage(Model):
    """An e-mail, SMS, push or webhook delivery, written in the transaction that causes it."""

    id = fields.BigIntField(primary_key=True)
    channel = fields.CharEnumField(OutboxChannel, max_length=8)
    recipient = fields.CharField(max_length=2048)
    template = fields.CharField(max_length=64)
    language = fields.CharField(max_length=2, default="fr")
    payload: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)
    status = fields.CharEnumField(OutboxStatus, default=OutboxStatus.PENDING, max_length=8)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField()
    last_error = fields.TextField(null=True)
    created_at = fields.DatetimeField()
    sent_at = fields.DatetimeField(null=True)

    class Meta:
        table = "outbox_message"
        indexes = (("status", "next_attempt_at"),)


class WebhookEndpoint(Model):
    id = fields.IntField(primary_key=True)
    organisation: fields.ForeignKeyRelation[Organisation] = fields.ForeignKeyField(
        "models.Organisation", related_name="webhook_endpoints", on_delete=fields.CASCADE
    )
    organisation_id: int
    url = fields.CharField(max_length=2048)
    event_types: fields.JSONField[list[str]] = fields.JSONField(default=list)
    secret_encrypted = fields.BinaryField()
    consecutive_failures = fields.IntField(default=0)
    # The first failure of the current run of failures: an endpoint failing for too long is
    # disabled even when its deliveries are few and far between (EVT-5).
    failing_since = fields.DatetimeField(null=True)
    disabled_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "webhook_endpoint"


class WebhookDelivery(Model):
    id = fields.BigIntField(primary_key=True)
    endpoint: fields.ForeignKeyRelation[WebhookEndpoint] = fields.ForeignKeyField(
        "models.WebhookEndpoint", related_name="deliveries", on_delete=fields.CASCADE
    )
    endpoint_id: int
    event: fields.ForeignKeyRelation[ActivityEvent] = fields.ForeignKeyField(
        "models.ActivityEvent", related_name=False, on_delete=fields.CASCADE
    )
    event_id: int
    status = fields.CharEnumField(OutboxStatus, default=OutboxStatus.PENDING, max_length=8)
    attempts = fields.IntField(default=0)
    last_status_code = fields.IntField(null=True)
    last_attempt_at = fields.DatetimeField(null=True)
    next_attempt_at = fields.DatetimeField()
    last_error = fields.CharField(max_length=500, null=True)
    delivered_at = fields.DatetimeField(null=True)

    class Meta:
        table = "webhook_delivery"
        unique_together = (("endpoint", "event"),)
        indexes = (("status", "next_attempt_at"),)
