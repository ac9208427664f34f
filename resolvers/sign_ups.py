"""Sign-up confirmed by e-mail, with one answer whether or not the address is taken (ORG-1)."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from gardien.mail.templates import Template
from gardien.models.users import PendingSignUp, User
from gardien.resolvers import accounts, activity, ratelimits
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.security import hash_password, new_token

TOKEN_PURPOSE = "sign-up"
# Each sign-up sends an e-mail to the address typed in, taken or not: a few per hour per address
# are plenty for "I did not get it", and keep the form from being used to flood someone's inbox.
SIGN_UPS_PER_ADDRESS = ratelimits.Rule("sign_up_address", 3, timedelta(hours=1))
# Tokens carry 256 random bits; anything longer than this is not one of ours.
MAX_TOKEN_LENGTH = 256


def lifetime(services: Services) -> timedelta:
    return timedelta(hours=services.settings.sign_up_lifetime_hours)


def confirm_link(services: Services, token: str) -> str:
    return f"{services.settings.public_url}/console/#/sign-up/confirm?token={quote(token)}"


def sign_in_link(services: Services) -> str:
    return f"{services.settings.public_url}/console/#/sign-in"


def password_reset_link(services: Services) -> str:
    return f"{services.settings.public_url}/console/#/password-reset"


async def request_sign_up(
    services: Services,
    meta: RequestMeta,
    *,
    email: str,
    password: str,
    display_name: str,
    language: str | None = None,
) -> None:
    """ORG-1: "check your mailbox", whether the address is free or already has an account.

    Both cases do the same work (input checks, both budgets, one argon2id hash, one row and one
    e-mail in one transaction) and return nothing, so neither the answer nor its timing tells
    whether an account exists. Only the mailbox's owner learns which it was.
    """
    cleaned_email = accounts.normalise_email(email)
    name = accounts.validate_display_name(display_name)
    lang = accounts.validate_language(language)
    accounts.check_password_policy(
        password, context=(cleaned_email, cleaned_email.split("@")[0], name)
    )
    await ratelimits.require_allowed(
        services, ratelimits.SIGN_UPS_PER_IP, ratelimits.ip_subject(meta.ip)
    )
    await ratelimits.require_allowed(services, SIGN_UPS_PER_ADDRESS, cleaned_email)
    # Hashed for a taken address too, then dropped: the hash is the slow part of the request.
    password_hash = await hash_password(password)
    existing = await User.get_or_none(email=cleaned_email)
    now = services.clock.now()
    async with in_transaction():
        if existing is not None:
            await activity.sign_up_attempted_for_taken_address(services, meta, existing.id)
            await services.mail.enqueue(
                Template.SIGN_UP_ADDRESS_TAKEN,
                to=cleaned_email,
                # The note is for the account's owner: in their language and time zone.
                language=existing.language,
                timezone=existing.timezone,
                context={
                    "sign_in_link": sign_in_link(services),
                    "password_reset_link": password_reset_link(services),
                },
            )
            return
        token = new_token()
        pending = await PendingSignUp.create(
            email=cleaned_email,
            password_hash=password_hash,
            display_name=name,
            language=lang,
            token_hash=services.keyring.token_digest(token, TOKEN_PURPOSE),
            expires_at=now + lifetime(services),
            created_at=now,
        )
        await services.mail.enqueue(
            Template.SIGN_UP_CONFIRMATION,
            to=cleaned_email,
            language=lang,
            context={
                "link": confirm_link(services, token),
                # The same token, to paste where following a link is not possible.
                "code": token,
                "expires_at": pending.expires_at,
            },
        )


async def confirm_sign_up(
    services: Services, meta: RequestMeta, *, token: str
) -> accounts.SignUpResult:
    """ORG-1: the account, its own organisation and a session, in one transaction; single use.

    Unknown, forged and already used tokens get one answer (SIGN_UP_TOKEN_INVALID); an expired
    one its own (SIGN_UP_TOKEN_EXPIRED), which only the holder of a real token can see.
    """
    pending = await _pending_by_token(services, token)
    now = services.clock.now()
    try:
        async with in_transaction():
            # Single use: one conditional DELETE wins under concurrency, the others find no
            # row. Nothing of the sign-up is kept once the account holds it.
            claimed = await PendingSignUp.filter(id=pending.id, expires_at__gt=now).delete()
            if claimed != 1:
                raise _invalid()
            return await accounts.open_account(
                services,
                meta,
                email=pending.email,
                password_hash=pending.password_hash,
                display_name=pending.display_name,
                language=pending.language,
            )
    except IntegrityError:
        # The address got an account after this sign-up was asked for (another sign-up confirmed
        # first, or an invitation accepted): the unique login e-mail refuses a second one. Only
        # the mailbox's owner holds this token, so saying so reveals nothing to anyone else.
        raise DomainError(
            ErrorCode.EMAIL_UNAVAILABLE,
            "An account with this address exists already; sign in instead.",
            "token",
        ) from None


async def purge_expired(services: Services) -> int:
    """Forget sign-ups never confirmed in time, their password hash with them."""
    return await PendingSignUp.filter(expires_at__lte=services.clock.now()).delete()


async def _pending_by_token(services: Services, token: str) -> PendingSignUp:
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise _invalid()
    # Looked up by its keyed digest: equality on a digest leaks nothing about the token.
    pending = await PendingSignUp.get_or_none(
        token_hash=services.keyring.token_digest(token, TOKEN_PURPOSE)
    )
    if pending is None:
        raise _invalid()
    if pending.expires_at <= services.clock.now():
        raise DomainError(
            ErrorCode.SIGN_UP_TOKEN_EXPIRED,
            "This confirmation link has expired; sign up again.",
            "token",
        )
    return pending


def _invalid() -> DomainError:
    return DomainError(
        ErrorCode.SIGN_UP_TOKEN_INVALID,
        "This confirmation link is not valid or was used already.",
        "token",
    )
