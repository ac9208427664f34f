"""Forgot password (REC-1): a request, a code to a chosen option, a new password.

Nothing here tells whether a login has an account. A login that matches none gets a request
row of its own (without a user) and decoy options derived from the login with the secret key;
sending a code to a decoy stores the code's digest as for a real option and sends nothing, and
no code ever resets a decoy. Both paths run the same statements in the same order.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from tortoise.transactions import in_transaction

from gardien.mail.templates import Template
from gardien.mail.templates import render as render_mail
from gardien.models.enums import RecoveryChannel, RecoveryKind
from gardien.models.mfa import AppPassword
from gardien.models.recovery import IdentityVerificationCase, RecoveryRequest
from gardien.models.sessions import ApiToken
from gardien.models.users import EmailChange, User
from gardien.resolvers import accounts, activity, ratelimits, sessions, sign_ups
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.recovery_options import (
    RecoveryOption,
    account_destinations,
    decoy_destinations,
    masked_options,
    option_id,
)
from gardien.resolvers.services import RequestMeta, Services
from gardien.resolvers.text import is_plain_text
from gardien.security import hash_password, new_token
from gardien.sms.templates import SmsTemplate
from gardien.sms.templates import render as render_sms

REQUEST_PURPOSE = "recovery-request"
CODE_PURPOSE = "recovery-code"
LOGIN_PURPOSE = "recovery-login"
# The whole request may take a while (the code can be sent again); each code lives 30 minutes.
REQUEST_LIFETIME = timedelta(hours=2)
CODE_LIFETIME = timedelta(minutes=30)
CODE_DIGITS = 8
MAX_LOGIN_LENGTH = 254
MAX_TOKEN_LENGTH = 256
MAX_CODE_LENGTH = 32

# Requests cost an insert and answer with options: a person needs a few, a scraper many.
RESET_REQUESTS_PER_IP = ratelimits.Rule("recovery_request_ip", 30, timedelta(hours=1))
RESET_REQUESTS_PER_LOGIN = ratelimits.Rule("recovery_request_login", 5, timedelta(hours=1))
# Each send reaches someone's mailbox or phone: few per request and per account, so the form
# cannot be used to flood them (and an SMS costs money).
CODES_SENT_PER_RECOVERY = ratelimits.Rule("recovery_send_recovery", 3, timedelta(hours=1))
CODES_SENT_PER_ACCOUNT = ratelimits.Rule("recovery_send_account", 5, timedelta(hours=1))
CODES_SENT_PER_IP = ratelimits.Rule("recovery_send_ip", 20, timedelta(hours=1))
# An 8-digit code is one in 10^8: five tries per request and ten per account an hour keep a
# guesser's odds negligible over the code's life.
CODE_ATTEMPTS_PER_RECOVERY = ratelimits.Rule("recovery_code_recovery", 5, timedelta(hours=1))
CODE_ATTEMPTS_PER_ACCOUNT = ratelimits.Rule("recovery_code_account", 10, timedelta(hours=1))
CODE_ATTEMPTS_PER_IP = ratelimits.Rule("recovery_code_ip", 50, timedelta(hours=1))


@dataclass(frozen=True)
class PasswordResetRequest:
    recovery_id: str
    options: list[RecoveryOption]


@dataclass(frozen=True)
class CredentialsReset:
    sessions_revoked: int
    app_passwords_revoked: int
    tokens_revoked: int


def _login_key(login: str) -> str:
    cleaned = login.strip().lower()
    if not cleaned or len(cleaned) > MAX_LOGIN_LENGTH or not is_plain_text(cleaned):
        raise DomainError(
            ErrorCode.INVALID_INPUT, "Enter your login e-mail or your username.", "login"
        )
    return cleaned


def _request_digest(services: Services, recovery_id: str) -> str:
    return services.keyring.token_digest(recovery_id, REQUEST_PURPOSE)


def _code_digest(services: Services, request_id: int, code: str) -> str:
    # Bound to the request: a code sent for one account never opens another's request.
    return services.keyring.token_digest(f"{request_id}\x00{code}", CODE_PURPOSE)


def _account_key(request: RecoveryRequest) -> str:
    """Whose per-account budget: the account's, or for a decoy the login's (kept as a digest)."""
    if request.user_id is not None:
        return f"user:{request.user_id}"
    return f"login:{request.login_digest}"


def _offered(request: RecoveryRequest) -> list[RecoveryChannel]:
    return [RecoveryChannel(value) for value in request.channels.split(",") if value]


async def request_password_reset(
    services: Services, meta: RequestMeta, *, login: str
) -> PasswordResetRequest:
    """REC-1: the options to receive a code, masked; decoys when the login matches no account.

    The known and the unknown login run the same statements: the lookup, both budgets, one
    request row, one activity record. The decoys are derived even for a known login, so the
    keyed work is the same too.
    """
    login_key = _login_key(login)
    await ratelimits.require_allowed(
        services, RESET_REQUESTS_PER_IP, ratelimits.ip_subject(meta.ip)
    )
    await ratelimits.require_allowed(services, RESET_REQUESTS_PER_LOGIN, login_key)
    user = await accounts.find_by_login(login_key)
    decoys = decoy_destinations(services.keyring, login_key)
    destinations = account_destinations(user) if user is not None else decoys
    recovery_id = new_token()
    options = masked_options(services.keyring, recovery_id, destinations)
    now = services.clock.now()
    async with in_transaction():
        await RecoveryRequest.create(
            user_id=user.id if user is not None else None,
            kind=RecoveryKind.PASSWORD_RESET,
            token_hash=_request_digest(services, recovery_id),
            login_digest=services.keyring.token_digest(login_key, LOGIN_PURPOSE),
            channels=",".join(option.channel.value for option in options),
            ip=meta.ip,
            created_at=now,
            expires_at=now + REQUEST_LIFETIME,
        )
        await activity.password_reset_requested(
            services, meta, user_id=user.id if user is not None else None, login=login_key
        )
    return PasswordResetRequest(recovery_id=recovery_id, options=options)


async def _open_request(services: Services, recovery_id: str) -> RecoveryRequest | None:
    if not recovery_id or len(recovery_id) > MAX_TOKEN_LENGTH:
        return None
    request = await RecoveryRequest.get_or_none(
        token_hash=_request_digest(services, recovery_id), kind=RecoveryKind.PASSWORD_RESET
    )
    if request is None or request.used_at is not None:
        return None
    if request.expires_at <= services.clock.now():
        return None
    return request


def _request_invalid() -> DomainError:
    return DomainError(
        ErrorCode.RECOVERY_REQUEST_INVALID,
        "This recovery request has expired or was used already; start again.",
        "recoveryId",
    )


async def send_recovery_code(
    services: Services, meta: RequestMeta, *, recovery_id: str, chosen_option: str
) -> None:
    """REC-1: a new code to the chosen option (any earlier code of the request stops working).

    A decoy's option gets a code too, whose digest is stored like a real one; it goes nowhere.
    """
    await ratelimits.require_allowed(services, CODES_SENT_PER_IP, ratelimits.ip_subject(meta.ip))
    await ratelimits.require_allowed(
        services, CODES_SENT_PER_RECOVERY, _request_digest(services, recovery_id[:MAX_TOKEN_LENGTH])
    )
    request = await _open_request(services, recovery_id)
    if request is None:
        raise _request_invalid()
    await ratelimits.require_allowed(services, CODES_SENT_PER_ACCOUNT, _account_key(request))
    chosen = [
        channel
        for channel in _offered(request)
        if hmac.compare_digest(
            option_id(services.keyring, recovery_id, channel).encode(),
            chosen_option[:64].encode(),
        )
    ]
    if not chosen:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "Choose one of the options of this request.", "optionId"
        )
    channel = chosen[0]
    # Read for a decoy too (it matches nothing): the same statements either way.
    user = await User.filter(id=request.user_id).first()
    destination = account_destinations(user).get(channel) if user is not None else None
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    now = services.clock.now()
    async with in_transaction():
        await RecoveryRequest.filter(id=request.id).update(
            code_hash=_code_digest(services, request.id, code),
            code_expires_at=now + CODE_LIFETIME,
            channel=channel,
        )
        if user is not None and destination is not None:
            await _deliver_code(services, user, channel, destination, code)
        else:
            _render_code(services, channel, code)
        await activity.recovery_code_sent(
            services, meta, user_id=user.id if user is not None else None, channel=channel.value
        )


def _code_context(services: Services, channel: RecoveryChannel, code: str) -> dict[str, object]:
    if channel is RecoveryChannel.SMS:
        return {"code": code, "minutes": int(CODE_LIFETIME.total_seconds() // 60)}
    return {"code": code, "expires_at": services.clock.now() + CODE_LIFETIME}


def _render_code(services: Services, channel: RecoveryChannel, code: str) -> None:
    """A decoy's message is written and dropped: only the outbox row a real send adds is
    missing from the decoy's work, not the rendering."""
    context = _code_context(services, channel, code)
    if channel is RecoveryChannel.SMS:
        render_sms(SmsTemplate.RECOVERY_CODE, None, context)
    else:
        render_mail(Template.RECOVERY_CODE, None, context)


