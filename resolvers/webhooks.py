"""Webhook endpoints of an organisation: register, change, rotate, remove, list (EVT-5)."""

from __future__ import annotations

from dataclasses import dataclass

from tortoise.transactions import in_transaction

from gardien.models.activity import ActivityEvent
from gardien.models.enums import OutboxStatus
from gardien.models.outbox import WebhookDelivery, WebhookEndpoint
from gardien.resolvers import activity, authz
from gardien.resolvers.authz import RequestScope
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.resolvers.webhook_fanout import EVENT_TYPES
from gardien.webhooks import UnsafeUrlError, new_secret, resolve_target

# The secret is encrypted, not hashed: the worker needs it to sign every delivery. The
# organisation is bound in as associated data: a ciphertext copied to another organisation's
# endpoint does not decrypt.
SECRET_CONTEXT = "webhook-secret"
# Each endpoint costs a delivery per event: a bound keeps one organisation from flooding workers.
MAX_ENDPOINTS_PER_ORGANISATION = 20
RECENT_DELIVERIES = 10


@dataclass(frozen=True)
class DeliveryView:
    delivery: WebhookDelivery
    event_type: str


@dataclass(frozen=True)
class EndpointView:
    endpoint: WebhookEndpoint
    recent_deliveries: list[DeliveryView]

    @property
    def last_delivery(self) -> DeliveryView | None:
        return self.recent_deliveries[0] if self.recent_deliveries else None


@dataclass(frozen=True)
class EndpointWithSecret:
    """A new or rotated secret: shown this once, never readable again."""

    view: EndpointView
    secret: str


def encrypt_secret(services: Services, organisation_id: int, secret: str) -> bytes:
    return services.keyring.encrypt(secret.encode(), f"{SECRET_CONTEXT}:{organisation_id}")


def decrypt_secret(services: Services, endpoint: WebhookEndpoint) -> str:
    context = f"{SECRET_CONTEXT}:{endpoint.organisation_id}"
    return services.keyring.decrypt(endpoint.secret_encrypted, context).decode()


def checked_event_types(event_types: list[str]) -> list[str]:
    """The subscription without duplicates, in the catalogue's order; UNKNOWN_EVENT_TYPE else."""
    if not event_types:
        raise DomainError(
            ErrorCode.UNKNOWN_EVENT_TYPE, "Choose at least one event type.", "eventTypes"
        )
    unknown = sorted(set(event_types) - set(EVENT_TYPES))
    if unknown:
        # Cut: the input is the caller's and may be long.
        raise DomainError(
            ErrorCode.UNKNOWN_EVENT_TYPE,
            f"Unknown event type: {unknown[0][:64]}.",
            "eventTypes",
        )
    return [event_type for event_type in EVENT_TYPES if event_type in event_types]


async def checked_url(services: Services, url: str) -> str:
    """UNSAFE_WEBHOOK_URL unless HTTPS and public now; the worker checks again at each delivery,
    as the host name may resolve elsewhere later."""
    try:
        target = await resolve_target(
            url.strip(), allow_private=services.settings.webhook_allow_private
        )
    except UnsafeUrlError as error:
        raise DomainError(ErrorCode.UNSAFE_WEBHOOK_URL, str(error), "url") from None
    return target.url


async def create_webhook_endpoint(
    services: Services,
    meta: RequestMeta,
    scope: RequestScope,
    organisation_id: int,
    url: str,
    event_types: list[str],
) -> EndpointWithSecret:
    manager = authz.require_user(scope.actor)
    await authz.require_webhook_manager(scope, organisation_id)
    types = checked_event_types(event_types)
    checked = await checked_url(services, url)
    if (
        await WebhookEndpoint.filter(organisation_id=organisation_id).count()
        >= MAX_ENDPOINTS_PER_ORGANISATION
    ):
        raise DomainError(
            ErrorCode.TOO_MANY_WEBHOOK_ENDPOINTS,
            f"An organisation has at most {MAX_ENDPOINTS_PER_ORGANISATION} webhook endpoints.",
        )
    secret = new_secret()
    async with in_transaction():
        endpoint = await WebhookEndpoint.create(
            organisation_id=organisation_id,
            url=checked,
            event_types=types,
            secret_encrypted=encrypt_secret(services, organisation_id, secret),
            consecutive_failures=0,
            created_at=services.clock.now(),
        )
        await activity.webhook_endpoint_created(
            services,
            meta,
            actor_id=manager.id,
            organisation_id=organisation_id,
            endpoint_id=endpoint.id,
            url=endpoint.url,
            event_types=types,
        )
    return EndpointWithSecret(EndpointView(endpoint, []), secret)


