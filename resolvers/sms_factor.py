"""SMS codes as a second factor (MFA-3): phone enrolment, sign-in codes, checking a code."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import phonenumbers
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from gardien.models.enums import TwoFactorKind
from gardien.models.mfa import OneTimeCode, TwoFactorMethod
from gardien.models.sessions import SignInChallenge
from gardien.models.users import User
from gardien.resolvers import activity, authz, ratelimits, two_factor
from gardien.resolvers.authz import Actor
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.resolvers.text import is_plain_text
from gardien.sms.templates import SmsTemplate

# MFA-3: the countries whose numbers receive codes (ISO 3166 regions as phonenumbers names them).
ALLOWED_REGIONS = frozenset({"CH", "FR", "BE", "DE"})
DIGITS = 6
CODE_LIFETIME = timedelta(minutes=5)
MAX_ATTEMPTS_PER_CODE = 5
# A pending enrolment is not a method yet; past this it is begun again.
ENROLMENT_LIFETIME = timedelta(minutes=15)
CODE_PURPOSE = "sms-code"
ENROLMENT_PURPOSE = "sms_enrolment"
SIGN_IN_PURPOSE = "sms_sign_in"
# Every SMS costs money and reaches someone's phone: a new code of a kind at most once a minute, a
# few an hour per account, and per number whichever accounts ask (SMS pumping).
SENDS_PER_MINUTE_PER_USER = ratelimits.Rule("sms_send_minute_user", 1, timedelta(minutes=1))
SENDS_PER_HOUR_PER_USER = ratelimits.Rule("sms_send_hour_user", 5, timedelta(hours=1))
SENDS_PER_HOUR_PER_NUMBER = ratelimits.Rule("sms_send_hour_number", 5, timedelta(hours=1))
SMS_MOBILE_TYPES = frozenset(
    {phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}
)
NO_ENROLMENT_MESSAGE = "No such enrolment, or it expired: begin again."


def normalise_phone(raw: str) -> str:
    """The number in E.164, or a DomainError: a mobile number of CH, FR, BE or DE only.

    National forms are read as Swiss numbers (the platform's home); other countries need their
    +prefix or 00 prefix."""
    text = raw.strip()[:40]
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, "CH")
    except phonenumbers.NumberParseException:
        raise _phone_invalid() from None
    # The country first: someone abroad learns that their country is not served, whatever the
    # rest of the number.
    regions = set(phonenumbers.region_codes_for_country_code(number.country_code or 0))
    if not regions & ALLOWED_REGIONS:
        raise DomainError(
            ErrorCode.PHONE_COUNTRY_NOT_SUPPORTED,
            "Codes are sent by SMS to Swiss, French, Belgian and German numbers only.",
            "phone",
        )
    if not phonenumbers.is_valid_number(number):
        raise _phone_invalid()
    if phonenumbers.region_code_for_number(number) not in ALLOWED_REGIONS:
        # A number of the same country code outside the four (e.g. +33 overseas departments).
        raise DomainError(
            ErrorCode.PHONE_COUNTRY_NOT_SUPPORTED,
            "Codes are sent by SMS to Swiss, French, Belgian and German numbers only.",
            "phone",
        )
    if phonenumbers.number_type(number) not in SMS_MOBILE_TYPES:
        raise DomainError(
            ErrorCode.PHONE_NUMBER_INVALID, "Give a mobile number: it must receive SMS.", "phone"
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _phone_invalid() -> DomainError:
    return DomainError(
        ErrorCode.PHONE_NUMBER_INVALID,
        "This is not a phone number: give it with its country code, e.g. +41 79 123 45 67.",
        "phone",
    )


def masked(phone: str) -> str:
    """What the user is shown of a number: its country code and last two digits."""
    number = phonenumbers.parse(phone, None)
    national = str(number.national_number)
    return f"+{number.country_code} {'*' * (len(national) - 2)}{national[-2:]}"


def is_well_formed(code: str) -> bool:
    cleaned = code.replace(" ", "")
    return len(cleaned) == DIGITS and cleaned.isascii() and cleaned.isdigit()


def _new_code() -> str:
    return f"{secrets.randbelow(10**DIGITS):0{DIGITS}d}"


def _digest(services: Services, purpose: str, code: str) -> str:
    # Keyed and bound to what the code is for: a million codes cannot be tried offline without
    # the key, and a code sent for one sign-in or enrolment never answers another.
    return services.keyring.token_digest(f"{purpose}:{code}", CODE_PURPOSE)


@dataclass(frozen=True)
class SentCode:
    sent_to: str  # masked
    expires_at: datetime


async def _throttle_send(
    services: Services, user_id: int, phone: str, template: SmsTemplate
) -> None:
    for rule, subject in (
        # Per kind of message: confirming a phone then signing in at once is not a resend.
        (SENDS_PER_MINUTE_PER_USER, f"user:{user_id}:{template.value}"),
        (SENDS_PER_HOUR_PER_USER, f"user:{user_id}"),
        (SENDS_PER_HOUR_PER_NUMBER, f"phone:{phone}"),
    ):
        await ratelimits.require_allowed(services, rule, subject)


async def _send_code(
    services: Services,
    user: User,
    *,
    purpose: str,
    phone: str,
    template: SmsTemplate,
) -> SentCode:
    """A new code for `purpose`, replacing any earlier one, queued as an SMS; in the caller's
    transaction."""
    now = services.clock.now()
    code = _new_code()
    # One live code per purpose: asking again makes the earlier SMS useless.
    await OneTimeCode.filter(user_id=user.id, purpose=purpose, consumed_at=None).update(
        expires_at=now
    )
    expires_at = now + CODE_LIFETIME
    await OneTimeCode.create(
        user_id=user.id,
        purpose=purpose,
        destination=phone,
        code_hash=_digest(services, purpose, code),
        created_at=now,
        expires_at=expires_at,
    )
    await services.sms.enqueue(
        template,
        to=phone,
        language=user.language,
        context={"code": code, "minutes": int(CODE_LIFETIME.total_seconds() // 60)},
    )
    return SentCode(sent_to=masked(phone), expires_at=expires_at)


class CodeCheck(StrEnum):
    """The outcome of a typed code; anything but ACCEPTED leaves the code unconsumed."""

    ACCEPTED = "accepted"
    MALFORMED = "malformed"
    WRONG = "wrong"
    EXPIRED = "expired"
    REUSED = "reused"
    LOCKED = "locked"  # MAX_ATTEMPTS_PER_CODE spent: only a new code helps


async def check_code(services: Services, user_id: int, purpose: str, code: str) -> CodeCheck:
    """MFA-3: the latest code sent for `purpose`, unexpired, unused, within its attempts.

    The attempt is counted with one conditional UPDATE before comparing, and the code consumed
    with another, so concurrent guesses cannot exceed the attempts nor both use one code."""
    if not is_well_formed(code):
        return CodeCheck.MALFORMED
    cleaned = code.replace(" ", "")
    now = services.clock.now()
    latest = await OneTimeCode.filter(user_id=user_id, purpose=purpose).order_by("-id").first()
    if latest is None:
        return CodeCheck.EXPIRED
    digest = _digest(services, purpose, cleaned)
    matches = hmac.compare_digest(latest.code_hash, digest)
    if latest.consumed_at is not None:
        return CodeCheck.REUSED if matches else CodeCheck.EXPIRED
    if latest.expires_at <= now:
        return CodeCheck.EXPIRED
    counted = await OneTimeCode.filter(
        id=latest.id, consumed_at=None, attempts__lt=MAX_ATTEMPTS_PER_CODE
    ).update(attempts=F("attempts") + 1)
    if counted != 1:
        # Either the attempts ran out, or a concurrent check consumed the code since it was read
        # above: that one is "already used", not "too many wrong codes".
        if await OneTimeCode.filter(id=latest.id, consumed_at__isnull=False).exists():
            return CodeCheck.REUSED if matches else CodeCheck.EXPIRED
        return CodeCheck.LOCKED
    if not matches:
        # The code of an earlier SMS, replaced by asking again: say so rather than "wrong".
        earlier = await OneTimeCode.exists(
            user_id=user_id, purpose=purpose, code_hash=digest, id__lt=latest.id
        )
        return CodeCheck.EXPIRED if earlier else CodeCheck.WRONG
    consumed = await OneTimeCode.filter(id=latest.id, consumed_at=None).update(consumed_at=now)
    return CodeCheck.ACCEPTED if consumed == 1 else CodeCheck.REUSED


def code_error(check: CodeCheck) -> DomainError:
    """The answer to a code that did not pass, field `code`."""
    if check is CodeCheck.EXPIRED:
        return DomainError(
            ErrorCode.TWO_FACTOR_CODE_EXPIRED,
            "This code has expired or was replaced by a newer one: ask for a new code.",
            "code",
        )
    if check is CodeCheck.REUSED:
        return DomainError(
            ErrorCode.TWO_FACTOR_CODE_REUSED,
            "This code was already used: ask for a new one.",
            "code",
        )
    if check is CodeCheck.LOCKED:
        return DomainError(
            ErrorCode.TOO_MANY_ATTEMPTS,
            "Too many wrong codes: ask for a new code.",
            "code",
        )
    if check is CodeCheck.MALFORMED:
        return DomainError(
            ErrorCode.TWO_FACTOR_CODE_INVALID, "Type the 6 digits of the SMS.", "code"
        )
    return DomainError(
        ErrorCode.TWO_FACTOR_CODE_INVALID, "This code is not right. Check the SMS.", "code"
    )


# --- Enrolment ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmsEnrolment:
    method_id: int
    sent: SentCode


def _enrolment_purpose(method_id: int) -> str:
    return f"{ENROLMENT_PURPOSE}:{method_id}"


async def _enrolment_failed(
    services: Services, meta: RequestMeta, user_id: int, reason: str
) -> None:
    async with in_transaction():
        await activity.two_factor_enrolment_failed(
            services, meta, user_id, kind=TwoFactorKind.SMS.value, reason=reason
        )


async def begin_sms_enrolment(
    services: Services, meta: RequestMeta, actor: Actor, *, phone: str
) -> SmsEnrolment:
    """MFA-3: a pending SMS method for this number and a first code sent to it.

    Beginning again drops the user's other pending SMS enrolments (and their codes)."""
    signed_in = authz.require_second_factor_manager(actor)
    try:
        number = normalise_phone(phone)
    except DomainError as error:
        await _enrolment_failed(services, meta, signed_in.id, error.code.value.lower())
        raise
    if await TwoFactorMethod.exists(
        user_id=signed_in.id, kind=TwoFactorKind.SMS, phone=number, confirmed_at__isnull=False
    ):
        raise DomainError(
            ErrorCode.INVALID_INPUT, "This number already receives your codes.", "phone"
        )
    await _throttle_send(services, signed_in.id, number, SmsTemplate.SMS_ENROLMENT_CODE)
    now = services.clock.now()
    async with in_transaction():
        user = await User.filter(id=signed_in.id).select_for_update().get()
        pending: list[Any] = await TwoFactorMethod.filter(
            user_id=user.id, kind=TwoFactorKind.SMS, confirmed_at=None
        ).values_list("id", flat=True)
        await OneTimeCode.filter(
            user_id=user.id, purpose__in=[_enrolment_purpose(int(i)) for i in pending]
        ).delete()
        await TwoFactorMethod.filter(id__in=pending).delete()
        method = await TwoFactorMethod.create(
            user_id=user.id,
            kind=TwoFactorKind.SMS,
            label=f"SMS {masked(number)}",
            phone=number,
            created_at=now,
        )
        sent = await _send_code(
            services,
            user,
            purpose=_enrolment_purpose(method.id),
            phone=number,
            template=SmsTemplate.SMS_ENROLMENT_CODE,
        )
    return SmsEnrolment(method_id=method.id, sent=sent)


def _label(label: str | None, default: str) -> str:
    if label is None:
        return default
    cleaned = " ".join(label.split())
    if not 1 <= len(cleaned) <= 100 or not is_plain_text(cleaned):
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "Give a label of 1 to 100 characters, without control characters.",
            "label",
        )
    return cleaned


