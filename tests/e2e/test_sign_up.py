"""A whole sign-up against a served gateway: sign up → confirmation e-mail delivered over SMTP by
the gateway's own outbox worker → confirm with the token of its link → signed in; and a taken
address, answered the same, whose owner gets a note instead (ORG-1, OPS-6)."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.e2e.conftest import ServedGateway, gardien, start_gateway
from tests.e2e.test_contract import _post
from tests.e2e.test_invitations import _delivered_to, _text
from tests.gardien.mail.conftest import SmtpTestServer
from tests.ports import free_port

NEWCOMER = "signup.e2e@example.test"
PASSWORD = "a lantern over the river"
CONFIRM = """
mutation ConfirmSignUp($input: ConfirmSignUpInput!) {
  confirmSignUp(input: $input) {
    user { id email displayName }
    session { token expiresAt }
    errors { code message field }
  }
}
"""


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpTestServer]:
    server = SmtpTestServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def mailing_gateway(
    tmp_path_factory: pytest.TempPathFactory, gateway_env: dict[str, str], smtp: SmtpTestServer
) -> Iterator[ServedGateway]:
    """A gateway of its own (accounts are opened here), delivering e-mail to `smtp`."""
    var_dir: Path = tmp_path_factory.mktemp("served-sign-up")
    env = {
        **gateway_env,
        "GARDIEN_VAR_DIR": str(var_dir),
        "GARDIEN_SECRET_KEY": secrets.token_urlsafe(48),
        "GARDIEN_SMTP_URL": smtp.url,
    }
    with start_gateway(env) as gateway:
        yield gateway


def _sign_up(gateway: ServedGateway, email: str, language: str) -> httpx.Response:
    return _post(
        gateway,
        "SignUp",
        {
            "input": {
                "email": email,
                "password": PASSWORD,
                "displayName": "Sign Up",
                "language": language,
            }
        },
    )


def _confirm(gateway: ServedGateway, token: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/graphql",
        json={"query": CONFIRM, "variables": {"input": {"token": token}}},
        headers={"accept": "application/graphql-response+json"},
        timeout=30,
    )


TAKEN_SUBJECT_FR = "Tentative d’inscription avec votre adresse e-mail"


def _delivered_with(smtp: SmtpTestServer, recipient: str, subject: str) -> EmailMessage:
    """The message of this subject (the demo's administrator also gets domain reminders)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for message in list(smtp.messages):
            if message["To"] == recipient and message["Subject"] == subject:
                return message
        time.sleep(0.1)
    raise AssertionError(f"no e-mail {subject!r} to {recipient} within 30 s")


def _token_in(text: str) -> str:
    links: list[str] = re.findall(r"https?://\S+/console/#/sign-up/confirm\?token=\S+", text)
    (link,) = links
    (token,) = parse_qs(urlsplit(link).fragment.partition("?")[2])["token"]
    return token


def _answer(response: httpx.Response) -> tuple[int, str, Any, bool]:
    """What a client can see of a signUp answer, apart from the request ID."""
    return (
        response.status_code,
        response.headers["content-type"],
        response.json(),
        "set-cookie" in response.headers,
    )


def test_org1_sign_up_email_confirm_and_sign_in_served(
    mailing_gateway: ServedGateway, smtp: SmtpTestServer
) -> None:
    served = mailing_gateway

    asked = _sign_up(served, NEWCOMER, "en")
    delivered = _delivered_to(smtp, NEWCOMER)
    message = _text(delivered)
    token = _token_in(message)
    confirmed = _confirm(served, token)
    reused = _confirm(served, token).json()["data"]["confirmSignUp"]
    payload = confirmed.json()["data"]["confirmSignUp"]
    viewer = _post(served, "Viewer", token=payload["session"]["token"]).json()["data"]["viewer"]
    signed_in = _post(
        served, "SignIn", {"input": {"login": NEWCOMER, "password": PASSWORD}}
    ).json()["data"]["signIn"]

    assert asked.json() == {"data": {"signUp": {"user": None, "session": None, "errors": []}}}
    assert delivered["Subject"] == "Confirm your e-mail address"
    assert f"or enter this code: {token}" in message
    assert payload["errors"] == []
    assert (payload["user"]["email"], payload["user"]["displayName"]) == (NEWCOMER, "Sign Up")
    cookies = confirmed.headers.get_list("set-cookie")
    assert any(cookie.startswith("gardien_session=") for cookie in cookies)
    # ACT-2: the confirming browser gets its device cookie, the account's first known device.
    assert len(cookies) == 2
    assert viewer["email"] == NEWCOMER and viewer["language"] == "en"
    assert viewer["memberships"]["totalCount"] == 1
    membership = viewer["memberships"]["edges"][0]["node"]
    assert membership["role"] == "LEGAL_REPRESENTATIVE"
    assert membership["organisation"] == viewer["currentOrganisation"]
    assert reused["user"] is None and reused["session"] is None
    assert [e["code"] for e in reused["errors"]] == ["SIGN_UP_TOKEN_INVALID"]
    assert signed_in["errors"] == [] and signed_in["session"] is not None


def test_org1_sign_up_same_answer_for_taken_address_served(
    mailing_gateway: ServedGateway, smtp: SmtpTestServer
) -> None:
    served = mailing_gateway

    taken = _sign_up(served, "marc.admin@demo.example", "en")
    free = _sign_up(served, "free.e2e@example.test", "en")
    note = _delivered_with(smtp, "marc.admin@demo.example", TAKEN_SUBJECT_FR)
    confirmation = _delivered_to(smtp, "free.e2e@example.test")

    # Field by field: status, media type, body and cookies are those of a free address.
    assert _answer(taken) == _answer(free)
    assert set(taken.headers) == set(free.headers)
    assert _answer(free) == (
        200,
        "application/graphql-response+json",
        {"data": {"signUp": {"user": None, "session": None, "errors": []}}},
        False,
    )
    # The owner reads the note in their own language (the demo's members write French).
    assert "/console/#/sign-in" in _text(note)
    assert "/console/#/sign-up/confirm" not in _text(note)
    assert confirmation["Subject"] == "Confirm your e-mail address"


def test_org1_outbox_shows_the_confirmation_link_for_local_use(
    tmp_path: Path, gateway_env: dict[str, str]
) -> None:
    """`gardien outbox` is how a newcomer confirms locally, without any mail server."""
    env = {
        **gateway_env,
        "GARDIEN_VAR_DIR": str(tmp_path),
        "GARDIEN_SECRET_KEY": secrets.token_urlsafe(48),
    }
    with start_gateway(env) as served:
        assert _sign_up(served, "local@example.test", "fr").status_code == 200
        listed = gardien("outbox", env=env)
        token = _token_in(listed.stdout)
        confirmed = _confirm(served, token).json()["data"]["confirmSignUp"]

    assert listed.returncode == 0, listed.stderr
    assert "to:       local@example.test" in listed.stdout
    assert "template: sign_up_confirmation (fr)" in listed.stdout
    assert confirmed["errors"] == [] and confirmed["user"]["email"] == "local@example.test"
