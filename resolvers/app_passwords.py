"""App passwords for sync tools (MFA-6): shown once, stored as keyed digests, app sessions only."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from datetime import timedelta

from tortoise.transactions import in_transaction

from gardien.models.enums import SessionKind
from gardien.models.mfa import AppPassword
from gardien.models.sessions import Session
from gardien.models.users import User
from gardien.resolvers import accounts, activity, authz, events, ratelimits, sessions, two_factor
from gardien.resolvers.authz import Actor
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.resolvers.text import cleaned_label

PURPOSE = "app-password"
# 16 lowercase letters, shown in groups of four: about 75 bits, typed once into a mail client.
_LETTERS = string.ascii_lowercase
_LENGTH = 16
MAX_ACTIVE = 50
APP_SIGN_IN_ATTEMPTS_PER_LOGIN = ratelimits.Rule("app_sign_in_login", 10, timedelta(minutes=15))
APP_SIGN_IN_ATTEMPTS_PER_IP = ratelimits.Rule("app_sign_in_ip", 100, timedelta(minutes=15))
INVALID_MESSAGE = "The login or app password is incorrect."


@dataclass(frozen=True)
class CreatedAppPassword:
    app_password: AppPassword
    secret: str  # shown once, never stored


def _normalise(secret: str) -> str:
    return "".join(c for c in secret.lower() if c not in " -")


def _digest(services: Services, secret: str) -> str:
    return services.keyring.token_digest(_normalise(secret), PURPOSE)


async def create(
    services: Services, meta: RequestMeta, actor: Actor, *, label: str
) -> CreatedAppPassword:
    """MFA-6: only once 2FA is on (a password alone must not mint credentials that skip it)."""
    signed_in = authz.require_second_factor_manager(actor)
    name = cleaned_label(label)
    if not await two_factor.has_second_factor(signed_in.id):
        raise DomainError(
            ErrorCode.TWO_FACTOR_NOT_ENABLED,
            "Turn on two-factor authentication before creating app passwords.",
        )
    raw = "".join(secrets.choice(_LETTERS) for _ in range(_LENGTH))
    secret = " ".join(raw[i : i + 4] for i in range(0, _LENGTH, 4))
    async with in_transaction():
        # The user's row lock serialises concurrent creations, so the cap holds under a race.
        await User.filter(id=signed_in.id).select_for_update().get()
        if await AppPassword.filter(user_id=signed_in.id, revoked_at=None).count() >= MAX_ACTIVE:
            raise DomainError(
                ErrorCode.INVALID_INPUT,
                f"At most {MAX_ACTIVE} app passwords: revoke one you no longer use.",
                "label",
            )
        app_password = await AppPassword.create(
            user_id=signed_in.id,
            label=name,
            password_hash=_digest(services, raw),
            created_at=services.clock.now(),
        )
        await activity.app_password_created(
            services, meta, signed_in.id, app_password_id=app_password.id, label=name
        )
    return CreatedAppPassword(app_password=app_password, secret=secret)


async def own_app_passwords(actor: Actor, user_id: int) -> list[AppPassword]:
    """The user's active app passwords with their last use; nobody else's."""
    if not authz.can_view_private_profile(actor, user_id):
        return []
    return await AppPassword.filter(user_id=user_id, revoked_at=None).order_by("id")


async def own_app_password(actor: Actor, app_password_id: int) -> AppPassword:
    authz.require_user(actor)
    found = await AppPassword.get_or_none(id=app_password_id, revoked_at=None)
    authz.require(
        found is not None and authz.can_view_private_profile(actor, found.user_id),
        authz.not_found("app password"),
    )
    assert found is not None
    return found


async def revoke(
    services: Services, meta: RequestMeta, actor: Actor, *, app_password_id: int
) -> None:
    """MFA-6: the password stops working, and so do the app sessions it opened."""
    signed_in = authz.require_second_factor_manager(actor)
    found = await own_app_password(actor, app_password_id)
    now = services.clock.now()
    async with in_transaction():
        revoked = await AppPassword.filter(id=found.id, revoked_at=None).update(revoked_at=now)
        if revoked != 1:
            raise authz.not_found("app password")
        await Session.filter(app_password_id=found.id, revoked_at=None).update(revoked_at=now)
        await activity.app_password_revoked(services, meta, signed_in.id, app_password_id=found.id)
        # EVT-4: the app sessions' open sockets authenticate again once this commits, and end.
        events.access_changed(services, signed_in.id)


async def authenticate_app(
    services: Services, meta: RequestMeta, *, login: str, app_password: str
) -> sessions.IssuedSession:
    """MFA-6: an app session for a sync tool. It is never a web session and is not held to
    POL-4. The same answer for an unknown login and a wrong password; attempts counted first."""
    login_key = login.strip().lower()
    ip_key = ratelimits.ip_subject(meta.ip)
    user = await accounts.find_by_login(login)
    if ip_key is not None:
        await ratelimits.require_allowed(services, APP_SIGN_IN_ATTEMPTS_PER_IP, ip_key)
    per_login = await ratelimits.consume(services, APP_SIGN_IN_ATTEMPTS_PER_LOGIN, login_key)
    if not per_login.allowed:
        raise ratelimits.refusal(services, per_login)
    found = None
    if user is not None:
        found = await AppPassword.get_or_none(
            user_id=user.id,
            password_hash=_digest(services, app_password[:256]),
            revoked_at=None,
        )
    if user is None or found is None or not await authz.may_sign_in_web(user.id):
        async with in_transaction():
            await activity.app_sign_in_failed(
                services, meta, user_id=user.id if user else None, login=login_key
            )
        raise DomainError(ErrorCode.INVALID_CREDENTIALS, INVALID_MESSAGE)
    await ratelimits.give_back(services, APP_SIGN_IN_ATTEMPTS_PER_LOGIN, login_key)
    if ip_key is not None:
        await ratelimits.give_back(services, APP_SIGN_IN_ATTEMPTS_PER_IP, ip_key)
    now = services.clock.now()
    try:
        async with in_transaction():
            await sessions.hold_credentials(user)
            # Unrevoked still: revoked meanwhile (alone, or by a reset), it opens nothing.
            used = await AppPassword.filter(id=found.id, revoked_at=None).update(last_used_at=now)
            if used != 1:
                raise sessions.CredentialsChanged
            issued = await sessions.open_session(
                services,
                user,
                meta,
                persistent=False,
                kind=SessionKind.APP,
                app_password_id=found.id,
            )
            await activity.app_signed_in(services, meta, user.id, app_password_id=found.id)
    except sessions.CredentialsChanged:
        async with in_transaction():
            await activity.app_sign_in_failed(services, meta, user_id=user.id, login=login_key)
        raise DomainError(ErrorCode.INVALID_CREDENTIALS, INVALID_MESSAGE) from None
    return issued
