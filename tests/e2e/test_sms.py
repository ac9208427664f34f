"""Served: a phone enrolled and used to sign in with codes by SMS (MFA-3, MFA-7), the SMS leaving
through the outbox to a real HTTP gateway started by the test, signed as the gateway checks."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gardien.webhooks import new_secret
from tests.e2e.conftest import ServedGateway, fresh_gateway_env, signed_up_session, start_gateway
from tests.webhook_receiver import WebhookReceiver, new_receiver, serving

PHONE = "+41791234567"

BEGIN = """mutation($input: BeginSmsEnrolmentInput!) {
  beginSmsEnrolment(input: $input) { enrolmentId sentTo expiresAt errors { code field } } }"""
CONFIRM = """mutation($input: ConfirmSmsEnrolmentInput!) {
  confirmSmsEnrolment(input: $input) { method { kind label } backupCodes errors { code field } } }"""
SIGN_IN = """mutation($input: SignInInput!) {
  signIn(input: $input) { session { token } secondFactor { challengeId methods } errors { code } } }"""
SEND = """mutation($input: SendSignInCodeInput!) {
  sendSignInCode(input: $input) { sentTo expiresAt errors { code field } } }"""
COMPLETE = """mutation($input: CompleteSecondFactorInput!) {
  completeSecondFactor(input: $input) { session { token } errors { code field } } }"""


@pytest.fixture(scope="module")
def sms_gateway() -> Iterator[WebhookReceiver]:
    receiver = new_receiver(lambda: int(time.time()))
    receiver.secret = new_secret()
    with serving(receiver):
        yield receiver


@pytest.fixture(scope="module")
def served_with_sms(
    tmp_path_factory: pytest.TempPathFactory, sms_gateway: WebhookReceiver
) -> Iterator[ServedGateway]:
    env = fresh_gateway_env(Path(tmp_path_factory.mktemp("served-sms")))
    env.update(
        GARDIEN_SMS_WEBHOOK_URL=sms_gateway.url, GARDIEN_SMS_WEBHOOK_SECRET=sms_gateway.secret
    )
    with start_gateway(env) as gateway:
        yield gateway


def _gql(
    served: ServedGateway, query: str, variables: dict[str, Any], token: str | None = None
) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(
        f"{served.url}/graphql",
        json={"query": query, "variables": variables},
        headers=headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def _next_code(gateway: WebhookReceiver, count: int) -> str:
    """The code of the `count`-th SMS the gateway accepts, as the phone shows it."""
    deadline = time.monotonic() + 20
    while len(gateway.accepted()) < count:
        assert time.monotonic() < deadline, f"the SMS never reached the gateway: {gateway.requests}"
        time.sleep(0.1)
    received = gateway.accepted()[count - 1]
    assert received.body["to"] == PHONE
    found = re.search(r"\b(\d{6})\b", received.body["text"])
    assert found is not None
    return found.group(1)


def test_mfa3_served_enrol_a_phone_then_sign_in_with_an_sms_code(
    served_with_sms: ServedGateway, sms_gateway: WebhookReceiver
) -> None:
    served = served_with_sms
    email, password = "sms.user@example.test", "lantern over the river"
    token = signed_up_session(served, email, password, "Sms User")

    american = _gql(served, BEGIN, {"input": {"phone": "+1 650 253 0000"}}, token)
    begun = _gql(served, BEGIN, {"input": {"phone": "079 123 45 67"}}, token)["beginSmsEnrolment"]
    enrolment_code = _next_code(sms_gateway, 1)
    confirmed = _gql(
        served,
        CONFIRM,
        {"input": {"enrolmentId": begun["enrolmentId"], "code": enrolment_code}},
        token,
    )["confirmSmsEnrolment"]
    password_step = _gql(served, SIGN_IN, {"input": {"login": email, "password": password}})
    challenge = password_step["signIn"]["secondFactor"]["challengeId"]
    sent = _gql(served, SEND, {"input": {"challengeId": challenge}})["sendSignInCode"]
    sign_in_code = _next_code(sms_gateway, 2)
    wrong_code = f"{(int(sign_in_code) + 1) % 1_000_000:06d}"
    wrong = _gql(
        served,
        COMPLETE,
        {"input": {"challengeId": challenge, "method": "SMS", "code": wrong_code}},
    )["completeSecondFactor"]
    completed = _gql(
        served,
        COMPLETE,
        {"input": {"challengeId": challenge, "method": "SMS", "code": sign_in_code}},
    )["completeSecondFactor"]
    reused = _gql(
        served,
        COMPLETE,
        {"input": {"challengeId": challenge, "method": "SMS", "code": sign_in_code}},
    )["completeSecondFactor"]
    viewer = _gql(
        served, "{ viewer { twoFactorEnabled twoFactorMethods { kind label } } }", {},
        completed["session"]["token"],
    )["viewer"]  # fmt: skip

    assert american["beginSmsEnrolment"]["errors"] == [
        {"code": "PHONE_COUNTRY_NOT_SUPPORTED", "field": "phone"}
    ]
    assert begun["errors"] == [] and begun["sentTo"] == "+41 *******67"
    assert confirmed["errors"] == [] and len(confirmed["backupCodes"]) == 10
    assert confirmed["method"] == {"kind": "SMS", "label": "SMS +41 *******67"}
    assert password_step["signIn"]["secondFactor"]["methods"] == ["SMS"]
    assert sent["errors"] == [] and sent["sentTo"] == "+41 *******67"
    assert wrong == {
        "session": None,
        "errors": [{"code": "TWO_FACTOR_CODE_INVALID", "field": "code"}],
    }
    assert completed["errors"] == [] and completed["session"]["token"]
    assert [e["code"] for e in reused["errors"]] == ["CHALLENGE_EXPIRED"]
    assert viewer == {
        "twoFactorEnabled": True,
        "twoFactorMethods": [{"kind": "SMS", "label": "SMS +41 *******67"}],
    }
    # Every request the gateway got was signed with its secret, one reference per message.
    assert [r.signature_valid for r in sms_gateway.requests] == [True, True]
    assert len({r.body["reference"] for r in sms_gateway.requests}) == 2
