"""The TLD table (DOM-3): each TLD's redemption days and restore fee, set by `gardien tld set`."""

from __future__ import annotations

import re
from decimal import Decimal

from tortoise.transactions import in_transaction

from gardien.models.domains import TldPolicy
from gardien.resolvers.errors import DomainError, ErrorCode

_TLD = re.compile(r"^(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
MAX_REDEMPTION_DAYS = 365


async def tld_policies() -> list[TldPolicy]:
    return await TldPolicy.all().order_by("tld")


async def set_tld_policy(
    tld: str,
    *,
    source: str,
    redemption_days: int | None = None,
    restore_fee: Decimal | None = None,
    currency: str | None = None,
) -> TldPolicy:
    """Create or change one TLD's row; every change says where its values come from."""
    tld = tld.strip().lower().removeprefix(".")
    if not _TLD.match(tld):
        raise DomainError(ErrorCode.INVALID_INPUT, f"{tld!r} is not a TLD.", "tld")
    if not source.strip():
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "Say where the values come from (registry rule, price list, or unconfirmed).",
            "source",
        )
    if redemption_days is not None and not 0 <= redemption_days <= MAX_REDEMPTION_DAYS:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"Redemption days must be from 0 to {MAX_REDEMPTION_DAYS}.",
            "redemptionDays",
        )
    if restore_fee is not None and (
        not restore_fee.is_finite()
        or restore_fee < 0
        or restore_fee != restore_fee.quantize(Decimal("0.01"))
        or restore_fee >= Decimal("100000000")
    ):
        raise DomainError(
            ErrorCode.INVALID_INPUT, "The restore fee is an amount such as 120.00.", "restoreFee"
        )
    if currency is not None and not _CURRENCY.match(currency):
        raise DomainError(
            ErrorCode.INVALID_INPUT, "The currency is an ISO 4217 code such as CHF.", "currency"
        )
    async with in_transaction():
        policy = await TldPolicy.filter(tld=tld).select_for_update().first()
        if policy is None:
            if redemption_days is None or restore_fee is None or currency is None:
                raise DomainError(
                    ErrorCode.INVALID_INPUT,
                    "A new TLD needs its redemption days, restore fee and currency.",
                    "tld",
                )
            return await TldPolicy.create(
                tld=tld,
                redemption_days=redemption_days,
                restore_fee=restore_fee,
                currency=currency,
                source=source.strip(),
            )
        if redemption_days is not None:
            policy.redemption_days = redemption_days
        if restore_fee is not None:
            policy.restore_fee = restore_fee
        if currency is not None:
            policy.currency = currency
        policy.source = source.strip()
        await policy.save()
    return policy
