"""A real SMTP server (aiosmtpd) on a free port, which the tests can stop and start again."""

from __future__ import annotations

import email
import email.policy
import random
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from gardien.clock import ManualClock
from gardien.mail.smtp import SmtpSender, SmtpServer
from gardien.mail.worker import OutboxWorker
from gardien.resolvers.services import Services
from tests.ports import free_port

MAIL_FROM = "Gardien <no-reply@gardien.example>"


@dataclass
class RecordingHandler:
    """Keeps every accepted message; refuses the recipients listed in `refused` with a 550."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refused:
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.lock:
            self.messages.append(parsed)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"

    def message_ids(self) -> list[str]:
        with self.lock:
            return [str(message["Message-ID"]) for message in self.messages]


class SmtpTestServer:
    """aiosmtpd in its own thread, on a fixed port so that a restart comes back where it was."""

    def __init__(self, port: int, **smtp_options: Any) -> None:
        self.port = port
        self.handler = RecordingHandler()
        self._options = smtp_options
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[EmailMessage]:
        return self.handler.messages

    def start(self) -> None:
        assert self._controller is None
        self._controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, **self._options
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp_server() -> Iterator[SmtpTestServer]:
    server = SmtpTestServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def make_worker(
    services: Services,
    url: str,
    *,
    tls_context: ssl.SSLContext | None = None,
    batch_size: int = 10,
) -> OutboxWorker:
    assert isinstance(services.clock, ManualClock)
    return OutboxWorker(
        services.clock,
        services.keyring,
        SmtpSender(SmtpServer.from_url(url), tls_context),
        MAIL_FROM,
        batch_size=batch_size,
        rng=random.Random(6),  # noqa: S311  # jitter, not a secret; reproducible runs
    )
