"""SMTP delivery with aiosmtplib, configured by GARDIEN_SMTP_URL (STARTTLS, implicit TLS, auth)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from types import TracebackType
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

# Seconds for each SMTP command (connect, EHLO, STARTTLS, AUTH, each step of a send).
COMMAND_TIMEOUT_SECONDS = 20.0

StartTls = Literal["opportunistic", "required", "off"]


class SmtpConfigurationError(ValueError):
    """GARDIEN_SMTP_URL cannot be used as given; the message never repeats the password."""


@dataclass(frozen=True)
class SmtpServer:
    """Where and how to deliver, parsed from `smtp://user:pass@host:port?starttls=required`.

    smtp:// upgrades with STARTTLS when the server offers it (?starttls=required insists, and
    ?starttls=off never tries, for a local mail catcher); smtps:// uses implicit TLS. Credentials
    are only ever sent over TLS: with a user in an smtp:// URL, STARTTLS becomes required.
    """

    hostname: str
    port: int
    implicit_tls: bool
    start_tls: StartTls
    username: str | None
    password: str | None

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise SmtpConfigurationError("the SMTP URL must be smtp://host[:port] or smtps://…")
        implicit_tls = parts.scheme == "smtps"
        try:
            port = parts.port or (465 if implicit_tls else 25)
        except ValueError:
            raise SmtpConfigurationError("the SMTP URL has an invalid port") from None
        mode = parse_qs(parts.query).get("starttls", ["opportunistic"])[-1]
        if mode not in ("opportunistic", "required", "off"):
            raise SmtpConfigurationError("starttls must be opportunistic, required or off")
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        if implicit_tls:
            start_tls: StartTls = "off"  # already encrypted from the first byte
        elif username is not None:
            if mode == "off":
                raise SmtpConfigurationError("credentials are never sent without TLS")
            start_tls = "required"
        else:
            start_tls = mode  # type: ignore[assignment]  # checked just above
        return cls(parts.hostname, port, implicit_tls, start_tls, username, password)

    def redact(self, text: str) -> str:
        """Remove the password from a text bound for a log or the outbox's last_error."""
        if self.password:
            return text.replace(self.password, "***")
        return text


class SmtpConnection:
    """One authenticated SMTP session; several messages may go through it."""

    def __init__(self, server: SmtpServer, tls_context: ssl.SSLContext | None) -> None:
        self._client = aiosmtplib.SMTP(
            hostname=server.hostname,
            port=server.port,
            username=server.username,
            password=server.password,
            use_tls=server.implicit_tls,
            start_tls={"opportunistic": None, "required": True, "off": False}[server.start_tls],
            tls_context=tls_context,
            timeout=COMMAND_TIMEOUT_SECONDS,
        )

    async def open(self) -> None:
        """Connect, upgrade to TLS as configured, and log in when credentials are given."""
        await self._client.connect()

    async def close(self) -> None:
        if not self._client.is_connected:
            return
        try:
            await self._client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            self._client.close()

    async def __aenter__(self) -> SmtpConnection:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def send(self, message: EmailMessage) -> None:
        await self._client.send_message(message)


class SmtpSender:
    """Opens SMTP sessions to the configured server. tls_context defaults to the system's trust."""

    def __init__(self, server: SmtpServer, tls_context: ssl.SSLContext | None = None) -> None:
        self.server = server
        self._tls_context = tls_context

    def connect(self) -> SmtpConnection:
        return SmtpConnection(self.server, self._tls_context)
