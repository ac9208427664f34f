"""A whole invitation against a served gateway: invite → e-mail delivered over SMTP by the
gateway's own outbox worker → accept with the token of its link → the newcomer signs in with the
password they chose (INV-2, INV-4, OPS-6)."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.e2e.conftest import ServedGateway, start_gateway
from tests.e2e.test_contract import _organisation_id, _post, _sign_in
from tests.gardien.mail.conftest import SmtpTestServer
from tests.ports import free_port

NEWCOMER = "newcomer.e2e@example.test"
NEWCOMER_PASSWORD = "lantern over the river"


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
    """A gateway of its own (its members change here), delivering e-mail to `smtp`."""
    var_dir: Path = tmp_path_factory.mktemp("served-invitations")
    env = {
        **gateway_env,
        "GARDIEN_VAR_DIR": str(var_dir),
        "GARDIEN_SECRET_KEY": secrets.token_urlsafe(48),
        "GARDIEN_SMTP_URL": smtp.url,
    }
    with start_gateway(env) as gateway:
        yield gateway


def _delivered_to(smtp: SmtpTestServer, recipient: str) -> EmailMessage:
    """Waits for the gateway's worker (it polls every few seconds) to deliver the message."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for message in list(smtp.messages):
            if message["To"] == recipient:
                return message
        time.sleep(0.1)
    raise AssertionError(f"no e-mail to {recipient} within 30 s")


def _text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def _token_in(text: str) -> str:
    links: list[str] = re.findall(r"https?://\S+/console/#/invitations/accept\?token=\S+", text)
    (link,) = links
    (token,) = parse_qs(urlsplit(link).fragment.partition("?")[2])["token"]
    return token


def test_inv2_inv4_contract_invite_email_accept_and_sign_in_served(
    mailing_gateway: ServedGateway, smtp: SmtpTestServer
) -> None:
    served = mailing_gateway
    legal = _sign_in(served, "anna.legal@demo.example")
    organisation_id = _organisation_id(served, legal)

    invited = _post(
        served,
        "InviteMember",
        {"input": {"organisationId": organisation_id, "email": NEWCOMER, "role": "COLLABORATOR"}},
        legal,
    ).json()["data"]["inviteMember"]
    delivered = _delivered_to(smtp, NEWCOMER)
    message = _text(delivered)
    token = _token_in(message)
    accepted = _post(
        served,
        "AcceptInvitation",
        {"input": {"token": token, "password": NEWCOMER_PASSWORD, "displayName": "New Comer"}},
    )
    reused = _post(
        served,
        "AcceptInvitation",
        {"input": {"token": token, "password": NEWCOMER_PASSWORD, "displayName": "New Comer"}},
    ).json()["data"]["acceptInvitation"]
    signed_in = _post(
        served, "SignIn", {"input": {"login": NEWCOMER, "password": NEWCOMER_PASSWORD}}
    ).json()["data"]["signIn"]
    viewer = _post(served, "Viewer", token=signed_in["session"]["token"]).json()["data"]["viewer"]

    assert invited["errors"] == []
    assert (invited["invitation"]["email"], invited["invitation"]["role"]) == (
        NEWCOMER,
        "COLLABORATOR",
    )
    assert invited["invitation"]["status"] == "PENDING"
    # The demo organisation writes French; its legal representative invited in French.
    assert delivered["Subject"] == "Anna Legal vous invite à rejoindre Démo SA"
    assert "en tant que collaborateur" in message
    payload = accepted.json()["data"]["acceptInvitation"]
    assert payload["errors"] == []
    assert payload["membership"]["role"] == "COLLABORATOR"
    assert payload["membership"]["organisation"] == {"id": organisation_id, "name": "Démo SA"}
    assert len(payload["session"]["token"]) >= 43
    assert "httponly" in accepted.headers["set-cookie"].lower()
    assert reused == {
        "membership": None,
        "session": None,
        "errors": [
            {
                "code": "INVITATION_INVALID",
                "message": "This invitation link is not valid; it may have been used or withdrawn.",
                "field": "token",
            }
        ],
    }
    assert signed_in["errors"] == []
    assert viewer["email"] == NEWCOMER
    assert viewer["currentOrganisation"]["name"] == "Démo SA"
    assert [edge["node"]["role"] for edge in viewer["memberships"]["edges"]] == ["COLLABORATOR"]


def test_inv1_contract_invite_member_refused_for_a_collaborator_served(
    served: ServedGateway,
) -> None:
    collaborator = _sign_in(served, "lea.collab@demo.example")

    refused = _post(
        served,
        "InviteMember",
        {
            "input": {
                "organisationId": _organisation_id(served, collaborator),
                "email": "friend@example.test",
                "role": "COLLABORATOR",
            }
        },
        collaborator,
    ).json()["data"]["inviteMember"]

    assert refused == {
        "invitation": None,
        "errors": [
            {
                "code": "FORBIDDEN",
                "message": "Only administrators and legal representatives manage invitations.",
                "field": None,
            }
        ],
    }
