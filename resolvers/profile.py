"""The user's profile: support code (PRO-4); language, contacts and login e-mail come with PRO-*."""

from __future__ import annotations

import secrets

from gardien.resolvers.services import Services

SUPPORT_CODE_DIGITS = 6
SUPPORT_CODE_CONTEXT = "support-code"


def new_support_code(services: Services) -> bytes:
    """PRO-4: a short code the user reads out to support; kept encrypted, never in clear."""
    code = f"{secrets.randbelow(10**SUPPORT_CODE_DIGITS):0{SUPPORT_CODE_DIGITS}d}"
    return services.keyring.encrypt(code.encode(), SUPPORT_CODE_CONTEXT)


def read_support_code(services: Services, encrypted: bytes) -> str:
    return services.keyring.decrypt(encrypted, SUPPORT_CODE_CONTEXT).decode()
