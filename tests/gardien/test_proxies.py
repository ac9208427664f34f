"""Trusted proxies: whose X-Forwarded-For counts, and the one client address everyone sees."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from gardien.proxies import TrustedProxies, TrustedProxyMiddleware, parse_networks

PROXIES = TrustedProxies(parse_networks("10.0.0.0/8, 2001:db8:ffff::/48, 192.0.2.10"))


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        # An untrusted peer's header is ignored, whatever it claims.
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),
        ("203.0.113.9", ["10.0.0.1"], "203.0.113.9"),
        # A trusted peer: the right-most entry that is not one of our proxies.
        ("10.1.2.3", ["198.51.100.1"], "198.51.100.1"),
        ("10.1.2.3", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),
        ("10.1.2.3", ["6.6.6.6, 198.51.100.1, 192.0.2.10"], "198.51.100.1"),
        ("10.1.2.3", ["6.6.6.6", "198.51.100.1, 10.9.9.9"], "198.51.100.1"),
        ("2001:db8:ffff::1", ["2001:DB8:1::7"], "2001:db8:1::7"),
        ("::ffff:10.0.0.1", ["198.51.100.1"], "198.51.100.1"),
        # Some proxies write the client's port too.
        ("10.1.2.3", ["198.51.100.1:4711"], "198.51.100.1"),
        ("10.1.2.3", ["[2001:db8:1::7]:4711"], "2001:db8:1::7"),
        # A trusted peer without the header, or with only trusted hops: the last hop seen.
        ("10.1.2.3", [], "10.1.2.3"),
        ("10.1.2.3", ["10.0.0.7"], "10.0.0.7"),
        # Garbage where an address belongs: never let the client name itself.
        ("10.1.2.3", ["evil, 10.0.0.7"], "10.0.0.7"),
        ("10.1.2.3", ["unknown"], "10.1.2.3"),
        # An IPv6 zone names an interface of the proxy, not a client, and has no length bound.
        ("10.1.2.3", ["2001:4860::1%" + "a" * 60], "10.1.2.3"),
        ("10.1.2.3", ["fe80::1%eth0"], "10.1.2.3"),
    ],
)
def test_api4_client_address_from_trusted_proxies_only(
    peer: str, forwarded_for: list[str], client: str
) -> None:
    assert PROXIES.client_address(peer, forwarded_for) == client


def test_api4_no_trusted_proxies_by_default_means_the_header_never_counts() -> None:
    nobody = TrustedProxies(parse_networks(""))

    assert nobody.client_address("127.0.0.1", ["198.51.100.1"]) == "127.0.0.1"


def _echo_app(trusted: TrustedProxies) -> TrustedProxyMiddleware:
    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.client.host if request.client else "-")

    return TrustedProxyMiddleware(Starlette(routes=[Route("/", echo)]), trusted)


@pytest.mark.parametrize(
    ("peer", "client"), [("10.0.0.5", "198.51.100.1"), ("203.0.113.9", "203.0.113.9")]
)
async def test_api4_middleware_rewrites_the_client_every_consumer_reads(
    peer: str, client: str
) -> None:
    transport = httpx.ASGITransport(app=_echo_app(PROXIES), client=(peer, 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.get("/", headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.1"})

    assert response.text == client
