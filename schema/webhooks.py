"""Webhooks in GraphQL: the WebhookEndpoint node, its deliveries and its mutations (EVT-5)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from gardien.models.enums import OutboxStatus
from gardien.resolvers import authz, webhooks
from gardien.resolvers.errors import DomainError
from gardien.resolvers.webhook_fanout import EVENT_TYPES
from gardien.resolvers.webhooks import DeliveryView, EndpointView
from gardien.schema.context import Info
from gardien.schema.errors import UserError
from gardien.schema.relay import Node, decode_id, encode_id

WebhookDeliveryStatus = strawberry.enum(
    OutboxStatus,
    name="WebhookDeliveryStatus",
    description="PENDING: to be sent or retried; SENT: the receiver answered 2xx; DEAD: given up.",
)


@strawberry.type(
    name="WebhookDelivery", description="One event sent, or to be sent, to an endpoint."
)
class WebhookDeliveryType:
    event_id: strawberry.ID = strawberry.field(
        description="The ActivityEvent delivered; receivers get it as Gardien-Event-Id."
    )
    event_type: str
    status: WebhookDeliveryStatus  # type: ignore[valid-type]
    attempts: int
    last_status_code: int | None = strawberry.field(
        description="The receiver's HTTP status at the last attempt; null when none answered."
    )
    last_error: str | None
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None = strawberry.field(
        description="When a PENDING delivery is tried next; null once SENT or DEAD."
    )
    delivered_at: datetime | None

    @classmethod
    def from_view(cls, view: DeliveryView) -> WebhookDeliveryType:
        delivery = view.delivery
        return cls(
            event_id=encode_id("ActivityEvent", delivery.event_id),
            event_type=view.event_type,
            status=delivery.status,
            attempts=delivery.attempts,
            last_status_code=delivery.last_status_code,
            last_error=delivery.last_error,
            last_attempt_at=delivery.last_attempt_at,
            next_attempt_at=(
                delivery.next_attempt_at if delivery.status == OutboxStatus.PENDING else None
            ),
            delivered_at=delivery.delivered_at,
        )


@strawberry.type(
    name="WebhookEndpoint",
    description="An HTTPS receiver of the organisation's events, chosen by type (EVT-5).",
)
class WebhookEndpointNode(Node):
    url: str
    event_types: list[str]
    enabled: bool = strawberry.field(
        description="False once disabled by a manager, or after failing persistently."
    )
    disabled_at: datetime | None
    consecutive_failures: int
    failing_since: datetime | None
    created_at: datetime
    last_delivery: WebhookDeliveryType | None = strawberry.field(
        description="The newest delivery and its status; null before the first event."
    )
    recent_deliveries: list[WebhookDeliveryType] = strawberry.field(
        description=f"The {webhooks.RECENT_DELIVERIES} newest deliveries, newest first."
    )

    @classmethod
    def from_view(cls, view: EndpointView) -> WebhookEndpointNode:
        endpoint = view.endpoint
        last = view.last_delivery
        return cls(
            id=encode_id("WebhookEndpoint", endpoint.id),
            url=endpoint.url,
            event_types=list(endpoint.event_types),
            enabled=endpoint.disabled_at is None,
            disabled_at=endpoint.disabled_at,
            consecutive_failures=endpoint.consecutive_failures,
            failing_since=endpoint.failing_since,
            created_at=endpoint.created_at,
            last_delivery=WebhookDeliveryType.from_view(last) if last else None,
            recent_deliveries=[WebhookDeliveryType.from_view(d) for d in view.recent_deliveries],
        )


async def organisation_webhook_endpoints(
    info: Info, organisation_id: int
) -> list[WebhookEndpointNode]:
    views = await webhooks.organisation_webhook_endpoints(info.context.scope, organisation_id)
    return [WebhookEndpointNode.from_view(view) for view in views]


async def webhook_endpoint_by_id(info: Info, endpoint_id: int) -> WebhookEndpointNode:
    """node(id:): an endpoint of an organisation the caller manages; NOT_FOUND for any other."""
    view = await webhooks.visible_endpoint(info.context.scope, endpoint_id)
    if view is None:
        raise authz.not_found("webhook endpoint")
    return WebhookEndpointNode.from_view(view)


def webhook_event_types() -> list[str]:
    return list(EVENT_TYPES)


@strawberry.input
class CreateWebhookEndpointInput:
    organisation_id: strawberry.ID
    url: str = strawberry.field(description="An https URL reaching a public address.")
    event_types: list[str] = strawberry.field(
        description="Activity types to send, from Query.webhookEventTypes."
    )


@strawberry.input
class UpdateWebhookEndpointInput:
    endpoint_id: strawberry.ID
    event_types: list[str] | None = strawberry.field(
        default=None, description="The new subscription; unchanged when null."
    )
    enabled: bool | None = strawberry.field(
        default=None,
        description="true re-enables (the failure count starts afresh); false disables and gives"
        " up queued deliveries; unchanged when null.",
    )


@strawberry.input
class RotateWebhookSecretInput:
    endpoint_id: strawberry.ID


@strawberry.input
class DeleteWebhookEndpointInput:
    endpoint_id: strawberry.ID


@strawberry.type
class CreateWebhookEndpointPayload:
    endpoint: WebhookEndpointNode | None = None
    secret: str | None = strawberry.field(
        default=None,
        description="The signing secret, shown this once: verify Gardien-Signature with it.",
    )
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class UpdateWebhookEndpointPayload:
    endpoint: WebhookEndpointNode | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RotateWebhookSecretPayload:
    endpoint: WebhookEndpointNode | None = None
    secret: str | None = strawberry.field(
        default=None, description="The new signing secret, shown this once; the old one is gone."
    )
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class DeleteWebhookEndpointPayload:
    deleted_endpoint_id: strawberry.ID | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class WebhookMutations:
    @strawberry.mutation(
        description="Register an endpoint for chosen event types (EVT-5; managers); the signing"
        " secret is in the payload, once."
    )
    async def create_webhook_endpoint(
        self, info: Info, input: CreateWebhookEndpointInput
    ) -> CreateWebhookEndpointPayload:
        try:
            created = await webhooks.create_webhook_endpoint(
                info.context.services,
                info.context.meta,
                info.context.scope,
                decode_id(input.organisation_id, "Organisation", "organisationId"),
                input.url,
                input.event_types,
            )
        except DomainError as error:
            return CreateWebhookEndpointPayload(errors=[UserError.from_domain(error)])
        return CreateWebhookEndpointPayload(
            endpoint=WebhookEndpointNode.from_view(created.view), secret=created.secret
        )

    @strawberry.mutation(description="Change an endpoint's event types, or enable or disable it.")
    async def update_webhook_endpoint(
        self, info: Info, input: UpdateWebhookEndpointInput
    ) -> UpdateWebhookEndpointPayload:
        try:
            view = await webhooks.update_webhook_endpoint(
                info.context.services,
                info.context.meta,
                info.context.scope,
                decode_id(input.endpoint_id, "WebhookEndpoint", "endpointId"),
                event_types=input.event_types,
                enabled=input.enabled,
            )
        except DomainError as error:
            return UpdateWebhookEndpointPayload(errors=[UserError.from_domain(error)])
        return UpdateWebhookEndpointPayload(endpoint=WebhookEndpointNode.from_view(view))

    @strawberry.mutation(description="Replace an endpoint's signing secret; the new one, once.")
    async def rotate_webhook_secret(
        self, info: Info, input: RotateWebhookSecretInput
    ) -> RotateWebhookSecretPayload:
        try:
            rotated = await webhooks.rotate_webhook_secret(
                info.context.services,
                info.context.meta,
                info.context.scope,
                decode_id(input.endpoint_id, "WebhookEndpoint", "endpointId"),
            )
        except DomainError as error:
            return RotateWebhookSecretPayload(errors=[UserError.from_domain(error)])
        return RotateWebhookSecretPayload(
            endpoint=WebhookEndpointNode.from_view(rotated.view), secret=rotated.secret
        )

    @strawberry.mutation(description="Remove an endpoint; its queued deliveries are not sent.")
    async def delete_webhook_endpoint(
        self, info: Info, input: DeleteWebhookEndpointInput
    ) -> DeleteWebhookEndpointPayload:
        try:
            endpoint_id = decode_id(input.endpoint_id, "WebhookEndpoint", "endpointId")
            await webhooks.delete_webhook_endpoint(
                info.context.services, info.context.meta, info.context.scope, endpoint_id
            )
        except DomainError as error:
            return DeleteWebhookEndpointPayload(errors=[UserError.from_domain(error)])
        return DeleteWebhookEndpointPayload(
            deleted_endpoint_id=encode_id("WebhookEndpoint", endpoint_id)
        )
