"""Served: enrol an authenticator app, sign out, sign in with the password then a TOTP code
(MFA-1, MFA-5, MFA-6, MFA-7), and the security policy operations (POL-1, POL-3)."""

from __future__ import annotations

import time

import pyotp

from tests.e2e.conftest import ServedGateway, signed_up_session
from tests.e2e.test_contract import _post


def _code(secret: str, steps_ahead: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * steps_ahead)


def test_mfa7_served_enrol_totp_sign_out_sign_in_with_password_then_code(
    served: ServedGateway,
) -> None:
    email = "totp.user@example.test"
    password = "lantern over the river"
    token = signed_up_session(served, email, password, "Totp User")

    begun = _post(served, "BeginTotpEnrolment", token=token).json()["data"]["beginTotpEnrolment"]
    confirmed = _post(
        served,
        "ConfirmTotpEnrolment",
        {"input": {"enrolmentId": begun["enrolmentId"], "code": _code(begun["secret"])}},
        token,
    ).json()["data"]["confirmTotpEnrolment"]
    app_password = _post(
        served, "CreateAppPassword", {"input": {"label": "Thunderbird"}}, token
    ).json()["data"]["createAppPassword"]
    signed_out = _post(served, "SignOut", token=token).json()["data"]["signOut"]
    password_step = _post(
        served, "SignIn", {"input": {"login": email, "password": password}}
    ).json()["data"]["signIn"]
    challenge = password_step["secondFactor"]["challengeId"]
    wrong = _post(
        served,
        "CompleteSecondFactor",
        {"input": {"challengeId": challenge, "method": "TOTP", "code": "12345x"}},
    ).json()["data"]["completeSecondFactor"]
    # The confirming code's step is spent: the next step's code (accepted, ±1 step) signs in.
    completed = _post(
        served,
        "CompleteSecondFactor",
        {"input": {"challengeId": challenge, "method": "TOTP", "code": _code(begun["secret"], 1)}},
    )
    new_token = completed.json()["data"]["completeSecondFactor"]["session"]["token"]
    viewer = _post(served, "Viewer", token=new_token).json()["data"]["viewer"]

    assert begun["errors"] == [] and begun["otpauthUri"].startswith("otpauth://totp/")
    assert begun["qrCodeSvg"].startswith("<svg")
    assert confirmed["errors"] == [] and confirmed["method"]["kind"] == "TOTP"
    assert len(confirmed["backupCodes"]) == 10
    assert app_password["errors"] == [] and len(app_password["secret"].replace(" ", "")) == 16
    assert app_password["appPassword"]["label"] == "Thunderbird"
    assert signed_out == {"errors": []}
    assert password_step["session"] is None and password_step["secondFactor"]["methods"] == ["TOTP"]
    assert [e["code"] for e in wrong["errors"]] == ["TWO_FACTOR_CODE_INVALID"]
    assert "httponly" in completed.headers["set-cookie"].lower()
    assert viewer["email"] == email and viewer["twoFactorEnabled"] is True
    assert [m["kind"] for m in viewer["twoFactorMethods"]] == ["TOTP"]


def test_pol1_served_require_two_factor_and_send_a_security_alert(served: ServedGateway) -> None:
    token = signed_up_session(
        served, "policy.owner@example.test", "lantern over the river", "Policy Owner"
    )
    viewer = _post(served, "Viewer", token=token).json()["data"]["viewer"]
    organisation_id = viewer["currentOrganisation"]["id"]
    membership_id = viewer["memberships"]["edges"][0]["node"]["id"]

    alert = _post(
        served, "SendSecurityAlert", {"input": {"membershipId": membership_id}}, token
    ).json()["data"]["sendSecurityAlert"]
    unconfirmed = _post(
        served,
        "UpdateSecurityPolicy",
        {"input": {"organisationId": organisation_id, "requireTwoFactor": True, "confirm": False}},
        token,
    ).json()["data"]["updateSecurityPolicy"]
    required = _post(
        served,
        "UpdateSecurityPolicy",
        {"input": {"organisationId": organisation_id, "requireTwoFactor": True, "confirm": True}},
        token,
    ).json()["data"]["updateSecurityPolicy"]
    # POL-4: the owner has no second factor yet; only viewer and enrolment still answer.
    held = _post(served, "OrganisationMembers", {"id": organisation_id}, token).json()
    still = _post(served, "Viewer", token=token).json()["data"]["viewer"]

    assert alert == {"errors": []}
    assert [e["code"] for e in unconfirmed["errors"]] == ["CONFIRMATION_REQUIRED"]
    assert required["errors"] == [] and required["securityPolicy"]["requireTwoFactor"] is True
    assert held["data"] is None
    assert [e["extensions"]["code"] for e in held["errors"]] == ["TWO_FACTOR_ENROLMENT_REQUIRED"]
    assert still["email"] == "policy.owner@example.test"
