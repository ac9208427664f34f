"""The SMS worker: once per committed message, through a gateway outage, to a real HTTP receiver."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from tortoise.transactions import in_transaction

from gardien.clock import ManualClock
from gardien.models.enums import OutboxChannel, OutboxStatus
from gardien.models.outbox import OutboxMessage
from gardien.resolvers.services import Services
from gardien.sms.senders import REFERENCE_HEADER, RecordingSmsSender, WebhookSmsSender
from gardien.sms.templates import SmsTemplate
from gardien.sms.worker import BACKOFF_CAP, MAX_ATTEMPTS, SmsWorker
from gardien.webhooks import new_secret
from tests.webhook_receiver import WebhookReceiver, new_receiver, serving

pytestmark = pytest.mark.usefixtures("database")

CODE = {"code": "731904", "minutes": 5}


async def enqueue(services: Services, to: str = "+41791234567", language: str = "fr") -> int:
    async with in_transaction():
        message = await services.sms.enqueue(
            SmsTemplate.SIGN_IN_CODE, to=to, language=language, context=CODE
        )
    return int(message.id)


def sms_worker(services: Services, sender: RecordingSmsSender | WebhookSmsSender) -> SmsWorker:
    return SmsWorker(
        services.clock,
        services.keyring,
        sender,
        rng=random.Random(3),  # noqa: S311  # jitter, not a secret; reproducible runs
    )


def gateway(services: Services) -> WebhookReceiver:
    receiver = new_receiver(lambda: int(services.clock.now().timestamp()))
    receiver.secret = new_secret()
    return receiver


async def test_ops6_committed_sms_is_handed_over_once_and_its_code_not_kept(
    services: Services,
) -> None:
    sender = RecordingSmsSender()
    worker = sms_worker(services, sender)
    message_id = await enqueue(services, language="it")
    await services.mail.enqueue(
        "two_factor_code_reused",
        to="someone@example.test",
        language="fr",
        context={"occurred_at": services.clock.now(), "ip": "192.0.2.1", "link": "https://x.test"},
    )

    attempted = await worker.drain()
    again = await worker.drain()

    assert (attempted, again) == (1, 0)  # the e-mail is not the SMS worker's
    assert [(sms.to, sms.reference) for sms in sender.sent] == [
        ("+41791234567", worker.reference(message_id))
    ]
    assert sender.sent[0].text.startswith("Il tuo codice di accesso Gardien: 731904.")
    stored = await OutboxMessage.get(id=message_id)
    assert (stored.status, stored.attempts, stored.sent_at) == (
        OutboxStatus.SENT,
        1,
        services.clock.now(),
    )
    assert "731904" not in str(stored.payload)
    email = await OutboxMessage.get(channel=OutboxChannel.EMAIL)
    assert email.status is OutboxStatus.PENDING


async def test_ops6_mfa3_webhook_gateway_receives_a_signed_sms_after_an_outage(
    services: Services,
) -> None:
    assert isinstance(services.clock, ManualClock)
    receiver = gateway(services)
    worker = sms_worker(services, WebhookSmsSender(receiver.url, receiver.secret, services.clock))
    message_id = await enqueue(services, to="+33612345678", language="en")

    # The gateway is down (nothing listens on its port): the message waits for a retry.
    assert await worker.drain() == 1
    waiting = await OutboxMessage.get(id=message_id)
    assert (waiting.status, waiting.attempts) == (OutboxStatus.PENDING, 1)
    assert waiting.last_error is not None and waiting.last_error.startswith("ConnectError")
    assert waiting.next_attempt_at > services.clock.now()

    with serving(receiver):
        assert await worker.drain() == 0  # not due yet: no retry storm during an outage
        services.clock.advance(BACKOFF_CAP)
        assert await worker.drain() == 1

    assert len(receiver.requests) == 1
    received = receiver.requests[0]
    assert received.signature_valid and received.answered == 204
    assert received.body == {
        "reference": worker.reference(message_id),
        "to": "+33612345678",
        "text": "Your Gardien sign-in code: 731904. It is valid for 5 minutes. "
        "Do not share it with anyone.",
    }
    assert received.headers[REFERENCE_HEADER.lower()] == worker.reference(message_id)
    delivered = await OutboxMessage.get(id=message_id)
    assert (delivered.status, delivered.attempts) == (OutboxStatus.SENT, 2)
    assert delivered.last_error is None


async def test_ops6_gateway_refusal_is_final_and_server_errors_are_retried(
    services: Services,
) -> None:
    assert isinstance(services.clock, ManualClock)
    receiver = gateway(services)
    worker = sms_worker(services, WebhookSmsSender(receiver.url, receiver.secret, services.clock))
    refused_id = await enqueue(services, to="+32470123456")

    with serving(receiver):
        receiver.status = 422  # the gateway refuses this message as such: never retried
        await worker.drain()
        receiver.status = 503
        failing_id = await enqueue(services, to="+4915112345678")
        for _ in range(MAX_ATTEMPTS):
            await worker.drain()
            services.clock.advance(BACKOFF_CAP)

    refused = await OutboxMessage.get(id=refused_id)
    failing = await OutboxMessage.get(id=failing_id)
    assert (refused.status, refused.attempts, refused.last_error) == (
        OutboxStatus.DEAD,
        1,
        "HTTP 422",
    )
    assert (failing.status, failing.attempts, failing.last_error) == (
        OutboxStatus.DEAD,
        MAX_ATTEMPTS,
        "HTTP 503",
    )
    assert "731904" not in str(refused.payload) + str(failing.payload)
    assert len(receiver.requests) == 1 + MAX_ATTEMPTS


async def test_ops6_forged_signature_is_what_the_gateway_refuses(services: Services) -> None:
    receiver = gateway(services)
    worker = sms_worker(services, WebhookSmsSender(receiver.url, new_secret(), services.clock))
    message_id = await enqueue(services)

    with serving(receiver):
        await worker.drain()

    assert [r.signature_valid for r in receiver.requests] == [False]
    stored = await OutboxMessage.get(id=message_id)
    assert (stored.status, stored.last_error) == (OutboxStatus.DEAD, "HTTP 400")


async def test_ops6_recording_gateway_outage_then_recovery(services: Services) -> None:
    assert isinstance(services.clock, ManualClock)
    sender = RecordingSmsSender(failing=True)
    worker = sms_worker(services, sender)
    await enqueue(services, to="+41791234567")

    await worker.drain()
    sender.failing = False
    services.clock.advance(timedelta(seconds=7))  # backoff: 75-100 % of 10 s
    early = await worker.drain()
    services.clock.advance(BACKOFF_CAP)
    late = await worker.drain()

    assert (early, late) == (0, 1)
    assert sender.texts_to("+41791234567") == [
        "Votre code de connexion Gardien : 731904. Il est valable 5 minutes. "
        "Ne le communiquez à personne."
    ]
