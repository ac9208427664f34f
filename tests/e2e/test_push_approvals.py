"""Push approval with number matching (MFA-4), served for real: the phone is a graphql-transport-ws
client holding a device credential, the browser speaks HTTP. In-process gateways run on the
injected clock (expiry is tested by moving it); two `gardien serve` processes share Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette

from gardien import devices
from gardien.clock import ManualClock
from gardien.demo import DEMO_PASSWORD
from gardien.graphql.ws import GraphQLWebSocket
from gardien.resolvers import push_approvals
from gardien.resolvers.services import Services
from tests import factories
from tests.conftest import IN_CI, REDIS_URL
from tests.e2e.conftest import ServedGateway, fresh_gateway_env, start_gateway
from tests.e2e.wsclient import GraphQLWebSocketClient
from tests.served import served_in_process

BROWSER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

REGISTER = """
mutation Register($input: RegisterPushDeviceInput!) {
  registerPushDevice(input: $input) {
    device { id kind label createdAt lastUsedAt } deviceCredential backupCodes errors { code }
  }
}"""
SIGN_IN = """
mutation SignIn($input: SignInInput!) {
  signIn(input: $input) { session { token } secondFactor { challengeId methods } errors { code } }
}"""
REQUEST = """
mutation Request($input: RequestLoginApprovalInput!) {
  requestLoginApproval(input: $input) {
    approvalId number expiresAt errors { code retryAfterSeconds }
  }
}"""
ANSWER = """
mutation Answer($input: AnswerLoginApprovalInput!) {
  answerLoginApproval(input: $input) { status errors { code field } }
}"""
COMPLETE = """
mutation Complete($input: CompleteSecondFactorInput!) {
  completeSecondFactor(input: $input) { session { token } errors { code } }
}"""
REMOVE = """
mutation Remove($input: RemoveTwoFactorMethodInput!) {
  removeTwoFactorMethod(input: $input) { twoFactorEnabled errors { code } }
}"""
FEED = """
subscription Feed {
  loginApprovalRequests { approvalId status country device requestedAt expiresAt numbers }
}"""


class Browser:
    """The sign-in's side: plain HTTP to the served gateway, as a browser's page does it."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url
        self.token = token

    async def post(
        self, query: str, variables: dict[str, Any], authorization: str | None = None
    ) -> dict[str, Any]:
        headers = {"accept": "application/graphql-response+json", "user-agent": BROWSER_AGENT}
        if authorization is not None:
            headers["authorization"] = authorization
        elif self.token is not None:
            headers["authorization"] = f"Bearer {self.token}"
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.post(
                f"{self.url}/graphql",
                json={"query": query, "variables": variables},
                headers=headers,
            )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def field(self, query: str, name: str, **input_: Any) -> dict[str, Any]:
        body = await self.post(query, {"input": input_})
        assert "errors" not in body, body
        result: dict[str, Any] = body["data"][name]
        return result

    async def challenge(self, login: str, password: str) -> str:
        signed_in = await Browser(self.url).field(SIGN_IN, "signIn", login=login, password=password)
        assert signed_in["errors"] == [] and signed_in["session"] is None, signed_in
        assert "PUSH" in signed_in["secondFactor"]["methods"]
        challenge_id: str = signed_in["secondFactor"]["challengeId"]
        return challenge_id

    async def complete(self, challenge_id: str) -> dict[str, Any]:
        return await Browser(self.url).field(
            COMPLETE, "completeSecondFactor", challengeId=challenge_id, method="PUSH"
        )


class Phone:
    """The approval app: a graphql-transport-ws client authenticated by its device credential,
    answering over HTTP with the same credential."""

    def __init__(self, url: str, credential: str, socket: GraphQLWebSocketClient) -> None:
        self.url = url
        self.credential = credential
        self.socket = socket

    @classmethod
    async def connected(cls, url: str, credential: str) -> Phone:
        socket = await GraphQLWebSocketClient.open(url)
        await socket.send(
            {"type": "connection_init", "payload": {"authorization": f"Device {credential}"}}
        )
        ack = await socket.receive()
        assert ack == {"type": "connection_ack"}, ack
        await socket.subscribe("feed", FEED)
        phone = cls(url, credential, socket)
        # The subscription is joined once the server has run its subscribe function.
        await asyncio.sleep(0.3)
        return phone

    async def next_request(self) -> dict[str, Any]:
        message = await self.socket.receive()
        assert message["type"] == "next" and message["id"] == "feed", message
        assert "errors" not in message["payload"], message
        request: dict[str, Any] = message["payload"]["data"]["loginApprovalRequests"]
        return request

    async def answer(self, approval_id: str, approve: bool, number: int | None) -> dict[str, Any]:
        body = await Browser(self.url).post(
            ANSWER,
            {"input": {"approvalId": approval_id, "approve": approve, "number": number}},
            authorization=f"Device {self.credential}",
        )
        assert "errors" not in body, body
        answered: dict[str, Any] = body["data"]["answerLoginApproval"]
        return answered


