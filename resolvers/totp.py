"""RFC 6238 time-based one-time passwords (MFA-1), computed with pyotp."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pyotp

STEP_SECONDS = 30
DIGITS = 6
# RFC 6238 5.2: one step either side absorbs clock drift and typing time, and no more.
ALLOWED_DRIFT_STEPS = 1


def new_secret() -> str:
    """160 random bits (RFC 4226 4 recommends them), base32 as authenticator apps take them."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account, issuer_name=issuer
    )


def step_at(moment: datetime) -> int:
    return int(moment.timestamp()) // STEP_SECONDS


def code_at_step(
    secret: str,
    step: int,
    *,
    digits: int = DIGITS,
    digest: Callable[..., Any] = hashlib.sha1,
) -> str:
    """The code of one time step (RFC 6238 T), zero-padded to `digits`."""
    return pyotp.TOTP(secret, digits=digits, digest=digest, interval=STEP_SECONDS).generate_otp(
        step
    )


def is_well_formed(code: str) -> bool:
    cleaned = code.replace(" ", "")
    return len(cleaned) == DIGITS and cleaned.isascii() and cleaned.isdigit()


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step (now ±1) whose code this is, or None. Every candidate is compared in
    constant time, and all of them always, so the timing says nothing about which matched."""
    if not is_well_formed(code):
        return None
    cleaned = code.replace(" ", "")
    current = step_at(now)
    matched: int | None = None
    for step in range(current - ALLOWED_DRIFT_STEPS, current + ALLOWED_DRIFT_STEPS + 1):
        if hmac.compare_digest(code_at_step(secret, step).encode(), cleaned.encode()):
            # The latest matching step wins: it is the one that must never count again.
            matched = step
    return matched
