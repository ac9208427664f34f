"""The `gardien worker` and `gardien outbox` commands: deliver the outbox, or read it locally."""

from __future__ import annotations

import asyncio
import signal

from gardien import db
from gardien.clock import SystemClock
from gardien.mail.templates import links_in
from gardien.mail.worker import worker_from_settings
from gardien.models.enums import OutboxChannel, OutboxStatus
from gardien.models.outbox import OutboxMessage
from gardien.settings import Settings


async def run_worker(settings: Settings, *, once: bool) -> str:
    """Deliver until SIGINT/SIGTERM (or, with once, until nothing is due); returns a summary."""
    worker = worker_from_settings(settings, SystemClock())
    database = await db.open_database(settings.database_url)
    try:
        if once:
            return f"outbox: {await worker.drain()} message(s) attempted"
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await worker.run(stop)
        return "outbox worker stopped"
    finally:
        await db.close_database(database)


async def list_outbox(settings: Settings, *, show_all: bool, limit: int) -> str:
    """The queued e-mail with subject and links (newest last), for following a flow locally."""
    database = await db.open_database(settings.database_url)
    try:
        query = OutboxMessage.filter(channel=OutboxChannel.EMAIL)
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
        message = await OutboxMessage.get_or_none(id=message_id, channel=OutboxChannel.EMAIL)
    finally:
        await db.close_database(database)
    if message is None:
        return None
    text = message.payload.get("text", "(body removed after delivery)\n")
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
        f"  subject:  {message.payload['subject']}",
    ]
    lines += [f"  link:     {link}" for link in links_in(message.payload.get("text", ""))]
    if message.last_error:
        lines.append(f"  error:    {message.last_error}")
    return "\n".join(lines)
