"""Security activity against a served gateway behind a trusted proxy, with a real SMTP server:
the new-location and wrong-password e-mails (ACT-2, ACT-3), the country of real public
addresses (ACT-1), and revoking a session ends its cookie (ACT-6)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from gardien.demo import DEMO_PASSWORD
from tests.e2e.conftest import ServedGateway, start_gateway
from tests.e2e.test_contract import _standalone
from tests.gardien.mail.conftest import SmtpTestServer
from tests.ports import free_port

# A second loopback address stands in for the reverse proxy in front of the gateway.
PROXY_ADDRESS = "127.0.0.2"
SWISS_ADDRESS = "195.176.96.1"  # SWITCH, the Swiss research network
FRENCH_ADDRESS = "80.12.0.1"  # Orange France
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
LOGIN = "marc.admin@demo.example"
NEW_LOCATION_SUBJECT = "Nouvelle connexion à votre compte"
WRONG_PASSWORD_SUBJECT = "Mot de passe erroné saisi pour votre compte"


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpTestServer]:
    server = SmtpTestServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, gateway_env: dict[str, str], smtp: SmtpTestServer
) -> Iterator[ServedGateway]:
    var_dir: Path = tmp_path_factory.mktemp("served-security")
    env = {
        **gateway_env,
        "GARDIEN_VAR_DIR": str(var_dir),
        "GARDIEN_SECRET_KEY": secrets.token_urlsafe(48),
        "GARDIEN_SMTP_URL": smtp.url,
        "GARDIEN_TRUSTED_PROXIES": PROXY_ADDRESS,
    }
    with start_gateway(env) as served:
        yield served


def _browser() -> httpx.Client:
    """A browser behind the proxy: it keeps its cookies (session and device) between requests."""
    return httpx.Client(
        transport=httpx.HTTPTransport(local_address=PROXY_ADDRESS),
        headers={"user-agent": FIREFOX, "accept": "application/graphql-response+json"},
        timeout=30,
    )


def _post(
    client: httpx.Client,
    gateway: ServedGateway,
    name: str,
    variables: dict[str, Any] | None,
    client_address: str,
) -> dict[str, Any]:
    response = client.post(
        f"{gateway.url}/graphql",
        json={"query": _standalone(name), "operationName": name, "variables": variables or {}},
        headers={"x-forwarded-for": client_address},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _sign_in(
    client: httpx.Client, gateway: ServedGateway, address: str, password: str = DEMO_PASSWORD
) -> dict[str, Any]:
    variables = {"input": {"login": LOGIN, "password": password, "rememberBrowser": True}}
    payload: dict[str, Any] = _post(client, gateway, "SignIn", variables, address)["data"]["signIn"]
    return payload


def _wait_for(smtp: SmtpTestServer, subject: str, count: int) -> list[EmailMessage]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [m for m in list(smtp.messages) if m["Subject"] == subject]
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} e-mails {subject!r} within 30 s")


def _text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def test_act1_act2_act3_act6_security_emails_and_sessions_served(
    gateway: ServedGateway, smtp: SmtpTestServer
) -> None:
    with _browser() as browser, _browser() as other_browser:
        # The first sign-in sets what is known; the same browser and country again is silent.
        assert _sign_in(browser, gateway, SWISS_ADDRESS)["errors"] == []
        assert _sign_in(browser, gateway, SWISS_ADDRESS)["errors"] == []
        # The same browser from France: a new country.
        assert _sign_in(browser, gateway, FRENCH_ADDRESS)["errors"] == []
        (new_location,) = _wait_for(smtp, NEW_LOCATION_SUBJECT, 1)
        # France is known now; two wrong passwords send one e-mail (ACT-3).
        assert _sign_in(browser, gateway, FRENCH_ADDRESS)["errors"] == []
        wrong = [_sign_in(browser, gateway, SWISS_ADDRESS, "not the password") for _ in range(2)]
        unknown = _post(
            browser,
            gateway,
            "SignIn",
            {"input": {"login": "nobody@demo.example", "password": "not the password"}},
            SWISS_ADDRESS,
        )["data"]["signIn"]
        (wrong_password,) = _wait_for(smtp, WRONG_PASSWORD_SUBJECT, 1)
        # A second browser (a private window) signs in from Switzerland: a new device.
        assert _sign_in(other_browser, gateway, SWISS_ADDRESS)["errors"] == []
        new_device = _wait_for(smtp, NEW_LOCATION_SUBJECT, 2)[1]

        # ACT-6: the second browser lists its sessions and ends the first browser's.
        listed = _post(other_browser, gateway, "ViewerSessions", None, SWISS_ADDRESS)
        sessions = listed["data"]["viewer"]["sessions"]
        current = [s for s in sessions if s["current"]]
        french = [s for s in sessions if s["country"] == "FR"]
        revoked = [
            _post(
                other_browser,
                gateway,
                "RevokeSession",
                {"input": {"sessionId": s["id"]}},
                SWISS_ADDRESS,
            )["data"]["revokeSession"]
            for s in sessions
            if not s["current"]
        ]
        first_after = _post(browser, gateway, "ViewerSessions", None, FRENCH_ADDRESS)
        other_after = _post(other_browser, gateway, "ViewerSessions", None, SWISS_ADDRESS)

    assert new_location["To"] == LOGIN
    text = _text(new_location)
    assert f"Où : FR · {FRENCH_ADDRESS}" in text
    assert "Appareil : Firefox 125 on Linux" in text
    assert "/console/#/security/secure-account" in text
    assert f"Où : CH · {SWISS_ADDRESS}" in _text(new_device)
    assert [w["errors"][0]["code"] for w in wrong] == ["INVALID_CREDENTIALS"] * 2
    assert wrong[0] == unknown  # the same answer for an unknown login (ACT-3)
    assert wrong_password["To"] == LOGIN
    assert f"CH · {SWISS_ADDRESS}" in _text(wrong_password)
    assert len([m for m in smtp.messages if m["Subject"] == WRONG_PASSWORD_SUBJECT]) == 1
    assert len([m for m in smtp.messages if m["Subject"] == NEW_LOCATION_SUBJECT]) == 2
    assert [(s["country"], s["ip"], s["device"]) for s in current] == [
        ("CH", SWISS_ADDRESS, "Firefox 125 on Linux")
    ]
    assert len(french) == 2 and len(sessions) == 5
    assert revoked == [{"errors": []}] * 4
    # The first browser's cookie no longer opens anything: it is anonymous again.
    assert first_after == {"data": {"viewer": None}}
    assert len(other_after["data"]["viewer"]["sessions"]) == 1
