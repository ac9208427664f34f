"""Attempt limits on guessable inputs (API-4, ASVS V2.2.1): fixed windows kept in the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from tortoise.expressions import F

from gardien.models.ratelimits import RateLimitCounter
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import Services


@dataclass(frozen=True)
class Rule:
    name: str
    limit: int
    window: timedelta


# NIST SP 800-63B 5.2.2: no more than 100 consecutive failures per account; we are stricter.
SIGN_IN_FAILURES_PER_LOGIN = Rule("sign_in_login", 10, timedelta(minutes=15))
SIGN_IN_FAILURES_PER_IP = Rule("sign_in_ip", 50, timedelta(minutes=15))
SIGN_UPS_PER_IP = Rule("sign_up_ip", 10, timedelta(hours=1))


def _key(services: Services, rule: Rule, subject: str) -> str:
    return f"{rule.name}:{services.keyring.token_digest(subject.lower(), 'rate-limit')}"


async def check(services: Services, rule: Rule, subject: str | None) -> None:
    """Refuse when the window's budget is spent; counting is separate (only failures count)."""
    if subject is None:
        return
    counter = await RateLimitCounter.get_or_none(key=_key(services, rule, subject))
    if counter and counter.window_ends_at > services.clock.now() and counter.count >= rule.limit:
        raise DomainError(
            ErrorCode.TOO_MANY_ATTEMPTS,
            "Too many attempts. Wait a few minutes before trying again.",
        )


async def hit(services: Services, rule: Rule, subject: str | None) -> None:
    if subject is None:
        return
    key = _key(services, rule, subject)
    now = services.clock.now()
    # One conditional UPDATE, so concurrent failures cannot both read the old count.
    updated = await RateLimitCounter.filter(key=key, window_ends_at__gt=now).update(
        count=F("count") + 1
    )
    if updated:
        return
    counter, created = await RateLimitCounter.get_or_create(
        key=key, defaults={"count": 1, "window_ends_at": now + rule.window}
    )
    if not created:
        counter.count = 1
        counter.window_ends_at = now + rule.window
        await counter.save(update_fields=["count", "window_ends_at"])


async def reset(services: Services, rule: Rule, subject: str) -> None:
    await RateLimitCounter.filter(key=_key(services, rule, subject)).delete()
