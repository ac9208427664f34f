"""Webhooks on the wire (EVT-5): secrets, signatures, the address check against SSRF, the POST."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import secrets
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

SIGNATURE_HEADER = "Gardien-Signature"
EVENT_ID_HEADER = "Gardien-Event-Id"
EVENT_TYPE_HEADER = "Gardien-Event-Type"
USER_AGENT = "Gardien-Webhooks/1"
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
MAX_URL_LENGTH = 2048
# Receivers are expected to answer at once and work afterwards (as Stripe and GitHub ask): a slow
# receiver must not hold a worker, and the whole batch must end well within its lease.
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# httpx's timeouts bound each read, so a receiver answering a byte at a time never trips them:
# this bounds the whole attempt (address check, connection, request, response head).
DEADLINE_SECONDS = 10.0
# Receivers reject a signature older than this (replays); gardien signs with its clock's time.
SIGNATURE_TOLERANCE_SECONDS = 300
ERROR_LENGTH = 500


class UnsafeUrlError(Exception):
    """The URL may not receive webhooks: not HTTPS, or it reaches a private network (SSRF)."""


def new_secret() -> str:
    """A signing secret: 256 random bits, recognisable in a secret scanner by its prefix."""
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """HMAC-SHA256 over "<timestamp>.<body>", in hex: the timestamp is signed, so a captured
    delivery cannot be replayed later with a fresh one."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    now: int,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
) -> bool:
    """What a receiver does: a v1 signature of this body at a recent timestamp, compared in
    constant time."""
    parts = [part.partition("=") for part in header.split(",")]
    timestamps = [value for key, _, value in parts if key == "t"]
    signatures = [value for key, _, value in parts if key == "v1"]
    if len(timestamps) != 1 or not timestamps[0].isdigit() or not signatures:
        return False
    timestamp = int(timestamps[0])
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)


@dataclass(frozen=True)
class Target:
    """Where one delivery goes: the URL as registered, and the address checked for it."""

    url: str
    hostname: str
    address: str

    @property
    def pinned_url(self) -> str:
        # The connection goes to the address that passed the check, not to a second DNS answer
        # (DNS rebinding); the Host header and TLS server name keep the registered host name.
        parts = urlsplit(self.url)
        host = f"[{self.address}]" if ":" in self.address else self.address
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))

    @property
    def host_header(self) -> str:
        parts = urlsplit(self.url)
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"{host}:{parts.port}" if parts.port else host


def check_url_form(url: str, *, allow_private: bool) -> str:
    """The URL normalised (no fragment), or UnsafeUrlError: HTTPS only, unless allow_private."""
    if len(url) > MAX_URL_LENGTH or any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise UnsafeUrlError("The URL is too long or contains spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeUrlError("The URL is not valid.") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        raise UnsafeUrlError("Webhook URLs must use https.")
    if not parts.hostname:
        raise UnsafeUrlError("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrlError("Put no credentials in the URL: deliveries are signed instead.")
    if port == 0:
        raise UnsafeUrlError("The URL's port is not valid.")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ""))


# IPv6 ranges that carry an IPv4 address or are deprecated, yet count as global to the ipaddress
# module: a gateway or relay on the path may turn them into a private IPv4 destination.
_REFUSED_IPV6 = tuple(
    ipaddress.IPv6Network(network)
    for network in (
        "::/96",  # IPv4-compatible, deprecated (RFC 4291 2.5.5.1): ::7f00:1 is 127.0.0.1
        "2002::/16",  # 6to4, deprecated (RFC 7526): 2002:a00:1:: embeds 10.0.0.1
        "64:ff9b::/96",  # NAT64 well-known prefix (RFC 6052)
        "64:ff9b:1::/48",  # NAT64 local use (RFC 8215)
        "fec0::/10",  # site-local, deprecated (RFC 3879)
    )
)
# One answer for a name that does not resolve and one that resolves inward, so registering
# endpoints does not tell which internal names exist.
NOT_PUBLIC_MESSAGE = "The URL's host does not resolve to a public address."


def is_public_address(address: str) -> bool:
    """Globally routable unicast only: no private, loopback, link-local, shared, reserved,
    multicast or documentation address, also when written as an IPv4-mapped IPv6 address, nor
    an IPv6 form that embeds an IPv4 address or is deprecated (_REFUSED_IPV6)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif any(ip in network for network in _REFUSED_IPV6):
            return False
    return ip.is_global and not ip.is_multicast


async def resolve_target(url: str, *, allow_private: bool) -> Target:
    """Check the URL and the addresses its host resolves to now; UnsafeUrlError when refused.

    Every address must be public: a host name with one private answer among public ones could
    be made to reach the private one.
    """
    url = check_url_form(url, allow_private=allow_private)
    parts = urlsplit(url)
    hostname = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        answers = await asyncio.get_running_loop().getaddrinfo(
            hostname, port, type=socket.SOCK_STREAM
        )
    except (OSError, UnicodeError):
        raise UnsafeUrlError(NOT_PUBLIC_MESSAGE) from None
    addresses = [str(answer[4][0]) for answer in answers]
    if not addresses:
        raise UnsafeUrlError(NOT_PUBLIC_MESSAGE)
    if not allow_private and not all(is_public_address(a) for a in addresses):
        raise UnsafeUrlError(NOT_PUBLIC_MESSAGE)
    return Target(url=url, hostname=hostname, address=addresses[0])


@dataclass(frozen=True)
class Attempt:
    """The outcome of one POST: the receiver's status code, or why there was none."""

    status_code: int | None
    error: str | None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookSender:
    """POSTs signed deliveries; redirects are not followed (a 3xx is a failure) and the proxy
    settings of the environment are ignored, so the address check is the whole story."""

    def __init__(
        self,
        *,
        allow_private: bool,
        timeout: httpx.Timeout = TIMEOUT,
        deadline: float = DEADLINE_SECONDS,
    ) -> None:
        self._allow_private = allow_private
        self._timeout = timeout
        self._deadline = deadline

    def client(self) -> httpx.AsyncClient:
        # No connection reuse: connections are keyed by the pinned address, so two host names
        # on one address would otherwise share a TLS session verified for only one of them.
        return httpx.AsyncClient(
            timeout=self._timeout,
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    async def post(
        self, client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]
    ) -> Attempt:
        try:
            async with asyncio.timeout(self._deadline):
                return await self._post(client, url, body, headers)
        except TimeoutError:
            return Attempt(None, f"no answer within {self._deadline:g} s")

    async def _post(
        self, client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]
    ) -> Attempt:
        try:
            target = await resolve_target(url, allow_private=self._allow_private)
        except UnsafeUrlError as error:
            return Attempt(None, f"refused: {error}")
        sent = {
            **headers,
            "Host": target.host_header,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        try:
            # Streamed and closed unread: the receiver's body is not ours to download.
            async with client.stream(
                "POST",
                target.pinned_url,
                content=body,
                headers=sent,
                extensions={"sni_hostname": target.hostname},
            ) as response:
                status = response.status_code
        except httpx.HTTPError as error:
            return Attempt(None, f"{type(error).__name__}: {error}"[:ERROR_LENGTH])
        return Attempt(status, None if 200 <= status < 300 else f"HTTP {status}")