@dataclass(frozen=True)
class ConfirmedSms:
    method: TwoFactorMethod
    backup_codes: list[str]  # shown once; empty unless this enrolment turned 2FA on


async def confirm_sms_enrolment(
    services: Services,
    meta: RequestMeta,
    actor: Actor,
    *,
    method_id: int,
    code: str,
    label: str | None = None,
) -> ConfirmedSms:
    """MFA-3: the code sent to the number proves the user holds the phone. The first second
    factor of an account turns 2FA on and comes with the backup codes (MFA-5)."""
    signed_in = authz.require_second_factor_manager(actor)
    now = services.clock.now()
    method = await TwoFactorMethod.get_or_none(
        id=method_id, user_id=signed_in.id, kind=TwoFactorKind.SMS, confirmed_at=None
    )
    if method is None or method.created_at + ENROLMENT_LIFETIME <= now:
        raise DomainError(ErrorCode.NOT_FOUND, NO_ENROLMENT_MESSAGE, "enrolmentId")
    name = _label(label, method.label)
    check = await check_code(services, signed_in.id, _enrolment_purpose(method.id), code[:64])
    if check is not CodeCheck.ACCEPTED:
        await _enrolment_failed(services, meta, signed_in.id, check.value)
        raise code_error(check)
    async with in_transaction():
        user = await User.filter(id=signed_in.id).select_for_update().get()
        first = not await two_factor.has_second_factor(user.id)
        updated = await TwoFactorMethod.filter(id=method.id, confirmed_at=None).update(
            confirmed_at=now, last_used_at=now, label=name
        )
        if updated != 1:
            raise DomainError(ErrorCode.NOT_FOUND, NO_ENROLMENT_MESSAGE, "enrolmentId")
        codes = await two_factor.method_enrolled(
            services, meta, user.id, kind=TwoFactorKind.SMS, method_id=method.id, first=first
        )
    return ConfirmedSms(method=await TwoFactorMethod.get(id=method.id), backup_codes=codes)


