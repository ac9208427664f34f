"""The TLD table (DOM-3) without GraphQL: every row sourced, `gardien tld set` validated."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from gardien.models.domains import TldPolicy
from gardien.resolvers import tlds
from gardien.resolvers.errors import DomainError, ErrorCode

pytestmark = pytest.mark.usefixtures("database")


async def test_dom3_every_tld_row_says_where_its_values_come_from() -> None:
    policies = {p.tld: p for p in await TldPolicy.all()}

    assert all(p.source and "provider price list" in p.source for p in policies.values())
    assert all("unconfirmed" in policies[t].source for t in ("ch", "li"))
    assert {t: policies[t].redemption_days for t in ("com", "net", "org", "swiss", "de", "eu")} == {
        "com": 30,
        "net": 30,
        "org": 30,
        "swiss": 30,
        "de": 30,
        "eu": 40,
    }
    assert "ICANN" in policies["swiss"].source and "denic.de" in policies["de"].source


@pytest.fixture
async def tld_table_restored(database: str) -> AsyncIterator[None]:
    """The TLD table is reference data kept between tests: put it back as the migrations left it."""
    before = await TldPolicy.all().values()
    yield
    await TldPolicy.exclude(tld__in=[row["tld"] for row in before]).delete()
    for row in before:
        await TldPolicy.filter(tld=row["tld"]).update(
            **{k: v for k, v in row.items() if k != "tld"}
        )


@pytest.mark.usefixtures("tld_table_restored")
async def test_dom3_tld_set_changes_values_and_source_and_refuses_bad_values() -> None:
    changed = await tlds.set_tld_policy(
        ".CH", redemption_days=45, restore_fee=Decimal("130.00"), source="price list 2027"
    )
    created = await tlds.set_tld_policy(
        "it",
        redemption_days=30,
        restore_fee=Decimal("50.00"),
        currency="EUR",
        source="Redemption: unconfirmed. Restore fee: provider price list.",
    )
    refused = []
    for kwargs in (
        {"tld": "ch", "source": " "},
        {"tld": "ch", "source": "x", "redemption_days": 400},
        {"tld": "ch", "source": "x", "restore_fee": Decimal("-1")},
        {"tld": "ch", "source": "x", "restore_fee": Decimal("1.234")},
        {"tld": "ch", "source": "x", "currency": "chf"},
        {"tld": "c h", "source": "x"},
        {"tld": "nl", "source": "x", "redemption_days": 40},
    ):
        with pytest.raises(DomainError) as raised:
            await tlds.set_tld_policy(**kwargs)
        refused.append((raised.value.code, raised.value.field))

    stored = await TldPolicy.get(tld="ch")
    assert (stored.redemption_days, stored.restore_fee, stored.currency, stored.source) == (
        45,
        Decimal("130.00"),
        "CHF",
        "price list 2027",
    )
    assert changed.tld == "ch" and created.tld == "it"
    assert refused == [
        (ErrorCode.INVALID_INPUT, "source"),
        (ErrorCode.INVALID_INPUT, "redemptionDays"),
        (ErrorCode.INVALID_INPUT, "restoreFee"),
        (ErrorCode.INVALID_INPUT, "restoreFee"),
        (ErrorCode.INVALID_INPUT, "currency"),
        (ErrorCode.INVALID_INPUT, "tld"),
        (ErrorCode.INVALID_INPUT, "tld"),
    ]
    assert not await TldPolicy.exists(tld="nl")
