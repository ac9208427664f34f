"""Webhook endpoints of an organisation: register, change, rotate, remove, list (EVT-5)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise.transactions import in_transaction

from gardien.models.enums import OutboxStatus
from gardien.models.organisations import Organisation
from gardien.models.outbox import WebhookDelivery, WebhookEndpoint
from gardien.resolvers import activity, authz, sql
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
    secret = new_secret()
    async with in_transaction():
        # The organisation's row lock serialises concurrent registrations, so the cap holds.
        await Organisation.select_for_update().get(id=organisation_id)
        if (
            await WebhookEndpoint.filter(organisation_id=organisation_id).count()
            >= MAX_ENDPOINTS_PER_ORGANISATION
        ):
            raise DomainError(
                ErrorCode.TOO_MANY_WEBHOOK_ENDPOINTS,
                f"An organisation has at most {MAX_ENDPOINTS_PER_ORGANISATION} webhook endpoints.",
            )
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
    authz.refuse_held_to_enrolment(scope.actor)
    await authz.require_webhook_manager(scope, organisation_id)
    authz.refuse_tokens(scope.actor, "Webhook endpoints")
    endpoints = await WebhookEndpoint.filter(organisation_id=organisation_id).order_by("id")
    return await _views(endpoints, _RECENT_BY_ORGANISATION, organisation_id)


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


# The newest deliveries of each endpoint and their event types, for a whole organisation in one
# statement (an endpoint list costs the same whatever its length). ROW_NUMBER() is in SQLite
# since 3.25 and in PostgreSQL.
_RECENT_DELIVERIES = (
    "SELECT r.id, r.endpoint_id, r.event_id, r.status, r.attempts, r.last_status_code,"
    " r.last_attempt_at, r.next_attempt_at, r.last_error, r.delivered_at, e.type AS event_type"
    " FROM (SELECT d.*, ROW_NUMBER() OVER (PARTITION BY d.endpoint_id ORDER BY d.id DESC)"
    " AS recency FROM webhook_delivery d JOIN webhook_endpoint w ON w.id = d.endpoint_id"
    " WHERE {where}) r"
    " JOIN activity_event e ON e.id = r.event_id"
    " WHERE r.recency <= $2 ORDER BY r.endpoint_id, r.id DESC"
)
_RECENT_BY_ORGANISATION = _RECENT_DELIVERIES.format(where="w.organisation_id = $1")
_RECENT_BY_ENDPOINT = _RECENT_DELIVERIES.format(where="d.endpoint_id = $1")


def _optional_datetime(value: Any) -> datetime | None:
    return None if value is None else sql.as_datetime(value)


def _delivery_view(row: dict[str, Any]) -> DeliveryView:
    delivery = WebhookDelivery(
        id=row["id"],
        endpoint_id=row["endpoint_id"],
        event_id=row["event_id"],
        status=OutboxStatus(row["status"]),
        attempts=row["attempts"],
        last_status_code=row["last_status_code"],
        last_attempt_at=_optional_datetime(row["last_attempt_at"]),
        next_attempt_at=sql.as_datetime(row["next_attempt_at"]),
        last_error=row["last_error"],
        delivered_at=_optional_datetime(row["delivered_at"]),
    )
    return DeliveryView(delivery, str(row["event_type"]))


async def _views(endpoints: list[WebhookEndpoint], query: str, key: int) -> list[EndpointView]:
    rows = await sql.fetch(query, [key, RECENT_DELIVERIES])
    recent: dict[int, list[DeliveryView]] = {}
    for row in rows:
        recent.setdefault(int(row["endpoint_id"]), []).append(_delivery_view(row))
    return [EndpointView(endpoint, recent.get(endpoint.id, [])) for endpoint in endpoints]


async def _view(endpoint: WebhookEndpoint) -> EndpointView:
    (view,) = await _views([endpoint], _RECENT_BY_ENDPOINT, endpoint.id)
    return view


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