@pytest_asyncio.fixture
async def served_app(app: Starlette) -> AsyncIterator[str]:
    """The app on a real socket with the test's clock, as `gardien serve` runs it; its live
    subscriptions follow the in-process bus (the lifespan, which starts that, is off here)."""
    transport: GraphQLWebSocket = app.state.graphql_ws
    transport.hub.start()
    try:
        async with served_in_process(app) as base:
            yield base
    finally:
        await transport.hub.stop()


async def _registered(url: str, services: Services, email: str) -> tuple[Browser, Phone, str]:
    """A user who signed up and registered their phone from the browser; the phone listening.
    Answers (the signed-in browser, the phone, the device's method id)."""
    signed_up = await factories.sign_up(services, email=email)
    browser = Browser(url, signed_up.session.token)
    registered = await browser.field(REGISTER, "registerPushDevice", label="Pixel 9")
    assert registered["errors"] == [] and len(registered["backupCodes"]) == 10, registered
    assert registered["device"]["kind"] == "PUSH"
    phone = await Phone.connected(url, registered["deviceCredential"])
    return browser, phone, registered["device"]["id"]


async def test_mfa4_served_sign_in_approved_live_on_the_phone_with_number_matching(
    served_app: str, services: Services
) -> None:
    """Sign in, request, the phone receives it live with three numbers, picks the one the
    sign-in screen shows, approves; the waiting browser completes and gets its session."""
    browser, phone, _ = await _registered(served_app, services, "ada@example.test")
    challenge_id = await browser.challenge("ada@example.test", factories.PASSWORD)

    requested = await browser.field(REQUEST, "requestLoginApproval", challengeId=challenge_id)
    on_phone = await phone.next_request()
    waiting = await browser.complete(challenge_id)
    picked = next(n for n in on_phone["numbers"] if n == requested["number"])
    answered = await phone.answer(on_phone["approvalId"], True, picked)
    completed = await browser.complete(challenge_id)
    viewer = await Browser(served_app, completed["session"]["token"]).post(
        "{ viewer { email } }", {}
    )

    assert requested["errors"] == []
    assert (on_phone["approvalId"], on_phone["status"]) == (requested["approvalId"], "PENDING")
    assert on_phone["expiresAt"] == requested["expiresAt"]
    assert len(set(on_phone["numbers"])) == 3 and requested["number"] in on_phone["numbers"]
    described = devices.describe(BROWSER_AGENT)
    assert described is not None and on_phone["device"] == described.label
    assert waiting == {"session": None, "errors": [{"code": "LOGIN_APPROVAL_PENDING"}]}
    assert answered == {"status": "APPROVED", "errors": []}
    assert completed["errors"] == []
    assert viewer["data"] == {"viewer": {"email": "ada@example.test"}}
    await phone.socket.close()


async def test_mfa4_served_every_device_of_the_user_receives_the_request_one_answer_counts(
    served_app: str, services: Services
) -> None:
    browser, phone, _ = await _registered(served_app, services, "ada@example.test")
    tablet_registered = await browser.field(REGISTER, "registerPushDevice", label="Tablet")
    tablet = await Phone.connected(served_app, tablet_registered["deviceCredential"])
    challenge_id = await browser.challenge("ada@example.test", factories.PASSWORD)

    requested = await browser.field(REQUEST, "requestLoginApproval", challengeId=challenge_id)
    on_phone, on_tablet = await phone.next_request(), await tablet.next_request()
    denied = await tablet.answer(on_tablet["approvalId"], False, None)
    too_late = await phone.answer(on_phone["approvalId"], True, requested["number"])
    completed = await browser.complete(challenge_id)

    assert on_phone == on_tablet
    assert on_phone["approvalId"] == requested["approvalId"]
    assert denied == {"status": "DENIED", "errors": []}
    assert too_late == {
        "status": None,
        "errors": [{"code": "LOGIN_APPROVAL_ANSWERED", "field": "approvalId"}],
    }
    assert completed == {"session": None, "errors": [{"code": "LOGIN_APPROVAL_DENIED"}]}
    await phone.socket.close()
    await tablet.socket.close()


