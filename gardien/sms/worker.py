"""The SMS worker: claims due SMS of the outbox, hands them to the gateway, retries (OPS-6)."""

from __future__ import annotations

import logging
import random
from datetime import timedelta

from gardien import outbox
from gardien.clock import Clock
from gardien.models.enums import OutboxChannel, OutboxStatus
from gardien.models.outbox import OutboxMessage
from gardien.security import Keyring
from gardien.settings import Settings
from gardien.sms.senders import Sms, SmsDeliveryError, SmsSender, WebhookSmsSender

logger = logging.getLogger("gardien.sms")

BATCH_SIZE = 10
# A claim moves next_attempt_at this far ahead; if the worker dies, the message is due again then.
LEASE = timedelta(minutes=5)
# SMS carry short-lived codes (5 minutes): retry quickly, and give up once a code is long useless.
MAX_ATTEMPTS = 6
BACKOFF_BASE = timedelta(seconds=10)
BACKOFF_CAP = timedelta(minutes=2)
POLL_SECONDS = 1.0
LAST_ERROR_LENGTH = 500


class SmsConfigurationError(Exception):
    """No SMS gateway is configured (GARDIEN_SMS_WEBHOOK_URL), or it is configured wrongly."""


def backoff(attempts: int, rng: random.Random) -> timedelta:
    """The wait after the `attempts`-th failed attempt: exponential, capped, 75-100 % jitter."""
    return outbox.backoff(attempts, rng, base=BACKOFF_BASE, cap=BACKOFF_CAP)


class SmsWorker(outbox.PollingWorker):
    """Delivers the SMS of the outbox; several may run at once on PostgreSQL (claims as in
    gardien.outbox.claim_due). Delivery is at least once, with one reference per message so the
    gateway can drop a repeat sent after a lost answer."""

    def __init__(
        self,
        clock: Clock,
        keyring: Keyring,
        sender: SmsSender,
        *,
        batch_size: int = BATCH_SIZE,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._keyring = keyring
        self._sender = sender
        self._batch_size = batch_size
        self._rng = rng or random.SystemRandom()

    poll_seconds = POLL_SECONDS
    label = "SMS worker"
    logger = logging.getLogger("gardien.sms")

    def describe(self) -> str:
        return self._sender.describe()

    def reference(self, outbox_id: int) -> str:
        # Keyed, so the gateway does not learn how many messages the platform sends.
        return self._keyring.token_digest(str(outbox_id), "outbox-sms-reference")[:32]

    async def run_once(self) -> int:
        """Claim one batch and try to deliver it; returns how many messages were attempted."""
        now = self._clock.now()
        batch = await outbox.claim_due(
            OutboxMessage, now, now + LEASE, self._batch_size, channel=OutboxChannel.SMS
        )
        for message in batch:
            await self._deliver(message)
        return len(batch)

    async def _deliver(self, message: OutboxMessage) -> None:
        sms = Sms(
            reference=self.reference(message.id),
            to=message.recipient,
            text=str(message.payload.get("text", "")),
        )
        try:
            await self._sender.send(sms)
        except SmsDeliveryError as error:
            await self._failed(message, error)
            return
        await OutboxMessage.filter(id=message.id).update(
            status=OutboxStatus.SENT,
            sent_at=self._clock.now(),
            last_error=None,
            payload=_without_text(message),
        )
        logger.info("SMS %s handed to the gateway as %s", message.id, sms.reference)

    async def _failed(self, message: OutboxMessage, error: SmsDeliveryError) -> None:
        now = self._clock.now()
        described = str(error)[:LAST_ERROR_LENGTH]
        dead = error.permanent or message.attempts >= MAX_ATTEMPTS
        changes: dict[str, object] = {
            "status": OutboxStatus.DEAD if dead else OutboxStatus.PENDING,
            "next_attempt_at": now if dead else now + backoff(message.attempts, self._rng),
            "last_error": described,
        }
        if dead:
            changes["payload"] = _without_text(message)
        await OutboxMessage.filter(id=message.id, status=OutboxStatus.PENDING).update(**changes)
        logger.warning(
            "SMS %s: attempt %s failed (%s); %s",
            message.id,
            message.attempts,
            described,
            "given up" if dead else f"next attempt at {changes['next_attempt_at']}",
        )


def _without_text(message: OutboxMessage) -> dict[str, object]:
    """What the outbox keeps of an SMS it is done with: the text holds a code, a secret."""
    return {"length": len(str(message.payload.get("text", "")))}


def worker_from_settings(settings: Settings, clock: Clock) -> SmsWorker:
    """The worker for GARDIEN_SMS_WEBHOOK_URL; raises SmsConfigurationError when it is not set."""
    if settings.sms_webhook_url is None or settings.sms_webhook_secret is None:
        raise SmsConfigurationError("GARDIEN_SMS_WEBHOOK_URL is not set")
    sender = WebhookSmsSender(settings.sms_webhook_url, settings.sms_webhook_secret, clock)
    return SmsWorker(clock, Keyring(settings.secret_key), sender)
