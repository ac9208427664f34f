"""Recovery contacts: the mobile phone (PRO-2) and the e-mail address (PRO-3) that recover the
account. A change needs the current password, and the former and the new contact are both told."""

from __future__ import annotations

from datetime import timedelta

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType
from tortoise.transactions import in_transaction

from gardien.mail.templates import Template
from gardien.models.users import User
from gardien.resolvers import (
    accounts,
    activity,
    authz,
    ratelimits,
    reauthentication,
    security_notices,
)
from gardien.resolvers.authz import Actor
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.resolvers.text import is_plain_text
from gardien.sms.templates import SmsTemplate

MAX_PHONE_INPUT_LENGTH = 32
# A recovery phone receives text messages: numbers that may be mobiles (some plans do not tell
# mobile from fixed lines) are accepted, lines that cannot receive SMS are not.
_TEXTABLE = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})
# Each change texts or mails a destination the requester chooses, and the former one: the right
# password alone must not make the form a way to flood someone's phone or inbox (an SMS costs
# money too). A few changes an hour per account cover a mistyped contact; per destination, as
# for the login e-mail (PRO-5), many accounts together cannot flood one either.
PHONE_CHANGES_PER_USER = ratelimits.Rule("recovery_phone_change_user", 5, timedelta(hours=1))
PHONE_CHANGES_PER_NUMBER = ratelimits.Rule("recovery_phone_change_number", 3, timedelta(hours=1))
EMAIL_CHANGES_PER_USER = ratelimits.Rule("recovery_email_change_user", 5, timedelta(hours=1))
EMAIL_CHANGES_PER_ADDRESS = ratelimits.Rule("recovery_email_change_address", 3, timedelta(hours=1))


def secure_account_link(services: Services) -> str:
    """Where a former contact told of a change it did not make goes: "secure my account"."""
    return f"{services.settings.public_url}{security_notices.SECURE_ACCOUNT_PATH}"


def _invalid_phone() -> DomainError:
    return DomainError(
        ErrorCode.INVALID_INPUT,
        "Give a mobile number with its country code, such as +41 79 123 45 67.",
        "phone",
    )


def normalise_phone(raw: str, region: str | None) -> str:
    """E.164 (+41791234567). A number without its country code is read as one of the user's
    country, when the profile has one; otherwise the code is required."""
    if len(raw) > MAX_PHONE_INPUT_LENGTH or not is_plain_text(raw):
        raise _invalid_phone()
    try:
        number = phonenumbers.parse(raw, region)
    except NumberParseException:
        raise _invalid_phone() from None
    if (
        not phonenumbers.is_valid_number(number)
        or phonenumbers.number_type(number) not in _TEXTABLE
    ):
        raise _invalid_phone()
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def _action(old: str | None, new: str | None) -> str:
    if new is None:
        return "removed"
    return "set" if old is None else "replaced"


async def set_recovery_phone(
    services: Services, meta: RequestMeta, actor: Actor, *, phone: str | None, current_password: str
) -> User:
    """PRO-2: None removes the phone. The new number gets a text saying it is now the recovery
    phone; the former one a text saying it no longer is (with a word to secure the account)."""
    signed_in = authz.require_profile_owner(actor)
    new = normalise_phone(phone, signed_in.country) if phone is not None else None
    await reauthentication.confirm_current_password(
        services, meta, signed_in.id, current_password, operation="setRecoveryPhone"
    )
    # Counted once the password is right: a wrong one is counted by its own budget already.
    await ratelimits.require_allowed(services, PHONE_CHANGES_PER_USER, f"user:{signed_in.id}")
    await ratelimits.require_allowed(services, PHONE_CHANGES_PER_NUMBER, new)
    async with in_transaction():
        user = await User.filter(id=signed_in.id).select_for_update().get()
        old = user.recovery_phone
        if old == new:
            return user
        user.recovery_phone = new
        await user.save(update_fields=["recovery_phone"])
        await activity.recovery_phone_changed(services, meta, user.id, action=_action(old, new))
        if new is not None:
            await services.sms.enqueue(
                SmsTemplate.RECOVERY_PHONE_SET, to=new, language=user.language, context={}
            )
        if old is not None:
            await services.sms.enqueue(
                SmsTemplate.RECOVERY_PHONE_REPLACED, to=old, language=user.language, context={}
            )
    return user


async def set_recovery_email(
    services: Services, meta: RequestMeta, actor: Actor, *, email: str | None, current_password: str
) -> User:
    """PRO-3: None removes the address. The new address is told it now recovers an account (it
    may be a stranger's, mistyped); the former one that it changed, with a way to secure it."""
    signed_in = authz.require_profile_owner(actor)
    new = accounts.normalise_email(email, "email") if email is not None else None
    if new is not None and new == signed_in.email:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "Choose an address other than your login e-mail: it recovers the account when the"
            " login e-mail is lost.",
            "email",
        )
    await reauthentication.confirm_current_password(
        services, meta, signed_in.id, current_password, operation="setRecoveryEmail"
    )
    await ratelimits.require_allowed(services, EMAIL_CHANGES_PER_USER, f"user:{signed_in.id}")
    await ratelimits.require_allowed(services, EMAIL_CHANGES_PER_ADDRESS, new)
    now = services.clock.now()
    async with in_transaction():
        user = await User.filter(id=signed_in.id).select_for_update().get()
        old = user.recovery_email
        if old == new:
            return user
        user.recovery_email = new
        await user.save(update_fields=["recovery_email"])
        await activity.recovery_email_changed(services, meta, user.id, action=_action(old, new))
        if new is not None:
            await services.mail.enqueue(
                Template.RECOVERY_EMAIL_SET,
                to=new,
                language=user.language,
                timezone=user.timezone,
                context={"changed_at": now},
            )
        if old is not None:
            await services.mail.enqueue(
                Template.ACCOUNT_CONTACT_CHANGED,
                to=old,
                language=user.language,
                timezone=user.timezone,
                context={
                    "what": "recovery_email",
                    "changed_at": now,
                    "link": secure_account_link(services),
                },
            )
    return user
