"""Live security events over graphql-transport-ws against a served gateway (EVT-1…EVT-4, ACT-4)."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import IN_CI, REDIS_URL
from tests.e2e.conftest import (
    ServedGateway,
    fresh_gateway_env,
    gardien,
    signed_up_session,
    start_gateway,
)
from tests.e2e.test_contract import _organisation_id, _post, _sign_in, _standalone
from tests.e2e.test_two_factor import _code as totp_code
from tests.e2e.wsclient import GraphQLWebSocketClient

ORGANISATION_EVENTS = _standalone("OrganisationSecurityEvents")
VIEWER_EVENTS = _standalone("ViewerSecurityEvents")
FILTERED = """
subscription Filtered($organisationId: ID!, $types: [String!], $after: String) {
  organisationSecurityEvents(organisationId: $organisationId, types: $types, after: $after) {
    cursor event { type subject { email } }
  }
}"""


@pytest.fixture(scope="module")
def events_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    """A gateway of this module's own: its tests change roles and sessions of the demo."""
    with start_gateway(fresh_gateway_env(tmp_path_factory.mktemp("events"))) as gateway:
        yield gateway


def _membership_ids(gateway: ServedGateway, token: str) -> dict[str, str]:
    body = _post(
        gateway, "OrganisationMembers", {"id": _organisation_id(gateway, token), "first": 50}, token
    ).json()
    edges = body["data"]["organisation"]["members"]["edges"]
    return {edge["node"]["user"]["email"]: edge["node"]["id"] for edge in edges}


def _change_role(gateway: ServedGateway, token: str, membership_id: str, role: str) -> None:
    body = _post(
        gateway,
        "ChangeMemberRole",
        {"input": {"membershipId": membership_id, "role": role}},
        token,
    ).json()
    assert body["data"]["changeMemberRole"]["errors"] == [], body


def _fail_sign_in(gateway: ServedGateway, login: str) -> None:
    body = _post(gateway, "SignIn", {"input": {"login": login, "password": "wrong horse"}}).json()
    assert body["data"]["signIn"]["errors"][0]["code"] == "INVALID_CREDENTIALS"


async def _next_event(client: GraphQLWebSocketClient, subscription_id: str) -> dict[str, Any]:
    message = await client.receive()
    assert message["type"] == "next" and message["id"] == subscription_id, message
    assert "errors" not in message["payload"], message
    data: dict[str, Any] = message["payload"]["data"]
    return data


async def test_evt1_contract_organisation_security_events_live(
    events_gateway: ServedGateway,
) -> None:
    """The contract operation, over a real socket: an administrator's change reaches the legal
    representative's subscription with its cursor, actor and subject."""
    legal = _sign_in(events_gateway, "anna.legal@demo.example")
    admin = _sign_in(events_gateway, "marc.admin@demo.example")
    organisation_id = _organisation_id(events_gateway, legal)
    ids = _membership_ids(events_gateway, legal)
    client = await GraphQLWebSocketClient.initialised(events_gateway.url, legal)
    await client.subscribe("1", ORGANISATION_EVENTS, {"organisationId": organisation_id})
    await asyncio.sleep(0.3)  # the subscription is registered before the change is made

    _change_role(events_gateway, admin, ids["tom.extern@demo.example"], "COLLABORATOR")
    data = await _next_event(client, "1")
    _change_role(events_gateway, admin, ids["tom.extern@demo.example"], "EXTERNAL")
    second = await _next_event(client, "1")
    await client.close()

    edge = data["organisationSecurityEvents"]
    assert edge["event"]["type"] == "member.role_changed"
    assert edge["event"]["actor"]["email"] == "marc.admin@demo.example"
    assert edge["event"]["subject"]["email"] == "tom.extern@demo.example"
    assert edge["event"]["id"] and edge["event"]["occurredAt"] and edge["cursor"]
    assert second["organisationSecurityEvents"]["cursor"] != edge["cursor"]


