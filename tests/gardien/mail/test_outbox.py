"""The outbox writer: a message exists if and only if the change that caused it commits (OPS-6)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from tortoise.transactions import in_transaction

from gardien.mail.templates import Template, UnknownTemplateError
from gardien.models.enums import OutboxChannel, OutboxStatus
from gardien.models.organisations import Organisation
from gardien.models.outbox import OutboxMessage
from gardien.resolvers.services import Services

pytestmark = pytest.mark.usefixtures("database")

INVITATION = {
    "organisation": "Démo SA",
    "inviter": "Anna Legal",
    "role": "COLLABORATOR",
    "link": "https://manager.example/invitations/accept?token=t0k3n",
    "expires_at": datetime(2026, 1, 22, 9, 0, tzinfo=UTC),
}


class Abort(Exception):
    """Raised inside a transaction to roll it back, as a failing operation would."""


async def test_ops6_message_enqueued_in_a_committed_transaction_is_pending(
    services: Services,
) -> None:
    async with in_transaction():
        queued = await services.mail.enqueue(
            Template.INVITATION_NEW_ACCOUNT,
            to="new.member@example.test",
            language="it",
            context=INVITATION,
            timezone="Europe/Rome",
        )

    stored = await OutboxMessage.get(id=queued.id)
    assert (stored.channel, stored.status, stored.attempts) == (
        OutboxChannel.EMAIL,
        OutboxStatus.PENDING,
        0,
    )
    assert (stored.recipient, stored.template, stored.language) == (
        "new.member@example.test",
        "invitation_new_account",
        "it",
    )
    assert stored.next_attempt_at == services.clock.now() == stored.created_at
    assert stored.payload["subject"] == "Anna Legal vi invita a unirvi a Démo SA"
    assert "https://manager.example/invitations/accept?token=t0k3n" in stored.payload["text"]
    assert "22.01.2026 alle 10:00 (CET)" in stored.payload["html"]
    assert stored.sent_at is None and stored.last_error is None


async def test_ops6_message_enqueued_in_a_rolled_back_transaction_never_exists(
    services: Services,
) -> None:

    async def failing_operation() -> None:
        async with in_transaction():
            await Organisation.create(name="Never SA", created_at=services.clock.now())
            await services.mail.enqueue(
                Template.INVITATION_JOIN, to="x@example.test", language="fr", context=INVITATION
            )
            raise Abort

    with pytest.raises(Abort):
        await failing_operation()

    assert await OutboxMessage.all().count() == 0
    assert await Organisation.filter(name="Never SA").count() == 0


async def test_ops6_unknown_template_raises_and_queues_nothing(services: Services) -> None:
    with pytest.raises(UnknownTemplateError):
        async with in_transaction():
            await services.mail.enqueue(
                "invitation", to="x@example.test", language="fr", context=INVITATION
            )

    assert await OutboxMessage.all().count() == 0


async def test_pro1_unsupported_language_is_stored_as_the_french_fallback(
    services: Services,
) -> None:
    queued = await services.mail.enqueue(
        Template.INVITATION_JOIN, to="x@example.test", language="es", context=INVITATION
    )

    stored = await OutboxMessage.get(id=queued.id)
    assert stored.language == "fr"
    assert stored.payload["subject"] == "Anna Legal vous invite à rejoindre Démo SA"


@pytest.mark.parametrize(
    "to",
    ["no-at-sign", "a@example.test\r\nBcc: all@example.test", "a@example.test, b@example.test"],
)
async def test_ops6_recipient_must_be_one_address(services: Services, to: str) -> None:
    with pytest.raises(ValueError, match="exactly one e-mail address"):
        await services.mail.enqueue(
            Template.INVITATION_JOIN, to=to, language="fr", context=INVITATION
        )

    assert await OutboxMessage.all().count() == 0
