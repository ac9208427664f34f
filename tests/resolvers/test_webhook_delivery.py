"""Webhook deliveries against a real HTTP receiver: signed, retried, once each, disabled when
failing for good (EVT-5)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import threading
from dataclasses import dataclass

import pytest
from tortoise.transactions import in_transaction

from gardien.clock import ManualClock
from gardien.models.activity import ActivityEvent
from gardien.models.enums import OutboxStatus, Role
from gardien.models.organisations import Organisation, UserBlock
from gardien.models.outbox import OutboxMessage, WebhookDelivery, WebhookEndpoint
from gardien.resolvers import activity, webhooks
from gardien.resolvers.authz import RequestScope
from gardien.resolvers.services import RequestMeta, Services
from gardien.resolvers.webhook_delivery import (
    BACKOFF_CAP,
    DISABLE_AFTER_FAILING_FOR,
    DISABLE_AFTER_FAILURES,
    MAX_ATTEMPTS,
    WebhookWorker,
    event_body,
)
from gardien.settings import Settings
from gardien.webhooks import EVENT_TYPE_HEADER, SIGNATURE_HEADER, WebhookSender, signature
from tests import factories
from tests.webhook_receiver import WebhookReceiver, new_receiver, serving

pytestmark = pytest.mark.usefixtures("database")
POSTGRES = os.environ.get("GARDIEN_TEST_BACKEND", "sqlite") == "postgres"
META = RequestMeta(ip="203.0.113.9")


@pytest.fixture
def dev_services(settings: Settings, services: Services) -> Services:
    """Development settings: the receiver listens on the loopback address over http."""
    return dataclasses.replace(
        services, settings=dataclasses.replace(settings, webhook_allow_private=True)
    )


@pytest.fixture
def receiver(clock: ManualClock) -> WebhookReceiver:
    return new_receiver(lambda: int(clock.now().timestamp()))


@dataclass
class Hooked:
    organisation: Organisation
    legal_id: int
    legal: RequestScope
    endpoint_id: int


async def _hooked(
    services: Services,
    receiver: WebhookReceiver,
    types: tuple[str, ...] = ("support_plan.changed",),
) -> Hooked:
    legal = await factories.sign_up(services, email="legal@example.test", name="Anna Legal")
    await factories.add_member(
        services, legal.organisation, Role.ADMINISTRATOR, email="admin@example.test"
    )
    scope = await factories.signed_in_scope(services, "legal@example.test")
    created = await webhooks.create_webhook_endpoint(
        services, META, scope, legal.organisation.id, receiver.url, list(types)
    )
    receiver.secret = created.secret
    return Hooked(legal.organisation, legal.user.id, scope, created.view.endpoint.id)


async def _event(services: Services, hooked: Hooked, plan: str = "PREMIUM") -> int:
    """An organisation event, recorded in its own transaction as operations do."""
    async with in_transaction():
        await activity.support_plan_changed(
            services,
            META,
            actor_id=hooked.legal_id,
            organisation_id=hooked.organisation.id,
            previous_plan="STANDARD",
            plan=plan,
        )
    last = await ActivityEvent.filter(type="support_plan.changed").order_by("-id").first()
    assert last is not None
    return int(last.id)


def _worker(services: Services, batch_size: int = 10) -> WebhookWorker:
    return WebhookWorker(
        services,
        WebhookSender(allow_private=services.settings.webhook_allow_private),
        batch_size=batch_size,
        rng=random.Random(5),  # noqa: S311 - jitter in a test, not a secret
    )


async def test_evt5_delivery_is_signed_json_with_event_id_verified_by_the_receiver(
    dev_services: Services, receiver: WebhookReceiver
) -> None:
    hooked = await _hooked(dev_services, receiver)
    event_id = await _event(dev_services, hooked)

    with serving(receiver):
        attempted = await _worker(dev_services).drain()

    assert attempted == 1
    assert receiver.accepted_event_ids() == [str(event_id)]
    received = receiver.requests[0]
    assert received.body == {
        "id": str(event_id),
        "type": "support_plan.changed",
        "occurredAt": dev_services.clock.now().isoformat(),
        "organisationId": str(hooked.organisation.id),
        "actorId": str(hooked.legal_id),
        "subjectId": None,
        "data": {"previous_plan": "STANDARD", "plan": "PREMIUM"},
    }
    timestamp = int(dev_services.clock.now().timestamp())
    body = event_body(await ActivityEvent.get(id=event_id))
    assert received.headers[SIGNATURE_HEADER.lower()] == (
        f"t={timestamp},v1={signature(receiver.secret, timestamp, body)}"
    )
    assert received.headers[EVENT_TYPE_HEADER.lower()] == "support_plan.changed"
    delivery = await WebhookDelivery.get(event_id=event_id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        OutboxStatus.SENT,
        1,
        204,
    )
    assert delivery.delivered_at == dev_services.clock.now()


async def test_evt5_receiver_rejects_a_signature_made_with_another_secret(
    dev_services: Services, receiver: WebhookReceiver
) -> None:
    hooked = await _hooked(dev_services, receiver)
    await _event(dev_services, hooked)
    receiver.secret = "whsec_" + "x" * 43  # not the endpoint's secret

    with serving(receiver):
        await _worker(dev_services).drain()

    assert [r.signature_valid for r in receiver.requests] == [False]
    delivery = await WebhookDelivery.get(endpoint_id=hooked.endpoint_id)
    assert (delivery.status, delivery.last_status_code, delivery.last_error) == (
        OutboxStatus.PENDING,
        400,
        "HTTP 400",
    )


async def test_evt5_only_subscribed_types_of_the_own_organisation_are_queued(
    dev_services: Services, receiver: WebhookReceiver
) -> None:
    hooked = await _hooked(dev_services, receiver, types=("member.role_changed",))
    other = await factories.sign_up(dev_services, email="other@example.test", name="Other")

    await _event(dev_services, hooked)  # not subscribed
    async with in_transaction():
        await activity.member_role_changed(
            dev_services,
            META,
            actor_id=other.user.id,
            organisation_id=other.organisation.id,
            subject_id=other.user.id,
            membership_id=1,
            previous_role="ADMINISTRATOR",
            role="COLLABORATOR",
        )  # subscribed type, another organisation

    assert await WebhookDelivery.all().count() == 0


async def test_evt5_outage_then_recovery_delivers_each_event_exactly_once(
    dev_services: Services, clock: ManualClock, receiver: WebhookReceiver
) -> None:
    hooked = await _hooked(dev_services, receiver)
    events = [await _event(dev_services, hooked, plan=f"P{n}") for n in range(3)]
    worker = _worker(dev_services)

    # The receiver is down: nothing listens on its port.
    assert await worker.drain() == 3
    # Back, but failing: 500 to everything.
    receiver.status = 500
    with serving(receiver):
        clock.advance(BACKOFF_CAP)
        assert await worker.drain() == 3
        assert receiver.accepted_event_ids() == []
        # Recovered.
        receiver.status = 200
        clock.advance(BACKOFF_CAP)
        assert await worker.drain() == 3
        # Nothing is due any more, however long we wait.
        clock.advance(BACKOFF_CAP * 10)
        assert await worker.drain() == 0

    assert sorted(receiver.accepted_event_ids()) == sorted(str(e) for e in events)
    deliveries = await WebhookDelivery.filter(endpoint_id=hooked.endpoint_id)
    assert {(d.status, d.attempts, d.last_status_code) for d in deliveries} == {
        (OutboxStatus.SENT, 3, 200)
    }
    endpoint = await WebhookEndpoint.get(id=hooked.endpoint_id)
    assert (endpoint.consecutive_failures, endpoint.failing_since, endpoint.disabled_at) == (
        0,
        None,
        None,
    )


async def test_evt5_a_failed_delivery_waits_for_its_backoff(
    dev_services: Services, clock: ManualClock, receiver: WebhookReceiver
) -> None:
    hooked = await _hooked(dev_services, receiver)
    await _event(dev_services, hooked)
    worker = _worker(dev_services)

    assert await worker.drain() == 1  # refused: nobody listens
    delivery = await WebhookDelivery.get(endpoint_id=hooked.endpoint_id)
    assert delivery.last_status_code is None and delivery.last_error
    assert delivery.next_attempt_at > clock.now()

    assert await worker.drain() == 0
    clock.advance(delivery.next_attempt_at - clock.now())
    with serving(receiver):
        assert await worker.drain() == 1
    assert len(receiver.accepted()) == 1


async def test_evt5_persistent_failure_disables_the_endpoint_and_tells_the_managers(
    dev_services: Services, clock: ManualClock, receiver: WebhookReceiver
) -> None:
    hooked = await _hooked(dev_services, receiver)
    blocked = await factories.add_member(
        dev_services, hooked.organisation, Role.ADMINISTRATOR, email="blocked@example.test"
    )
    await UserBlock.create(
        user=blocked.user,
        organisation=hooked.organisation,
        requested_by_id=hooked.legal_id,
        justification="left the company",
        created_at=clock.now(),
    )
    await factories.add_member(
        dev_services, hooked.organisation, Role.COLLABORATOR, email="collab@example.test"
    )
    receiver.status = 503
    worker = _worker(dev_services)
    with serving(receiver):
        for n in range(DISABLE_AFTER_FAILURES):
            await _event(dev_services, hooked, plan=f"P{n}")
            await worker.drain()
            if await WebhookEndpoint.exists(id=hooked.endpoint_id, disabled_at=None):
                clock.advance(BACKOFF_CAP)
        queued_after_disable = await _event(dev_services, hooked, plan="late")
        assert await worker.drain() == 0

    endpoint = await WebhookEndpoint.get(id=hooked.endpoint_id)
    assert endpoint.disabled_at == clock.now()
    # Each failure was a request the receiver saw; none was sent once the endpoint was disabled.
    assert len(receiver.requests) == endpoint.consecutive_failures == DISABLE_AFTER_FAILURES
    assert await WebhookDelivery.filter(event_id=queued_after_disable).count() == 0
    assert (
        await WebhookDelivery.filter(endpoint_id=endpoint.id, status=OutboxStatus.PENDING).count()
        == 0
    )
    told = await OutboxMessage.filter(template="webhook_endpoint_disabled").order_by("recipient")
    assert [m.recipient for m in told] == ["admin@example.test", "legal@example.test"]
    assert all(endpoint.url in m.payload["text"] for m in told)
    disabled = await ActivityEvent.filter(type="webhook.endpoint_disabled")
    assert len(disabled) == 1
    assert disabled[0].organisation_id == hooked.organisation.id
    assert disabled[0].actor_id is None
    assert disabled[0].data["endpoint_id"] == endpoint.id
    assert disabled[0].data["recipients"] == 2


async def test_evt5_an_endpoint_failing_for_a_day_is_disabled_with_few_failures(
    dev_services: Services, clock: ManualClock, receiver: WebhookReceiver
) -> None:
    hooked = await _hooked(dev_services, receiver)
    worker = _worker(dev_services)
    await _event(dev_services, hooked)
    assert await worker.drain() == 1  # first failure: nobody listens
    clock.advance(DISABLE_AFTER_FAILING_FOR)
    await _event(dev_services, hooked, plan="again")

    assert await worker.drain() == 2

    endpoint = await WebhookEndpoint.get(id=hooked.endpoint_id)
    # The first delivery's retry failed a day after the first failure: disabled then, and the
    # second delivery of the same batch was given up without being sent.
    assert endpoint.consecutive_failures == 2
    assert endpoint.disabled_at == clock.now()
    assert sorted((d.status, d.attempts) for d in await WebhookDelivery.all()) == [
        (OutboxStatus.DEAD, 1),
        (OutboxStatus.DEAD, 2),
    ]
    assert await OutboxMessage.filter(template="webhook_endpoint_disabled").count() == 2


async def test_evt5_a_delivery_is_given_up_after_its_last_attempt(
    dev_services: Services, clock: ManualClock, receiver: WebhookReceiver
) -> None:
    hooked = await _hooked(dev_services, receiver)
    await _event(dev_services, hooked)
    worker = _worker(dev_services)
    receiver.status = 500
    with serving(receiver):
        for _ in range(MAX_ATTEMPTS):
            # A success elsewhere keeps the endpoint enabled: only this delivery keeps failing.
            await WebhookEndpoint.filter(id=hooked.endpoint_id).update(
                consecutive_failures=0, failing_since=None
            )
            assert await worker.drain() == 1
            clock.advance(BACKOFF_CAP)
        assert await worker.drain() == 0

    delivery = await WebhookDelivery.get(endpoint_id=hooked.endpoint_id)
    assert (delivery.status, delivery.attempts) == (OutboxStatus.DEAD, MAX_ATTEMPTS)
    assert len(receiver.requests) == MAX_ATTEMPTS


async def test_evt5_ssrf_checked_again_at_delivery_time(
    services: Services, dev_services: Services, receiver: WebhookReceiver
) -> None:
    """Registered in development; delivered by a production worker, the loopback URL is refused
    before any connection is made (DNS may have changed since registration)."""
    hooked = await _hooked(dev_services, receiver)
    await _event(dev_services, hooked)

    with serving(receiver):
        assert await _worker(services).drain() == 1

    assert receiver.requests == []
    delivery = await WebhookDelivery.get(endpoint_id=hooked.endpoint_id)
    assert delivery.status is OutboxStatus.PENDING
    assert delivery.last_error is not None and delivery.last_error.startswith("refused:")


async def test_evt5_redirects_are_not_followed(
    dev_services: Services, receiver: WebhookReceiver
) -> None:
    hooked = await _hooked(dev_services, receiver)
    await _event(dev_services, hooked)
    receiver.status = 307

    with serving(receiver):
        await _worker(dev_services).drain()

    assert len(receiver.requests) == 1
    delivery = await WebhookDelivery.get(endpoint_id=hooked.endpoint_id)
    assert (delivery.status, delivery.last_status_code) == (OutboxStatus.PENDING, 307)


async def test_evt5_rotated_secret_signs_the_retries(
    dev_services: Services, clock: ManualClock, receiver: WebhookReceiver
) -> None:
    hooked = await _hooked(dev_services, receiver)
    await _event(dev_services, hooked)
    worker = _worker(dev_services)
    assert await worker.drain() == 1  # nobody listens

    rotated = await webhooks.rotate_webhook_secret(
        dev_services, META, hooked.legal, hooked.endpoint_id
    )
    receiver.secret = rotated.secret
    clock.advance(BACKOFF_CAP)
    with serving(receiver):
        assert await worker.drain() == 1

    assert [r.signature_valid for r in receiver.requests] == [True]


async def test_evt5_two_workers_deliver_without_duplicates(
    dev_services: Services, receiver: WebhookReceiver
) -> None:
    """On PostgreSQL two workers share the queue (SKIP LOCKED); SQLite runs one worker."""
    hooked = await _hooked(dev_services, receiver)
    events = [await _event(dev_services, hooked, plan=f"P{n}") for n in range(30)]
    workers = [_worker(dev_services, batch_size=3) for _ in range(2 if POSTGRES else 1)]

    with serving(receiver):
        attempted = await asyncio.gather(*(worker.drain() for worker in workers))

    assert sum(attempted) == 30
    if POSTGRES:
        assert all(count > 0 for count in attempted), attempted
    assert sorted(receiver.accepted_event_ids()) == sorted(str(e) for e in events)
    assert len(receiver.requests) == 30
    assert await WebhookDelivery.filter(status=OutboxStatus.SENT, attempts=1).count() == 30


# --- one slow receiver holds up nobody (EVT-5) -------------------------------------------------


async def test_evt5_a_receiver_answering_byte_by_byte_is_cut_off_at_the_deadline(
    dev_services: Services, receiver: WebhookReceiver
) -> None:
    # About 6 s for the whole answer, a byte every 0.1 s: no single read ever waits long.
    receiver.trickle_seconds = 0.1
    hooked = await _hooked(dev_services, receiver)
    await _event(dev_services, hooked)
    worker = WebhookWorker(
        dev_services,
        WebhookSender(allow_private=True, deadline=1.0),
        rng=random.Random(5),  # noqa: S311 - jitter in a test, not a secret
    )

    with serving(receiver):
        async with asyncio.timeout(4):
            attempted = await worker.run_once()

    delivery = await WebhookDelivery.get(endpoint_id=hooked.endpoint_id)
    assert attempted == 1
    assert (delivery.status, delivery.last_error) == (OutboxStatus.PENDING, "no answer within 1 s")


async def test_evt5_a_slow_receiver_does_not_hold_up_the_other_endpoints(
    dev_services: Services, clock: ManualClock
) -> None:
    slow = new_receiver(lambda: int(clock.now().timestamp()))
    fast = new_receiver(lambda: int(clock.now().timestamp()))
    slow.hold = threading.Event()
    # The slow endpoint is registered first, so its delivery comes first in the batch.
    hooked = await _hooked(dev_services, slow)
    created = await webhooks.create_webhook_endpoint(
        dev_services, META, hooked.legal, hooked.organisation.id, fast.url, ["support_plan.changed"]
    )
    fast.secret = created.secret
    await _event(dev_services, hooked)

    with serving(slow), serving(fast):
        running = asyncio.create_task(_worker(dev_services).run_once())
        try:
            async with asyncio.timeout(5):
                # The receivers run in threads: nothing to await but their state.
                while not fast.accepted():  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            reached_while_slow_held = len(fast.accepted())
        finally:
            slow.hold.set()
        attempted = await running

    assert reached_while_slow_held == 1
    assert attempted == 2
    assert len(slow.accepted()) == 1
    assert await WebhookDelivery.filter(status=OutboxStatus.SENT).count() == 2