async def test_act4_members_sign_in_failures_in_organisation_stream_and_activity(
    events_gateway: ServedGateway,
) -> None:
    """A member's failed sign-in (an account event, no organisation of its own) is in the
    organisation's live stream and in organisation.activity: one predicate for both."""
    legal = _sign_in(events_gateway, "anna.legal@demo.example")
    organisation_id = _organisation_id(events_gateway, legal)
    client = await GraphQLWebSocketClient.initialised(events_gateway.url, legal)
    await client.subscribe(
        "f", FILTERED, {"organisationId": organisation_id, "types": ["sign_in.failed"]}
    )
    await asyncio.sleep(0.3)

    _fail_sign_in(events_gateway, "lea.collab@demo.example")
    data = await _next_event(client, "f")
    activity = _post(
        events_gateway, "OrganisationActivity", {"id": organisation_id, "first": 5}, legal
    ).json()
    await client.close()

    assert data == {
        "organisationSecurityEvents": {
            "cursor": data["organisationSecurityEvents"]["cursor"],
            "event": {"type": "sign_in.failed", "subject": {"email": "lea.collab@demo.example"}},
        }
    }
    types = [e["node"]["type"] for e in activity["data"]["organisation"]["activity"]["edges"]]
    assert "sign_in.failed" in types


async def test_evt1_types_filter_skips_other_events(events_gateway: ServedGateway) -> None:
    legal = _sign_in(events_gateway, "anna.legal@demo.example")
    admin = _sign_in(events_gateway, "marc.admin@demo.example")
    organisation_id = _organisation_id(events_gateway, legal)
    ids = _membership_ids(events_gateway, legal)
    client = await GraphQLWebSocketClient.initialised(events_gateway.url, legal)
    await client.subscribe(
        "only-failures", FILTERED, {"organisationId": organisation_id, "types": ["sign_in.failed"]}
    )
    await asyncio.sleep(0.3)

    _change_role(events_gateway, admin, ids["tom.extern@demo.example"], "COLLABORATOR")
    _change_role(events_gateway, admin, ids["tom.extern@demo.example"], "EXTERNAL")
    _fail_sign_in(events_gateway, "marc.admin@demo.example")
    data = await _next_event(client, "only-failures")
    rest = await client.quiet_for(0.5)
    await client.close()

    assert data["organisationSecurityEvents"]["event"] == {
        "type": "sign_in.failed",
        "subject": {"email": "marc.admin@demo.example"},
    }
    assert rest == []


async def test_evt1_contract_viewer_security_events_own_only(events_gateway: ServedGateway) -> None:
    lea = _sign_in(events_gateway, "lea.collab@demo.example")
    client = await GraphQLWebSocketClient.initialised(events_gateway.url, lea)
    await client.subscribe("mine", VIEWER_EVENTS)
    await asyncio.sleep(0.3)

    _fail_sign_in(events_gateway, "tom.extern@demo.example")  # someone else's: not shown
    _sign_in(events_gateway, "lea.collab@demo.example")
    data = await _next_event(client, "mine")
    rest = await client.quiet_for(0.5)
    await client.close()

    edge = data["viewerSecurityEvents"]
    assert edge["event"]["type"] == "sign_in.succeeded"
    assert edge["cursor"] and edge["event"]["id"]
    # The second sign-in came without the first one's device cookie: a new device (ACT-2), also
    # Lea's own event. Nothing of Tom's.
    assert [m["payload"]["data"]["viewerSecurityEvents"]["event"]["type"] for m in rest] == [
        "sign_in.new_location"
    ]


async def test_evt2_resume_after_dropped_connection_gets_every_missed_event_once(
    events_gateway: ServedGateway,
) -> None:
    legal = _sign_in(events_gateway, "anna.legal@demo.example")
    organisation_id = _organisation_id(events_gateway, legal)
    variables = {"organisationId": organisation_id, "types": ["sign_in.failed"]}
    first = await GraphQLWebSocketClient.initialised(events_gateway.url, legal)
    await first.subscribe("a", FILTERED, variables)
    await asyncio.sleep(0.3)
    _fail_sign_in(events_gateway, "tom.extern@demo.example")
    cursor = (await _next_event(first, "a"))["organisationSecurityEvents"]["cursor"]
    await first.close()

    for login in ("lea.collab@demo.example", "marc.admin@demo.example", "tom.extern@demo.example"):
        _fail_sign_in(events_gateway, login)
    second = await GraphQLWebSocketClient.initialised(events_gateway.url, legal)
    await second.subscribe("b", FILTERED, {**variables, "after": cursor})
    missed = [await _next_event(second, "b") for _ in range(3)]
    _fail_sign_in(events_gateway, "anna.legal@demo.example")
    live = await _next_event(second, "b")
    rest = await second.quiet_for(0.5)
    await second.close()

    assert [m["organisationSecurityEvents"]["event"]["subject"]["email"] for m in missed] == [
        "lea.collab@demo.example",
        "marc.admin@demo.example",
        "tom.extern@demo.example",
    ]
    assert live["organisationSecurityEvents"]["event"]["subject"]["email"] == (
        "anna.legal@demo.example"
    )
    cursors = [m["organisationSecurityEvents"]["cursor"] for m in [*missed, live]]
    assert len(set(cursors)) == 4
    assert rest == []