async def _deliver_code(
    services: Services, user: User, channel: RecoveryChannel, destination: str, code: str
) -> None:
    if channel is RecoveryChannel.SMS:
        await services.sms.enqueue(
            SmsTemplate.RECOVERY_CODE,
            to=destination,
            language=user.language,
            context=_code_context(services, channel, code),
        )
        return
    await services.mail.enqueue(
        Template.RECOVERY_CODE,
        to=destination,
        language=user.language,
        timezone=user.timezone,
        context=_code_context(services, channel, code),
    )


def _code_invalid() -> DomainError:
    return DomainError(
        ErrorCode.RECOVERY_CODE_INVALID, "This code is not valid or was used already.", "code"
    )


async def reset_password(
    services: Services, meta: RequestMeta, *, recovery_id: str, code: str, new_password: str
) -> None:
    """REC-1: the code proves the option's owner asks; the password is set and every way into
    the account ends. Every attempt is counted before the code is compared."""
    await ratelimits.require_allowed(services, CODE_ATTEMPTS_PER_IP, ratelimits.ip_subject(meta.ip))
    await ratelimits.require_allowed(
        services,
        CODE_ATTEMPTS_PER_RECOVERY,
        _request_digest(services, recovery_id[:MAX_TOKEN_LENGTH]),
    )
    request = await _open_request(services, recovery_id)
    if request is None:
        raise _code_invalid()
    await ratelimits.require_allowed(services, CODE_ATTEMPTS_PER_ACCOUNT, _account_key(request))
    given = "".join(code.split())[:MAX_CODE_LENGTH]
    matches = request.code_hash is not None and hmac.compare_digest(
        request.code_hash.encode(), _code_digest(services, request.id, given).encode()
    )
    if not matches or request.user_id is None:
        async with in_transaction():
            await activity.recovery_code_rejected(services, meta, user_id=request.user_id)
        raise _code_invalid()
    now = services.clock.now()
    if request.code_expires_at is None or request.code_expires_at <= now:
        raise DomainError(
            ErrorCode.RECOVERY_CODE_EXPIRED, "This code has expired; ask for a new one.", "code"
        )
    user = await User.get(id=request.user_id)
    password_hash = await checked_password_hash(user, new_password)
    async with in_transaction():
        # The user's row first, as every credential change takes it (reset_credentials, "secure
        # my account", a block), before the rows they also change: two such changes then wait
        # for each other instead of deadlocking.
        await User.select_for_update().filter(id=user.id).first()
        # Single use: one conditional update wins under concurrency.
        claimed = await RecoveryRequest.filter(
            id=request.id, used_at=None, code_hash=request.code_hash
        ).update(used_at=now)
        if claimed != 1:
            raise _code_invalid()
        await reset_credentials(services, meta, user, password_hash, via="code")


