"""SMS codes as a second factor (MFA-3): enrolment, sign-in, and every way a code can be bad,
through the resolvers on the real database, the SMS read back from the outbox."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import pytest

from gardien.clock import ManualClock
from gardien.models.activity import ActivityEvent
from gardien.models.enums import OutboxChannel, TwoFactorKind
from gardien.models.mfa import BackupCode, OneTimeCode, TwoFactorMethod
from gardien.models.outbox import OutboxMessage
from gardien.resolvers import accounts, second_factor, sessions, sms_factor, two_factor
from gardien.resolvers.authz import Actor
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from tests import factories

pytestmark = pytest.mark.usefixtures("database")
METHOD = second_factor.SecondFactorMethod
PHONE = "+41791234567"
CODE_IN_TEXT = re.compile(r"\b(\d{6})\b")


async def _actor(services: Services, token: str) -> Actor:
    actor = await sessions.authenticate(services, token)
    assert actor is not None
    return actor


async def _sms_to(number: str) -> list[OutboxMessage]:
    return await OutboxMessage.filter(channel=OutboxChannel.SMS, recipient=number).order_by("id")


async def _last_code(number: str = PHONE) -> str:
    """The code as the phone's owner reads it in the SMS."""
    messages = await _sms_to(number)
    assert messages, f"no SMS to {number}"
    found = CODE_IN_TEXT.search(messages[-1].payload["text"])
    assert found is not None
    return found.group(1)


def _other_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def _events(type_: str) -> list[ActivityEvent]:
    return await ActivityEvent.filter(type=type_).order_by("id")


async def _enrolled(
    services: Services, meta: RequestMeta, clock: ManualClock, email: str, phone: str = PHONE
) -> tuple[accounts.SignUpResult, list[str]]:
    """A signed-up user whose phone receives codes: (sign-up, backup codes)."""
    signed_up = await factories.sign_up(services, email=email)
    actor = await _actor(services, signed_up.session.token)
    enrolment = await sms_factor.begin_sms_enrolment(services, meta, actor, phone=phone)
    confirmed = await sms_factor.confirm_sms_enrolment(
        services, meta, actor, method_id=enrolment.method_id, code=await _last_code(phone)
    )
    clock.advance(timedelta(seconds=30))
    return signed_up, confirmed.backup_codes


async def _challenge(services: Services, meta: RequestMeta, email: str) -> str:
    result = await accounts.sign_in(services, meta, login=email, password=factories.PASSWORD)
    assert result.session is None and result.second_factor is not None
    assert "SMS" in [kind.value for kind in result.second_factor.methods]
    return result.second_factor.challenge_id


# --- Numbers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("079 123 45 67", "+41791234567"),  # national forms are Swiss
        ("+33 6 12 34 56 78", "+33612345678"),
        ("0032 470 12 34 56", "+32470123456"),
        ("+49 151 12345678", "+4915112345678"),
    ],
)
def test_mfa3_mobile_numbers_of_ch_fr_be_de_are_stored_e164(typed: str, stored: str) -> None:
    assert sms_factor.normalise_phone(typed) == stored


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("+1 650 253 0000", ErrorCode.PHONE_COUNTRY_NOT_SUPPORTED),  # United States
        ("+44 7700 900123", ErrorCode.PHONE_COUNTRY_NOT_SUPPORTED),  # United Kingdom
        ("+39 312 345 6789", ErrorCode.PHONE_COUNTRY_NOT_SUPPORTED),  # Italy
        ("+41 44 668 18 00", ErrorCode.PHONE_NUMBER_INVALID),  # a Zurich landline: no SMS
        ("+41 79 123", ErrorCode.PHONE_NUMBER_INVALID),
        ("call me", ErrorCode.PHONE_NUMBER_INVALID),
        ("", ErrorCode.PHONE_NUMBER_INVALID),
    ],
)
async def test_mfa3_sms_refused_outside_ch_fr_be_de(
    services: Services, meta: RequestMeta, typed: str, code: ErrorCode
) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    actor = await _actor(services, signed_up.session.token)

    with pytest.raises(DomainError) as refused:
        await sms_factor.begin_sms_enrolment(services, meta, actor, phone=typed)

    assert (refused.value.code, refused.value.field) == (code, "phone")
    assert await TwoFactorMethod.all().count() == 0
    assert await OutboxMessage.filter(channel=OutboxChannel.SMS).count() == 0
    failures = await _events("two_factor.enrolment_failed")
    assert [e.data for e in failures] == [{"kind": "SMS", "reason": code.value.lower()}]


