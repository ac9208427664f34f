"""REC-1: a reset ends every way into the account, those still on their way too. Whoever knew
the password may have asked for the login e-mail to move to their address (PRO-5), or talked
support into approving a reset link (REC-2): once the owner has reset the password, neither
link may still hand the account over."""

from __future__ import annotations

import re
from collections.abc import Awaitable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from gardien.mail.templates import Template, links_in
from gardien.models.enums import RecoveryChannel
from gardien.models.outbox import OutboxMessage
from gardien.models.users import User
from gardien.resolvers import (
    account_security,
    identity_verification,
    login_email,
    recovery,
    support,
)
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.security import verify_password
from tests import factories

pytestmark = pytest.mark.usefixtures("database")

META = RequestMeta(ip="198.51.100.40", country="CH", device="pytest")
OWNER = "anna.muster@example.ch"
INTRUDER = "intruder@example.org"
NEW_PASSWORD = "granite harbour at dawn"


async def _refused(call: Awaitable[Any]) -> DomainError:
    with pytest.raises(DomainError) as caught:
        await call
    return caught.value


def _token_in(message: OutboxMessage) -> str:
    (link,) = links_in(message.payload["text"])
    (token,) = parse_qs(urlsplit(link).fragment.split("?", 1)[1])["token"]
    return token


async def _owner_resets_the_password(services: Services) -> None:
    asked = await recovery.request_password_reset(services, META, login=OWNER)
    (option,) = [o.id for o in asked.options if o.channel is RecoveryChannel.LOGIN_EMAIL]
    await recovery.send_recovery_code(
        services, META, recovery_id=asked.recovery_id, chosen_option=option
    )
    message = await OutboxMessage.filter(recipient=OWNER).order_by("-id").first()
    assert message is not None
    (code,) = re.findall(r"\b\d{8}\b", message.payload["text"])
    await recovery.reset_password(
        services, META, recovery_id=asked.recovery_id, code=code, new_password=NEW_PASSWORD
    )


async def test_rec1_reset_ends_a_pending_login_email_change(services: Services) -> None:
    await factories.sign_up(services, email=OWNER)
    intruder = (await factories.signed_in_scope(services, OWNER)).actor
    await login_email.request_login_email_change(
        services, META, intruder, new_email=INTRUDER, current_password=factories.PASSWORD
    )
    confirmation = await OutboxMessage.get(
        recipient=INTRUDER, template=Template.LOGIN_EMAIL_CHANGE_CONFIRMATION.value
    )

    await _owner_resets_the_password(services)
    refused = await _refused(
        login_email.confirm_login_email_change(services, META, token=_token_in(confirmation))
    )

    assert (refused.code, refused.field) == (ErrorCode.LOGIN_EMAIL_CHANGE_INVALID, "token")
    owner = await User.get(email=OWNER)
    assert await verify_password(owner.password_hash, NEW_PASSWORD)


async def test_rec1_reset_ends_an_approved_identity_verification_link(
    services: Services,
) -> None:
    await factories.sign_up(services, email=OWNER)
    await factories.sign_up(services, email="agent@gardien.example", name="Sam Support")
    await support.set_support_agent(services, "agent@gardien.example", agent=True)
    agent = (await factories.signed_in_scope(services, "agent@gardien.example")).actor
    await identity_verification.request_identity_verification(
        services, META, login=OWNER, contact_email=INTRUDER, details="I lost my phone"
    )
    case_id = (
        (
            await identity_verification.cases(
                services, META, agent, status=None, first=None, after_id=None
            )
        )
        .page.items[0]
        .id
    )
    await identity_verification.review(
        services, META, agent, case_id=case_id, approve=True, contact_email=INTRUDER
    )
    link = await OutboxMessage.get(
        recipient=INTRUDER, template=Template.IDENTITY_VERIFICATION_RESET.value
    )

    await _owner_resets_the_password(services)
    refused = await _refused(
        identity_verification.complete_reset(
            services, META, token=_token_in(link), new_password="another fine sentence"
        )
    )

    assert (refused.code, refused.field) == (ErrorCode.RESET_LINK_EXPIRED, "token")
    owner = await User.get(email=OWNER)
    assert await verify_password(owner.password_hash, NEW_PASSWORD)


async def test_act5_secure_my_account_ends_a_pending_login_email_change(
    services: Services,
) -> None:
    # The intruder's session asked to move the login e-mail; the owner secures the account.
    await factories.sign_up(services, email=OWNER)
    intruder = (await factories.signed_in_scope(services, OWNER)).actor
    owner = (await factories.signed_in_scope(services, OWNER)).actor
    await login_email.request_login_email_change(
        services, META, intruder, new_email=INTRUDER, current_password=factories.PASSWORD
    )
    confirmation = await OutboxMessage.get(
        recipient=INTRUDER, template=Template.LOGIN_EMAIL_CHANGE_CONFIRMATION.value
    )

    await account_security.secure_account(services, META, owner)
    refused = await _refused(
        login_email.confirm_login_email_change(services, META, token=_token_in(confirmation))
    )

    assert (refused.code, refused.field) == (ErrorCode.LOGIN_EMAIL_CHANGE_INVALID, "token")
    assert await User.exists(email=OWNER)
