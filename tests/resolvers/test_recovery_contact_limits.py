"""Recovery contacts (PRO-2, PRO-3) text and mail addresses the requester chooses: changes are
counted per account and per destination, so an account (or many) cannot turn the form into a
way to flood someone's phone or inbox, and an SMS costs money."""

from __future__ import annotations

from typing import Any

import pytest

from gardien.clock import ManualClock
from gardien.models.enums import OutboxChannel
from gardien.models.outbox import OutboxMessage
from gardien.models.users import User
from gardien.resolvers import recovery_contacts
from gardien.resolvers.authz import Actor
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from tests import factories

pytestmark = pytest.mark.usefixtures("database")

NUMBERS = ("+41791110001", "+41791110002")
ADDRESSES = ("first@example.org", "second@example.org")


async def _viewer(services: Services, email: str) -> Actor:
    await factories.sign_up(services, email=email)
    return (await factories.signed_in_scope(services, email)).actor


async def _sent(channel: OutboxChannel) -> int:
    return await OutboxMessage.filter(
        channel=channel, template__not_in=("security_new_location", "sign_up_confirmation")
    ).count()


async def _refused(awaitable: Any) -> DomainError:
    with pytest.raises(DomainError) as raised:
        await awaitable
    return raised.value


async def test_pro2_phone_changes_are_limited_per_account(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    actor = await _viewer(services, "ada@example.test")
    limit = recovery_contacts.PHONE_CHANGES_PER_USER.limit
    for turn in range(limit):
        await recovery_contacts.set_recovery_phone(
            services,
            meta,
            actor,
            phone=NUMBERS[turn % 2],
            current_password=factories.PASSWORD,
        )
        actor = (await factories.signed_in_scope(services, "ada@example.test")).actor
    texts = await _sent(OutboxChannel.SMS)

    refused = await _refused(
        recovery_contacts.set_recovery_phone(
            services, meta, actor, phone=NUMBERS[limit % 2], current_password=factories.PASSWORD
        )
    )

    assert refused.code == ErrorCode.TOO_MANY_ATTEMPTS
    assert await _sent(OutboxChannel.SMS) == texts
    assert (await User.get(email="ada@example.test")).recovery_phone == NUMBERS[(limit - 1) % 2]
    clock.advance(recovery_contacts.PHONE_CHANGES_PER_USER.window)
    await recovery_contacts.set_recovery_phone(
        services, meta, actor, phone=NUMBERS[limit % 2], current_password=factories.PASSWORD
    )
    assert (await User.get(email="ada@example.test")).recovery_phone == NUMBERS[limit % 2]


async def test_pro2_one_number_is_texted_a_few_times_an_hour_whoever_asks(
    services: Services, meta: RequestMeta
) -> None:
    limit = recovery_contacts.PHONE_CHANGES_PER_NUMBER.limit
    for turn in range(limit):
        actor = await _viewer(services, f"user{turn}@example.test")
        await recovery_contacts.set_recovery_phone(
            services, meta, actor, phone=NUMBERS[0], current_password=factories.PASSWORD
        )
    late = await _viewer(services, "late@example.test")

    refused = await _refused(
        recovery_contacts.set_recovery_phone(
            services, meta, late, phone=NUMBERS[0], current_password=factories.PASSWORD
        )
    )

    assert refused.code == ErrorCode.TOO_MANY_ATTEMPTS
    assert await _sent(OutboxChannel.SMS) == limit
    assert (await User.get(email="late@example.test")).recovery_phone is None


async def test_pro3_address_changes_are_limited_per_account(
    services: Services, meta: RequestMeta
) -> None:
    actor = await _viewer(services, "ada@example.test")
    limit = recovery_contacts.EMAIL_CHANGES_PER_USER.limit
    for turn in range(limit):
        await recovery_contacts.set_recovery_email(
            services,
            meta,
            actor,
            email=ADDRESSES[turn % 2],
            current_password=factories.PASSWORD,
        )
    mails = await _sent(OutboxChannel.EMAIL)

    refused = await _refused(
        recovery_contacts.set_recovery_email(
            services, meta, actor, email=ADDRESSES[limit % 2], current_password=factories.PASSWORD
        )
    )

    assert refused.code == ErrorCode.TOO_MANY_ATTEMPTS
    assert await _sent(OutboxChannel.EMAIL) == mails
    assert (await User.get(email="ada@example.test")).recovery_email == ADDRESSES[(limit - 1) % 2]


async def test_pro3_one_address_is_mailed_a_few_times_an_hour_whoever_asks(
    services: Services, meta: RequestMeta
) -> None:
    limit = recovery_contacts.EMAIL_CHANGES_PER_ADDRESS.limit
    for turn in range(limit):
        actor = await _viewer(services, f"user{turn}@example.test")
        await recovery_contacts.set_recovery_email(
            services, meta, actor, email=" First@Example.org", current_password=factories.PASSWORD
        )
    late = await _viewer(services, "late@example.test")

    refused = await _refused(
        recovery_contacts.set_recovery_email(
            services, meta, late, email=ADDRESSES[0], current_password=factories.PASSWORD
        )
    )

    assert refused.code == ErrorCode.TOO_MANY_ATTEMPTS
    assert await _sent(OutboxChannel.EMAIL) == limit
    assert (await User.get(email="late@example.test")).recovery_email is None
