"""Two-factor authentication (MFA-1, MFA-5..MFA-9) and the security policy (POL-1, POL-3, POL-4),
through the resolvers on the real database; the enforcement rule over the whole schema."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    get_named_type,
    is_leaf_type,
)

from gardien import security
from gardien.clock import ManualClock
from gardien.models.activity import ActivityEvent
from gardien.models.enums import Role, SessionKind, TwoFactorKind
from gardien.models.mfa import AppPassword, BackupCode, TwoFactorMethod
from gardien.models.organisations import UserBlock
from gardien.models.outbox import OutboxMessage
from gardien.models.sessions import Session, SignInChallenge
from gardien.models.users import User
from gardien.resolvers import (
    account_security,
    accounts,
    app_passwords,
    authz,
    second_factor,
    security_policy,
    sessions,
    totp,
    two_factor,
)
from gardien.resolvers.authz import Actor, RequestScope
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.schema import schema
from gardien.schema.relay import encode_id
from tests import factories, locks
from tests.conftest import BACKEND, GraphQLClient

pytestmark = pytest.mark.usefixtures("database")
METHOD = second_factor.SecondFactorMethod


# --- RFC 6238 Appendix B ---------------------------------------------------------------------
RFC_SEEDS = {
    hashlib.sha1: b"12345678901234567890",
    hashlib.sha256: b"12345678901234567890123456789012",
    hashlib.sha512: b"1234567890123456789012345678901234567890123456789012345678901234",
}
RFC_VECTORS = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


@pytest.mark.parametrize(("seconds", "sha1", "sha256", "sha512"), RFC_VECTORS)
def test_mfa1_totp_matches_rfc6238_appendix_b(
    seconds: int, sha1: str, sha256: str, sha512: str
) -> None:
    observed = [
        totp.code_at_step(
            base64.b32encode(RFC_SEEDS[digest]).decode(), seconds // 30, digits=8, digest=digest
        )
        for digest in (hashlib.sha1, hashlib.sha256, hashlib.sha512)
    ]

    assert observed == [sha1, sha256, sha512]


# --- helpers ---------------------------------------------------------------------------------


async def _actor(services: Services, token: str) -> Actor:
    actor = await sessions.authenticate(services, token)
    assert actor is not None
    return actor


async def _enrolled(
    services: Services, meta: RequestMeta, clock: ManualClock, email: str
) -> tuple[accounts.SignUpResult, str, list[str]]:
    """A signed-up user with a confirmed TOTP app: (sign-up, secret, backup codes)."""
    signed_up = await factories.sign_up(services, email=email)
    actor = await _actor(services, signed_up.session.token)
    enrolment = await two_factor.begin_totp_enrolment(services, meta, actor)
    code = totp.code_at_step(enrolment.secret, totp.step_at(clock.now()))
    confirmed = await two_factor.confirm_totp_enrolment(
        services, meta, actor, method_id=enrolment.method_id, code=code
    )
    clock.advance(timedelta(seconds=90))  # past the confirming code's steps
    return signed_up, enrolment.secret, confirmed.backup_codes


async def _challenge(services: Services, meta: RequestMeta, email: str) -> str:
    result = await accounts.sign_in(services, meta, login=email, password=factories.PASSWORD)
    assert result.session is None
    assert result.second_factor is not None
    return result.second_factor.challenge_id


def _now_code(secret: str, clock: ManualClock, offset: int = 0) -> str:
    return totp.code_at_step(secret, totp.step_at(clock.now()) + offset)


async def _events(type_: str) -> list[ActivityEvent]:
    return await ActivityEvent.filter(type=type_).order_by("id")


async def _completion_refused(
    services: Services, meta: RequestMeta, clock: ManualClock, challenge: str, secret: str
) -> ErrorCode:
    """The code a completion with the current TOTP code is refused with."""
    with pytest.raises(DomainError) as refused:
        await second_factor.complete(
            services, meta, challenge_id=challenge, method=METHOD.TOTP,
            code=_now_code(secret, clock),
        )  # fmt: skip
    return refused.value.code


# --- MFA-1 enrolment -------------------------------------------------------------------------


async def test_mfa1_enrolment_gives_secret_uri_svg_and_confirms_with_first_code(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    actor = await _actor(services, signed_up.session.token)

    enrolment = await two_factor.begin_totp_enrolment(services, meta, actor)
    pending = await two_factor.has_second_factor(signed_up.user.id)
    confirmed = await two_factor.confirm_totp_enrolment(
        services,
        meta,
        actor,
        method_id=enrolment.method_id,
        code=_now_code(enrolment.secret, clock, -1),
        label="Phone",
    )

    stored = await TwoFactorMethod.get(id=enrolment.method_id)
    assert enrolment.otpauth_uri.startswith("otpauth://totp/Gardien:ada%40example.test?secret=")
    assert enrolment.qr_code_svg.startswith("<svg")
    assert pending is False
    assert stored.confirmed_at == clock.now() and stored.label == "Phone"
    # Encrypted at rest: the stored bytes do not contain the secret.
    assert stored.totp_secret_encrypted is not None
    assert enrolment.secret.encode() not in stored.totp_secret_encrypted
    assert len(confirmed.backup_codes) == 10 and len(set(confirmed.backup_codes)) == 10
    assert await BackupCode.filter(user_id=signed_up.user.id).count() == 10
    assert [e.data["kind"] for e in await _events("two_factor.enrolled")] == ["TOTP"]


@pytest.mark.parametrize("code", ["000000", "12345", "abcdef", "", "1234567", "１２３４５６"])
async def test_mfa1_wrong_or_malformed_first_code_enrols_nothing(
    services: Services, meta: RequestMeta, clock: ManualClock, code: str
) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    actor = await _actor(services, signed_up.session.token)
    enrolment = await two_factor.begin_totp_enrolment(services, meta, actor)
    if code == "000000" and _now_code(enrolment.secret, clock) == code:
        pytest.skip("the random secret's current code is 000000")

    with pytest.raises(DomainError) as refused:
        await two_factor.confirm_totp_enrolment(
            services, meta, actor, method_id=enrolment.method_id, code=code
        )

    assert (refused.value.code, refused.value.field) == (ErrorCode.TWO_FACTOR_CODE_INVALID, "code")
    assert await two_factor.has_second_factor(signed_up.user.id) is False
    assert await BackupCode.filter(user_id=signed_up.user.id).count() == 0
    assert len(await _events("two_factor.enrolment_failed")) == 1


async def test_mfa1_enrolment_expires_and_another_users_enrolment_is_not_found(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    ada = await factories.sign_up(services, email="ada@example.test")
    eve = await factories.sign_up(services, email="eve@example.test")
    ada_actor = await _actor(services, ada.session.token)
    eve_actor = await _actor(services, eve.session.token)
    enrolment = await two_factor.begin_totp_enrolment(services, meta, ada_actor)

    with pytest.raises(DomainError) as other_user:
        await two_factor.confirm_totp_enrolment(
            services, meta, eve_actor, method_id=enrolment.method_id,
            code=_now_code(enrolment.secret, clock),
        )  # fmt: skip
    clock.advance(timedelta(minutes=16))
    with pytest.raises(DomainError) as expired:
        await two_factor.confirm_totp_enrolment(
            services, meta, ada_actor, method_id=enrolment.method_id,
            code=_now_code(enrolment.secret, clock),
        )  # fmt: skip

    assert other_user.value.code == ErrorCode.NOT_FOUND
    assert expired.value.code == ErrorCode.NOT_FOUND
    assert await TwoFactorMethod.filter(confirmed_at__isnull=False).count() == 0


async def test_mfa1_enrolment_attempts_are_limited_per_user(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    actor = await _actor(services, signed_up.session.token)
    enrolment = await two_factor.begin_totp_enrolment(services, meta, actor)
    wrong = "000000" if _now_code(enrolment.secret, clock) != "000000" else "111111"

    codes = []
    for _ in range(11):
        try:
            await two_factor.confirm_totp_enrolment(
                services, meta, actor, method_id=enrolment.method_id, code=wrong
            )
        except DomainError as error:
            codes.append(error.code)
    with pytest.raises(DomainError) as right_but_locked:
        await two_factor.confirm_totp_enrolment(
            services, meta, actor, method_id=enrolment.method_id,
            code=_now_code(enrolment.secret, clock),
        )  # fmt: skip

    assert codes == [ErrorCode.TWO_FACTOR_CODE_INVALID] * 10 + [ErrorCode.TOO_MANY_ATTEMPTS]
    assert right_but_locked.value.code == ErrorCode.TOO_MANY_ATTEMPTS
    assert await two_factor.has_second_factor(signed_up.user.id) is False


# --- MFA-7 / MFA-8 sign-in -------------------------------------------------------------------


async def test_mfa7_sign_in_with_totp_opens_a_browser_session(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    signed_up, secret, _ = await _enrolled(services, meta, clock, "ada@example.test")
    challenge = await _challenge(services, meta, "ada@example.test")

    completed = await second_factor.complete(
        services, meta, challenge_id=challenge, method=METHOD.TOTP, code=_now_code(secret, clock, 1)
    )

    actor = await _actor(services, completed.session.token)
    assert actor.user_id == signed_up.user.id
    assert completed.session.session.persistent is False  # MFA-8: ends with the browser
    assert completed.device_cookie
    events = await _events("sign_in.succeeded")
    assert events[-1].data == {"second_factor": "TOTP"}


async def test_mfa8_remember_browser_gives_a_persistent_session(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    _, secret, _ = await _enrolled(services, meta, clock, "ada@example.test")
    result = await accounts.sign_in(
        services, meta, login="ada@example.test", password=factories.PASSWORD,
        remember_browser=True,
    )  # fmt: skip
    assert result.second_factor is not None

    completed = await second_factor.complete(
        services, meta, challenge_id=result.second_factor.challenge_id, method=METHOD.TOTP,
        code=_now_code(secret, clock),
    )  # fmt: skip

    assert completed.session.session.persistent is True


async def test_mfa1_a_code_is_never_accepted_twice_and_the_replay_is_recorded(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    _, secret, _ = await _enrolled(services, meta, clock, "ada@example.test")
    code = _now_code(secret, clock)
    first = await _challenge(services, meta, "ada@example.test")
    second = await _challenge(services, meta, "ada@example.test")
    await second_factor.complete(services, meta, challenge_id=first, method=METHOD.TOTP, code=code)
    clock.advance(timedelta(seconds=20))  # still within the ±1 step window

    with pytest.raises(DomainError) as replayed:
        await second_factor.complete(
            services, meta, challenge_id=second, method=METHOD.TOTP, code=code
        )

    assert replayed.value.code == ErrorCode.TWO_FACTOR_CODE_REUSED
    assert "already used" in replayed.value.message
    failed = await _events("sign_in.second_factor_failed")
    assert [e.data for e in failed] == [{"method": "TOTP", "reason": "replayed"}]
    assert await Session.filter(revoked_at=None).count() == 2  # sign-up's and the first
    # ASVS 2.8.5: the holder is told, by e-mail, in their language (French by default).
    notice = await OutboxMessage.get(
        recipient="ada@example.test", template="two_factor_code_reused"
    )
    assert "203.0.113.7" in notice.payload["text"]


async def test_mfa1_concurrent_sign_ins_with_one_code_open_one_session(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    _, secret, _ = await _enrolled(services, meta, clock, "ada@example.test")
    code = _now_code(secret, clock)
    challenges = [await _challenge(services, meta, "ada@example.test") for _ in range(4)]

    async def attempt(challenge: str) -> str:
        try:
            await second_factor.complete(
                services, meta, challenge_id=challenge, method=METHOD.TOTP, code=code
            )
        except DomainError as error:
            return error.code.value
        return "session"

    outcomes = await asyncio.gather(*(attempt(c) for c in challenges))

    assert sorted(outcomes) == ["TWO_FACTOR_CODE_REUSED"] * 3 + ["session"]


async def test_blk3_a_user_blocked_after_the_password_step_gets_no_session(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    signed_up, secret, _ = await _enrolled(services, meta, clock, "ada@example.test")
    challenge = await _challenge(services, meta, "ada@example.test")
    await UserBlock.create(
        organisation_id=signed_up.organisation.id, user_id=signed_up.user.id,
        justification="Phone lost", created_at=clock.now(),
    )  # fmt: skip

    with pytest.raises(DomainError) as blocked:
        await second_factor.complete(
            services, meta, challenge_id=challenge, method=METHOD.TOTP,
            code=_now_code(secret, clock),
        )  # fmt: skip

    assert blocked.value.code == ErrorCode.ACCOUNT_BLOCKED
    assert await Session.filter(user_id=signed_up.user.id).count() == 1  # sign-up's only


async def test_mfa1_codes_beyond_one_step_are_refused(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    _, secret, _ = await _enrolled(services, meta, clock, "ada@example.test")
    challenge = await _challenge(services, meta, "ada@example.test")
    refused = []
    for offset in (-2, 2):
        try:
            await second_factor.complete(
                services, meta, challenge_id=challenge, method=METHOD.TOTP,
                code=_now_code(secret, clock, offset),
            )  # fmt: skip
        except DomainError as error:
            refused.append(error.code)

    assert refused == [ErrorCode.TWO_FACTOR_CODE_INVALID] * 2


async def test_mfa7_expired_challenge_is_refused(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    _, secret, _ = await _enrolled(services, meta, clock, "ada@example.test")
    challenge = await _challenge(services, meta, "ada@example.test")
    clock.advance(accounts.CHALLENGE_LIFETIME + timedelta(seconds=1))

    with pytest.raises(DomainError) as expired:
        await second_factor.complete(
            services, meta, challenge_id=challenge, method=METHOD.TOTP,
            code=_now_code(secret, clock),
        )  # fmt: skip

    assert (expired.value.code, expired.value.field) == (ErrorCode.CHALLENGE_EXPIRED, "challengeId")


async def test_mfa7_rec1_a_password_reset_ends_the_sign_ins_owing_their_second_factor(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    """Whoever passed the password step before a reset (or "secure my account", or a block)
    must not finish the sign-in afterwards with the second factor: the change ends every
    challenge still open, along with the sessions."""
    signed_up, secret, _ = await _enrolled(services, meta, clock, "ada@example.test")
    challenge = await _challenge(services, meta, "ada@example.test")
    await factories.reset_password(services, signed_up.user.id, meta)

    refused = await _completion_refused(services, meta, clock, challenge, secret)

    assert refused == ErrorCode.CHALLENGE_EXPIRED
    assert not await Session.filter(user_id=signed_up.user.id, revoked_at=None).exists()


async def test_mfa7_rec1_a_reset_landing_during_the_password_step_leaves_no_challenge(
    services: Services, meta: RequestMeta, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The challenge is written only while the credentials are those the password step
    verified: a reset committed meanwhile, which ends the challenges it sees, leaves none
    written after it either."""
    signed_up, _, _ = await _enrolled(services, meta, clock, "ada@example.test")
    real_verify = security.verify_password

    async def verify_while_reset(stored: str | None, password: str) -> bool:
        await factories.reset_password(services, signed_up.user.id, meta)
        return await real_verify(stored, password)

    monkeypatch.setattr(accounts, "verify_password", verify_while_reset)

    with pytest.raises(DomainError) as refused:
        await accounts.sign_in(
            services, meta, login="ada@example.test", password=factories.PASSWORD
        )

    assert refused.value.code == ErrorCode.INVALID_CREDENTIALS
    assert not await SignInChallenge.filter(user_id=signed_up.user.id).exists()


