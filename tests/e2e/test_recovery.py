"""Recovery against a served gateway: a forgotten password reset from the code delivered over
SMTP by the gateway's own outbox worker (REC-1), and a support agent's approval whose one-time
link, delivered the same way, sets a new password (REC-2)."""

from __future__ import annotations

import re
from typing import Any

import httpx

from gardien.demo import DEMO_PASSWORD
from tests.e2e.conftest import ServedGateway, gardien, mail_text
from tests.e2e.test_contract import _post, _sign_in
from tests.e2e.test_sign_up import _delivered_with
from tests.gardien.mail.conftest import SmtpTestServer

LOGIN = "marc.admin@demo.example"
NEW_PASSWORD = "granite harbour at dawn"
# The demo's members write French.
CODE_SUBJECT = "Votre code de réinitialisation du mot de passe Gardien"
DONE_SUBJECT = "Le mot de passe de votre compte Gardien a été réinitialisé"


def test_rec1_reset_from_the_code_in_the_mailbox_ends_old_sessions_served(
    mailing_gateway: ServedGateway, smtp: SmtpTestServer
) -> None:
    served = mailing_gateway
    old_session = _sign_in(served, LOGIN)

    asked = _post(served, "RequestPasswordReset", {"input": {"login": LOGIN}}).json()
    request = asked["data"]["requestPasswordReset"]
    (login_email,) = [o for o in request["options"] if o["channel"] == "LOGIN_EMAIL"]
    sent = _post(
        served,
        "SendRecoveryCode",
        {"input": {"recoveryId": request["recoveryId"], "optionId": login_email["id"]}},
    ).json()
    (code,) = re.findall(r"\b\d{8}\b", mail_text(_delivered_with(smtp, LOGIN, CODE_SUBJECT)))
    reset = _post(
        served,
        "ResetPassword",
        {
            "input": {
                "recoveryId": request["recoveryId"],
                "code": code,
                "newPassword": NEW_PASSWORD,
            }
        },
    ).json()
    reused = _post(
        served,
        "ResetPassword",
        {"input": {"recoveryId": request["recoveryId"], "code": code, "newPassword": "x" * 12}},
    ).json()
    old_viewer = _post(served, "Viewer", token=old_session)
    with_old = _post(served, "SignIn", {"input": {"login": LOGIN, "password": DEMO_PASSWORD}})
    with_new = _post(served, "SignIn", {"input": {"login": LOGIN, "password": NEW_PASSWORD}})
    told = _delivered_with(smtp, LOGIN, DONE_SUBJECT)

    assert request["errors"] == []
    assert login_email["maskedDestination"] == "m***@d***.example"
    assert sent == {"data": {"sendRecoveryCode": {"errors": []}}}
    assert reset == {"data": {"resetPassword": {"errors": []}}}
    assert [e["code"] for e in reused["data"]["resetPassword"]["errors"]] == [
        "RECOVERY_CODE_INVALID"
    ]
    assert old_viewer.status_code == 401
    assert [e["code"] for e in with_old.json()["data"]["signIn"]["errors"]] == [
        "INVALID_CREDENTIALS"
    ]
    signed_in = with_new.json()["data"]["signIn"]
    assert signed_in["errors"] == [] and signed_in["session"]["token"]
    assert code not in mail_text(told)


