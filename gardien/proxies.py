"""Whose X-Forwarded-For counts: the client address, decided once for every consumer.

GARDIEN_TRUSTED_PROXIES lists the reverse proxies (addresses or networks) in front of the gateway.
Only when the direct peer is one of them is X-Forwarded-For read, from the right: each trusted
proxy appended the address it saw, so the right-most entry that is not a trusted proxy is the
client. Anything further left was written by the client and is ignored. The middleware rewrites
scope["client"], so rate limits, sessions, activity records and logs all see the same address;
uvicorn's own proxy-header handling is turned off (`gardien serve`) so no second rule can disagree.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(raw: str) -> tuple[Network, ...]:
    """Comma-separated addresses and CIDR networks; ValueError names the first bad entry."""
    networks: list[Network] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=True))
        except ValueError as error:
            raise ValueError(f"{item!r} is not an IP address or network ({error})") from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    """An entry as proxies write it: a bare address, or with a port ("1.2.3.4:80", "[::1]:80")."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    if "%" in text:
        # An IPv6 zone ("fe80::1%eth0") names an interface of the proxy's host: meaningless
        # here, and unbounded in length. Such an entry is not a client address.
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)

    def is_trusted(self, address: Address) -> bool:
        return any(address in network for network in self.networks)

    def client_address(self, peer: str, forwarded_for: list[str]) -> str:
        """The client's address: the peer, unless a trusted peer forwarded for someone else."""
        current = _address(peer)
        if current is None:
            return peer  # not an IP peer (a test transport, a Unix socket): nothing to resolve
        if not self.networks or not self.is_trusted(current):
            return str(current)
        entries = [entry for header in forwarded_for for entry in header.split(",")]
        for entry in reversed(entries):
            hop = _address(entry)
            if hop is None:
                # Garbage where a trusted proxy would have written an address: stop at the last
                # hop we can vouch for rather than let the client name its own address.
                return str(current)
            current = hop
            if not self.is_trusted(current):
                return str(current)
        return str(current)


class TrustedProxyMiddleware:
    """Rewrites scope["client"] from X-Forwarded-For when, and only when, the peer is trusted."""

    def __init__(self, app: ASGIApp, trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope.get("client"):
            host = scope["client"][0]
            forwarded = [
                value.decode("latin-1")
                for name, value in scope["headers"]
                if name == b"x-forwarded-for"
            ]
            client = self.trusted.client_address(host, forwarded)
            if client != host:
                # The port belongs to the proxy's connection, not the client's: unknown.
                scope = {**scope, "client": (client, 0)}
        await self.app(scope, receive, send)
