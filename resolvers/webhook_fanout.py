"""Webhook fan-out (EVT-5): an organisation's event becomes one delivery per subscribed endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gardien.models.enums import OutboxStatus
from gardien.models.outbox import WebhookDelivery, WebhookEndpoint

if TYPE_CHECKING:
    from gardien.models.activity import ActivityEvent
    from gardien.resolvers.services import Services

# The activity an integrator may subscribe to: events of an organisation. A user's own events
# (sign-ins, sign-outs, switching organisation) concern that person, not the organisation; a
# sign-up is recorded before the organisation exists to carry an endpoint, so it is not offered.
EVENT_TYPES: tuple[str, ...] = (
    "member.joined",
    "member.role_changed",
    "member.removed",
    "member.left",
    "member.product_access_changed",
    "member.contact_preferences_changed",
    "support_plan.changed",
    "invitation.sent",
    "invitation.resent",
    "invitation.revoked",
    "invitation.declined",
    "invitation.accepted",
    "domain.expiry_reminder_sent",
    "domain.entered_redemption",
    "domain.renewed_by_warranty",
    "domain.released",
    "domain.renewed",
    "domain.restored",
    "domain.renewal_warranty_changed",
    "webhook.endpoint_created",
    "webhook.endpoint_updated",
    "webhook.secret_rotated",
    "webhook.endpoint_deleted",
    "webhook.endpoint_disabled",
    "product.management_blocked",
    "product.management_unblocked",
    "product.mail_maintenance_started",
    "product.mail_maintenance_ended",
    "mailbox.created",
    "mailbox.deleted",
    "user.blocked_by_support",
    "user.unblocked_by_support",
    "member.security_procedure_sent",
    "service_account.created",
    "service_account.revoked",
    "security_policy.changed",
    "member.security_alert_sent",
)


async def enqueue_deliveries(services: Services, event: ActivityEvent) -> None:
    """Queue the event for every enabled endpoint of its organisation subscribed to its type.

    Runs in the transaction that records the event: the deliveries exist if and only if the
    event does, and the worker sends them once it commits.
    """
    if event.organisation_id is None or event.type not in EVENT_TYPES:
        return
    endpoints = await WebhookEndpoint.filter(
        organisation_id=event.organisation_id, disabled_at=None
    ).only("id", "event_types")
    subscribed = [endpoint.id for endpoint in endpoints if event.type in endpoint.event_types]
    if not subscribed:
        return
    now = services.clock.now()
    await WebhookDelivery.bulk_create(
        [
            WebhookDelivery(
                endpoint_id=endpoint_id,
                event_id=event.id,
                status=OutboxStatus.PENDING,
                attempts=0,
                next_attempt_at=now,
            )
            for endpoint_id in subscribed
        ]
    )