async def _error_of(
    gateway: ServedGateway, token: str, query: str, variables: dict[str, Any]
) -> list[dict[str, Any]]:
    client = await GraphQLWebSocketClient.initialised(gateway.url, token)
    await client.subscribe("x", query, variables)
    message = await client.receive()
    await client.close()
    assert message["type"] == "error" and message["id"] == "x", message
    payload: list[dict[str, Any]] = message["payload"]
    return payload


async def test_evt1_collaborator_cannot_subscribe_to_organisation(
    events_gateway: ServedGateway,
) -> None:
    lea = _sign_in(events_gateway, "lea.collab@demo.example")
    organisation_id = _organisation_id(events_gateway, lea)

    errors = await _error_of(
        events_gateway, lea, ORGANISATION_EVENTS, {"organisationId": organisation_id}
    )

    assert [e["extensions"]["code"] for e in errors] == ["FORBIDDEN"]


async def test_evt1_another_organisation_does_not_exist_for_the_subscriber(
    events_gateway: ServedGateway,
) -> None:
    """Sign up a second customer: its organisation is NOT_FOUND to the demo's legal representative."""
    other = signed_up_session(
        events_gateway, "other.customer@example.test", "lantern over the river", "Other"
    )
    other_organisation = _organisation_id(events_gateway, other)
    legal = _sign_in(events_gateway, "anna.legal@demo.example")

    errors = await _error_of(
        events_gateway, legal, ORGANISATION_EVENTS, {"organisationId": other_organisation}
    )

    assert [e["extensions"]["code"] for e in errors] == ["NOT_FOUND"]


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        pytest.param({"after": "bm90IGEgY3Vyc29y"}, "after", id="forged-cursor"),
        pytest.param({"after": "Y3Vyc29yOjk5OTk5OTk5OQ=="}, "after", id="cursor-beyond-newest"),
        pytest.param({"types": ["sign_in.nope"]}, "types", id="unknown-type"),
    ],
)
async def test_evt2_bad_cursor_or_type_is_an_input_error(
    events_gateway: ServedGateway, variables: dict[str, Any], field: str
) -> None:
    legal = _sign_in(events_gateway, "anna.legal@demo.example")
    organisation_id = _organisation_id(events_gateway, legal)

    errors = await _error_of(
        events_gateway, legal, FILTERED, {"organisationId": organisation_id, **variables}
    )

    assert [(e["extensions"]["code"], e["extensions"].get("field")) for e in errors] == [
        ("INVALID_INPUT", field)
    ]


async def test_evt4_demoted_administrator_is_cut_off_within_a_second(
    events_gateway: ServedGateway,
) -> None:
    legal = _sign_in(events_gateway, "anna.legal@demo.example")
    admin = _sign_in(events_gateway, "marc.admin@demo.example")
    organisation_id = _organisation_id(events_gateway, legal)
    ids = _membership_ids(events_gateway, legal)
    client = await GraphQLWebSocketClient.initialised(events_gateway.url, admin)
    await client.subscribe("live", ORGANISATION_EVENTS, {"organisationId": organisation_id})
    await asyncio.sleep(0.3)

    _change_role(events_gateway, legal, ids["marc.admin@demo.example"], "COLLABORATOR")
    demoted_at = time.monotonic()
    messages = await _until_error(client)
    ended_after = time.monotonic() - demoted_at
    _fail_sign_in(events_gateway, "anna.legal@demo.example")
    rest = await client.quiet_for(0.5)
    await client.close()
    _change_role(events_gateway, legal, ids["marc.admin@demo.example"], "ADMINISTRATOR")

    # The demotion itself may be delivered first; then the subscription ends with FORBIDDEN.
    assert [m["event"]["type"] for m in _events(messages[:-1])] in ([], ["member.role_changed"])
    assert messages[-1]["id"] == "live"
    assert [e["extensions"]["code"] for e in messages[-1]["payload"]] == ["FORBIDDEN"]
    assert ended_after < 1.0
    assert rest == []


