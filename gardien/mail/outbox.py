"""The outbox writer: a message joins the transaction of the change that causes it (OPS-6)."""

from __future__ import annotations

from collections.abc import Mapping

from gardien.clock import Clock
from gardien.mail.templates import Template, render, supported_language
from gardien.models.enums import OutboxChannel, OutboxStatus
from gardien.models.outbox import OutboxMessage


class MailOutbox:
    """Queues e-mail; the worker (gardien.mail.worker) delivers it after the transaction commits.

    The message is rendered now, so a template or variable mistake fails the caller's transaction
    at once, and a queued message never depends on templates deployed after it was written.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def enqueue(
        self,
        template: Template | str,
        *,
        to: str,
        language: str | None,
        context: Mapping[str, object],
        timezone: str | None = None,
    ) -> OutboxMessage:
        """Write the message in the current transaction (rolled back with it).

        Raises UnknownTemplateError (a programming error) for an unknown template or a wrong set
        of variables. A language we do not write falls back to French (see templates.py); times
        are shown in `timezone` (IANA name, e.g. the recipient's profile zone), else UTC.
        """
        if "@" not in to or any(character in to for character in "\r\n,;"):
            # Callers validate addresses with a DomainError first; this only keeps one recipient
            # per message and headers intact whatever a caller forgot.
            raise ValueError("an outbox message needs exactly one e-mail address")
        lang = supported_language(language)
        rendered = render(template, lang, context, timezone)
        now = self._clock.now()
        return await OutboxMessage.create(
            channel=OutboxChannel.EMAIL,
            recipient=to,
            template=Template(template).value,
            language=lang,
            payload={"subject": rendered.subject, "text": rendered.text, "html": rendered.html},
            status=OutboxStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