def test_mfa3_number_shown_masked() -> None:
    assert sms_factor.masked("+41791234567") == "+41 *******67"
    assert sms_factor.masked("+4915112345678") == "+49 *********78"


# --- Enrolment ---------------------------------------------------------------------------------


async def test_mfa3_enrolment_sends_a_hashed_code_and_confirms_with_it(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    actor = await _actor(services, signed_up.session.token)

    enrolment = await sms_factor.begin_sms_enrolment(services, meta, actor, phone="079 123 45 67")
    pending = await two_factor.has_second_factor(signed_up.user.id)
    code = await _last_code()
    stored_code = await OneTimeCode.get(user_id=signed_up.user.id)
    confirmed = await sms_factor.confirm_sms_enrolment(
        services, meta, actor, method_id=enrolment.method_id, code=code, label="Work phone"
    )

    assert (enrolment.sent.sent_to, enrolment.sent.expires_at) == (
        "+41 *******67",
        clock.now() + timedelta(minutes=5),
    )
    assert pending is False
    method = await TwoFactorMethod.get(id=enrolment.method_id)
    assert (method.kind, method.phone, method.label, method.confirmed_at) == (
        TwoFactorKind.SMS,
        PHONE,
        "Work phone",
        clock.now(),
    )
    # Stored as a keyed digest, never as the code itself.
    assert code not in stored_code.code_hash and len(stored_code.code_hash) == 64
    assert (await OneTimeCode.get(id=stored_code.id)).consumed_at == clock.now()
    assert len(confirmed.backup_codes) == 10
    assert await BackupCode.filter(user_id=signed_up.user.id).count() == 10
    assert [e.data["kind"] for e in await _events("two_factor.enrolled")] == ["SMS"]
    [sms] = await _sms_to(PHONE)
    assert sms.template == "sms_enrolment_code"


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("12345", ErrorCode.TWO_FACTOR_CODE_INVALID),
        ("abcdef", ErrorCode.TWO_FACTOR_CODE_INVALID),
        ("１２３４５６", ErrorCode.TWO_FACTOR_CODE_INVALID),  # full-width digits
        ("", ErrorCode.TWO_FACTOR_CODE_INVALID),
    ],
)
async def test_mfa3_malformed_enrolment_code_enrols_nothing(
    services: Services, meta: RequestMeta, typed: str, code: ErrorCode
) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    actor = await _actor(services, signed_up.session.token)
    enrolment = await sms_factor.begin_sms_enrolment(services, meta, actor, phone=PHONE)

    with pytest.raises(DomainError) as refused:
        await sms_factor.confirm_sms_enrolment(
            services, meta, actor, method_id=enrolment.method_id, code=typed
        )

    assert (refused.value.code, refused.value.field) == (code, "code")
    assert await two_factor.has_second_factor(signed_up.user.id) is False
    assert [e.data["reason"] for e in await _events("two_factor.enrolment_failed")] == ["malformed"]
    # A typo that cannot be a code does not spend the code's attempts.
    assert (await OneTimeCode.get(user_id=signed_up.user.id)).attempts == 0