async def test_mfa4_served_phone_connecting_after_the_request_receives_what_is_pending(
    served_app: str, services: Services, clock: ManualClock
) -> None:
    """The app usually connects because a request woke it: the requests still pending come
    first, an expired one does not."""
    signed_up = await factories.sign_up(services, email="ada@example.test")
    browser = Browser(served_app, signed_up.session.token)
    registered = await browser.field(REGISTER, "registerPushDevice", label="Pixel 9")
    first_challenge = await browser.challenge("ada@example.test", factories.PASSWORD)
    await browser.field(REQUEST, "requestLoginApproval", challengeId=first_challenge)
    clock.advance(push_approvals.APPROVAL_LIFETIME)
    second_challenge = await browser.challenge("ada@example.test", factories.PASSWORD)
    pending = await browser.field(REQUEST, "requestLoginApproval", challengeId=second_challenge)

    phone = await Phone.connected(served_app, registered["deviceCredential"])
    replayed = await phone.next_request()
    more = await phone.socket.quiet_for(0.5)

    assert (replayed["approvalId"], replayed["status"]) == (pending["approvalId"], "PENDING")
    assert pending["number"] in replayed["numbers"]
    assert more == []
    await phone.socket.close()


async def test_mfa4_served_request_expires_when_the_clock_passes_two_minutes(
    served_app: str, services: Services, clock: ManualClock
) -> None:
    browser, phone, _ = await _registered(served_app, services, "ada@example.test")
    challenge_id = await browser.challenge("ada@example.test", factories.PASSWORD)
    requested = await browser.field(REQUEST, "requestLoginApproval", challengeId=challenge_id)
    on_phone = await phone.next_request()

    clock.advance(push_approvals.APPROVAL_LIFETIME)
    late = await phone.answer(on_phone["approvalId"], True, requested["number"])
    completed = await browser.complete(challenge_id)

    assert late == {
        "status": None,
        "errors": [{"code": "LOGIN_APPROVAL_EXPIRED", "field": "approvalId"}],
    }
    assert completed == {"session": None, "errors": [{"code": "LOGIN_APPROVAL_EXPIRED"}]}
    await phone.socket.close()


async def test_mfa4_served_wrong_number_denies_the_sign_in(
    served_app: str, services: Services
) -> None:
    browser, phone, _ = await _registered(served_app, services, "ada@example.test")
    challenge_id = await browser.challenge("ada@example.test", factories.PASSWORD)
    requested = await browser.field(REQUEST, "requestLoginApproval", challengeId=challenge_id)
    on_phone = await phone.next_request()
    decoy = next(n for n in on_phone["numbers"] if n != requested["number"])

    answered = await phone.answer(on_phone["approvalId"], True, decoy)
    completed = await browser.complete(challenge_id)

    assert answered == {
        "status": None,
        "errors": [{"code": "LOGIN_APPROVAL_WRONG_NUMBER", "field": "number"}],
    }
    assert completed == {"session": None, "errors": [{"code": "LOGIN_APPROVAL_DENIED"}]}
    await phone.socket.close()


async def test_mfa4_served_another_users_phone_neither_hears_nor_answers(
    served_app: str, services: Services
) -> None:
    browser, phone, _ = await _registered(served_app, services, "ada@example.test")
    _, mallory_phone, _ = await _registered(served_app, services, "mallory@example.test")
    challenge_id = await browser.challenge("ada@example.test", factories.PASSWORD)
    requested = await browser.field(REQUEST, "requestLoginApproval", challengeId=challenge_id)
    await phone.next_request()

    overheard = await mallory_phone.socket.quiet_for(0.5)
    answered = await mallory_phone.answer(requested["approvalId"], True, requested["number"])
    completed = await browser.complete(challenge_id)

    assert overheard == []
    assert answered == {"status": None, "errors": [{"code": "NOT_FOUND", "field": "approvalId"}]}
    assert completed == {"session": None, "errors": [{"code": "LOGIN_APPROVAL_PENDING"}]}
    await phone.socket.close()
    await mallory_phone.socket.close()


