"""The user's profile: support code (PRO-4); language, contacts and login e-mail come with PRO-*."""

from __future__ import annotations

import secrets

from gardien.resolvers import authz
from gardien.resolvers.authz import Actor, SignedInUser
from gardien.resolvers.services import Services

SUPPORT_CODE_DIGITS = 6
SUPPORT_CODE_CONTEXT = "support-code"


def new_support_code(services: Services) -> bytes:
    """PRO-4: a short code the user reads out to support; kept encrypted, never in clear."""
    code = f"{secrets.randbelow(10**SUPPORT_CODE_DIGITS):0{SUPPORT_CODE_DIGITS}d}"
    return services.keyring.encrypt(code.encode(), SUPPORT_CODE_CONTEXT)


def read_support_code(services: Services, encrypted: bytes) -> str:
    return services.keyring.decrypt(encrypted, SUPPORT_CODE_CONTEXT).decode()


def visible_user(actor: Actor, user_id: int) -> SignedInUser:
    """A user by id answers only to themself: anyone else's account is not found (API-1)."""
    authz.require_user(actor)
    own = authz.private_profile(actor, user_id)
    if own is None:
        raise authz.not_found("user")
    return own