async def checked_password_hash(user: User, new_password: str) -> str:
    """The new password under the rules signUp applies, hashed with argon2id."""
    context = tuple(
        word for word in (user.email, (user.email or "").split("@")[0], user.display_name) if word
    )
    try:
        accounts.check_password_policy(new_password, context=context)
    except DomainError as error:
        raise DomainError(error.code, error.message, "newPassword") from None
    return await hash_password(new_password)


async def reset_credentials(
    services: Services, meta: RequestMeta, user: User, password_hash: str, *, via: str
) -> CredentialsReset:
    """The new password, and every other way in ends, in the caller's transaction (which takes
    the user's row first, before any other row it changes: see reset_password): sessions,
    app passwords, personal access tokens, service accounts the user made, device cookies (the
    credential generation moves, as "secure my account" does), other recovery requests, and the
    changes still on their way: a pending login e-mail change and an approved identity
    verification link, which whoever knew the password, or talked to support, may hold."""
    now = services.clock.now()
    await User.select_for_update().filter(id=user.id).first()
    await User.filter(id=user.id).update(
        password_hash=password_hash,
        password_changed_at=now,
    )
    await RecoveryRequest.filter(user_id=user.id, used_at=None).update(used_at=now)
    # A login e-mail change asked before the reset may be the intruder's, to an address of theirs:
    # confirmed later, it would hand them the account again (PRO-5).
    await EmailChange.filter(user_id=user.id, confirmed_at=None).delete()
    # The link being used for this reset, if any, is claimed already (reset_used_at).
    await IdentityVerificationCase.filter(
        user_id=user.id, reset_used_at=None, reset_expires_at__gt=now
    ).update(reset_expires_at=now)
    revoked_sessions = await sessions.revoke_all_sessions(services, user.id)
    revoked_passwords = await AppPassword.filter(user_id=user.id, revoked_at=None).update(
        revoked_at=now
    )
    revoked_tokens = await ApiToken.filter(owner_id=user.id, revoked_at=None).update(revoked_at=now)
    service_accounts = await ApiToken.filter(
        owner_id=None, created_by_id=user.id, revoked_at=None
    ).select_for_update()
    for account in service_accounts:
        account.revoked_at = now
        await account.save(update_fields=["revoked_at"])
        await activity.service_account_revoked(
            services,
            meta,
            user_id=user.id,
            organisation_id=account.organisation_id,
            token_id=account.id,
            name=account.name,
        )
    await activity.password_reset(
        services,
        meta,
        user.id,
        via=via,
        sessions_revoked=revoked_sessions,
        app_passwords_revoked=revoked_passwords,
        tokens_revoked=revoked_tokens + len(service_accounts),
    )
    notify = user.email or user.recovery_email
    if notify is not None:
        await services.mail.enqueue(
            Template.PASSWORD_RESET_DONE,
            to=notify,
            language=user.language,
            timezone=user.timezone,
            context={"reset_at": now, "link": sign_ups.sign_in_link(services)},
        )
    return CredentialsReset(
        sessions_revoked=revoked_sessions,
        app_passwords_revoked=revoked_passwords,
        tokens_revoked=revoked_tokens + len(service_accounts),
    )


async def purge_expired(services: Services) -> int:
    """Forget requests past their lifetime (every login typed in leaves one, decoys included);
    what happened stays in the activity log."""
    return await RecoveryRequest.filter(expires_at__lte=services.clock.now()).delete()
