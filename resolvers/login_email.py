"""The login e-mail: changed only once the new address confirms it (PRO-5), and replaced by a
generated username when the mailbox holding it is deleted here (REC-4)."""

from __future__ import annotations

import secrets
import unicodedata
from datetime import datetime, timedelta
from urllib.parse import quote

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from gardien.mail.templates import Template
from gardien.models.users import EmailChange, User
from gardien.resolvers import accounts, activity, authz, ratelimits, reauthentication, sign_ups
from gardien.resolvers.authz import Actor
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.recovery_contacts import secure_account_link
from gardien.resolvers.services import RequestMeta, Services
from gardien.security import new_token
from gardien.sms.templates import SmsTemplate

TOKEN_PURPOSE = "login-email-change"
CHANGE_LIFETIME = timedelta(hours=24)
# Each request sends an e-mail to an address the requester chooses: a few per hour per account
# cover "I mistyped it" and keep the form from flooding someone's inbox or probing addresses.
CHANGE_REQUESTS_PER_USER = ratelimits.Rule("login_email_change_user", 5, timedelta(hours=1))
# And per address asked for, whoever asks (as for sign-ups): many accounts together must not
# flood one inbox either. Counted alike for a free and a taken address.
CHANGE_REQUESTS_PER_ADDRESS = ratelimits.Rule("login_email_change_address", 3, timedelta(hours=1))
MAX_TOKEN_LENGTH = 256
# REC-4: initials then digits. Six digits give a million names per set of initials; a clash is
# drawn again, and the unique column settles a race.
USERNAME_DIGITS = 6
MAX_INITIALS = 3
USERNAME_DRAWS = 20


def confirm_link(services: Services, token: str) -> str:
    return f"{services.settings.public_url}/console/#/profile/login-email?token={quote(token)}"


async def request_login_email_change(
    services: Services, meta: RequestMeta, actor: Actor, *, new_email: str, current_password: str
) -> datetime:
    """PRO-5: a link and code to the new address, answered with its expiry.

    A taken address gets the same answer, the same work and one e-mail: a note to its owner
    instead of a link, so the answer tells the requester nothing about other accounts. Asking
    again replaces the previous link.
    """
    signed_in = authz.require_profile_owner(actor)
    cleaned = accounts.normalise_email(new_email, "newEmail")
    if cleaned == signed_in.email:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "This is your login e-mail address already.", "newEmail"
        )
    await ratelimits.require_allowed(services, CHANGE_REQUESTS_PER_USER, f"user:{signed_in.id}")
    await ratelimits.require_allowed(services, CHANGE_REQUESTS_PER_ADDRESS, cleaned)
    user = await reauthentication.confirm_current_password(
        services, meta, signed_in.id, current_password, operation="requestLoginEmailChange"
    )
    now = services.clock.now()
    expires_at = now + CHANGE_LIFETIME
    owner = await User.get_or_none(email=cleaned)
    async with in_transaction():
        await EmailChange.filter(user_id=user.id, confirmed_at=None).delete()
        await activity.login_email_change_requested(services, meta, user.id)
        if owner is not None:
            await services.mail.enqueue(
                Template.LOGIN_EMAIL_ADDRESS_TAKEN,
                to=cleaned,
                language=owner.language,
                timezone=owner.timezone,
                context={"sign_in_link": sign_ups.sign_in_link(services)},
            )
            return expires_at
        token = new_token()
        await EmailChange.create(
            user_id=user.id,
            new_email=cleaned,
            token_hash=services.keyring.token_digest(token, TOKEN_PURPOSE),
            expires_at=expires_at,
            created_at=now,
        )
        await services.mail.enqueue(
            Template.LOGIN_EMAIL_CHANGE_CONFIRMATION,
            to=cleaned,
            language=user.language,
            timezone=user.timezone,
            context={
                "link": confirm_link(services, token),
                # The same token, to paste where following a link is not possible.
                "code": token,
                "expires_at": expires_at,
            },
        )
    return expires_at


async def confirm_login_email_change(services: Services, meta: RequestMeta, *, token: str) -> User:
    """PRO-5: the link's holder proves the new mailbox; the token alone says whose change it is,
    so it works from any browser. Single use. The former address is told.

    REC-4: an account in recovery leaves it here; its generated username stops signing in, so
    only the login e-mail remains as the account's identifier (the username travelled by SMS
    and e-mail in clear, and nothing should keep it useful once it is no longer needed).
    """
    change = await _change_by_token(services, token)
    now = services.clock.now()
    try:
        async with in_transaction():
            # Single use: one conditional UPDATE wins under concurrency, the others find no row.
            claimed = await EmailChange.filter(
                id=change.id, confirmed_at=None, expires_at__gt=now
            ).update(confirmed_at=now)
            if claimed != 1:
                raise _invalid()
            user = await User.filter(id=change.user_id).select_for_update().get()
            previous = user.email
            left_recovery = user.must_set_login_email
            user.email = change.new_email
            user.must_set_login_email = False
            user.generated_username = None
            await user.save(update_fields=["email", "must_set_login_email", "generated_username"])
            await EmailChange.filter(user_id=user.id, confirmed_at=None).delete()
            await activity.login_email_changed(
                services,
                meta,
                user.id,
                previous=previous,
                new=change.new_email,
                left_recovery=left_recovery,
            )
            if previous is not None:
                await services.mail.enqueue(
                    Template.ACCOUNT_CONTACT_CHANGED,
                    to=previous,
                    language=user.language,
                    timezone=user.timezone,
                    context={
                        "what": "login_email",
                        "changed_at": now,
                        "link": secure_account_link(services),
                    },
                )
    except IntegrityError:
        # The address got an account after the change was asked for. Only the mailbox's owner
        # holds this token, so saying so reveals nothing to anyone else.
        raise DomainError(
            ErrorCode.EMAIL_UNAVAILABLE,
            "This address belongs to another account now; choose another one.",
            "token",
        ) from None
    return user