async def test_mfa3_wrong_enrolment_codes_lock_the_code_after_five_attempts(
    services: Services, meta: RequestMeta
) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    actor = await _actor(services, signed_up.session.token)
    enrolment = await sms_factor.begin_sms_enrolment(services, meta, actor, phone=PHONE)
    right = await _last_code()

    outcomes = []
    for _ in range(6):
        try:
            await sms_factor.confirm_sms_enrolment(
                services, meta, actor, method_id=enrolment.method_id, code=_other_code(right)
            )
        except DomainError as error:
            outcomes.append(error.code)
    with pytest.raises(DomainError) as locked:
        await sms_factor.confirm_sms_enrolment(
            services, meta, actor, method_id=enrolment.method_id, code=right
        )

    assert outcomes == [ErrorCode.TWO_FACTOR_CODE_INVALID] * 5 + [ErrorCode.TOO_MANY_ATTEMPTS]
    assert locked.value.code == ErrorCode.TOO_MANY_ATTEMPTS  # even the right code, once locked
    assert await two_factor.has_second_factor(signed_up.user.id) is False
    reasons = [e.data["reason"] for e in await _events("two_factor.enrolment_failed")]
    assert reasons == ["wrong"] * 5 + ["locked"] * 2


async def test_mfa3_enrolment_code_expires_after_five_minutes(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    actor = await _actor(services, signed_up.session.token)
    enrolment = await sms_factor.begin_sms_enrolment(services, meta, actor, phone=PHONE)
    code = await _last_code()

    clock.advance(timedelta(minutes=5))
    with pytest.raises(DomainError) as expired:
        await sms_factor.confirm_sms_enrolment(
            services, meta, actor, method_id=enrolment.method_id, code=code
        )

    assert (expired.value.code, expired.value.field) == (
        ErrorCode.TWO_FACTOR_CODE_EXPIRED,
        "code",
    )
    assert await two_factor.has_second_factor(signed_up.user.id) is False


async def test_mfa3_a_new_enrolment_code_replaces_the_old_and_resends_are_throttled(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    actor = await _actor(services, signed_up.session.token)
    await sms_factor.begin_sms_enrolment(services, meta, actor, phone=PHONE)
    first_code = await _last_code()

    with pytest.raises(DomainError) as too_soon:
        await sms_factor.begin_sms_enrolment(services, meta, actor, phone=PHONE)
    clock.advance(timedelta(minutes=1))
    second = await sms_factor.begin_sms_enrolment(services, meta, actor, phone=PHONE)
    with pytest.raises(DomainError) as old_code:
        await sms_factor.confirm_sms_enrolment(
            services, meta, actor, method_id=second.method_id, code=first_code
        )

    assert too_soon.value.code == ErrorCode.TOO_MANY_ATTEMPTS
    assert too_soon.value.retry_after_seconds is not None
    assert len(await _sms_to(PHONE)) == 2
    # One pending enrolment at a time; the first one's code opens nothing.
    assert await TwoFactorMethod.filter(user_id=signed_up.user.id).count() == 1
    assert old_code.value.code == ErrorCode.TWO_FACTOR_CODE_INVALID
    # Per number, whichever accounts ask: five an hour.
    others = [
        await _actor(
            services, (await factories.sign_up(services, email=f"o{i}@example.test")).session.token
        )
        for i in range(4)
    ]
    for other in others[:3]:
        await sms_factor.begin_sms_enrolment(services, meta, other, phone=PHONE)
    with pytest.raises(DomainError) as pumped:
        await sms_factor.begin_sms_enrolment(services, meta, others[3], phone=PHONE)
    assert pumped.value.code == ErrorCode.TOO_MANY_ATTEMPTS
    assert len(await _sms_to(PHONE)) == 5


async def test_mfa3_another_users_enrolment_is_not_found(
    services: Services, meta: RequestMeta
) -> None:
    ada = await factories.sign_up(services, email="ada@example.test")
    bob = await factories.sign_up(services, email="bob@example.test")
    enrolment = await sms_factor.begin_sms_enrolment(
        services, meta, await _actor(services, ada.session.token), phone=PHONE
    )

    with pytest.raises(DomainError) as refused:
        await sms_factor.confirm_sms_enrolment(
            services,
            meta,
            await _actor(services, bob.session.token),
            method_id=enrolment.method_id,
            code=await _last_code(),
        )

    assert (refused.value.code, refused.value.field) == (ErrorCode.NOT_FOUND, "enrolmentId")
    assert await TwoFactorMethod.filter(confirmed_at__isnull=False).count() == 0


# --- Sign-in -----------------------------------------------------------------------------------


async def test_mfa3_mfa7_sign_in_with_an_sms_code_opens_a_session(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    signed_up, _ = await _enrolled(services, meta, clock, "ada@example.test")
    challenge = await _challenge(services, meta, "ada@example.test")

    sent = await second_factor.send_sign_in_code(services, meta, challenge_id=challenge)
    completed = await second_factor.complete(
        services, meta, challenge_id=challenge, method=METHOD.SMS, code=await _last_code()
    )

    assert (sent.sent_to, sent.expires_at) == ("+41 *******67", clock.now() + timedelta(minutes=5))
    actor = await _actor(services, completed.session.token)
    assert actor.user_id == signed_up.user.id
    assert (await _events("sign_in.succeeded"))[-1].data == {"second_factor": "SMS"}
    assert (await _sms_to(PHONE))[-1].template == "sign_in_code"
    method = await TwoFactorMethod.get(user_id=signed_up.user.id)
    assert method.last_used_at == clock.now()


async def test_mfa3_sign_in_code_is_single_use(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    await _enrolled(services, meta, clock, "ada@example.test")
    first = await _challenge(services, meta, "ada@example.test")
    await second_factor.send_sign_in_code(services, meta, challenge_id=first)
    code = await _last_code()
    await second_factor.complete(services, meta, challenge_id=first, method=METHOD.SMS, code=code)

    with pytest.raises(DomainError) as same_challenge:
        await second_factor.complete(
            services, meta, challenge_id=first, method=METHOD.SMS, code=code
        )
    second = await _challenge(services, meta, "ada@example.test")
    with pytest.raises(DomainError) as other_challenge:
        await second_factor.complete(
            services, meta, challenge_id=second, method=METHOD.SMS, code=code
        )

    assert same_challenge.value.code == ErrorCode.CHALLENGE_EXPIRED
    # A code belongs to the sign-in it was sent for; the next sign-in has none yet.
    assert (other_challenge.value.code, other_challenge.value.field) == (
        ErrorCode.TWO_FACTOR_CODE_EXPIRED,
        "code",
    )
    failures = await _events("sign_in.second_factor_failed")
    assert [e.data for e in failures] == [{"method": "SMS", "reason": "expired"}]


async def test_mfa3_concurrent_sign_ins_with_one_code_open_one_session(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    await _enrolled(services, meta, clock, "ada@example.test")
    challenge = await _challenge(services, meta, "ada@example.test")
    await second_factor.send_sign_in_code(services, meta, challenge_id=challenge)
    code = await _last_code()

    results = await asyncio.gather(
        *[
            second_factor.complete(
                services, meta, challenge_id=challenge, method=METHOD.SMS, code=code
            )
            for _ in range(2)
        ],
        return_exceptions=True,
    )

    opened = [r for r in results if isinstance(r, second_factor.CompletedSignIn)]
    refused = [r for r in results if isinstance(r, DomainError)]
    assert (len(opened), len(refused)) == (1, 1)
    assert refused[0].code in (ErrorCode.TWO_FACTOR_CODE_REUSED, ErrorCode.CHALLENGE_EXPIRED)


async def test_mfa3_sign_in_code_expires_after_five_minutes(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    await _enrolled(services, meta, clock, "ada@example.test")
    challenge = await _challenge(services, meta, "ada@example.test")
    await second_factor.send_sign_in_code(services, meta, challenge_id=challenge)
    code = await _last_code()

    clock.advance(timedelta(minutes=4, seconds=59))
    # Just in time for the code; the challenge (also 5 minutes) is still open too.
    await second_factor.send_sign_in_code(services, meta, challenge_id=challenge)
    with pytest.raises(DomainError) as replaced:
        await second_factor.complete(
            services, meta, challenge_id=challenge, method=METHOD.SMS, code=code
        )
    fresh = await _last_code()
    clock.advance(timedelta(seconds=1))
    with pytest.raises(DomainError) as expired_challenge:
        await second_factor.complete(
            services, meta, challenge_id=challenge, method=METHOD.SMS, code=fresh
        )

    assert replaced.value.code == ErrorCode.TWO_FACTOR_CODE_EXPIRED
    assert expired_challenge.value.code == ErrorCode.CHALLENGE_EXPIRED


async def test_mfa3_sms_code_expires_while_the_challenge_lives(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    await _enrolled(services, meta, clock, "ada@example.test")
    challenge = await _challenge(services, meta, "ada@example.test")
    clock.advance(timedelta(seconds=30))
    await second_factor.send_sign_in_code(services, meta, challenge_id=challenge)
    code = await _last_code()
    # The code's own clock: a resend late in the challenge never outlives the code's 5 minutes.
    await OneTimeCode.filter(destination=PHONE, consumed_at=None).update(
        expires_at=clock.now() + timedelta(seconds=10)
    )
    clock.advance(timedelta(seconds=10))

    with pytest.raises(DomainError) as expired:
        await second_factor.complete(
            services, meta, challenge_id=challenge, method=METHOD.SMS, code=code
        )

    assert expired.value.code == ErrorCode.TWO_FACTOR_CODE_EXPIRED


@pytest.mark.parametrize("typed", ["12345", "abcdef", "", "1234567"])
async def test_mfa3_wrong_or_malformed_sign_in_codes_are_refused_and_recorded(
    services: Services, meta: RequestMeta, clock: ManualClock, typed: str
) -> None:
    await _enrolled(services, meta, clock, "ada@example.test")
    challenge = await _challenge(services, meta, "ada@example.test")
    await second_factor.send_sign_in_code(services, meta, challenge_id=challenge)
    right = await _last_code()

    with pytest.raises(DomainError) as malformed:
        await second_factor.complete(
            services, meta, challenge_id=challenge, method=METHOD.SMS, code=typed
        )
    with pytest.raises(DomainError) as wrong:
        await second_factor.complete(
            services, meta, challenge_id=challenge, method=METHOD.SMS, code=_other_code(right)
        )
    completed = await second_factor.complete(
        services, meta, challenge_id=challenge, method=METHOD.SMS, code=right
    )

    assert (malformed.value.code, malformed.value.field) == (
        ErrorCode.TWO_FACTOR_CODE_INVALID,
        "code",
    )
    assert wrong.value.code == ErrorCode.TWO_FACTOR_CODE_INVALID
    assert completed.session.token
    failures = await _events("sign_in.second_factor_failed")
    assert [e.data["reason"] for e in failures] == ["malformed", "wrong"]


async def test_mfa3_another_users_code_does_not_complete_a_challenge(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    await _enrolled(services, meta, clock, "ada@example.test")
    await _enrolled(services, meta, clock, "bob@example.test", phone="+33612345678")
    ada = await _challenge(services, meta, "ada@example.test")
    bob = await _challenge(services, meta, "bob@example.test")
    await second_factor.send_sign_in_code(services, meta, challenge_id=ada)
    await second_factor.send_sign_in_code(services, meta, challenge_id=bob)

    with pytest.raises(DomainError) as refused:
        await second_factor.complete(
            services,
            meta,
            challenge_id=ada,
            method=METHOD.SMS,
            code=await _last_code("+33612345678"),
        )

    assert refused.value.code == ErrorCode.TWO_FACTOR_CODE_INVALID


async def test_mfa3_sign_in_code_needs_a_live_challenge_and_a_phone(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    await factories.confirm_totp(services, signed_up.user)
    totp_only = await _challenge_any(services, meta, "ada@example.test")

    with pytest.raises(DomainError) as forged:
        await second_factor.send_sign_in_code(services, meta, challenge_id="forged")
    with pytest.raises(DomainError) as no_phone:
        await second_factor.send_sign_in_code(services, meta, challenge_id=totp_only)

    assert forged.value.code == ErrorCode.CHALLENGE_EXPIRED
    assert (no_phone.value.code, no_phone.value.field) == (ErrorCode.INVALID_INPUT, "challengeId")
    assert await OutboxMessage.filter(channel=OutboxChannel.SMS).count() == 0


async def _challenge_any(services: Services, meta: RequestMeta, email: str) -> str:
    result = await accounts.sign_in(services, meta, login=email, password=factories.PASSWORD)
    assert result.second_factor is not None
    return result.second_factor.challenge_id


async def test_mfa3_sign_in_codes_are_throttled_per_user(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    await _enrolled(services, meta, clock, "ada@example.test")
    challenge = await _challenge(services, meta, "ada@example.test")
    await second_factor.send_sign_in_code(services, meta, challenge_id=challenge)

    with pytest.raises(DomainError) as again:
        await second_factor.send_sign_in_code(services, meta, challenge_id=challenge)

    assert again.value.code == ErrorCode.TOO_MANY_ATTEMPTS
    # The enrolment SMS and one sign-in code.
    assert len(await _sms_to(PHONE)) == 2


# --- Removal (MFA-9) ---------------------------------------------------------------------------


async def test_mfa3_mfa9_removing_the_phone_stops_its_codes(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    signed_up, _ = await _enrolled(services, meta, clock, "ada@example.test")
    actor = await _actor(services, signed_up.session.token)
    challenge = await _challenge(services, meta, "ada@example.test")
    await second_factor.send_sign_in_code(services, meta, challenge_id=challenge)
    code = await _last_code()
    method = await TwoFactorMethod.get(user_id=signed_up.user.id)

    still_on = await two_factor.remove_method(
        services, meta, actor, method_id=method.id, password=factories.PASSWORD
    )
    with pytest.raises(DomainError) as refused:
        await second_factor.complete(
            services, meta, challenge_id=challenge, method=METHOD.SMS, code=code
        )

    assert still_on is False
    assert refused.value.code == ErrorCode.TWO_FACTOR_CODE_EXPIRED
    removed = await _events("two_factor.removed")
    assert [(e.data["kind"], e.data["last"]) for e in removed] == [("SMS", True)]


async def test_mfa3_a_code_sent_to_a_replaced_phone_no_longer_signs_in(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    signed_up, _ = await _enrolled(services, meta, clock, "ada@example.test")
    actor = await _actor(services, signed_up.session.token)
    challenge = await _challenge(services, meta, "ada@example.test")
    await second_factor.send_sign_in_code(services, meta, challenge_id=challenge)
    old_phone_code = await _last_code()
    clock.advance(timedelta(minutes=1))
    new_phone = await sms_factor.begin_sms_enrolment(services, meta, actor, phone="+33612345678")
    await sms_factor.confirm_sms_enrolment(
        services, meta, actor, method_id=new_phone.method_id, code=await _last_code("+33612345678")
    )

    with pytest.raises(DomainError) as refused:
        await second_factor.complete(
            services, meta, challenge_id=challenge, method=METHOD.SMS, code=old_phone_code
        )

    assert refused.value.code == ErrorCode.TWO_FACTOR_CODE_EXPIRED