async def test_evt4_signed_out_session_ends_its_subscriptions(
    events_gateway: ServedGateway,
) -> None:
    lea = _sign_in(events_gateway, "lea.collab@demo.example")
    client = await GraphQLWebSocketClient.initialised(events_gateway.url, lea)
    await client.subscribe("mine", VIEWER_EVENTS)
    await asyncio.sleep(0.3)

    assert _post(events_gateway, "SignOut", token=lea).json()["data"]["signOut"] == {"errors": []}
    messages = await _until_error(client)
    code, _ = await client.closed_with()

    assert [m["event"]["type"] for m in _events(messages[:-1])] in ([], ["session.signed_out"])
    assert [e["extensions"]["code"] for e in messages[-1]["payload"]] == ["UNAUTHENTICATED"]
    assert code == 4403


async def _until_error(client: GraphQLWebSocketClient) -> list[dict[str, Any]]:
    """Messages up to and including the first error (at most three)."""
    messages = [await client.receive()]
    while messages[-1]["type"] != "error" and len(messages) < 3:
        messages.append(await client.receive())
    assert messages[-1]["type"] == "error", messages
    return messages


def _events(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [next(iter(m["payload"]["data"].values())) for m in messages]


# --- The protocol's close codes ----------------------------------------------------------------


async def test_evt1_close_4400_on_a_message_that_is_not_the_protocol(
    events_gateway: ServedGateway,
) -> None:
    client = await GraphQLWebSocketClient.open(events_gateway.url)
    await client.send_raw("{not json")

    assert await client.closed_with() == (4400, "Invalid message received")


async def test_evt1_close_4401_on_subscribe_before_acknowledgement(
    events_gateway: ServedGateway,
) -> None:
    client = await GraphQLWebSocketClient.open(events_gateway.url)
    await client.subscribe("1", VIEWER_EVENTS)

    assert await client.closed_with() == (4401, "Unauthorized")


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"authorization": "Bearer not-a-session"}, id="bad-token"),
        pytest.param({"authorization": "Basic abc"}, id="other-scheme"),
        pytest.param({}, id="missing"),
        pytest.param({"authorization": 42}, id="not-a-string"),
    ],
)
async def test_evt1_close_4403_on_bad_or_missing_credentials(
    events_gateway: ServedGateway, payload: dict[str, Any]
) -> None:
    client = await GraphQLWebSocketClient.open(events_gateway.url)
    await client.send({"type": "connection_init", "payload": payload})

    assert await client.closed_with() == (4403, "Forbidden")


async def test_evt1_cookie_from_another_origin_is_refused_and_from_ours_accepted(
    events_gateway: ServedGateway,
) -> None:
    token = _sign_in(events_gateway, "lea.collab@demo.example")
    cookie = {"cookie": f"gardien_session={token}"}
    foreign = await GraphQLWebSocketClient.open(
        events_gateway.url, headers={**cookie, "origin": "https://evil.example"}
    )
    ours = await GraphQLWebSocketClient.open(
        events_gateway.url, headers={**cookie, "origin": "http://127.0.0.1:8000"}
    )
    await foreign.send({"type": "connection_init"})
    await ours.send({"type": "connection_init"})

    assert await foreign.closed_with() == (4403, "Forbidden")
    assert await ours.receive() == {"type": "connection_ack"}
    await ours.close()


@pytest.mark.parametrize(
    "offered", [[], ["graphql-ws"]], ids=["none", "legacy-subscriptions-transport-ws"]
)
async def test_evt1_close_4406_without_the_subprotocol(
    events_gateway: ServedGateway, offered: list[str]
) -> None:
    client = await GraphQLWebSocketClient.open(events_gateway.url, subprotocols=offered)

    assert await client.closed_with() == (4406, "Subprotocol not acceptable")


