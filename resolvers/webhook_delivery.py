"""The webhook worker (EVT-5): claims due deliveries, POSTs them signed, retries with backoff,
and disables an endpoint that keeps failing, telling the organisation's managers."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from gardien import outbox
from gardien.mail.templates import Template
from gardien.models.activity import ActivityEvent
from gardien.models.enums import OutboxStatus
from gardien.models.outbox import WebhookDelivery, WebhookEndpoint
from gardien.resolvers import activity, authz, webhooks
from gardien.resolvers.services import Services
from gardien.webhooks import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    Attempt,
    WebhookSender,
    signature_header,
)

logger = logging.getLogger("gardien.webhooks")

BATCH_SIZE = 10
# A claim moves next_attempt_at this far ahead; if the worker dies, the delivery is due again then.
LEASE = timedelta(minutes=15)
# Fifteen attempts over about a day: 1, 2, 4 … minutes, capped at 2 hours, with jitter.
MAX_ATTEMPTS = 15
BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_CAP = timedelta(hours=2)
# An endpoint is disabled after this many failed attempts in a row, or when it has been failing
# (with no success in between) for this long, whichever comes first.
DISABLE_AFTER_FAILURES = 20
DISABLE_AFTER_FAILING_FOR = timedelta(hours=24)
POLL_SECONDS = 2.0
# A batch is sent concurrently, one delivery at a time per endpoint (a receiver sees its events in
# order and is not flooded), so one slow receiver does not hold up the others.
MAX_CONCURRENT_ENDPOINTS = 10


def backoff(attempts: int, rng: random.Random) -> timedelta:
    return outbox.backoff(attempts, rng, base=BACKOFF_BASE, cap=BACKOFF_CAP)


def should_disable(
    consecutive_failures: int, failing_since: datetime | None, now: datetime
) -> bool:
    if consecutive_failures >= DISABLE_AFTER_FAILURES:
        return True
    return failing_since is not None and now - failing_since >= DISABLE_AFTER_FAILING_FOR


def event_body(event: ActivityEvent) -> bytes:
    """The JSON a receiver gets: the event as the activity log keeps it."""
    payload: dict[str, Any] = {
        "id": str(event.id),
        "type": event.type,
        "occurredAt": event.occurred_at.isoformat(),
        "organisationId": str(event.organisation_id),
        "actorId": str(event.actor_id) if event.actor_id is not None else None,
        "subjectId": str(event.subject_id) if event.subject_id is not None else None,
        "data": event.data,
    }
    return orjson.dumps(payload)


class WebhookWorker(outbox.PollingWorker):
    """Delivers webhook deliveries; several may run at once on PostgreSQL (claims as the e-mail
    worker's, through gardien.outbox.claim_due).

    Delivery is at least once: a crash between the receiver's 2xx and the SENT mark sends the
    delivery again after its lease, with the same Gardien-Event-Id, so receivers dedupe on it.
    """

    poll_seconds = POLL_SECONDS
    label = "webhook worker"
    logger = logging.getLogger("gardien.webhooks")

    def __init__(
        self,
        services: Services,
        sender: WebhookSender,
        *,
        batch_size: int = BATCH_SIZE,
        rng: random.Random | None = None,
    ) -> None:
        self._services = services
        self._sender = sender
        self._batch_size = batch_size
        self._rng = rng or random.SystemRandom()

    async def claim(self) -> list[WebhookDelivery]:
        now = self._services.clock.now()
        return await outbox.claim_due(WebhookDelivery, now, now + LEASE, self._batch_size)

    async def run_once(self) -> int:
        """Claim one batch and try to deliver it; returns how many deliveries were attempted."""
        batch = await self.claim()
        if batch:
            per_endpoint: dict[int, list[WebhookDelivery]] = {}
            for delivery in batch:
                per_endpoint.setdefault(delivery.endpoint_id, []).append(delivery)
            bound = asyncio.Semaphore(MAX_CONCURRENT_ENDPOINTS)
            async with self._sender.client() as client, asyncio.TaskGroup() as group:
                for deliveries in per_endpoint.values():
                    group.create_task(self._deliver_in_turn(client, bound, deliveries))
        return len(batch)

    async def _deliver_in_turn(
        self,
        client: httpx.AsyncClient,
        bound: asyncio.Semaphore,
        deliveries: list[WebhookDelivery],
    ) -> None:
        async with bound:
            for delivery in deliveries:
                await self._deliver(client, delivery)

    async def _deliver(self, client: httpx.AsyncClient, delivery: WebhookDelivery) -> None:
        endpoint = await WebhookEndpoint.get_or_none(id=delivery.endpoint_id)
        if endpoint is None:
            return  # deleted meanwhile, its deliveries with it
        if endpoint.disabled_at is not None:
            await WebhookDelivery.filter(id=delivery.id, status=OutboxStatus.PENDING).update(
                status=OutboxStatus.DEAD, last_error="endpoint disabled"
            )
            return
        event = await ActivityEvent.get(id=delivery.event_id)
        body = event_body(event)
        timestamp = int(self._services.clock.now().timestamp())
        headers = {
            SIGNATURE_HEADER: signature_header(
                webhooks.decrypt_secret(self._services, endpoint), timestamp, body
            ),
            EVENT_ID_HEADER: str(event.id),
            EVENT_TYPE_HEADER: event.type,
        }
        attempt = await self._sender.post(client, endpoint.url, body, headers)
        if attempt.succeeded:
            await self._succeeded(delivery, attempt)
        else:
            await self._failed(endpoint, delivery, attempt)

    async def _succeeded(self, delivery: WebhookDelivery, attempt: Attempt) -> None:
        now = self._services.clock.now()
        async with in_transaction():
            await WebhookDelivery.filter(id=delivery.id).update(
                status=OutboxStatus.SENT,
                last_status_code=attempt.status_code,
                last_attempt_at=now,
                last_error=None,
                delivered_at=now,
            )
            await WebhookEndpoint.filter(id=delivery.endpoint_id).update(
                consecutive_failures=0, failing_since=None
            )
        logger.info("webhook delivery %s sent (HTTP %s)", delivery.id, attempt.status_code)

    async def _failed(
        self, endpoint: WebhookEndpoint, delivery: WebhookDelivery, attempt: Attempt
    ) -> None:
        now = self._services.clock.now()
        if delivery.attempts >= MAX_ATTEMPTS:
            status, next_attempt_at = OutboxStatus.DEAD, now
        else:
            status = OutboxStatus.PENDING
            next_attempt_at = now + backoff(delivery.attempts, self._rng)
        async with in_transaction():
            await WebhookDelivery.filter(id=delivery.id, status=OutboxStatus.PENDING).update(
                status=status,
                next_attempt_at=next_attempt_at,
                last_status_code=attempt.status_code,
                last_attempt_at=now,
                last_error=attempt.error,
            )
            # Counted in the statement: two workers failing at once both count.
            await WebhookEndpoint.filter(id=endpoint.id).update(
                consecutive_failures=F("consecutive_failures") + 1
            )
            await WebhookEndpoint.filter(id=endpoint.id, failing_since=None).update(
                failing_since=now
            )
            current = await WebhookEndpoint.get(id=endpoint.id)
            if current.disabled_at is None and should_disable(
                current.consecutive_failures, current.failing_since, now
            ):
                await self._disable(current, now)
        logger.warning(
            "webhook delivery %s: attempt %s failed (%s); %s",
            delivery.id,
            delivery.attempts,
            attempt.error,
            "given up" if status is OutboxStatus.DEAD else f"next attempt at {next_attempt_at}",
        )

    async def _disable(self, endpoint: WebhookEndpoint, now: datetime) -> None:
        """In the failing attempt's transaction: the endpoint, its queue, the event, the e-mail."""
        disabled = await WebhookEndpoint.filter(id=endpoint.id, disabled_at=None).update(
            disabled_at=now
        )
        if disabled != 1:
            return  # another worker disabled it a moment ago, and told the managers
        await webhooks.give_up_pending(endpoint.id, "endpoint disabled after repeated failures")
        recipients = await authz.webhook_notice_recipients(endpoint.organisation_id)
        for membership in recipients:
            user = membership.user
            assert user.email is not None  # webhook_notice_recipients keeps addressed users only
            await self._services.mail.enqueue(
                Template.WEBHOOK_ENDPOINT_DISABLED,
                to=user.email,
                language=user.language,
                timezone=user.timezone,
                context={
                    "organisation": membership.organisation.name,
                    "url": endpoint.url,
                    "failures": endpoint.consecutive_failures,
                    "failing_since": endpoint.failing_since,
                    "link": f"{self._services.settings.public_url}/console/#/webhooks",
                },
            )
        await activity.webhook_endpoint_disabled(
            self._services,
            organisation_id=endpoint.organisation_id,
            endpoint_id=endpoint.id,
            url=endpoint.url,
            consecutive_failures=endpoint.consecutive_failures,
            failing_since=endpoint.failing_since.isoformat() if endpoint.failing_since else None,
            recipients=len(recipients),
        )
        logger.warning(
            "webhook endpoint %s disabled after %s failures",
            endpoint.id,
            endpoint.consecutive_failures,
        )


def worker_from_services(services: Services) -> WebhookWorker:
    return WebhookWorker(
        services, WebhookSender(allow_private=services.settings.webhook_allow_private)
    )
