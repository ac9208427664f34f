"""The SMS outbox writer: a text exists if and only if the change that caused it commits (OPS-6)."""

from __future__ import annotations

import pytest
from tortoise.transactions import in_transaction

from gardien.models.enums import OutboxChannel, OutboxStatus
from gardien.models.organisations import Organisation
from gardien.models.outbox import OutboxMessage
from gardien.resolvers.services import Services
from gardien.sms.templates import LANGUAGES, VARIABLES, SmsTemplate, UnknownSmsTemplateError, render

pytestmark = pytest.mark.usefixtures("database")

CODE = {"code": "048213", "minutes": 5}


class Abort(Exception):
    """Raised inside a transaction to roll it back, as a failing operation would."""


async def test_ops6_sms_enqueued_in_a_committed_transaction_is_pending(
    services: Services,
) -> None:
    async with in_transaction():
        queued = await services.sms.enqueue(
            SmsTemplate.SIGN_IN_CODE, to="+41791234567", language="de-CH", context=CODE
        )

    stored = await OutboxMessage.get(id=queued.id)
    assert (stored.channel, stored.status, stored.attempts) == (
        OutboxChannel.SMS,
        OutboxStatus.PENDING,
        0,
    )
    assert (stored.recipient, stored.template, stored.language) == (
        "+41791234567",
        "sign_in_code",
        "de",
    )
    assert stored.next_attempt_at == services.clock.now() == stored.created_at
    assert stored.payload == {
        "text": "Ihr Gardien-Anmeldecode: 048213. Er ist 5 Minuten gültig. "
        "Geben Sie ihn niemandem weiter."
    }
    assert stored.sent_at is None and stored.last_error is None


async def test_ops6_sms_enqueued_in_a_rolled_back_transaction_never_exists(
    services: Services,
) -> None:
    async def failing_operation() -> None:
        async with in_transaction():
            await Organisation.create(name="Never SA", created_at=services.clock.now())
            await services.sms.enqueue(
                "sms_enrolment_code", to="+33612345678", language="fr", context=CODE
            )
            raise Abort

    with pytest.raises(Abort):
        await failing_operation()

    assert await OutboxMessage.all().count() == 0
    assert await Organisation.filter(name="Never SA").count() == 0


@pytest.mark.parametrize(
    ("template", "context"),
    [
        ("sign_in", CODE),
        (SmsTemplate.SIGN_IN_CODE, {"code": "048213"}),
        (SmsTemplate.SIGN_IN_CODE, {**CODE, "link": "https://example.test"}),
    ],
)
async def test_ops6_sms_unknown_template_or_wrong_variables_queue_nothing(
    services: Services, template: str, context: dict[str, object]
) -> None:
    with pytest.raises(UnknownSmsTemplateError):
        async with in_transaction():
            await services.sms.enqueue(template, to="+41791234567", language="fr", context=context)

    assert await OutboxMessage.all().count() == 0


async def test_pro1_sms_in_an_unsupported_language_is_written_in_french(
    services: Services,
) -> None:
    queued = await services.sms.enqueue(
        SmsTemplate.SIGN_IN_CODE, to="+32470123456", language="es", context=CODE
    )

    stored = await OutboxMessage.get(id=queued.id)
    assert stored.language == "fr"
    assert stored.payload["text"].startswith("Votre code de connexion Gardien : 048213.")


@pytest.mark.parametrize(
    "to",
    [
        "0791234567",  # national form: the gateway cannot know the country
        "+41 79 123 45 67",  # spaces: callers normalise first
        "+4179123456789012",  # longer than E.164 allows
        "+041791234567",  # a country code never starts with 0
        "+41791234567\n+41790000000",  # one recipient per message
        "",
    ],
)
async def test_ops6_sms_recipient_must_be_one_e164_number(services: Services, to: str) -> None:
    with pytest.raises(ValueError, match=r"E\.164"):
        await services.sms.enqueue(SmsTemplate.SIGN_IN_CODE, to=to, language="fr", context=CODE)

    assert await OutboxMessage.all().count() == 0


@pytest.mark.parametrize("template", list(SmsTemplate))
@pytest.mark.parametrize("language", LANGUAGES)
def test_pro1_every_sms_template_exists_in_every_language_and_fits_one_text(
    template: SmsTemplate, language: str
) -> None:
    context = {name: f"<{name}>" for name in VARIABLES[template]}

    text = render(template, language, context)

    for value in context.values():
        assert value in text  # plain text: nothing escaped
    # A message longer than 160 GSM characters (70 with accents outside GSM-7) is billed and
    # delivered as several parts; ours stay within two parts whatever the language.
    assert len(text) <= 134