async def test_evt1_close_4408_when_never_initialised(events_gateway: ServedGateway) -> None:
    client = await GraphQLWebSocketClient.open(events_gateway.url)

    assert await client.closed_with() == (4408, "Connection initialisation timeout")


async def test_evt1_close_4409_on_a_duplicate_subscription_id(
    events_gateway: ServedGateway,
) -> None:
    token = _sign_in(events_gateway, "lea.collab@demo.example")
    client = await GraphQLWebSocketClient.initialised(events_gateway.url, token)
    await client.subscribe("same", VIEWER_EVENTS)
    await client.subscribe("same", VIEWER_EVENTS)

    assert await client.closed_with() == (4409, "Subscriber for same already exists")


async def test_evt1_close_4429_on_a_second_initialisation(events_gateway: ServedGateway) -> None:
    token = _sign_in(events_gateway, "lea.collab@demo.example")
    client = await GraphQLWebSocketClient.initialised(events_gateway.url, token)
    await client.send({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})

    assert await client.closed_with() == (4429, "Too many initialisation requests")


async def test_evt1_ping_is_answered_with_pong(events_gateway: ServedGateway) -> None:
    token = _sign_in(events_gateway, "lea.collab@demo.example")
    client = await GraphQLWebSocketClient.initialised(events_gateway.url, token)
    await client.send({"type": "ping"})

    assert await client.receive() == {"type": "pong"}
    await client.close()


async def test_evt1_subscriptions_per_connection_are_bounded_and_a_flood_is_closed(
    events_gateway: ServedGateway,
) -> None:
    token = _sign_in(events_gateway, "lea.collab@demo.example")
    client = await GraphQLWebSocketClient.initialised(events_gateway.url, token)
    for number in range(21):
        await client.subscribe(str(number), VIEWER_EVENTS)
    refused = await client.receive()
    for number in range(21, 200):
        await client.send({"id": str(number), "type": "complete"})
        await client.subscribe(str(number), VIEWER_EVENTS)
    closed = await client.closed_with()

    assert refused["id"] == "20" and refused["type"] == "error"
    assert [e["extensions"]["code"] for e in refused["payload"]] == ["TOO_MANY_SUBSCRIPTIONS"]
    assert closed == (1008, "Too many subscribe messages")
    # The gateway is still there for everyone else.
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{events_gateway.url}/healthz", timeout=5)).status_code == 200


# --- Across processes (EVT-3) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_processes(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServedGateway, ServedGateway]]:
    """Two gateway processes on one database, sharing events through the real Redis."""
    if not REDIS_URL:
        if IN_CI:
            pytest.fail("CI=true needs GARDIEN_TEST_REDIS_URL")
        pytest.skip("set GARDIEN_TEST_REDIS_URL to run gateways against Redis")
    env = fresh_gateway_env(tmp_path_factory.mktemp("two-processes"))
    env["GARDIEN_REDIS_URL"] = REDIS_URL
    with start_gateway(env) as first, start_gateway(env, prepare=False) as second:
        yield first, second


async def test_evt3_event_caused_on_one_process_reaches_a_subscriber_on_the_other(
    two_processes: tuple[ServedGateway, ServedGateway],
) -> None:
    first, second = two_processes
    legal = _sign_in(second, "anna.legal@demo.example")
    organisation_id = _organisation_id(second, legal)
    on_second = await GraphQLWebSocketClient.initialised(second.url, legal)
    on_first = await GraphQLWebSocketClient.initialised(first.url, legal)
    variables = {"organisationId": organisation_id, "types": ["sign_in.failed"]}
    await on_second.subscribe("b", FILTERED, variables)
    await on_first.subscribe("a", FILTERED, variables)
    await asyncio.sleep(0.3)

    _fail_sign_in(first, "lea.collab@demo.example")
    _fail_sign_in(second, "tom.extern@demo.example")
    seen_on_second = [await _next_event(on_second, "b") for _ in range(2)]
    seen_on_first = [await _next_event(on_first, "a") for _ in range(2)]
    rest = await on_second.quiet_for(0.5) + await on_first.quiet_for(0.1)
    await on_second.close()
    await on_first.close()

    for seen in (seen_on_second, seen_on_first):
        assert [s["organisationSecurityEvents"]["event"]["subject"]["email"] for s in seen] == [
            "lea.collab@demo.example",
            "tom.extern@demo.example",
        ]
    assert rest == []