def test_rec1_unknown_login_answers_alike_and_its_code_goes_nowhere_served(
    mailing_gateway: ServedGateway, smtp: SmtpTestServer
) -> None:
    served = mailing_gateway
    stranger = "nobody.here@demo.example"

    first = _post(served, "RequestPasswordReset", {"input": {"login": stranger}}).json()
    again = _post(served, "RequestPasswordReset", {"input": {"login": stranger}}).json()
    request = first["data"]["requestPasswordReset"]
    sent = [
        _post(
            served,
            "SendRecoveryCode",
            {"input": {"recoveryId": request["recoveryId"], "optionId": option["id"]}},
        ).json()
        for option in request["options"]
    ]
    # A real request after the decoy's: once its code is delivered, the worker has handled
    # everything queued before it, so a decoy's code would have arrived too.
    witness = "anna.legal@demo.example"
    real = _post(served, "RequestPasswordReset", {"input": {"login": witness}}).json()
    real_request = real["data"]["requestPasswordReset"]
    _post(
        served,
        "SendRecoveryCode",
        {
            "input": {
                "recoveryId": real_request["recoveryId"],
                "optionId": real_request["options"][0]["id"],
            }
        },
    )
    _delivered_with(smtp, witness, CODE_SUBJECT)

    def seen(body: dict[str, object]) -> list[tuple[str, str]]:
        payload = body["data"]["requestPasswordReset"]  # type: ignore[index]
        return [(o["channel"], o["maskedDestination"]) for o in payload["options"]]

    assert request["errors"] == [] and len(request["recoveryId"]) == 43
    assert seen(first) == seen(again)
    assert seen(first)[0] == ("LOGIN_EMAIL", "n***@d***.example")
    assert sent == [{"data": {"sendRecoveryCode": {"errors": []}}}] * len(request["options"])
    assert not [m for m in list(smtp.messages) if m["To"] == stranger]


CASES = """
query Cases { identityVerificationCases(status: OPEN, first: 10) {
  totalCount edges { node { id login contactEmail hasAccount status } } } }
"""
REVIEW = """
mutation Review($input: ReviewIdentityVerificationInput!) {
  reviewIdentityVerification(input: $input) { case { status } errors { code } }
}
"""
OPEN_CASE = """
mutation Open($input: RequestIdentityVerificationInput!) {
  requestIdentityVerification(input: $input) { errors { code } }
}
"""
COMPLETE = """
mutation Complete($input: CompleteIdentityVerificationResetInput!) {
  completeIdentityVerificationReset(input: $input) { errors { code } }
}
"""
LINK_SUBJECT = "Choisissez un nouveau mot de passe pour votre compte Gardien"


def _graphql(
    served: ServedGateway, query: str, variables: dict[str, object], token: str | None = None
) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    body: dict[str, Any] = httpx.post(
        f"{served.url}/graphql",
        json={"query": query, "variables": variables},
        headers=headers,
        timeout=30,
    ).json()
    return body


def test_rec2_support_agent_approves_a_case_and_the_link_resets_served(
    mailing_gateway: ServedGateway, smtp: SmtpTestServer
) -> None:
    served = mailing_gateway
    locked_out = "tom.extern@demo.example"
    contact = "tom.private@example.org"
    granted = gardien("support-agent", "add", "lea.collab@demo.example", env=served.env)
    agent = _sign_in(served, "lea.collab@demo.example")
    non_agent = _sign_in(served, "anna.legal@demo.example")

    opened = _graphql(
        served,
        OPEN_CASE,
        {"input": {"login": locked_out, "contactEmail": contact, "details": "Invoice 2024-117"}},
    )
    refused = _graphql(served, CASES, {}, token=non_agent)
    listed = _graphql(served, CASES, {}, token=agent)["data"]["identityVerificationCases"]
    (case,) = [e["node"] for e in listed["edges"] if e["node"]["login"] == locked_out]
    approved = _graphql(
        served,
        REVIEW,
        {"input": {"caseId": case["id"], "approve": True, "contactEmail": contact}},
        token=agent,
    )
    link = re.findall(
        r"https?://\S+/console/#/recovery/identity\?token=\S+",
        mail_text(_delivered_with(smtp, contact, LINK_SUBJECT)),
    )
    token = link[0].rpartition("token=")[2]
    completed = _graphql(served, COMPLETE, {"input": {"token": token, "newPassword": NEW_PASSWORD}})
    signed_in = _post(served, "SignIn", {"input": {"login": locked_out, "password": NEW_PASSWORD}})

    assert granted.returncode == 0, granted.stderr
    assert opened == {"data": {"requestIdentityVerification": {"errors": []}}}
    assert [e["extensions"]["code"] for e in refused["errors"]] == ["FORBIDDEN"]
    assert (case["hasAccount"], case["contactEmail"], case["status"]) == (True, contact, "OPEN")
    assert approved["data"]["reviewIdentityVerification"] == {
        "case": {"status": "APPROVED"},
        "errors": [],
    }
    assert completed == {"data": {"completeIdentityVerificationReset": {"errors": []}}}
    assert signed_in.json()["data"]["signIn"]["errors"] == []
