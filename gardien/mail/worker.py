"""The outbox worker: claims due e-mail, delivers it over SMTP, retries with backoff (OPS-6)."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

import aiosmtplib

from gardien import outbox
from gardien.clock import Clock
from gardien.mail.smtp import SmtpConfigurationError, SmtpConnection, SmtpSender, SmtpServer
from gardien.models.enums import OutboxChannel, OutboxStatus
from gardien.models.outbox import OutboxMessage
from gardien.security import Keyring
from gardien.settings import Settings

logger = logging.getLogger("gardien.mail")

BATCH_SIZE = 10
# A whole send (connect included) is bounded, so a batch always ends well inside its lease.
SEND_TIMEOUT_SECONDS = 60.0
# A claim moves next_attempt_at this far ahead; if the worker dies, the message is due again then.
LEASE = timedelta(minutes=15)
# Twelve attempts over about a day: 2, 4, 8 … minutes, capped at 4 hours, with jitter so that
# messages that failed together do not all come back at the same second.
MAX_ATTEMPTS = 12
BACKOFF_BASE = timedelta(minutes=2)
BACKOFF_CAP = timedelta(hours=4)
POLL_SECONDS = 2.0
LAST_ERROR_LENGTH = 500


def backoff(attempts: int, rng: random.Random) -> timedelta:
    """The wait after the `attempts`-th failed attempt: exponential, capped, 75-100 % jitter."""
    return outbox.backoff(attempts, rng, base=BACKOFF_BASE, cap=BACKOFF_CAP)


class OutboxWorker(outbox.PollingWorker):
    """Delivers the e-mail of the outbox; several may run at once on PostgreSQL.

    Claims go through gardien.outbox.claim_due (SKIP LOCKED, then a lease per message); on
    SQLite one worker is the supported set-up.

    Delivery is at least once: a crash between the SMTP server's acceptance and the SENT mark sends
    the message again after the lease, with the same Message-ID (derived from the outbox id), so
    the retry is recognisable.
    """

    poll_seconds = POLL_SECONDS
    logger = logging.getLogger("gardien.mail")

    def __init__(
        self,
        clock: Clock,
        keyring: Keyring,
        sender: SmtpSender,
        mail_from: str,
        *,
        batch_size: int = BATCH_SIZE,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._keyring = keyring
        self._sender = sender
        self._mail_from = mail_from
        self._domain = parseaddr(mail_from)[1].rpartition("@")[2] or "gardien.localhost"
        if batch_size * SEND_TIMEOUT_SECONDS >= LEASE.total_seconds() * 0.9:
            raise ValueError("a batch must be sent well within its lease")
        self._batch_size = batch_size
        self._rng = rng or random.SystemRandom()

    def message_id(self, outbox_id: int) -> str:
        # Keyed, so the header does not reveal how many messages the platform sends.
        digest = self._keyring.token_digest(str(outbox_id), "outbox-message-id")[:32]
        return f"<{digest}@{self._domain}>"

    async def claim(self) -> list[OutboxMessage]:
        """Take up to one batch of due messages for this worker, for one lease."""
        now = self._clock.now()
        return await outbox.claim_due(
            OutboxMessage, now, now + LEASE, self._batch_size, channel=OutboxChannel.EMAIL
        )

    async def run_once(self) -> int:
        """Claim one batch and try to deliver it; returns how many messages were attempted."""
        batch = await self.claim()
        if batch:
            await self._deliver(batch)
        return len(batch)

    def describe(self) -> str:
        return "SMTP {}:{}".format(*self._server_address())

    def _server_address(self) -> tuple[str, int]:
        return self._sender.server.hostname, self._sender.server.port

    async def _deliver(self, batch: list[OutboxMessage]) -> None:
        connection: SmtpConnection | None = None
        unreachable: BaseException | None = None
        try:
            for message in batch:
                if unreachable is not None:
                    # The server refused the session already; the rest of the batch would too.
                    await self._failed(message, unreachable)
                    continue
                opened = connection is not None
                try:
                    async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                        if connection is None:
                            connection = self._sender.connect()
                            await connection.open()
                            opened = True
                        await connection.send(self._email(message))
                except Exception as error:
                    if connection is not None:
                        await connection.close()
                        connection = None
                    if not opened:
                        unreachable = error
                    await self._failed(message, error)
                    continue
                await self._sent(message)
        finally:
            if connection is not None:
                await connection.close()

    def _email(self, message: OutboxMessage) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self._mail_from
        email["To"] = message.recipient
        email["Subject"] = message.payload["subject"]
        email["Date"] = format_datetime(self._clock.now())
        email["Message-ID"] = self.message_id(message.id)
        email["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies, please
        email.set_content(message.payload["text"])
        email.add_alternative(message.payload["html"], subtype="html")
        return email

    async def _sent(self, message: OutboxMessage) -> None:
        await OutboxMessage.filter(id=message.id).update(
            status=OutboxStatus.SENT,
            sent_at=self._clock.now(),
            last_error=None,
            payload=_subject_only(message),
        )
        logger.info("outbox message %s sent as %s", message.id, self.message_id(message.id))

    async def _failed(self, message: OutboxMessage, error: BaseException) -> None:
        now = self._clock.now()
        described = self._sender.server.redact(f"{type(error).__name__}: {error}".strip())
        described = described[:LAST_ERROR_LENGTH]
        if _permanent(error) or message.attempts >= MAX_ATTEMPTS:
            status, next_attempt_at = OutboxStatus.DEAD, now
        else:
            status, next_attempt_at = (
                OutboxStatus.PENDING,
                now + backoff(message.attempts, self._rng),
            )
        changes: dict[str, object] = {
            "status": status,
            "next_attempt_at": next_attempt_at,
            "last_error": described,
        }
        if status is OutboxStatus.DEAD:
            # Never sent, never retried: its single-use links need not outlive it either.
            changes["payload"] = _subject_only(message)
        await OutboxMessage.filter(id=message.id, status=OutboxStatus.PENDING).update(**changes)
        logger.warning(
            "outbox message %s: attempt %s failed (%s); %s",
            message.id,
            message.attempts,
            described,
            "given up" if status is OutboxStatus.DEAD else f"next attempt at {next_attempt_at}",
        )


def _subject_only(message: OutboxMessage) -> dict[str, object]:
    """What the outbox keeps of a message it is done with: bodies may hold single-use links."""
    return {"subject": message.payload["subject"]}


def _permanent(error: BaseException) -> bool:
    """The server refused the recipient for good (5xx): retrying cannot help."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return all(refusal.code >= 500 for refusal in error.recipients)
    return isinstance(error, aiosmtplib.SMTPRecipientRefused) and error.code >= 500


def worker_from_settings(settings: Settings, clock: Clock) -> OutboxWorker:
    """The worker for GARDIEN_SMTP_URL; raises SmtpConfigurationError when it cannot be used."""
    if settings.smtp_url is None:
        raise SmtpConfigurationError("GARDIEN_SMTP_URL is not set")
    sender = SmtpSender(SmtpServer.from_url(settings.smtp_url))
    return OutboxWorker(clock, Keyring(settings.secret_key), sender, settings.mail_from)