async def test_mfa7_rec1_a_reset_during_the_second_factor_check_ends_the_challenge(
    services: Services, meta: RequestMeta, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The challenge was live when read, the reset lands while the code is checked: the
    challenge is finished only while still unexpired, so the right code opens nothing."""
    signed_up, secret, _ = await _enrolled(services, meta, clock, "ada@example.test")
    challenge = await _challenge(services, meta, "ada@example.test")
    real_check = two_factor.check_totp

    async def check_while_reset(services_: Services, user_id: int, code: str) -> Any:
        await factories.reset_password(services, user_id, meta)
        return await real_check(services_, user_id, code)

    monkeypatch.setattr(two_factor, "check_totp", check_while_reset)

    refused = await _completion_refused(services, meta, clock, challenge, secret)

    assert refused == ErrorCode.CHALLENGE_EXPIRED
    assert not await Session.filter(user_id=signed_up.user.id, revoked_at=None).exists()


async def test_mfa7_act5_securing_the_account_ends_the_sign_ins_owing_their_second_factor(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    """Whoever passed the password step of someone else's browser, before the owner secured
    the account, cannot finish it with the second factor afterwards."""
    signed_up, secret, _ = await _enrolled(services, meta, clock, "ada@example.test")
    challenge = await _challenge(services, meta, "ada@example.test")
    owner = await _actor(services, signed_up.session.token)

    await account_security.secure_account(services, meta, owner)

    refused = await _completion_refused(services, meta, clock, challenge, secret)
    assert refused == ErrorCode.CHALLENGE_EXPIRED
    sessions_left = await Session.filter(user_id=signed_up.user.id, revoked_at=None)
    assert [session.id for session in sessions_left] == [signed_up.session.session.id]


postgres_only = pytest.mark.skipif(
    BACKEND != "postgres", reason="SQLite runs one write at a time: no row locks to order"
)


async def _outcome(step: Awaitable[Any]) -> Any:
    try:
        return await step
    except DomainError as error:
        return error.code


@postgres_only
async def test_mfa7_rec1_completing_a_challenge_during_a_reset_waits_and_never_deadlocks(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    signed_up, secret, _ = await _enrolled(services, meta, clock, "ada@example.test")
    challenge = await _challenge(services, meta, "ada@example.test")

    # Held as a reset holds it, the user's row is waited for by the completion, which locks
    # nothing before it; then the reset ends the challenge (before, the two deadlocked).
    outcome = await locks.change_while_waited_on(
        signed_up.user.id,
        lambda: factories.reset_password(services, signed_up.user.id, meta),
        lambda: _outcome(
            second_factor.complete(
                services,
                meta,
                challenge_id=challenge,
                method=METHOD.TOTP,
                code=_now_code(secret, clock),
            )
        ),
    )

    assert outcome == ErrorCode.CHALLENGE_EXPIRED
    assert not await Session.filter(user_id=signed_up.user.id, revoked_at=None).exists()
    (failed,) = await _events("sign_in.second_factor_failed")
    assert failed.data["reason"] == "credentials_changed"


@postgres_only
async def test_mfa6_rec1_an_app_sign_in_during_a_reset_waits_and_never_deadlocks(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    signed_up, _, _ = await _enrolled(services, meta, clock, "ada@example.test")
    actor = await _actor(services, signed_up.session.token)
    created = await app_passwords.create(services, meta, actor, label="Thunderbird")

    outcome = await locks.change_while_waited_on(
        signed_up.user.id,
        lambda: factories.reset_password(services, signed_up.user.id, meta),
        lambda: _outcome(
            app_passwords.authenticate_app(
                services, meta, login="ada@example.test", app_password=created.secret
            )
        ),
    )

    assert outcome == ErrorCode.INVALID_CREDENTIALS
    assert not await Session.filter(user_id=signed_up.user.id, revoked_at=None).exists()


async def test_mfa7_completed_or_forged_challenge_is_refused(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    _, secret, _ = await _enrolled(services, meta, clock, "ada@example.test")
    challenge = await _challenge(services, meta, "ada@example.test")
    await second_factor.complete(
        services, meta, challenge_id=challenge, method=METHOD.TOTP, code=_now_code(secret, clock)
    )
    clock.advance(timedelta(seconds=30))

    codes = []
    for challenge_id in (challenge, "forged", ""):
        with pytest.raises(DomainError) as refused:
            await second_factor.complete(
                services, meta, challenge_id=challenge_id, method=METHOD.TOTP,
                code=_now_code(secret, clock),
            )  # fmt: skip
        codes.append(refused.value.code)

    assert codes == [ErrorCode.CHALLENGE_EXPIRED] * 3


async def test_mfa7_attempts_are_limited_per_challenge_then_per_user(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    _, secret, _ = await _enrolled(services, meta, clock, "ada@example.test")
    wrong = "000000" if _now_code(secret, clock) != "000000" else "111111"

    async def attempt(challenge: str, code: str) -> ErrorCode | None:
        try:
            await second_factor.complete(
                services, meta, challenge_id=challenge, method=METHOD.TOTP, code=code
            )
        except DomainError as error:
            return error.code
        return None

    first = await _challenge(services, meta, "ada@example.test")
    per_challenge = [await attempt(first, wrong) for _ in range(6)]
    locked_right = await attempt(first, _now_code(secret, clock))
    second = await _challenge(services, meta, "ada@example.test")
    per_user = [await attempt(second, wrong) for _ in range(5)]
    third = await _challenge(services, meta, "ada@example.test")
    user_locked = await attempt(third, _now_code(secret, clock))

    invalid, throttled = ErrorCode.TWO_FACTOR_CODE_INVALID, ErrorCode.TOO_MANY_ATTEMPTS
    assert per_challenge == [invalid] * 5 + [throttled]
    assert locked_right == throttled
    # The user's budget (10) is spent across challenges: a new challenge does not renew it.
    assert per_user == [invalid] * 5
    assert user_locked == throttled
    reasons = [e.data["reason"] for e in await _events("sign_in.second_factor_failed")]
    assert reasons.count("wrong") == 10
    assert any(r.startswith("throttled") for r in reasons)


async def test_mfa7_another_users_code_does_not_complete_a_challenge(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    await _enrolled(services, meta, clock, "ada@example.test")
    _, eve_secret, eve_codes = await _enrolled(services, meta, clock, "eve@example.test")
    ada_challenge = await _challenge(services, meta, "ada@example.test")

    codes = []
    for method, code in ((METHOD.TOTP, _now_code(eve_secret, clock)),
                         (METHOD.BACKUP_CODE, eve_codes[0])):  # fmt: skip
        with pytest.raises(DomainError) as refused:
            await second_factor.complete(
                services, meta, challenge_id=ada_challenge, method=method, code=code
            )
        codes.append(refused.value.code)

    assert codes == [ErrorCode.TWO_FACTOR_CODE_INVALID] * 2
    assert await BackupCode.filter(used_at__isnull=False).count() == 0


# --- MFA-5 backup codes ------------------------------------------------------------------------


async def test_mfa5_backup_code_completes_once_and_the_count_drops(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    signed_up, _, codes = await _enrolled(services, meta, clock, "ada@example.test")
    actor = await _actor(services, signed_up.session.token)
    first = await _challenge(services, meta, "ada@example.test")
    second = await _challenge(services, meta, "ada@example.test")

    completed = await second_factor.complete(
        services, meta, challenge_id=first, method=METHOD.BACKUP_CODE, code=codes[0].upper()
    )
    with pytest.raises(DomainError) as reused:
        await second_factor.complete(
            services, meta, challenge_id=second, method=METHOD.BACKUP_CODE, code=codes[0]
        )

    assert completed.session.token
    assert reused.value.code == ErrorCode.TWO_FACTOR_CODE_INVALID
    assert await two_factor.backup_codes_remaining(actor, signed_up.user.id) == 9
    assert await two_factor.backup_codes_remaining(Actor(), signed_up.user.id) is None


async def test_mfa5_regenerating_invalidates_the_old_set(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    signed_up, _, old = await _enrolled(services, meta, clock, "ada@example.test")
    actor = await _actor(services, signed_up.session.token)

    new = await two_factor.regenerate_backup_codes(services, meta, actor)
    old_works = await two_factor.use_backup_code(services, signed_up.user.id, old[1])
    new_works = await two_factor.use_backup_code(services, signed_up.user.id, new[1])

    assert set(new).isdisjoint(old) and len(new) == 10
    assert (old_works, new_works) == (False, True)
    assert len(await _events("two_factor.backup_codes_generated")) == 2


async def test_mfa5_no_backup_codes_without_two_factor(
    services: Services, meta: RequestMeta
) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    actor = await _actor(services, signed_up.session.token)

    with pytest.raises(DomainError) as refused:
        await two_factor.regenerate_backup_codes(services, meta, actor)

    assert refused.value.code == ErrorCode.TWO_FACTOR_NOT_ENABLED
    assert await BackupCode.all().count() == 0


# --- MFA-6 app passwords ---------------------------------------------------------------------


async def test_mfa6_app_password_shown_once_stored_hashed_opens_an_app_session(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    signed_up, _, _ = await _enrolled(services, meta, clock, "ada@example.test")
    actor = await _actor(services, signed_up.session.token)

    created = await app_passwords.create(services, meta, actor, label="Thunderbird")
    issued = await app_passwords.authenticate_app(
        services, meta, login="ADA@example.test", app_password=created.secret
    )
    app_actor = await _actor(services, issued.token)
    listed = await app_passwords.own_app_passwords(actor, signed_up.user.id)

    stored = await AppPassword.get(id=created.app_password.id)
    assert len(created.secret.replace(" ", "")) == 16
    assert created.secret.replace(" ", "") not in stored.password_hash
    assert issued.session.kind == SessionKind.APP
    assert app_actor.session is not None and app_actor.session.kind == SessionKind.APP
    assert [(a.label, a.last_used_at) for a in listed] == [("Thunderbird", clock.now())]
    # An app session never manages credentials: it cannot mint more of them.
    with pytest.raises(DomainError) as from_app:
        await app_passwords.create(services, meta, app_actor, label="More")
    assert from_app.value.code == ErrorCode.FORBIDDEN


async def test_mfa6_concurrent_creations_keep_to_the_cap(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    """The count and the insert share the user's row lock: a race cannot pass the cap."""
    signed_up, _, _ = await _enrolled(services, meta, clock, "ada@example.test")
    actor = await _actor(services, signed_up.session.token)
    for n in range(app_passwords.MAX_ACTIVE - 2):
        await app_passwords.create(services, meta, actor, label=f"Tool {n}")

    results = await asyncio.gather(
        *(app_passwords.create(services, meta, actor, label=f"Race {n}") for n in range(6)),
        return_exceptions=True,
    )

    refused = [r for r in results if isinstance(r, DomainError)]
    assert len(refused) == 4 and {r.code for r in refused} == {ErrorCode.INVALID_INPUT}
    assert await AppPassword.filter(user_id=signed_up.user.id, revoked_at=None).count() == (
        app_passwords.MAX_ACTIVE
    )


async def test_mfa6_app_passwords_need_two_factor_and_wrong_ones_are_refused(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    plain = await factories.sign_up(services, email="plain@example.test")
    with pytest.raises(DomainError) as without_2fa:
        await app_passwords.create(
            services, meta, await _actor(services, plain.session.token), label="Mail"
        )
    signed_up, _, _ = await _enrolled(services, meta, clock, "ada@example.test")
    actor = await _actor(services, signed_up.session.token)
    created = await app_passwords.create(services, meta, actor, label="Mail")

    codes = []
    for login, secret in (("ada@example.test", "aaaa bbbb cccc dddd"),
                          ("nobody@example.test", created.secret),
                          ("ada@example.test", factories.PASSWORD)):  # fmt: skip
        with pytest.raises(DomainError) as refused:
            await app_passwords.authenticate_app(services, meta, login=login, app_password=secret)
        codes.append((refused.value.code, refused.value.message))

    assert without_2fa.value.code == ErrorCode.TWO_FACTOR_NOT_ENABLED
    assert await AppPassword.filter(user_id=plain.user.id).count() == 0
    assert codes == [(ErrorCode.INVALID_CREDENTIALS, app_passwords.INVALID_MESSAGE)] * 3
    assert len(await _events("app_password.sign_in_failed")) == 3


async def test_mfa6_revoking_stops_the_password_and_app_sessions(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    signed_up, _, _ = await _enrolled(services, meta, clock, "ada@example.test")
    eve, _, _ = await _enrolled(services, meta, clock, "eve@example.test")
    actor = await _actor(services, signed_up.session.token)
    created = await app_passwords.create(services, meta, actor, label="Mail")
    kept = await app_passwords.create(services, meta, actor, label="Calendar")
    issued = await app_passwords.authenticate_app(
        services, meta, login="ada@example.test", app_password=created.secret
    )
    other_tool = await app_passwords.authenticate_app(
        services, meta, login="ada@example.test", app_password=kept.secret
    )

    with pytest.raises(DomainError) as by_other:
        await app_passwords.revoke(
            services, meta, await _actor(services, eve.session.token),
            app_password_id=created.app_password.id,
        )  # fmt: skip
    await app_passwords.revoke(services, meta, actor, app_password_id=created.app_password.id)

    assert by_other.value.code == ErrorCode.NOT_FOUND
    assert await sessions.authenticate(services, issued.token) is None
    assert await sessions.authenticate(services, other_tool.token) is not None
    assert await sessions.authenticate(services, signed_up.session.token) is not None
    with pytest.raises(DomainError):
        await app_passwords.authenticate_app(
            services, meta, login="ada@example.test", app_password=created.secret
        )
    assert len(await _events("app_password.revoked")) == 1


async def test_mfa6_app_sign_in_attempts_are_limited_per_login(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    signed_up, _, _ = await _enrolled(services, meta, clock, "ada@example.test")
    actor = await _actor(services, signed_up.session.token)
    created = await app_passwords.create(services, meta, actor, label="Mail")
    codes = []
    for _ in range(11):
        try:
            await app_passwords.authenticate_app(
                services, meta, login="ada@example.test", app_password="wrong"
            )
        except DomainError as error:
            codes.append(error.code)
    with pytest.raises(DomainError) as locked:
        await app_passwords.authenticate_app(
            services, meta, login="ada@example.test", app_password=created.secret
        )

    assert codes == [ErrorCode.INVALID_CREDENTIALS] * 10 + [ErrorCode.TOO_MANY_ATTEMPTS]
    assert locked.value.code == ErrorCode.TOO_MANY_ATTEMPTS


# --- MFA-9 removal ---------------------------------------------------------------------------


async def test_mfa9_removing_the_last_method_needs_the_password_and_turns_2fa_off(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    signed_up, _, _ = await _enrolled(services, meta, clock, "ada@example.test")
    actor = await _actor(services, signed_up.session.token)
    created = await app_passwords.create(services, meta, actor, label="Mail")
    app_session = await app_passwords.authenticate_app(
        services, meta, login="ada@example.test", app_password=created.secret
    )
    method = await TwoFactorMethod.get(user_id=signed_up.user.id)

    with pytest.raises(DomainError) as wrong_password:
        await two_factor.remove_method(
            services, meta, actor, method_id=method.id, password="not the password"
        )
    still_there = await two_factor.has_second_factor(signed_up.user.id)
    still_on = await two_factor.remove_method(
        services, meta, actor, method_id=method.id, password=factories.PASSWORD
    )

    assert (wrong_password.value.code, wrong_password.value.field) == (
        ErrorCode.INVALID_CREDENTIALS, "password",
    )  # fmt: skip
    assert still_there is True
    assert still_on is False
    assert await BackupCode.filter(user_id=signed_up.user.id).count() == 0
    assert await AppPassword.filter(user_id=signed_up.user.id, revoked_at=None).count() == 0
    assert await sessions.authenticate(services, app_session.token) is None
    assert [e.data["last"] for e in await _events("two_factor.removed")] == [True]


async def test_mfa9_the_last_method_stays_while_an_organisation_requires_2fa(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    signed_up, _, _ = await _enrolled(services, meta, clock, "ada@example.test")
    actor = await _actor(services, signed_up.session.token)
    await security_policy.update_policy(
        services, meta, RequestScope(actor), organisation_id=signed_up.organisation.id,
        require_two_factor=True, confirm=True,
    )  # fmt: skip
    method = await TwoFactorMethod.get(user_id=signed_up.user.id)

    with pytest.raises(DomainError) as refused:
        await two_factor.remove_method(
            services, meta, actor, method_id=method.id, password=factories.PASSWORD
        )

    assert refused.value.code == ErrorCode.TWO_FACTOR_REQUIRED_BY_ORGANISATION
    assert await two_factor.has_second_factor(signed_up.user.id) is True
    assert len(await _events("two_factor.removal_refused")) == 1


async def test_mfa9_another_users_method_is_not_found(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    await _enrolled(services, meta, clock, "ada@example.test")
    eve = await factories.sign_up(services, email="eve@example.test")
    ada_method = await TwoFactorMethod.get(user__email="ada@example.test")

    with pytest.raises(DomainError) as refused:
        await two_factor.remove_method(
            services, meta, await _actor(services, eve.session.token), method_id=ada_method.id,
            password=factories.PASSWORD,
        )  # fmt: skip

    assert refused.value.code == ErrorCode.NOT_FOUND
    assert await TwoFactorMethod.exists(id=ada_method.id)


# --- POL-1, POL-3 ----------------------------------------------------------------------------


async def test_pol1_managers_require_2fa_with_confirmation_others_are_refused(
    services: Services, meta: RequestMeta
) -> None:
    legal = await factories.sign_up(services, email="legal@example.test")
    collaborator = await factories.add_member(
        services, legal.organisation, Role.COLLABORATOR, email="collab@example.test"
    )
    legal_scope = RequestScope(await _actor(services, legal.session.token))
    collab_scope = await factories.signed_in_scope(services, "collab@example.test")
    assert collaborator.user.id

    with pytest.raises(DomainError) as unconfirmed:
        await security_policy.update_policy(
            services, meta, legal_scope, organisation_id=legal.organisation.id,
            require_two_factor=True, confirm=False,
        )  # fmt: skip
    with pytest.raises(DomainError) as by_collaborator:
        await security_policy.update_policy(
            services, meta, collab_scope, organisation_id=legal.organisation.id,
            require_two_factor=True, confirm=True,
        )  # fmt: skip
    required = await security_policy.update_policy(
        services, meta, legal_scope, organisation_id=legal.organisation.id,
        require_two_factor=True, confirm=True,
    )  # fmt: skip

    assert (unconfirmed.value.code, unconfirmed.value.field) == (
        ErrorCode.CONFIRMATION_REQUIRED, "confirm",
    )  # fmt: skip
    assert by_collaborator.value.code == ErrorCode.FORBIDDEN
    assert required[0] is True
    events = await _events("security_policy.changed")
    assert [(e.organisation_id, e.data) for e in events] == [
        (legal.organisation.id, {"require_two_factor": True})
    ]
    collab_actor = await sessions.authenticate(
        services,
        (await accounts.sign_in(
            services, meta, login="collab@example.test", password=factories.PASSWORD
        )).session.token,  # type: ignore[union-attr]
    )  # fmt: skip
    assert collab_actor is not None and collab_actor.two_factor_enrolment_required is True


async def test_pol3_security_alert_is_queued_in_the_members_language(
    services: Services, meta: RequestMeta
) -> None:
    legal = await factories.sign_up(services, email="legal@example.test")
    member = await factories.add_member(
        services, legal.organisation, Role.COLLABORATOR, email="collab@example.test"
    )
    await User.filter(id=member.user.id).update(language="de")
    legal_scope = RequestScope(await _actor(services, legal.session.token))
    collab_scope = await factories.signed_in_scope(services, "collab@example.test")
    outsider = await factories.sign_up(services, email="out@example.test")

    await security_policy.send_security_alert(
        services, meta, legal_scope, membership_id=member.membership.id
    )
    with pytest.raises(DomainError) as by_collaborator:
        await security_policy.send_security_alert(
            services, meta, collab_scope, membership_id=member.membership.id
        )
    with pytest.raises(DomainError) as by_outsider:
        await security_policy.send_security_alert(
            services, meta, RequestScope(await _actor(services, outsider.session.token)),
            membership_id=member.membership.id,
        )  # fmt: skip

    message = await OutboxMessage.get(recipient="collab@example.test")
    assert message.payload["subject"] == "Die Sicherheitseinstellungen Ihres Kontos"
    assert "Zwei-Faktor-Authentifizierung: DEAKTIVIERT" in message.payload["text"]
    assert by_collaborator.value.code == ErrorCode.FORBIDDEN
    assert by_outsider.value.code == ErrorCode.NOT_FOUND
    assert len(await _events("member.security_alert_sent")) == 1


# --- POL-4 enforcement, over the whole schema ------------------------------------------------

# What a member held to 2FA and not enrolled may run in a web session (POL-4), named here on
# purpose rather than read from authz: a field added to the schema must be decided on here.
ALLOWED_WHILE_ENROLMENT_REQUIRED = {
    "viewer",
    "signOut",
    "leaveOrganisation",
    "beginTotpEnrolment",
    "confirmTotpEnrolment",
    "beginSecurityKeyRegistration",
    "completeSecurityKeyRegistration",
    # REC-4: an account whose login e-mail was deleted sets a new one before anything else.
    "requestLoginEmailChange",
    "confirmLoginEmailChange",
    "registerPushDevice",
    "beginSmsEnrolment",
    "confirmSmsEnrolment",
}


def _root_fields() -> list[tuple[str, str]]:
    fields = []
    for operation_type, root in (
        ("query", schema._schema.query_type),
        ("mutation", schema._schema.mutation_type),
        ("subscription", schema._schema.subscription_type),
    ):
        if isinstance(root, GraphQLObjectType):
            fields += [(operation_type, name) for name in root.fields]
    return fields


async def test_pol4_every_root_field_is_refused_or_allowed_as_the_rule_says(
    services: Services, meta: RequestMeta
) -> None:
    legal = await factories.sign_up(services, email="legal@example.test")
    await factories.add_member(services, legal.organisation, Role.EXTERNAL, "ext@example.test")
    await security_policy.update_policy(
        services, meta, RequestScope(await _actor(services, legal.session.token)),
        organisation_id=legal.organisation.id, require_two_factor=True, confirm=True,
    )  # fmt: skip
    held = (await factories.signed_in_scope(services, "ext@example.test")).actor
    assert held.two_factor_enrolment_required is True
    fields = _root_fields()

    observed = {}
    for operation_type, name in fields:
        try:
            authz.check_operation(held, operation_type, frozenset({name}))
            observed[name] = "allowed"
        except DomainError as error:
            observed[name] = error.code.value

    assert len(fields) > 15
    assert observed == {
        name: "allowed"
        if name in ALLOWED_WHILE_ENROLMENT_REQUIRED
        else ErrorCode.TWO_FACTOR_ENROLMENT_REQUIRED.value
        for _, name in fields
    }
    # A mix of an allowed and a refused field is refused as a whole.
    with pytest.raises(DomainError):
        authz.check_operation(held, "query", frozenset({"viewer", "organisation"}))


async def test_pol4_app_sessions_enrolled_users_and_unheld_members_are_not_gated(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    legal, _, _ = await _enrolled(services, meta, clock, "legal@example.test")
    legal_actor = await _actor(services, legal.session.token)
    created = await app_passwords.create(services, meta, legal_actor, label="Mail")
    await security_policy.update_policy(
        services, meta, RequestScope(legal_actor), organisation_id=legal.organisation.id,
        require_two_factor=True, confirm=True,
    )  # fmt: skip
    # The legal representative's only method removed by force (as if lost): held, except in the
    # app session, which POL-4 leaves working.
    await TwoFactorMethod.filter(user_id=legal.user.id).delete()
    issued = await app_passwords.authenticate_app(
        services, meta, login="legal@example.test", app_password=created.secret
    )
    app_actor = await _actor(services, issued.token)
    web_actor = await _actor(services, legal.session.token)
    other = await factories.sign_up(services, email="other@example.test")
    other_actor = await _actor(services, other.session.token)

    authz.check_operation(app_actor, "query", frozenset({"organisation"}))
    authz.check_operation(other_actor, "query", frozenset({"organisation"}))
    with pytest.raises(DomainError) as held:
        authz.check_operation(web_actor, "query", frozenset({"organisation"}))

    assert (app_actor.two_factor_enrolment_required, web_actor.two_factor_enrolment_required) == (
        True, True,
    )  # fmt: skip
    assert other_actor.two_factor_enrolment_required is False
    assert held.value.code == ErrorCode.TWO_FACTOR_ENROLMENT_REQUIRED


async def test_pol4_enrolling_lifts_the_hold(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    legal = await factories.sign_up(services, email="legal@example.test")
    actor = await _actor(services, legal.session.token)
    await security_policy.update_policy(
        services, meta, RequestScope(actor), organisation_id=legal.organisation.id,
        require_two_factor=True, confirm=True,
    )  # fmt: skip
    held = await _actor(services, legal.session.token)
    enrolment = await two_factor.begin_totp_enrolment(services, meta, held)
    await two_factor.confirm_totp_enrolment(
        services, meta, held, method_id=enrolment.method_id,
        code=_now_code(enrolment.secret, clock),
    )  # fmt: skip

    after = await _actor(services, legal.session.token)

    assert held.two_factor_enrolment_required is True
    assert after.two_factor_enrolment_required is False
    assert await TwoFactorMethod.filter(kind=TwoFactorKind.TOTP).count() == 1


def _sample(type_: GraphQLInputType) -> Any:
    """A value of the input type that coerces (its content is meaningless): required fields only."""
    if isinstance(type_, GraphQLNonNull):
        return _sample(type_.of_type)
    if isinstance(type_, GraphQLList):
        return []
    if isinstance(type_, GraphQLEnumType):
        return next(iter(type_.values))
    if isinstance(type_, GraphQLInputObjectType):
        return {
            name: _sample(field.type)
            for name, field in type_.fields.items()
            if isinstance(field.type, GraphQLNonNull)
        }
    assert isinstance(type_, GraphQLScalarType), type_
    return {"Boolean": False, "Int": 1, "Float": 1.0, "ID": encode_id("Nothing", 1)}.get(
        type_.name, "x"
    )


def _operation_for(operation_type: str, name: str) -> tuple[str, dict[str, Any]]:
    root = schema._schema.query_type if operation_type == "query" else schema._schema.mutation_type
    assert root is not None
    field = root.fields[name]
    required = {n: a for n, a in field.args.items() if isinstance(a.type, GraphQLNonNull)}
    definitions = ", ".join(f"${n}: {a.type}" for n, a in required.items())
    arguments = ", ".join(f"{n}: ${n}" for n in required)
    selection = "" if is_leaf_type(get_named_type(field.type)) else " { __typename }"
    document = (
        f"{operation_type}{f'({definitions})' if definitions else ''}"
        f" {{ {name}{f'({arguments})' if arguments else ''}{selection} }}"
    )
    return document, {n: _sample(a.type) for n, a in required.items()}


async def test_pol4_served_every_root_field_over_http_as_the_rule_says(
    services: Services, meta: RequestMeta, gql: GraphQLClient
) -> None:
    """The same rule through the HTTP transport and the engine's gate, for every query and
    mutation of the schema (subscriptions do not run over HTTP)."""
    legal = await factories.sign_up(services, email="legal@example.test")
    await factories.add_member(services, legal.organisation, Role.EXTERNAL, "ext@example.test")
    await security_policy.update_policy(
        services, meta, RequestScope(await _actor(services, legal.session.token)),
        organisation_id=legal.organisation.id, require_two_factor=True, confirm=True,
    )  # fmt: skip
    signed_in = await accounts.sign_in(
        services, meta, login="ext@example.test", password=factories.PASSWORD
    )
    assert signed_in.session is not None
    gql.token = signed_in.session.token
    refused = ErrorCode.TWO_FACTOR_ENROLMENT_REQUIRED.value

    observed = {}

    # signOut last: it ends the session the others are asked with; registerPushDevice just
    # before it: a registered device is a second factor, which lifts the hold.
    def order(field: tuple[str, str]) -> tuple[bool, bool]:
        return field[1] == "signOut", field[1] == "registerPushDevice"

    for operation_type, name in sorted(_root_fields(), key=order):
        if operation_type == "subscription":
            continue
        document, variables = _operation_for(operation_type, name)
        response = await gql.post(document, variables)
        assert response.status_code == 200, (name, response.text)
        body = response.json()
        codes = [e["extensions"]["code"] for e in body.get("errors", [])]
        observed[name] = "refused" if codes == [refused] and body["data"] is None else "ran"

    assert observed == {
        name: "ran" if name in ALLOWED_WHILE_ENROLMENT_REQUIRED else "refused"
        for operation_type, name in _root_fields()
        if operation_type != "subscription"
    }