async def _change_by_token(services: Services, token: str) -> EmailChange:
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise _invalid()
    # Looked up by its keyed digest: equality on a digest leaks nothing about the token.
    change = await EmailChange.get_or_none(
        token_hash=services.keyring.token_digest(token, TOKEN_PURPOSE)
    )
    if change is None or change.confirmed_at is not None:
        raise _invalid()
    if change.expires_at <= services.clock.now():
        raise DomainError(
            ErrorCode.LOGIN_EMAIL_CHANGE_EXPIRED,
            "This confirmation link has expired; ask for the change again.",
            "token",
        )
    return change


def _invalid() -> DomainError:
    return DomainError(
        ErrorCode.LOGIN_EMAIL_CHANGE_INVALID,
        "This confirmation link is not valid, was replaced by a newer one or was used already.",
        "token",
    )


# --- REC-4: the mailbox holding a login e-mail is deleted --------------------------------------


def initials(display_name: str) -> str:
    """The first letter of each word, in ASCII (accents dropped), at most MAX_INITIALS; "u"
    (user) when the name has no letter to take."""
    letters = []
    for word in display_name.split():
        folded = unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode().lower()
        first = next((c for c in folded if "a" <= c <= "z"), None)
        if first is not None:
            letters.append(first)
    return "".join(letters[:MAX_INITIALS]) or "u"


async def _new_username(display_name: str) -> str:
    prefix = initials(display_name)
    for _ in range(USERNAME_DRAWS):
        candidate = f"{prefix}{secrets.randbelow(10**USERNAME_DIGITS):0{USERNAME_DIGITS}d}"
        if not await User.exists(generated_username=candidate):
            return candidate
    # Twenty clashes in a row means these initials are nearly exhausted: widen the digits.
    return f"{prefix}{secrets.randbelow(10 ** (USERNAME_DIGITS + 4)):0{USERNAME_DIGITS + 4}d}"


async def _claim_username(user: User) -> str:
    """Gives the account a fresh generated username as its login. Two accounts drawing the same
    name at the same instant both find it free; the unique column refuses the second, whose
    savepoint alone rolls back before it draws again, instead of failing the mailbox deletion."""
    for _ in range(USERNAME_DRAWS):
        username = await _new_username(user.display_name)
        try:
            async with in_transaction():
                await User.filter(id=user.id).update(
                    email=None, generated_username=username, must_set_login_email=True
                )
        except IntegrityError:
            continue
        user.email, user.generated_username, user.must_set_login_email = None, username, True
        return username
    raise RuntimeError("no free generated username after repeated draws")


async def login_email_deleted(
    services: Services, meta: RequestMeta, *, actor_id: int, address: str
) -> User | None:
    """REC-4, in the caller's transaction (the mailbox deletion): the account whose login e-mail
    this was loses it and gets a generated username, sent by SMS to its recovery phone and by
    e-mail to its recovery address. The old address no longer signs in; the username with the
    unchanged password does, and then the operation gate (authz.check_login_email_recovery)
    lets the account do nothing but set a new login e-mail. None when no account used it."""
    user = await User.filter(email=address).select_for_update().first()
    if user is None:
        return None
    username = await _claim_username(user)
    # A pending change confirmed later would still be the user's own, proved from its mailbox:
    # it is kept, and confirming it ends the recovery.
    if user.recovery_phone is not None:
        await services.sms.enqueue(
            SmsTemplate.LOGIN_USERNAME_ISSUED,
            to=user.recovery_phone,
            language=user.language,
            context={"username": username},
        )
    if user.recovery_email is not None:
        await services.mail.enqueue(
            Template.LOGIN_USERNAME_ISSUED,
            to=user.recovery_email,
            language=user.language,
            timezone=user.timezone,
            context={
                "username": username,
                "address": address,
                "link": sign_ups.sign_in_link(services),
            },
        )
    await activity.login_email_deleted(
        services,
        meta,
        actor_id=actor_id,
        user_id=user.id,
        address=address,
        told_by_sms=user.recovery_phone is not None,
        told_by_email=user.recovery_email is not None,
    )
    return user
