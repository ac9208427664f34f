"""Served proof, with a real SMTP server: a login e-mail changed from the link the new mailbox
receives (PRO-5), and an account whose login mailbox is deleted getting a username by e-mail,
held to setting a new login e-mail, then freed by confirming one (REC-4)."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from gardien.demo import DEMO_PASSWORD
from tests.e2e.conftest import ServedGateway, mail_text
from tests.e2e.test_contract import _organisation_id, _post, _sign_in
from tests.gardien.mail.conftest import SmtpTestServer

REQUEST_CHANGE = """
mutation($input: RequestLoginEmailChangeInput!) {
  requestLoginEmailChange(input: $input) { expiresAt errors { code field } }
}"""
CONFIRM_CHANGE = """
mutation($input: ConfirmLoginEmailChangeInput!) {
  confirmLoginEmailChange(input: $input) { email errors { code field } }
}"""
SET_RECOVERY_EMAIL = """
mutation($input: SetRecoveryEmailInput!) {
  setRecoveryEmail(input: $input) { user { recoveryEmail } errors { code field } }
}"""
SIGN_IN = """
mutation($input: SignInInput!) { signIn(input: $input) { session { token } errors { code } } }
"""
SIGN_UP = """
mutation($input: SignUpInput!) { signUp(input: $input) { errors { code } } }
"""
CONFIRM_SIGN_UP = """
mutation($input: ConfirmSignUpInput!) { confirmSignUp(input: $input) { errors { code } } }
"""
CREATE_MAILBOX = """
mutation($input: CreateMailboxInput!) {
  createMailbox(input: $input) { mailbox { id } errors { code } }
}"""
DELETE_MAILBOX = """
mutation($input: DeleteMailboxInput!) { deleteMailbox(input: $input) { errors { code } } }
"""
VIEWER = "{ viewer { email mustSetLoginEmail } }"


def _graphql(
    gateway: ServedGateway, query: str, variables: dict[str, Any], token: str | None = None
) -> dict[str, Any]:
    headers = {"accept": "application/graphql-response+json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    response = httpx.post(
        f"{gateway.url}/graphql",
        json={"query": query, "variables": variables},
        headers=headers,
        timeout=30,
    )
    body: dict[str, Any] = response.json()
    return body


def _mail(smtp: SmtpTestServer, recipient: str, link_path: str | None = None) -> str:
    """The plain text of the newest message to `recipient` (with a link to `link_path` when
    given), waiting for the gateway's outbox worker to deliver it."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for message in reversed(list(smtp.messages)):
            if message["To"] != recipient:
                continue
            text = mail_text(message)
            if link_path is None or link_path in text:
                return text
        time.sleep(0.1)
    raise AssertionError(f"no e-mail to {recipient} within 30 s")


def _token_in(text: str, link_path: str) -> str:
    links: list[str] = re.findall(rf"https?://\S+{re.escape(link_path)}\?token=\S+", text)
    (link,) = links
    (token,) = parse_qs(urlsplit(link).fragment.partition("?")[2])["token"]
    return token


CHANGE_LINK = "/console/#/profile/login-email"


def _signed_in(gateway: ServedGateway, login: str, password: str) -> str | None:
    answer = _graphql(gateway, SIGN_IN, {"input": {"login": login, "password": password}})
    session = answer["data"]["signIn"]["session"]
    return session["token"] if session else None


def _change_login_email(
    gateway: ServedGateway, smtp: SmtpTestServer, token: str, password: str, new: str
) -> dict[str, Any]:
    asked = _graphql(
        gateway, REQUEST_CHANGE, {"input": {"newEmail": new, "currentPassword": password}}, token
    )
    assert asked["data"]["requestLoginEmailChange"]["errors"] == [], asked
    link_token = _token_in(_mail(smtp, new, CHANGE_LINK), CHANGE_LINK)
    # Opened from the mailbox, in a browser that is not signed in.
    return _graphql(gateway, CONFIRM_CHANGE, {"input": {"token": link_token}})


