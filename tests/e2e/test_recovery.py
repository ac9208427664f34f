"""Forgot password against a served gateway (REC-1): request, code by e-mail delivered over SMTP
by the gateway's own outbox worker, reset, the old session gone, sign-in with the new password."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from gardien.demo import DEMO_PASSWORD
from tests.e2e.conftest import ServedGateway, start_gateway
from tests.e2e.test_contract import _post, _sign_in
from tests.e2e.test_invitations import _text
from tests.e2e.test_sign_up import _delivered_with
from tests.gardien.mail.conftest import SmtpTestServer
from tests.ports import free_port

LOGIN = "marc.admin@demo.example"
NEW_PASSWORD = "granite harbour at dawn"
# The demo's members write French.
CODE_SUBJECT = "Votre code de réinitialisation du mot de passe Gardien"
DONE_SUBJECT = "Le mot de passe de votre compte Gardien a été réinitialisé"


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
    """A gateway of its own (a demo password changes here), delivering e-mail to `smtp`."""
    var_dir: Path = tmp_path_factory.mktemp("served-recovery")
    env = {
        **gateway_env,
        "GARDIEN_VAR_DIR": str(var_dir),
        "GARDIEN_SECRET_KEY": secrets.token_urlsafe(48),
        "GARDIEN_SMTP_URL": smtp.url,
    }
    with start_gateway(env) as gateway:
        yield gateway


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
    (code,) = re.findall(r"\b\d{8}\b", _text(_delivered_with(smtp, LOGIN, CODE_SUBJECT)))
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
    assert code not in _text(told)


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
