"""SMTP delivery settings and transport security: STARTTLS, implicit TLS, authentication (OPS-6)."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tortoise.transactions import in_transaction

from gardien.mail.smtp import SmtpConfigurationError, SmtpServer
from gardien.mail.templates import Template
from gardien.models.enums import OutboxStatus
from gardien.models.outbox import OutboxMessage
from gardien.resolvers.services import Services
from tests.gardien.mail.conftest import SmtpTestServer, make_worker
from tests.ports import free_port

CONTEXT = {"sign_in_link": "https://m.example/in", "password_reset_link": "https://m.example/pw"}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example", ("mail.example", 25, False, "opportunistic", None, None)),
        ("smtp://mail.example:2525?starttls=off", ("mail.example", 2525, False, "off", None, None)),
        (
            "smtp://mail.example:587?starttls=required",
            ("mail.example", 587, False, "required", None, None),
        ),
        ("smtps://mail.example", ("mail.example", 465, True, "off", None, None)),
        (
            "smtp://app%40corp:p%2Fss%3Aw0rd@mail.example:587",
            ("mail.example", 587, False, "required", "app@corp", "p/ss:w0rd"),
        ),
        ("smtps://u:p@mail.example:4650", ("mail.example", 4650, True, "off", "u", "p")),
    ],
)
def test_ops6_smtp_url_decides_tls_and_credentials(url: str, expected: tuple[Any, ...]) -> None:
    server = SmtpServer.from_url(url)

    assert (
        server.hostname,
        server.port,
        server.implicit_tls,
        server.start_tls,
        server.username,
        server.password,
    ) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("smtp://user:hunter2@mail.example?starttls=off", "credentials are never sent without TLS"),
        ("smtp://mail.example?starttls=maybe", "starttls must be opportunistic, required or off"),
        ("smtp://user:hunter2@mail.example:99999", "invalid port"),
        ("http://mail.example", "smtp://host"),
    ],
)
def test_ops6_unusable_smtp_url_is_refused_without_echoing_the_password(
    url: str, message: str
) -> None:
    with pytest.raises(SmtpConfigurationError, match=message) as refused:
        SmtpServer.from_url(url)

    assert "hunter2" not in str(refused.value)


def test_ops6_redact_removes_the_password() -> None:
    server = SmtpServer.from_url("smtps://u:hunter2@mail.example")

    assert server.redact("535 auth failed for u/hunter2") == "535 auth failed for u/***"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, trusted by the client side of these tests only."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gardien test mail server")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def _client_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


class Authenticator:
    """Accepts one login and remembers whether the session was encrypted when it was given."""

    def __init__(self) -> None:
        self.logins: list[tuple[str, bool]] = []

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        encrypted = session.ssl is not None
        self.logins.append((auth_data.login.decode(), encrypted))
        ok = (auth_data.login, auth_data.password) == (b"mailer@corp", b"s3cret/pw")
        return AuthResult(success=ok, handled=False)


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[tuple[SmtpTestServer, Authenticator]]:
    authenticator = Authenticator()
    server = SmtpTestServer(
        free_port(),
        tls_context=_server_context(certificate),
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    server.start()
    try:
        yield server, authenticator
    finally:
        server.stop()


async def _enqueue(services: Services) -> int:
    async with in_transaction():
        message = await services.mail.enqueue(
            Template.SIGN_UP_ADDRESS_TAKEN, to="ada@example.test", language="en", context=CONTEXT
        )
    return int(message.id)


@pytest.mark.usefixtures("database")
async def test_ops6_starttls_then_login_delivers(
    services: Services,
    certificate: tuple[Path, Path],
    tls_server: tuple[SmtpTestServer, Authenticator],
) -> None:
    server, authenticator = tls_server
    message_id = await _enqueue(services)
    url = f"smtp://mailer%40corp:s3cret%2Fpw@127.0.0.1:{server.port}"
    worker = make_worker(services, url, tls_context=_client_context(certificate))

    assert await worker.drain() == 1

    assert authenticator.logins == [("mailer@corp", True)]
    assert [m["Subject"] for m in server.messages] == ["Sign-up attempt with your e-mail address"]
    assert (await OutboxMessage.get(id=message_id)).status is OutboxStatus.SENT


@pytest.mark.usefixtures("database")
async def test_ops6_wrong_password_is_retried_and_never_recorded(
    services: Services,
    certificate: tuple[Path, Path],
    tls_server: tuple[SmtpTestServer, Authenticator],
) -> None:
    server, _ = tls_server
    message_id = await _enqueue(services)
    url = f"smtp://mailer%40corp:wr0ng-pw@127.0.0.1:{server.port}"
    worker = make_worker(services, url, tls_context=_client_context(certificate))

    assert await worker.drain() == 1

    stored = await OutboxMessage.get(id=message_id)
    assert (stored.status, stored.attempts) == (OutboxStatus.PENDING, 1)
    assert stored.last_error is not None and stored.last_error.startswith("SMTPAuthenticationError")
    assert "wr0ng-pw" not in stored.last_error
    assert server.messages == []


@pytest.mark.usefixtures("database")
async def test_ops6_untrusted_certificate_stops_delivery(
    services: Services, tls_server: tuple[SmtpTestServer, Authenticator]
) -> None:
    """OWASP ASVS 9.2.1: outbound TLS is verified; a self-signed server is not trusted."""
    server, authenticator = tls_server
    message_id = await _enqueue(services)
    worker = make_worker(services, f"smtp://mailer%40corp:s3cret%2Fpw@127.0.0.1:{server.port}")

    assert await worker.drain() == 1

    stored = await OutboxMessage.get(id=message_id)
    assert stored.status is OutboxStatus.PENDING
    assert stored.last_error is not None and "CERTIFICATE_VERIFY_FAILED" in stored.last_error
    assert (authenticator.logins, server.messages) == ([], [])


@pytest.mark.usefixtures("database")
async def test_ops6_implicit_tls_delivers(
    services: Services, certificate: tuple[Path, Path]
) -> None:
    server = SmtpTestServer(free_port(), ssl_context=_server_context(certificate))
    server.start()
    try:
        message_id = await _enqueue(services)
        url = f"smtps://127.0.0.1:{server.port}"
        worker = make_worker(services, url, tls_context=_client_context(certificate))

        assert await worker.drain() == 1
    finally:
        server.stop()

    assert [m["To"] for m in server.messages] == ["ada@example.test"]
    assert (await OutboxMessage.get(id=message_id)).status is OutboxStatus.SENT
