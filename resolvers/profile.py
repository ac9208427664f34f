"""The user's private profile and the support code (PRO-4); its details: profile_details.py."""

from __future__ import annotations

import secrets

from tortoise.transactions import in_transaction

from gardien.models.users import User
from gardien.resolvers import activity, authz
from gardien.resolvers.authz import Actor, SignedInUser
from gardien.resolvers.services import RequestMeta, Services

SUPPORT_CODE_DIGITS = 6
SUPPORT_CODE_CONTEXT = "support-code"


async def regenerate_support_code(services: Services, meta: RequestMeta, actor: Actor) -> str:
    """PRO-4: a new code replaces the old one at once; the user reads it from their profile."""
    user = authz.require_profile_owner(actor)
    encrypted = new_support_code(services)
    async with in_transaction():
        await User.filter(id=user.id).update(support_code_encrypted=encrypted)
        await activity.support_code_regenerated(services, meta, user.id)
    return read_support_code(services, encrypted)


def new_support_code(services: Services) -> bytes:
    """PRO-4: a short code the user reads out to support; kept encrypted, never in clear."""
    code = f"{secrets.randbelow(10**SUPPORT_CODE_DIGITS):0{SUPPORT_CODE_DIGITS}d}"
    return services.keyring.encrypt(code.encode(), SUPPORT_CODE_CONTEXT)


def read_support_code(services: Services, encrypted: bytes) -> str:
    return services.keyring.decrypt(encrypted, SUPPORT_CODE_CONTEXT).decode()


def own_profile(actor: Actor, user_id: int) -> SignedInUser | None:
    """The user's full record (recovery contacts, support code) for the user alone; None when
    user_id is anyone else: fellow members see only the public part of a profile."""
    return authz.private_profile(actor, user_id)


def own_support_code(services: Services, actor: Actor, user_id: int) -> str | None:
    """PRO-4: the support code, read by the user alone from a web session; None for anyone
    else, from an app session, or when unset."""
    own = authz.private_profile(actor, user_id)
    if (
        own is None
        or not authz.can_read_support_code(actor, user_id)
        or own.support_code_encrypted is None
    ):
        return None
    return read_support_code(services, own.support_code_encrypted)


def visible_user(actor: Actor, user_id: int) -> SignedInUser:
    """A user by id answers only to themself: anyone else's account is not found (API-1)."""
    authz.require_user(actor)
    own = authz.private_profile(actor, user_id)
    if own is None:
        raise authz.not_found("user")
    return own