# --- Sign-in (MFA-7) ---------------------------------------------------------------------------


def sign_in_purpose(challenge_id: int) -> str:
    return f"{SIGN_IN_PURPOSE}:{challenge_id}"


async def sign_in_phone(user_id: int) -> TwoFactorMethod | None:
    """The SMS method sign-in codes go to: the one confirmed last."""
    return (
        await TwoFactorMethod.filter(
            user_id=user_id, kind=TwoFactorKind.SMS, confirmed_at__isnull=False
        )
        .order_by("-confirmed_at", "-id")
        .first()
    )


async def send_sign_in_code(services: Services, challenge: SignInChallenge) -> SentCode:
    """MFA-3, MFA-7: a code for this challenge to the user's phone; asking again replaces it."""
    method = await sign_in_phone(challenge.user_id)
    if method is None or method.phone is None:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "This account receives no codes by SMS.", "challengeId"
        )
    await _throttle_send(services, challenge.user_id, method.phone, SmsTemplate.SIGN_IN_CODE)
    user = await User.get(id=challenge.user_id)
    async with in_transaction():
        return await _send_code(
            services,
            user,
            purpose=sign_in_purpose(challenge.id),
            phone=method.phone,
            template=SmsTemplate.SIGN_IN_CODE,
        )


async def check_sign_in_code(
    services: Services, challenge: SignInChallenge, code: str
) -> tuple[CodeCheck, int | None]:
    """The outcome of a sign-in code, and the SMS method it opened when accepted."""
    purpose = sign_in_purpose(challenge.id)
    check = await check_code(services, challenge.user_id, purpose, code)
    if check is not CodeCheck.ACCEPTED:
        return check, None
    sent = (
        await OneTimeCode.filter(user_id=challenge.user_id, purpose=purpose).order_by("-id").first()
    )
    method = await sign_in_phone(challenge.user_id)
    if method is None or sent is None or method.phone != sent.destination:
        # The phone was removed or replaced since the code was sent: it no longer opens this
        # account.
        return CodeCheck.EXPIRED, None
    await TwoFactorMethod.filter(id=method.id).update(last_used_at=services.clock.now())
    return check, method.id
