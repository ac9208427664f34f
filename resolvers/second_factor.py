"""Second step of signing in (MFA-7, MFA-8): a challenge completed with a second factor."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tortoise.expressions import F
from tortoise.transactions import in_transaction

from gardien.mail.templates import Template
from gardien.models.sessions import SignInChallenge
from gardien.models.users import User
from gardien.resolvers import (
    accounts,
    activity,
    authz,
    push_approvals,
    ratelimits,
    security_keys,
    sessions,
    sms_factor,
    totp,
    two_factor,
)
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.security import DeviceCookie


class SecondFactorMethod(StrEnum):
    """What completes a challenge: an enrolled kind of second factor, or a backup code (MFA-5)."""

    TOTP = "TOTP"
    SECURITY_KEY = "SECURITY_KEY"
    SMS = "SMS"
    PUSH = "PUSH"
    BACKUP_CODE = "BACKUP_CODE"


# Per challenge: a handful of typos, then sign in again (a new password check). Per user, over
# every challenge: a password thief cannot reset the budget by starting new sign-ins. A million
# TOTP codes, three valid at a time: 10 guesses per quarter hour take decades on average.
ATTEMPTS_PER_CHALLENGE = ratelimits.Rule("second_factor_challenge", 5, accounts.CHALLENGE_LIFETIME)
ATTEMPTS_PER_USER = ratelimits.Rule("second_factor_user", 10, accounts.CHALLENGE_LIFETIME * 3)

BLOCKED_MESSAGE = (
    "Web access to this account is blocked. Contact your organisation's administrator."
)
CHALLENGE_EXPIRED_MESSAGE = "This sign-in has expired or is finished: sign in again."
WRONG_CODE_MESSAGE = "This code is not right. Check it and try again."
REUSED_CODE_MESSAGE = (
    "This code was already used. Wait for the next one; if you did not use it yourself, change"
    " your password: someone else may know it."
)


@dataclass(frozen=True)
class CompletedSignIn:
    session: sessions.IssuedSession
    device_cookie: str


async def complete(
    services: Services,
    meta: RequestMeta,
    *,
    challenge_id: str,
    method: SecondFactorMethod,
    code: str | None,
    device_cookie: str | None = None,
    credential: object = None,
) -> CompletedSignIn:
    """MFA-7: the challenge's user proves the second factor; a session opens, persistent only
    when the password step asked to remember the browser (MFA-8).

    An unknown, expired or finished challenge all get the same answer. Every attempt is counted
    (per challenge and per user, atomically) before the code is checked; a failure is recorded."""
    challenge = await _live_challenge(services, challenge_id)
    user_id = challenge.user_id
    if not await authz.may_sign_in_web(user_id):
        # Blocked since the password step (BLK-3): no session, whatever the code.
        raise DomainError(ErrorCode.ACCOUNT_BLOCKED, BLOCKED_MESSAGE)
    await _count_attempt(services, meta, challenge, method)
    code = (code or "")[:64]
    if method is SecondFactorMethod.TOTP:
        check = await two_factor.check_totp(services, user_id, code)
        if check.method_id is None:
            if check.replayed:
                # ASVS 2.8.5: whoever typed it holds the password and has seen a code.
                await _failed_and_owner_told(
                    services, meta, user_id, method, "replayed", Template.TWO_FACTOR_CODE_REUSED
                )
                raise DomainError(ErrorCode.TWO_FACTOR_CODE_REUSED, REUSED_CODE_MESSAGE, "code")
            await _failed(services, meta, user_id, method, _failure_reason(code, method))
            raise DomainError(ErrorCode.TWO_FACTOR_CODE_INVALID, WRONG_CODE_MESSAGE, "code")
    elif method is SecondFactorMethod.SMS:
        sms_check, _ = await sms_factor.check_sign_in_code(services, challenge, code)
        if sms_check is not sms_factor.CodeCheck.ACCEPTED:
            await _failed(services, meta, user_id, method, sms_check.value)
            raise sms_factor.code_error(sms_check)
    elif method is SecondFactorMethod.BACKUP_CODE:
        if not await two_factor.use_backup_code(services, user_id, code):
            await _failed(services, meta, user_id, method, _failure_reason(code, method))
            raise DomainError(ErrorCode.TWO_FACTOR_CODE_INVALID, WRONG_CODE_MESSAGE, "code")
    elif method is SecondFactorMethod.SECURITY_KEY:
        # MFA-2: the answer to beginSecurityKeySignIn's request, in WebAuthn's JSON form.
        try:
            await security_keys.check_assertion(services, challenge, credential)
        except security_keys.SecurityKeyRefused as refused:
            if refused.reason is security_keys.Failure.COUNTER_REGRESSION:
                # Whoever answered holds the password and a copy of the key (or it was cloned).
                await _failed_and_owner_told(
                    services,
                    meta,
                    user_id,
                    method,
                    refused.reason.value,
                    Template.SECURITY_KEY_COUNTER_REGRESSION,
                )
            else:
                await _failed(services, meta, user_id, method, refused.reason.value)
            raise
    elif method is SecondFactorMethod.PUSH:
        # MFA-4: the browser polls while the phone decides. Waiting is no guess: its attempt is
        # given back; a denied or expired request counts and is recorded like a wrong code.
        try:
            await push_approvals.require_approved(services, meta, challenge.id)
        except DomainError as refusal:
            if refusal.code is ErrorCode.LOGIN_APPROVAL_PENDING:
                await _give_back_attempt(services, challenge)
            else:
                await _failed(services, meta, user_id, method, refusal.code.value.lower())
            raise
    else:
        # Every method is handled above: a new one must be added here before it completes one.
        await _failed(services, meta, user_id, method, "unavailable")
        raise DomainError(
            ErrorCode.INVALID_INPUT, "This method cannot complete this sign-in.", "method"
        )

    user = await User.get(id=user_id)
    # The browser's cookie, if it still vouches for it, keeps its nonce (see session_opened).
    device = await accounts.trusted_device(services, user, device_cookie)
    try:
        issued, cookie = await _finish(services, meta, challenge, user, device, method)
    except sessions.CredentialsChanged:
        # A credential change ends the sign-ins under way (sessions.revoke_all_sessions).
        await _failed(services, meta, user_id, method, "credentials_changed")
        raise DomainError(
            ErrorCode.CHALLENGE_EXPIRED, CHALLENGE_EXPIRED_MESSAGE, "challengeId"
        ) from None
    # A success gives back its own attempts only (see accounts.sign_in).
    await ratelimits.give_back(services, ATTEMPTS_PER_USER, _user_subject(user_id))
    return CompletedSignIn(session=issued, device_cookie=cookie)


async def _finish(
    services: Services,
    meta: RequestMeta,
    challenge: SignInChallenge,
    user: User,
    device: DeviceCookie | None,
    method: SecondFactorMethod,
) -> tuple[sessions.IssuedSession, str]:
    """The challenge finished and the session opened, in one transaction (see complete)."""
    now = services.clock.now()
    async with in_transaction():
        await sessions.hold_credentials(user)
        finished = await SignInChallenge.filter(
            id=challenge.id, completed_at=None, expires_at__gt=now
        ).update(completed_at=now)
        if finished != 1:
            # A concurrent request completed it first (one challenge, one session), or the
            # credentials changed meanwhile and ended it (sessions.revoke_all_sessions).
            raise DomainError(ErrorCode.CHALLENGE_EXPIRED, CHALLENGE_EXPIRED_MESSAGE, "challengeId")
        issued = await sessions.open_session(
            services, user, meta, persistent=challenge.remember_browser
        )
        await activity.sign_in_succeeded(services, meta, user.id, second_factor=method.value)
        # ACT-2: the new-location notice belongs to the completed sign-in, as without 2FA.
        cookie = await accounts.session_opened(services, meta, user, device)
    return issued, cookie


async def begin_security_key_sign_in(
    services: Services, meta: RequestMeta, *, challenge_id: str
) -> dict[str, Any]:
    """MFA-2: the request a security key answers to complete this challenge (allowCredentials:
    the challenge user's keys). Not an attempt: nothing is guessed until the answer comes."""
    challenge = await _live_challenge(services, challenge_id)
    if not await authz.may_sign_in_web(challenge.user_id):
        raise DomainError(ErrorCode.ACCOUNT_BLOCKED, BLOCKED_MESSAGE)
    return await security_keys.begin_sign_in(services, challenge)


async def request_login_approval(
    services: Services, meta: RequestMeta, *, challenge_id: str
) -> push_approvals.IssuedApproval:
    """MFA-4: the sign-in's request to the user's approval app, for the challenge its password
    step opened. Not an attempt either: the answer comes from the phone."""
    challenge = await _live_challenge(services, challenge_id)
    if not await authz.may_sign_in_web(challenge.user_id):
        raise DomainError(ErrorCode.ACCOUNT_BLOCKED, BLOCKED_MESSAGE)
    return await push_approvals.request_approval(services, meta, challenge)


def _user_subject(user_id: int) -> str:
    return f"user:{user_id}"


def _failure_reason(code: str, method: SecondFactorMethod) -> str:
    if method is SecondFactorMethod.TOTP:
        well_formed = totp.is_well_formed(code)
    elif method is SecondFactorMethod.SMS:
        well_formed = sms_factor.is_well_formed(code)
    else:
        well_formed = two_factor.normalise_backup_code(code) is not None
    return "wrong" if well_formed else "malformed"


async def _live_challenge(services: Services, challenge_id: str) -> SignInChallenge:
    if not challenge_id or len(challenge_id) > 256:
        raise DomainError(ErrorCode.CHALLENGE_EXPIRED, CHALLENGE_EXPIRED_MESSAGE, "challengeId")
    challenge = await SignInChallenge.get_or_none(
        token_hash=services.keyring.token_digest(challenge_id, accounts.CHALLENGE_PURPOSE)
    )
    if (
        challenge is None
        or challenge.completed_at is not None
        or challenge.expires_at <= services.clock.now()
    ):
        raise DomainError(ErrorCode.CHALLENGE_EXPIRED, CHALLENGE_EXPIRED_MESSAGE, "challengeId")
    return challenge


async def _count_attempt(
    services: Services,
    meta: RequestMeta,
    challenge: SignInChallenge,
    method: SecondFactorMethod,
) -> None:
    await SignInChallenge.filter(id=challenge.id).update(attempts=F("attempts") + 1)
    for rule, subject in (
        (ATTEMPTS_PER_CHALLENGE, f"challenge:{challenge.id}"),
        (ATTEMPTS_PER_USER, _user_subject(challenge.user_id)),
    ):
        attempt = await ratelimits.consume(services, rule, subject)
        if not attempt.allowed:
            if attempt.exhausts_budget:
                await _failed(services, meta, challenge.user_id, method, f"throttled:{rule.name}")
            raise ratelimits.refusal(services, attempt)


async def _give_back_attempt(services: Services, challenge: SignInChallenge) -> None:
    """Undoes _count_attempt for a call that guessed nothing (a poll while the phone decides)."""
    await SignInChallenge.filter(id=challenge.id).update(attempts=F("attempts") - 1)
    await ratelimits.give_back(services, ATTEMPTS_PER_CHALLENGE, f"challenge:{challenge.id}")
    await ratelimits.give_back(services, ATTEMPTS_PER_USER, _user_subject(challenge.user_id))


async def _failed(
    services: Services, meta: RequestMeta, user_id: int, method: SecondFactorMethod, reason: str
) -> None:
    async with in_transaction():
        await activity.second_factor_failed(
            services, meta, user_id, method=method.value, reason=reason
        )


async def _failed_and_owner_told(
    services: Services,
    meta: RequestMeta,
    user_id: int,
    method: SecondFactorMethod,
    reason: str,
    template: Template,
) -> None:
    """A failure that means someone holds more than the password: recorded, and the owner
    e-mailed in the same transaction, so neither happens without the other."""
    user = await User.get(id=user_id)
    async with in_transaction():
        await activity.second_factor_failed(
            services, meta, user_id, method=method.value, reason=reason
        )
        if user.email:
            await services.mail.enqueue(
                template,
                to=user.email,
                language=user.language,
                context={
                    "occurred_at": services.clock.now(),
                    "ip": meta.ip or "?",
                    "link": f"{services.settings.public_url}/console/#/security",
                },
                timezone=user.timezone,
            )


async def send_sign_in_code(
    services: Services, meta: RequestMeta, *, challenge_id: str
) -> sms_factor.SentCode:
    """MFA-3: a code by SMS for this sign-in, to the user's confirmed phone. The same answer for
    an unknown, expired or finished challenge as completing it gets."""
    challenge = await _live_challenge(services, challenge_id)
    if not await authz.may_sign_in_web(challenge.user_id):
        raise DomainError(ErrorCode.ACCOUNT_BLOCKED, BLOCKED_MESSAGE)
    return await sms_factor.send_sign_in_code(services, challenge)
