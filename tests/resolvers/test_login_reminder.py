"""Forgot login (REC-3): the login goes to the chosen contact of the one matching account, never
into the answer; no single match offers identity verification."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import pytest

from gardien.mail.templates import Template
from gardien.models.activity import ActivityEvent
from gardien.models.enums import OutboxChannel
from gardien.models.outbox import OutboxMessage
from gardien.models.users import User
from gardien.resolvers import login_reminder
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.login_reminder import ReminderChannel
from gardien.resolvers.services import RequestMeta, Services
from tests import factories

pytestmark = pytest.mark.usefixtures("database")

META = RequestMeta(ip="198.51.100.40", country="CH", device="pytest")
OWNER = "forgetful@example.ch"
PHONE = "+41791234567"
RECOVERY = "f.backup@example.org"


async def _refused(call: Awaitable[Any]) -> DomainError:
    with pytest.raises(DomainError) as caught:
        await call
    return caught.value


async def _owner(services: Services, email: str = OWNER) -> User:
    user = (await factories.sign_up(services, email=email)).user
    await User.filter(id=user.id).update(recovery_phone=PHONE, recovery_email=RECOVERY)
    return user


async def _recover(
    services: Services,
    phone: str = "+41 79 123 45 67",
    email: str = RECOVERY,
    channel: ReminderChannel = ReminderChannel.SMS,
    meta: RequestMeta = META,
) -> login_reminder.ReminderAnswer:
    return await login_reminder.recover_login_identifier(
        services, meta, phone=phone, recovery_email=email, channel=channel
    )


async def test_rec3_one_match_gets_its_login_by_sms_never_in_the_answer(
    services: Services,
) -> None:
    owner = await _owner(services)

    answer = await _recover(services)

    assert answer == login_reminder.ReminderAnswer(identity_verification_offered=False)
    assert OWNER not in repr(answer)
    sms = await OutboxMessage.get(channel=OutboxChannel.SMS)
    assert sms.recipient == PHONE and OWNER in sms.payload["text"]
    event = await ActivityEvent.get(type="recovery.login_identifier_sent")
    assert (event.subject_id, event.data["channel"]) == (owner.id, "SMS")


async def test_rec3_one_match_gets_its_login_by_recovery_email(services: Services) -> None:
    await _owner(services)

    answer = await _recover(services, channel=ReminderChannel.RECOVERY_EMAIL)

    assert answer.identity_verification_offered is False
    mail = await OutboxMessage.get(template=Template.LOGIN_IDENTIFIER_REMINDER.value)
    assert mail.recipient == RECOVERY and OWNER in mail.payload["text"]
    assert await OutboxMessage.filter(channel=OutboxChannel.SMS).count() == 0


async def test_rec3_a_generated_username_is_what_is_sent(services: Services) -> None:
    owner = await _owner(services)
    await User.filter(id=owner.id).update(email=None, generated_username="fg2931")

    await _recover(services)

    sms = await OutboxMessage.get(channel=OutboxChannel.SMS)
    assert "fg2931" in sms.payload["text"]


@pytest.mark.parametrize(
    "written", ["+41 (0)79 123 45 67", "0041 079 123 45 67", "+41.79.123.45.67"]
)
async def test_rec3_the_phone_as_people_write_it_finds_the_account(
    services: Services, written: str
) -> None:
    await _owner(services)

    answer = await _recover(services, phone=written)

    assert answer == login_reminder.ReminderAnswer(identity_verification_offered=False)
    sms = await OutboxMessage.get(channel=OutboxChannel.SMS)
    assert sms.recipient == PHONE and OWNER in sms.payload["text"]


@pytest.mark.parametrize(
    ("phone", "email"),
    [("+41790000000", RECOVERY), (PHONE, "someone.else@example.org")],
    ids=["other phone", "other recovery e-mail"],
)
async def test_rec3_no_match_offers_identity_verification_and_sends_nothing(
    services: Services, phone: str, email: str
) -> None:
    await _owner(services)

    answer = await _recover(services, phone=phone, email=email)

    assert answer == login_reminder.ReminderAnswer(identity_verification_offered=True)
    assert await OutboxMessage.all().count() == 0
    assert await ActivityEvent.filter(type="recovery.login_identifier_unmatched").count() == 1


async def test_rec3_two_matching_accounts_offer_identity_verification(
    services: Services,
) -> None:
    await _owner(services)
    await _owner(services, "twin@example.ch")

    answer = await _recover(services)

    assert answer.identity_verification_offered is True
    assert await OutboxMessage.all().count() == 0


async def test_rec3_bad_input_is_typed(services: Services) -> None:
    refusals = [
        await _refused(_recover(services, phone="079 123 45 67")),
        await _refused(_recover(services, phone="+41 79 CALL ME")),
        await _refused(_recover(services, email="not-an-address")),
    ]

    assert [(r.code, r.field) for r in refusals] == [
        (ErrorCode.INVALID_INPUT, "phone"),
        (ErrorCode.INVALID_INPUT, "phone"),
        (ErrorCode.INVALID_INPUT, "recoveryEmail"),
    ]


async def test_rec3_rate_limited_per_ip(services: Services) -> None:
    await _owner(services)
    for n in range(login_reminder.REMINDERS_PER_IP.limit):
        await _recover(services, phone=f"+4179000000{n % 10}", email=f"x{n}@example.org")

    refused = await _refused(_recover(services))

    assert refused.code is ErrorCode.TOO_MANY_ATTEMPTS
    assert await OutboxMessage.all().count() == 0


async def test_rec3_rate_limited_per_phone(services: Services) -> None:
    await _owner(services)
    for n in range(login_reminder.REMINDERS_PER_PHONE.limit):
        await _recover(services, meta=RequestMeta(ip=f"192.0.2.{n + 1}"))

    refused = await _refused(_recover(services, meta=RequestMeta(ip="192.0.2.200")))

    assert refused.code is ErrorCode.TOO_MANY_ATTEMPTS
    assert await OutboxMessage.all().count() == login_reminder.REMINDERS_PER_PHONE.limit
