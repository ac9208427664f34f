"""Offline IP-to-country lookup (ACT-1, ACT-2): RIR allocation data shipped inside iptocc."""

from __future__ import annotations

import ipaddress

from iptocc import country_code


def country_of(ip: str | None) -> str | None:
    """The ISO 3166-1 alpha-2 country an address is allocated to, or None.

    Only globally routable addresses have a country: loopback, private, link-local, shared
    (CGNAT) and documentation ranges say nothing about where a person is, so they answer None
    rather than whatever a registry once wrote for them.
    """
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if not address.is_global:
        return None
    code = country_code(str(address))
    # Registries write a few pseudo-codes (EU, AP, ZZ); only a two-letter code is kept.
    return code if code and len(code) == 2 and code.isalpha() and code.isupper() else None