async def test_evt4_demotion_on_one_process_cuts_a_subscriber_on_the_other(
    two_processes: tuple[ServedGateway, ServedGateway],
) -> None:
    first, second = two_processes
    legal = _sign_in(first, "anna.legal@demo.example")
    admin = _sign_in(second, "marc.admin@demo.example")
    organisation_id = _organisation_id(first, legal)
    ids = _membership_ids(first, legal)
    client = await GraphQLWebSocketClient.initialised(second.url, admin)
    await client.subscribe("live", ORGANISATION_EVENTS, {"organisationId": organisation_id})
    await asyncio.sleep(0.3)

    _change_role(first, legal, ids["marc.admin@demo.example"], "COLLABORATOR")
    messages = await _until_error(client)
    await client.close()
    _change_role(first, legal, ids["marc.admin@demo.example"], "ADMINISTRATOR")

    assert [e["extensions"]["code"] for e in messages[-1]["payload"]] == ["FORBIDDEN"]


# --- The stock graphql-ws client (npm), run by node ---------------------------------------------

NODE_CLIENT = Path(__file__).resolve().parent / "node"


async def test_evt1_stock_graphql_ws_npm_client_receives_live_events(
    events_gateway: ServedGateway,
) -> None:
    """graphql-ws from npm, unmodified, speaks to the gateway (tests/e2e/node/subscribe.mjs)."""
    node = shutil.which("node")
    if node is None or not (NODE_CLIENT / "node_modules" / "graphql-ws").is_dir():
        if IN_CI:
            pytest.fail("CI needs node and `npm ci --prefix tests/e2e/node`")
        pytest.skip("needs node and `npm ci --prefix tests/e2e/node` (the graphql-ws package)")
    legal = _sign_in(events_gateway, "anna.legal@demo.example")
    organisation_id = _organisation_id(events_gateway, legal)
    request = {
        "query": FILTERED,
        "variables": {"organisationId": organisation_id, "types": ["sign_in.failed"]},
    }
    process = await asyncio.create_subprocess_exec(
        node,
        str(NODE_CLIENT / "subscribe.mjs"),
        events_gateway.url.replace("http://", "ws://") + "/graphql",
        legal,
        "2",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(json.dumps(request).encode())
    process.stdin.close()
    connected = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
    await asyncio.sleep(0.5)

    _fail_sign_in(events_gateway, "tom.extern@demo.example")
    _fail_sign_in(events_gateway, "lea.collab@demo.example")
    output, _ = await asyncio.wait_for(process.communicate(), 30)

    results = [json.loads(line) for line in output.decode().splitlines()]
    assert connected == {"connected": True}
    assert process.returncode == 0, results
    assert [
        r["data"]["organisationSecurityEvents"]["event"]["subject"]["email"] for r in results
    ] == ["tom.extern@demo.example", "lea.collab@demo.example"]


def _require_two_factor(gateway: ServedGateway, token: str, organisation_id: str) -> None:
    answer = _post(
        gateway,
        "UpdateSecurityPolicy",
        {"input": {"organisationId": organisation_id, "requireTwoFactor": True, "confirm": True}},
        token,
    ).json()["data"]["updateSecurityPolicy"]
    assert answer["errors"] == [], answer


def _enrol_totp(gateway: ServedGateway, token: str) -> None:
    begun = _post(gateway, "BeginTotpEnrolment", token=token).json()["data"]["beginTotpEnrolment"]
    confirmed = _post(
        gateway,
        "ConfirmTotpEnrolment",
        {"input": {"enrolmentId": begun["enrolmentId"], "code": totp_code(begun["secret"])}},
        token,
    ).json()["data"]["confirmTotpEnrolment"]
    assert confirmed["errors"] == [], confirmed


async def test_evt4_pol4_a_member_held_by_the_2fa_policy_loses_the_socket(
    tmp_path: Path,
) -> None:
    """The socket was opened before the policy: its subscription ends, and a new subscribe on it
    is refused like any operation over HTTP (TWO_FACTOR_ENROLMENT_REQUIRED)."""
    with start_gateway(fresh_gateway_env(tmp_path)) as gateway:
        legal = _sign_in(gateway, "anna.legal@demo.example")
        _enrol_totp(gateway, legal)  # the manager herself is not held by what she requires
        organisation_id = _organisation_id(gateway, legal)
        lea = _sign_in(gateway, "lea.collab@demo.example")
        client = await GraphQLWebSocketClient.initialised(gateway.url, lea)
        await client.subscribe("mine", VIEWER_EVENTS)
        await asyncio.sleep(0.3)

        _require_two_factor(gateway, legal, organisation_id)
        required_at = time.monotonic()
        ended = await _until_error(client)
        ended_after = time.monotonic() - required_at
        await client.subscribe("again", VIEWER_EVENTS)
        refused = await client.receive()
        await client.close()

    assert ended[-1]["id"] == "mine"
    assert ended_after < 1.0
    assert refused["type"] == "error" and refused["id"] == "again"
    assert [e["extensions"]["code"] for e in refused["payload"]] == [
        "TWO_FACTOR_ENROLMENT_REQUIRED"
    ]


async def test_evt1_api6_integrator_token_follows_its_organisation_on_the_socket(
    events_gateway: ServedGateway,
) -> None:
    legal = _sign_in(events_gateway, "anna.legal@demo.example")
    organisation_id = _organisation_id(events_gateway, legal)
    created = _post(
        events_gateway,
        "CreatePersonalAccessToken",
        {"input": {"label": "dashboard", "scopes": ["activity:read"]}},
        legal,
    ).json()["data"]["createPersonalAccessToken"]
    client = await GraphQLWebSocketClient.initialised(events_gateway.url, created["secret"])
    await client.subscribe("org", ORGANISATION_EVENTS, {"organisationId": organisation_id})
    await asyncio.sleep(0.3)

    _fail_sign_in(events_gateway, "marc.admin@demo.example")
    data = await _next_event(client, "org")
    await client.subscribe("own", VIEWER_EVENTS)
    refused = await client.receive()
    await client.close()

    assert data["organisationSecurityEvents"]["event"]["type"] == "sign_in.failed"
    # One's own live events are private: no token follows them (authz.TOKEN_ROOT_FIELDS).
    assert refused["type"] == "error" and refused["id"] == "own"
    assert [e["extensions"]["code"] for e in refused["payload"]] == ["INSUFFICIENT_SCOPE"]


SUPPORT_BLOCK = """
mutation($input: SupportBlockUserInput!) {
  supportBlockUser(input: $input) { errors { code message } }
}
"""


def _graphql(gateway: ServedGateway, token: str, query: str, variables: Any = None) -> Any:
    return httpx.post(
        f"{gateway.url}/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
    ).json()


async def test_evt4_blk3_a_user_blocked_by_support_loses_open_subscriptions(
    tmp_path: Path,
) -> None:
    with start_gateway(fresh_gateway_env(tmp_path)) as gateway:
        agent = signed_up_session(gateway, "agent@support.example", "lantern over the river", "A")
        granted = gardien("support-agent", "add", "agent@support.example", env=gateway.env)
        legal = _sign_in(gateway, "anna.legal@demo.example")
        code = _graphql(gateway, legal, "{ viewer { supportCode } }")["data"]["viewer"]
        lea = _sign_in(gateway, "lea.collab@demo.example")
        lea_id = _graphql(gateway, lea, "{ viewer { id } }")["data"]["viewer"]["id"]
        client = await GraphQLWebSocketClient.initialised(gateway.url, lea)
        await client.subscribe("mine", VIEWER_EVENTS)
        await asyncio.sleep(0.3)

        blocked = _graphql(
            gateway,
            agent,
            SUPPORT_BLOCK,
            {
                "input": {
                    "organisationId": _organisation_id(gateway, legal),
                    "userId": lea_id,
                    "requesterSupportCode": code["supportCode"],
                    "justification": "Phone stolen, asked by the legal representative",
                }
            },
        )["data"]["supportBlockUser"]
        blocked_at = time.monotonic()
        ended = await _until_error(client)
        ended_after = time.monotonic() - blocked_at
        await client.close()

    assert granted.returncode == 0, granted.stderr
    assert blocked["errors"] == []
    assert ended[-1]["id"] == "mine"
    assert ended_after < 1.0