async def test_mfa4_served_push_requests_are_rate_limited(
    served_app: str, services: Services
) -> None:
    browser, phone, _ = await _registered(served_app, services, "ada@example.test")
    challenge_id = await browser.challenge("ada@example.test", factories.PASSWORD)
    limit = push_approvals.REQUESTS_PER_USER.limit

    answers = [
        await browser.field(REQUEST, "requestLoginApproval", challengeId=challenge_id)
        for _ in range(limit + 1)
    ]
    delivered = [await phone.next_request() for _ in range(limit)]
    more = await phone.socket.quiet_for(0.5)

    assert [a["errors"] for a in answers[:limit]] == [[]] * limit
    (refusal,) = answers[limit]["errors"]
    assert refusal["code"] == "TOO_MANY_ATTEMPTS" and 0 < refusal["retryAfterSeconds"] <= 600
    assert [d["approvalId"] for d in delivered] == [a["approvalId"] for a in answers[:limit]]
    assert more == []
    await phone.socket.close()


async def test_mfa4_served_removed_device_loses_its_subscription_and_credential(
    served_app: str, services: Services
) -> None:
    browser, phone, method_id = await _registered(served_app, services, "ada@example.test")

    removed = await browser.field(
        REMOVE, "removeTwoFactorMethod", methodId=method_id, password=factories.PASSWORD
    )
    ended = await phone.socket.receive()
    closed = await phone.socket.closed_with()
    again = await GraphQLWebSocketClient.open(served_app)
    await again.send(
        {"type": "connection_init", "payload": {"authorization": f"Device {phone.credential}"}}
    )
    refused_socket = await again.closed_with()
    async with httpx.AsyncClient(timeout=30) as http:
        refused_http = await http.post(
            f"{served_app}/graphql",
            json={"query": ANSWER, "variables": {"input": {"approvalId": "x", "approve": False}}},
            headers={"authorization": f"Device {phone.credential}"},
        )

    assert removed == {"twoFactorEnabled": False, "errors": []}
    assert ended["type"] == "error" and ended["id"] == "feed"
    assert ended["payload"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert closed == (4403, "Forbidden")
    assert refused_socket == (4403, "Forbidden")
    assert refused_http.status_code == 401


async def test_mfa4_served_device_socket_follows_nothing_else(
    served_app: str, services: Services
) -> None:
    _, phone, _ = await _registered(served_app, services, "ada@example.test")

    await phone.socket.subscribe("events", "subscription { viewerSecurityEvents { cursor } }")
    refused = await phone.socket.receive()
    await phone.socket.subscribe("viewer", "query { viewer { email } }")
    viewer = await phone.socket.receive()

    assert refused["type"] == "error" and refused["id"] == "events"
    assert refused["payload"][0]["extensions"]["code"] == "FORBIDDEN"
    assert viewer["type"] == "next" and viewer["payload"]["data"] is None
    assert viewer["payload"]["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    await phone.socket.close()


# --- Two gateway processes sharing Redis (EVT-3) ------------------------------------------------


@pytest.fixture(scope="module")
def two_processes(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServedGateway, ServedGateway]]:
    if not REDIS_URL:
        if IN_CI:
            pytest.fail("CI=true needs GARDIEN_TEST_REDIS_URL")
        pytest.skip("set GARDIEN_TEST_REDIS_URL to run gateways against Redis")
    env = fresh_gateway_env(tmp_path_factory.mktemp("push-two-processes"))
    env["GARDIEN_REDIS_URL"] = REDIS_URL
    with start_gateway(env) as first, start_gateway(env, prepare=False) as second:
        yield first, second


async def test_mfa4_served_request_made_on_one_process_reaches_the_phone_on_the_other(
    two_processes: tuple[ServedGateway, ServedGateway],
) -> None:
    """The phone listens on one gateway process; the browser signs in through another. The
    request crosses over the Redis bus, published once its transaction commits."""
    first, second = two_processes
    login = "anna.legal@demo.example"
    signed_in = await Browser(second.url).field(
        SIGN_IN, "signIn", login=login, password=DEMO_PASSWORD
    )
    browser = Browser(second.url, signed_in["session"]["token"])
    registered = await browser.field(REGISTER, "registerPushDevice", label="Anna's phone")
    phone = await Phone.connected(first.url, registered["deviceCredential"])
    challenge_id = await browser.challenge(login, DEMO_PASSWORD)

    requested = await browser.field(REQUEST, "requestLoginApproval", challengeId=challenge_id)
    on_phone = await phone.next_request()
    answered = await Phone(second.url, phone.credential, phone.socket).answer(
        on_phone["approvalId"], True, requested["number"]
    )
    completed = await Browser(first.url).complete(challenge_id)

    assert on_phone["approvalId"] == requested["approvalId"]
    assert requested["number"] in on_phone["numbers"]
    assert answered == {"status": "APPROVED", "errors": []}
    assert completed["errors"] == [] and completed["session"]["token"]
    await phone.socket.close()
