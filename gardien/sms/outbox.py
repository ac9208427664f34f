"""The SMS outbox writer: a text message joins the transaction of the change causing it (OPS-6)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from gardien.clock import Clock
from gardien.mail.templates import supported_language
from gardien.models.enums import OutboxChannel, OutboxStatus
from gardien.models.outbox import OutboxMessage
from gardien.sms.templates import SmsTemplate, render

# E.164: a plus, a country code that never starts with 0, at most 15 digits in all.
E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def is_e164(number: str) -> bool:
    return E164.fullmatch(number) is not None


class SmsOutbox:
    """Queues SMS; the worker (gardien.sms.worker) hands them to the gateway after commit.

    The text is rendered now, so a template or variable mistake fails the caller's transaction
    at once, and a queued message never depends on templates deployed after it was written.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def enqueue(
        self,
        template: SmsTemplate | str,
        *,
        to: str,
        language: str | None,
        context: Mapping[str, object],
    ) -> OutboxMessage:
        """Write the message in the current transaction (rolled back with it).

        `to` must be an E.164 number (+41791234567): callers validate and normalise what a user
        typed (with a DomainError) first; this only guarantees the gateway one well-formed number.
        Raises UnknownSmsTemplateError (a programming error) for an unknown template or a wrong
        set of variables. A language we do not write falls back to French.
        """
        if not is_e164(to):
            raise ValueError("an SMS needs exactly one phone number in E.164 form")
        lang = supported_language(language)
        text = render(template, lang, context)
        now = self._clock.now()
        return await OutboxMessage.create(
            channel=OutboxChannel.SMS,
            recipient=to,
            template=SmsTemplate(template).value,
            language=lang,
            payload={"text": text},
            status=OutboxStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
