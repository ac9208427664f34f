"""'Secure my account' (ACT-5): end every other way in, then guide the user through the rest."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tortoise.transactions import in_transaction

from gardien.models.mfa import AppPassword
from gardien.models.recovery import RecoveryRequest
from gardien.models.sessions import ApiToken
from gardien.models.users import EmailChange, User
from gardien.resolvers import activity, authz, sessions, two_factor
from gardien.resolvers.authz import Actor
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services


class SecureAccountStep(StrEnum):
    """What is left for the user to do; the gateway cannot do these for them."""

    CHANGE_PASSWORD = "CHANGE_PASSWORD"
    ENABLE_TWO_FACTOR = "ENABLE_TWO_FACTOR"
    # Mailboxes hosted here have passwords of their own, which a thief may also have read.
    CHANGE_MAIL_PASSWORDS = "CHANGE_MAIL_PASSWORDS"


@dataclass(frozen=True)
class SecureAccountResult:
    sessions_revoked: int
    app_passwords_revoked: int
    tokens_revoked: int
    service_accounts_revoked: int
    steps: list[SecureAccountStep]


async def secure_account(
    services: Services, meta: RequestMeta, actor: Actor
) -> SecureAccountResult:
    """ACT-5 (and BLK-4's procedure): in one transaction, revoke every session but the caller's
    own, every app password, every personal access token, every service account the user
    created, every remembered-device cookie (the credential generation moves), every pending
    login e-mail change and password reset, and record it. The password is not changed here:
    the user chooses the new one.

    Service accounts go too: whoever held a session could have minted one, and it would keep
    acting with the user's rights in that organisation. Each revocation is recorded in its
    organisation, so its other managers see why their integration stopped."""
    authz.require(
        actor.session is not None, DomainError(ErrorCode.UNAUTHENTICATED, "Sign in first.")
    )
    authz.require(
        authz.can_secure_account(actor), authz.forbidden(authz.SECURE_ACCOUNT_FROM_WEB_ONLY)
    )
    assert actor.user is not None
    assert actor.session is not None
    user_id = actor.user.id
    async with in_transaction():
        # The row lock orders this against a concurrent sign-in's cookie for the same user.
        await User.select_for_update().filter(id=user_id).first()
        revoked_sessions = await sessions.revoke_other_sessions(services, user_id, actor.session.id)
        revoked_passwords = await AppPassword.filter(user_id=user_id, revoked_at=None).update(
            revoked_at=services.clock.now()
        )
        revoked_tokens = await ApiToken.filter(owner_id=user_id, revoked_at=None).update(
            revoked_at=services.clock.now()
        )
        service_accounts = await ApiToken.filter(
            owner_id=None, created_by_id=user_id, revoked_at=None
        ).select_for_update()
        for account in service_accounts:
            account.revoked_at = services.clock.now()
            await account.save(update_fields=["revoked_at"])
            await activity.service_account_revoked(
                services,
                meta,
                user_id=user_id,
                organisation_id=account.organisation_id,
                token_id=account.id,
                name=account.name,
            )
        # Ways in still on their way: whoever held a session may have asked to move the login
        # e-mail to an address of theirs (PRO-5), or started a password reset (REC-1).
        await EmailChange.filter(user_id=user_id, confirmed_at=None).delete()
        await RecoveryRequest.filter(user_id=user_id, used_at=None).update(
            used_at=services.clock.now()
        )
        await activity.account_secured(
            services,
            meta,
            user_id,
            sessions_revoked=revoked_sessions,
            app_passwords_revoked=revoked_passwords,
            tokens_revoked=revoked_tokens,
            service_accounts_revoked=len(service_accounts),
        )
    steps = [SecureAccountStep.CHANGE_PASSWORD]
    if not await two_factor.confirmed_kinds(user_id):
        steps.append(SecureAccountStep.ENABLE_TWO_FACTOR)
    steps.append(SecureAccountStep.CHANGE_MAIL_PASSWORDS)
    return SecureAccountResult(
        sessions_revoked=revoked_sessions,
        app_passwords_revoked=revoked_passwords,
        tokens_revoked=revoked_tokens,
        service_accounts_revoked=len(service_accounts),
        steps=steps,
    )
