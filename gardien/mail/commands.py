"""The `gardien worker` and `gardien outbox` commands: deliver the outbox (e-mail and SMS), or
read it locally."""

from __future__ import annotations

import asyncio
import signal

from gardien import db
from gardien.clock import SystemClock
from gardien.mail.smtp import SmtpConfigurationError
from gardien.mail.templates import links_in
from gardien.mail.worker import OutboxWorker, worker_from_settings
from gardien.models.enums import OutboxChannel, OutboxStatus
from gardien.models.outbox import OutboxMessage
from gardien.settings import Settings
from gardien.sms.worker import SmsWorker
from gardien.sms.worker import worker_from_settings as sms_worker_from_settings

# The channels `gardien outbox` shows: what people read (webhooks have their own deliveries).
READABLE_CHANNELS = (OutboxChannel.EMAIL, OutboxChannel.SMS)


async def run_worker(settings: Settings, *, once: bool) -> str:
    """Deliver until SIGINT/SIGTERM (or, with once, until nothing is due); returns a summary.

    E-mail needs GARDIEN_SMTP_URL and SMS GARDIEN_SMS_WEBHOOK_URL; with neither, this raises
    SmtpConfigurationError (e-mail being what every deployment sends).
    """
    clock = SystemClock()
    mail_worker: OutboxWorker | None = None
    try:
        mail_worker = worker_from_settings(settings, clock)
    except SmtpConfigurationError:
        if settings.sms_webhook_url is None:
            raise
    sms_worker: SmsWorker | None = (
        sms_worker_from_settings(settings, clock) if settings.sms_webhook_url else None
    )
    database = await db.open_database(settings.database_url)
    try:
        if once:
            lines = []
            if mail_worker is not None:
                lines.append(f"outbox: {await mail_worker.drain()} message(s) attempted")
            if sms_worker is not None:
                lines.append(f"sms: {await sms_worker.drain()} message(s) attempted")
            return "\n".join(lines)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with asyncio.TaskGroup() as workers:
            for worker in (mail_worker, sms_worker):
                if worker is not None:
                    workers.create_task(worker.run(stop))
        return "outbox worker stopped"
    finally:
        await db.close_database(database)


async def list_outbox(settings: Settings, *, show_all: bool, limit: int) -> str:
    """The queued e-mail (subject, links) and SMS (text), newest last, for following a flow
    locally."""
    database = await db.open_database(settings.database_url)
    try:
        query = OutboxMessage.filter(channel__in=READABLE_CHANNELS)
        if not show_all:
            query = query.filter(status=OutboxStatus.PENDING)
        messages = list(reversed(await query.order_by("-id").limit(limit)))
    finally:
        await db.close_database(database)
    if not messages:
        return "outbox: no pending e-mail" if not show_all else "outbox: no e-mail"
    return "\n\n".join(_describe(message) for message in messages)


async def show_message(settings: Settings, message_id: int) -> str | None:
    """The plain-text body of one message, as its recipient will read it."""
    database = await db.open_database(settings.database_url)
    try:
        message = await OutboxMessage.get_or_none(id=message_id, channel__in=READABLE_CHANNELS)
    finally:
        await db.close_database(database)
    if message is None:
        return None
    text = message.payload.get("text", "(body removed after delivery)\n")
    if message.channel is OutboxChannel.SMS:
        return f"To: {message.recipient}\nSMS\n\n{text}"
    return f"To: {message.recipient}\nSubject: {message.payload['subject']}\n\n{text}"


def _describe(message: OutboxMessage) -> str:
    when = (
        f"sent {message.sent_at.isoformat(timespec='seconds')}"
        if message.sent_at is not None
        else f"next {message.next_attempt_at.isoformat(timespec='seconds')}"
    )
    lines = [
        f"#{message.id}  {message.status.value}  attempts {message.attempts}  {when}",
        f"  to:       {message.recipient}",
        f"  template: {message.template} ({message.language})",
    ]
    if message.channel is OutboxChannel.SMS:
        lines.append(f"  sms:      {message.payload.get('text', '(text removed after delivery)')}")
    else:
        lines.append(f"  subject:  {message.payload['subject']}")
    if message.channel is OutboxChannel.EMAIL:
        lines += [f"  link:     {link}" for link in links_in(message.payload.get("text", ""))]
    if message.last_error:
        lines.append(f"  error:    {message.last_error}")
    return "\n".join(lines)
