"""Served: register a security key, sign out, sign in with the password then the key (MFA-2,
MFA-7), with the software authenticator answering as a browser and a key would."""

from __future__ import annotations

from typing import Any

import httpx

from gardien.settings import load_settings
from tests.e2e.conftest import ServedGateway, signed_up_session
from tests.e2e.test_contract import _post
from tests.webauthn_authenticator import SoftAuthenticator

BEGIN_SIGN_IN = """
mutation BeginSecurityKeySignIn($input: BeginSecurityKeySignInInput!) {
  beginSecurityKeySignIn(input: $input) { options errors { code message field } }
}
"""


def _begin_sign_in(served: ServedGateway, challenge_id: str) -> dict[str, Any]:
    body = httpx.post(
        f"{served.url}/graphql",
        json={"query": BEGIN_SIGN_IN, "variables": {"input": {"challengeId": challenge_id}}},
        timeout=30,
    ).json()
    payload: dict[str, Any] = body["data"]["beginSecurityKeySignIn"]
    return payload


def test_mfa2_served_register_a_key_sign_out_sign_in_with_password_then_key(
    served: ServedGateway,
) -> None:
    email = "key.user@example.test"
    password = "lantern over the river"
    token = signed_up_session(served, email, password, "Key User")
    # The gateway's relying party, as its settings derive it (from GARDIEN_PUBLIC_URL here).
    origin = load_settings(served.env).webauthn_origin
    key = SoftAuthenticator(origin)

    begun = _post(served, "BeginSecurityKeyRegistration", token=token).json()["data"][
        "beginSecurityKeyRegistration"
    ]
    registered = _post(
        served,
        "CompleteSecurityKeyRegistration",
        {
            "input": {
                "registrationId": begun["registrationId"],
                "credential": key.create(begun["options"]),
                "nickname": "Blue YubiKey",
            }
        },
        token,
    ).json()["data"]["completeSecurityKeyRegistration"]
    signed_out = _post(served, "SignOut", token=token).json()["data"]["signOut"]
    password_step = _post(
        served, "SignIn", {"input": {"login": email, "password": password}}
    ).json()["data"]["signIn"]
    challenge = password_step["secondFactor"]["challengeId"]
    wrong_origin = _begin_sign_in(served, challenge)
    refused = _post(
        served,
        "CompleteSecondFactor",
        {
            "input": {
                "challengeId": challenge,
                "method": "SECURITY_KEY",
                "credential": key.get(wrong_origin["options"], origin="https://evil.example"),
            }
        },
    ).json()["data"]["completeSecondFactor"]
    request = _begin_sign_in(served, challenge)
    completed = _post(
        served,
        "CompleteSecondFactor",
        {
            "input": {
                "challengeId": challenge,
                "method": "SECURITY_KEY",
                "credential": key.get(request["options"]),
            }
        },
    )
    new_token = completed.json()["data"]["completeSecondFactor"]["session"]["token"]
    viewer = _post(served, "Viewer", token=new_token).json()["data"]["viewer"]

    assert begun["errors"] == [] and begun["options"]["attestation"] == "none"
    assert begun["options"]["rp"]["id"] == load_settings(served.env).webauthn_rp_id
    assert registered["errors"] == []
    assert registered["method"]["kind"] == "SECURITY_KEY"
    assert registered["method"]["label"] == "Blue YubiKey"
    assert signed_out == {"errors": []}
    assert password_step["secondFactor"]["methods"] == ["SECURITY_KEY"]
    assert [e["code"] for e in refused["errors"]] == ["SECURITY_KEY_REJECTED"]
    assert refused["session"] is None
    assert request["errors"] == [] and len(request["options"]["allowCredentials"]) == 1
    assert "httponly" in completed.headers["set-cookie"].lower()
    assert viewer["email"] == email and viewer["twoFactorEnabled"] is True
    assert [(m["kind"], m["label"]) for m in viewer["twoFactorMethods"]] == [
        ("SECURITY_KEY", "Blue YubiKey")
    ]