def test_pro5_login_email_changed_from_the_link_in_the_new_mailbox_served(
    mailing_gateway: ServedGateway, smtp: SmtpTestServer
) -> None:
    served = mailing_gateway
    token = _sign_in(served, "tom.extern@demo.example")

    confirmed = _change_login_email(served, smtp, token, DEMO_PASSWORD, "tom.new@example.test")
    notice = _mail(smtp, "tom.extern@demo.example", "/console/#/security/secure-account")

    assert confirmed["data"]["confirmLoginEmailChange"] == {
        "email": "tom.new@example.test",
        "errors": [],
    }
    assert "L’adresse e-mail de connexion de votre compte Gardien a changé" in notice
    assert _signed_in(served, "tom.extern@demo.example", DEMO_PASSWORD) is None
    new_token = _signed_in(served, "tom.new@example.test", DEMO_PASSWORD)
    assert new_token is not None
    assert _graphql(served, VIEWER, {}, new_token)["data"]["viewer"] == {
        "email": "tom.new@example.test",
        "mustSetLoginEmail": False,
    }


def test_rec4_deleted_login_mailbox_username_by_email_then_new_login_email_served(
    mailing_gateway: ServedGateway, smtp: SmtpTestServer
) -> None:
    served = mailing_gateway
    login, password = "zoe.hosted@demo-sa.ch", "a kettle on the hill"
    signed_up = _graphql(
        served,
        SIGN_UP,
        {"input": {"email": login, "password": password, "displayName": "Zoé Hosted"}},
    )
    assert signed_up["data"]["signUp"]["errors"] == []
    confirm = _token_in(_mail(smtp, login, "/sign-up/confirm"), "/console/#/sign-up/confirm")
    assert (
        _graphql(served, CONFIRM_SIGN_UP, {"input": {"token": confirm}})["data"]["confirmSignUp"][
            "errors"
        ]
        == []
    )
    user_token = _signed_in(served, login, password)
    assert user_token is not None
    recovery = _graphql(
        served,
        SET_RECOVERY_EMAIL,
        {"input": {"email": "zoe.backup@example.test", "currentPassword": password}},
        user_token,
    )
    assert recovery["data"]["setRecoveryEmail"]["errors"] == []
    legal = _sign_in(served, "anna.legal@demo.example")
    products = _post(
        served, "OrganisationProducts", {"id": _organisation_id(served, legal)}, legal
    ).json()["data"]["organisation"]["products"]["edges"]
    (mail_id,) = [p["node"]["id"] for p in products if p["node"]["kind"] == "MAIL_SERVICE"]
    created = _graphql(
        served, CREATE_MAILBOX, {"input": {"productId": mail_id, "address": login}}, legal
    )["data"]["createMailbox"]
    assert created["errors"] == []

    deleted = _graphql(
        served, DELETE_MAILBOX, {"input": {"mailboxId": created["mailbox"]["id"]}}, legal
    )
    issued = _mail(smtp, "zoe.backup@example.test", login)
    (username,) = re.findall(r"\b(zh\d{6})\b", issued)

    assert deleted["data"]["deleteMailbox"]["errors"] == []
    assert _signed_in(served, login, password) is None
    held = _signed_in(served, username, password)
    assert held is not None
    assert _graphql(served, VIEWER, {}, held)["data"]["viewer"] == {
        "email": None,
        "mustSetLoginEmail": True,
    }
    # The session from before the deletion is held too: the gate reads the account per request.
    for session in (held, user_token):
        refused = _post(served, "OrganisationDomains", {"id": _organisation_id_of(served)}, session)
        assert [e["extensions"]["code"] for e in refused.json()["errors"]] == [
            "LOGIN_EMAIL_REQUIRED"
        ]

    confirmed = _change_login_email(served, smtp, held, password, "zoe@elsewhere.example")

    assert confirmed["data"]["confirmLoginEmailChange"] == {
        "email": "zoe@elsewhere.example",
        "errors": [],
    }
    assert _graphql(served, VIEWER, {}, held)["data"]["viewer"] == {
        "email": "zoe@elsewhere.example",
        "mustSetLoginEmail": False,
    }
    assert _signed_in(served, username, password) is None
    assert _signed_in(served, "zoe@elsewhere.example", password) is not None


def _organisation_id_of(served: ServedGateway) -> str:
    return _organisation_id(served, _sign_in(served, "anna.legal@demo.example"))
