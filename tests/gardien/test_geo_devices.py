"""The country and device adapters (ACT-1, ACT-2): offline data shipped in their packages."""

from __future__ import annotations

import pytest

from gardien import devices, geo


@pytest.mark.parametrize(
    ("address", "country"),
    [
        ("195.176.96.1", "CH"),  # SWITCH
        ("130.59.31.80", "CH"),
        ("2001:620::1", "CH"),
        ("80.12.0.1", "FR"),  # Orange France
        ("2a01:cb00::1", "FR"),
        ("::ffff:195.176.96.1", "CH"),  # an IPv4 client on a dual-stack socket
        ("8.8.8.8", "US"),
    ],
)
def test_act1_public_addresses_have_their_country(address: str, country: str) -> None:
    assert geo.country_of(address) == country


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "::1", "10.1.2.3", "192.168.1.1", "172.16.0.1", "100.64.0.1", "fe80::1",
     "203.0.113.7", "198.51.100.1", "not an address", "", None],
)  # fmt: skip
def test_act1_private_loopback_and_reserved_addresses_have_no_country(
    address: str | None,
) -> None:
    assert geo.country_of(address) is None


@pytest.mark.parametrize(
    ("user_agent", "label", "family"),
    [
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
            " Chrome/124.0.0.0 Safari/537.36",
            "Chrome 124 on Windows 10",
            "Chrome/Windows",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15"
            " (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
            "Mobile Safari 17 on iOS 17.4 (iPhone)",
            "Mobile Safari/iOS",
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
            "Firefox 125 on Linux",
            "Firefox/Linux",
        ),
        ("python-httpx/0.28.1", "python-httpx/0.28.1", "python-httpx"),
    ],
)
def test_act2_user_agents_are_described(user_agent: str, label: str, family: str) -> None:
    assert devices.describe(user_agent) == devices.Device(label=label, family=family)


def test_act2_a_browser_update_keeps_the_family() -> None:
    old = devices.describe("Mozilla/5.0 (X11; Linux x86_64; rv:124.0) Gecko/20100101 Firefox/124.0")
    new = devices.describe("Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0")

    assert old is not None and new is not None
    assert old.family == new.family
    assert old.label != new.label


@pytest.mark.parametrize("user_agent", [None, "", "   ", "\x00\x01"])
def test_act2_no_user_agent_no_device(user_agent: str | None) -> None:
    assert devices.describe(user_agent) is None


def test_act2_hostile_user_agent_is_bounded_and_printable() -> None:
    described = devices.describe("evil\r\nX-Injected: 1 " + "A" * 10_000)

    assert described is not None
    assert len(described.label) <= devices.MAX_LABEL
    assert "\r" not in described.label and "\n" not in described.label
