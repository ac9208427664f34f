"""Forgot login (REC-3): the identifier goes to a contact of the account, never into the answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from tortoise.transactions import in_transaction

from gardien.mail.templates import Template
from gardien.models.users import User
from gardien.resolvers import accounts, activity, ratelimits, recovery_contacts, sign_ups
from gardien.resolvers.services import RequestMeta, Services
from gardien.sms.templates import SmsTemplate

# Each request may send an SMS or an e-mail to someone: few per address, fewer per phone.
REMINDERS_PER_IP = ratelimits.Rule("login_reminder_ip", 10, timedelta(hours=1))
REMINDERS_PER_PHONE = ratelimits.Rule("login_reminder_phone", 3, timedelta(hours=1))


class ReminderChannel(StrEnum):
    SMS = "SMS"
    RECOVERY_EMAIL = "RECOVERY_EMAIL"


@dataclass(frozen=True)
class ReminderAnswer:
    """The same shape whether or not an account matched; the identifier is never in it."""

    identity_verification_offered: bool


def normalise_phone(phone: str) -> str:
    """E.164 as recovery phones are stored (PRO-2), read by the same rules: a number written with
    its trunk zero (+41 (0)79 …) or the 00 prefix finds the account it would be stored for.
    Without a profile the number's country is unknown, so the country code is required."""
    typed = phone.strip()
    if typed.startswith("00"):
        typed = "+" + typed[2:]
    return recovery_contacts.normalise_phone(typed, None)


async def recover_login_identifier(
    services: Services,
    meta: RequestMeta,
    *,
    phone: str,
    recovery_email: str,
    channel: ReminderChannel,
) -> ReminderAnswer:
    """REC-3: exactly one account with both contacts gets its login by the chosen channel;
    otherwise identity verification (REC-2) is offered."""
    number = normalise_phone(phone)
    address = accounts.normalise_email(recovery_email, "recoveryEmail")
    await ratelimits.require_allowed(services, REMINDERS_PER_IP, ratelimits.ip_subject(meta.ip))
    await ratelimits.require_allowed(services, REMINDERS_PER_PHONE, number)
    matches = await User.filter(recovery_phone=number, recovery_email=address).limit(2)
    user = matches[0] if len(matches) == 1 else None
    login = (user.email or user.generated_username) if user is not None else None
    async with in_transaction():
        if user is None or login is None:
            await activity.login_identifier_unmatched(services, meta)
            return ReminderAnswer(identity_verification_offered=True)
        if channel is ReminderChannel.SMS:
            await services.sms.enqueue(
                SmsTemplate.LOGIN_IDENTIFIER,
                to=number,
                language=user.language,
                context={"login": login},
            )
        else:
            await services.mail.enqueue(
                Template.LOGIN_IDENTIFIER_REMINDER,
                to=address,
                language=user.language,
                timezone=user.timezone,
                context={"login": login, "link": sign_ups.sign_in_link(services)},
            )
        await activity.login_identifier_sent(services, meta, user_id=user.id, channel=channel.value)
    return ReminderAnswer(identity_verification_offered=False)