async def update_webhook_endpoint(
    services: Services,
    meta: RequestMeta,
    scope: RequestScope,
    endpoint_id: int,
    *,
    event_types: list[str] | None,
    enabled: bool | None,
) -> EndpointView:
    """New event types and/or enable or disable. Enabling starts the failure count afresh;
    disabling gives up the deliveries still queued for the endpoint."""
    manager = authz.require_user(scope.actor)
    endpoint = await _managed_endpoint(scope, endpoint_id)
    types = checked_event_types(event_types) if event_types is not None else endpoint.event_types
    now = services.clock.now()
    async with in_transaction():
        endpoint = await WebhookEndpoint.select_for_update().get(id=endpoint.id)
        endpoint.event_types = types
        if enabled is True and endpoint.disabled_at is not None:
            endpoint.disabled_at = None
            endpoint.consecutive_failures = 0
            endpoint.failing_since = None
        elif enabled is False and endpoint.disabled_at is None:
            endpoint.disabled_at = now
            await give_up_pending(endpoint.id, "endpoint disabled")
        await endpoint.save()
        await activity.webhook_endpoint_updated(
            services,
            meta,
            actor_id=manager.id,
            organisation_id=endpoint.organisation_id,
            endpoint_id=endpoint.id,
            url=endpoint.url,
            event_types=types,
            enabled=endpoint.disabled_at is None,
        )
    return await _view(endpoint)


async def rotate_webhook_secret(
    services: Services, meta: RequestMeta, scope: RequestScope, endpoint_id: int
) -> EndpointWithSecret:
    """A new secret signs every delivery from now on, retries included; the old one is gone."""
    manager = authz.require_user(scope.actor)
    endpoint = await _managed_endpoint(scope, endpoint_id)
    secret = new_secret()
    async with in_transaction():
        await WebhookEndpoint.filter(id=endpoint.id).update(
            secret_encrypted=encrypt_secret(services, endpoint.organisation_id, secret)
        )
        await activity.webhook_secret_rotated(
            services,
            meta,
            actor_id=manager.id,
            organisation_id=endpoint.organisation_id,
            endpoint_id=endpoint.id,
            url=endpoint.url,
        )
    return EndpointWithSecret(await _view(endpoint), secret)


async def delete_webhook_endpoint(
    services: Services, meta: RequestMeta, scope: RequestScope, endpoint_id: int
) -> None:
    """The endpoint and its queued deliveries go; nothing more is sent to it."""
    manager = authz.require_user(scope.actor)
    endpoint = await _managed_endpoint(scope, endpoint_id)
    async with in_transaction():
        # The count may include the cascaded deliveries: none means a concurrent delete won.
        if not await WebhookEndpoint.filter(id=endpoint.id).delete():
            raise _no_such_endpoint()
        await activity.webhook_endpoint_deleted(
            services,
            meta,
            actor_id=manager.id,
            organisation_id=endpoint.organisation_id,
            endpoint_id=endpoint.id,
            url=endpoint.url,
        )


async def organisation_webhook_endpoints(
    scope: RequestScope, organisation_id: int
) -> list[EndpointView]:
    """Oldest first, each with its latest deliveries; managers only, from a web session (as
    endpoints are managed: their deliveries show what the organisation's activity is)."""
    await authz.require_webhook_manager(scope, organisation_id)
    authz.refuse_tokens(scope.actor, "Webhook endpoints")
    endpoints = await WebhookEndpoint.filter(organisation_id=organisation_id).order_by("id")
    return [await _view(endpoint) for endpoint in endpoints]


async def visible_endpoint(scope: RequestScope, endpoint_id: int) -> EndpointView | None:
    """node(id:): an endpoint of an organisation the caller manages; None for any other."""
    endpoint = await WebhookEndpoint.get_or_none(id=endpoint_id)
    if endpoint is None or not authz.can_manage_webhooks(
        await authz.membership_of(scope, endpoint.organisation_id)
    ):
        return None
    return await _view(endpoint)


async def give_up_pending(endpoint_id: int, reason: str) -> None:
    """Queued deliveries of an endpoint that is disabled are not sent: they end as DEAD."""
    await WebhookDelivery.filter(endpoint_id=endpoint_id, status=OutboxStatus.PENDING).update(
        status=OutboxStatus.DEAD, last_error=reason
    )


async def _view(endpoint: WebhookEndpoint) -> EndpointView:
    deliveries = (
        await WebhookDelivery.filter(endpoint_id=endpoint.id)
        .order_by("-id")
        .limit(RECENT_DELIVERIES)
    )
    types = dict(
        await ActivityEvent.filter(id__in=[d.event_id for d in deliveries]).values_list(
            "id", "type"
        )
    )
    return EndpointView(
        endpoint, [DeliveryView(d, str(types.get(d.event_id, ""))) for d in deliveries]
    )


async def _managed_endpoint(scope: RequestScope, endpoint_id: int) -> WebhookEndpoint:
    """The endpoint once the caller may manage it; one NOT_FOUND for unknown and not theirs."""
    endpoint = await WebhookEndpoint.get_or_none(id=endpoint_id)
    if endpoint is None:
        raise _no_such_endpoint()
    try:
        await authz.require_webhook_manager(scope, endpoint.organisation_id)
    except DomainError as error:
        if error.code == ErrorCode.NOT_FOUND:
            raise _no_such_endpoint() from None
        raise DomainError(error.code, error.message) from None
    return endpoint


def _no_such_endpoint() -> DomainError:
    return DomainError(ErrorCode.NOT_FOUND, "No such webhook endpoint.", "endpointId")
