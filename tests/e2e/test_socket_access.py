"""Sockets opened with an integrator token end with the token (EVT-4, API-6), served."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import ServedGateway, fresh_gateway_env, start_gateway
from tests.e2e.test_contract import _organisation_id, _standalone
from tests.e2e.test_tokens import CREATE, REVOKE, _data, _sign_in, _token
from tests.e2e.wsclient import GraphQLWebSocketClient

ORGANISATION_EVENTS = _standalone("OrganisationSecurityEvents")
VIEWER_EVENTS = _standalone("ViewerSecurityEvents")
CREATE_SERVICE_ACCOUNT = (
    "mutation($input: CreateServiceAccountInput!) { createServiceAccount(input: $input)"
    " { serviceAccount { id } secret errors { code } } }"
)
REVOKE_SERVICE_ACCOUNT = (
    "mutation($input: RevokeServiceAccountInput!) { revokeServiceAccount(input: $input)"
    " { errors { code } } }"
)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    with start_gateway(fresh_gateway_env(tmp_path_factory.mktemp("socket-access"))) as served:
        yield served


async def _cut_off_after(client: GraphQLWebSocketClient, started: float) -> float:
    """Seconds from `started` until the subscription ended with an error."""
    message = await client.receive(seconds=5)
    assert message["type"] == "error" and message["id"] == "1", message
    return time.monotonic() - started


async def test_evt4_revoked_personal_access_token_ends_its_subscription_within_a_second(
    gateway: ServedGateway,
) -> None:
    session = _sign_in(gateway, "marc.admin@demo.example")
    organisation_id = _organisation_id(gateway, session)
    token_id, secret = _token(gateway, session, ["activity:read"])
    client = await GraphQLWebSocketClient.initialised(gateway.url, secret)
    await client.subscribe("1", ORGANISATION_EVENTS, {"organisationId": organisation_id})
    assert await client.quiet_for(0.5) == []

    started = time.monotonic()
    revoked = _data(gateway, REVOKE, {"input": {"tokenId": token_id}}, session)
    assert revoked["revokePersonalAccessToken"] == {"errors": []}

    assert await _cut_off_after(client, started) < 1.0
    assert (await client.closed_with(2))[0] == 4403


async def test_evt4_revoked_service_account_ends_its_subscription_within_a_second(
    gateway: ServedGateway,
) -> None:
    """Revoked by another manager than its creator: the creator's socket still hears it."""
    creator = _sign_in(gateway, "marc.admin@demo.example")
    legal = _sign_in(gateway, "anna.legal@demo.example")
    organisation_id = _organisation_id(gateway, creator)
    variables = {
        "input": {
            "organisationId": organisation_id,
            "name": "siem",
            "role": "ADMINISTRATOR",
            "scopes": ["activity:read"],
        }
    }
    created = _data(gateway, CREATE_SERVICE_ACCOUNT, variables, creator)["createServiceAccount"]
    assert created["errors"] == [], created
    client = await GraphQLWebSocketClient.initialised(gateway.url, created["secret"])
    await client.subscribe("1", ORGANISATION_EVENTS, {"organisationId": organisation_id})
    assert await client.quiet_for(0.5) == []

    started = time.monotonic()
    revoke = {"input": {"serviceAccountId": created["serviceAccount"]["id"]}}
    revoked = _data(gateway, REVOKE_SERVICE_ACCOUNT, revoke, legal)
    assert revoked["revokeServiceAccount"] == {"errors": []}

    assert await _cut_off_after(client, started) < 1.0
    assert (await client.closed_with(2))[0] == 4403


async def test_evt1_close_4409_on_a_duplicate_id_of_non_ascii_characters(
    gateway: ServedGateway,
) -> None:
    """The reason quotes the id: cut to fit a close frame (123 bytes of UTF-8, RFC 6455 §5.5),
    or the socket is dropped without its close code."""
    session = _sign_in(gateway, "lea.collab@demo.example")
    client = await GraphQLWebSocketClient.initialised(gateway.url, session)
    await client.subscribe("é" * 64, VIEWER_EVENTS)
    await client.subscribe("é" * 64, VIEWER_EVENTS)

    code, reason = await client.closed_with()

    assert code == 4409
    assert reason.startswith("Subscriber for éé") and len(reason.encode()) <= 123


@pytest.mark.parametrize("first", ["ping", "pong"])
async def test_evt1_close_4408_when_a_ping_or_pong_comes_instead_of_connection_init(
    gateway: ServedGateway, first: str
) -> None:
    """An unauthenticated socket is closed in time whatever it sends first, never held open."""
    client = await GraphQLWebSocketClient.open(gateway.url)
    opened = time.monotonic()
    await client.send({"type": first})

    assert await client.closed_with() == (4408, "Connection initialisation timeout")
    assert time.monotonic() - opened < 5.0


SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.1 Safari/605.1.15"
)
TOKEN_EVENTS = (
    '{ viewer { activity(first: 2, types: ["token.created"]) { edges { node { device } } } } }'
)


async def test_act1_a_mutation_over_the_socket_records_the_device_as_over_http(
    gateway: ServedGateway,
) -> None:
    """The device of an event is the parsed user agent, whichever transport the change came by."""
    session = _sign_in(gateway, "anna.legal@demo.example")
    client = await GraphQLWebSocketClient.open(gateway.url, headers={"user-agent": SAFARI})
    await client.send(
        {"type": "connection_init", "payload": {"authorization": f"Bearer {session}"}}
    )
    assert await client.receive() == {"type": "connection_ack"}
    variables = {"input": {"label": "Socket", "scopes": ["members:read"]}}
    await client.send(
        {"id": "1", "type": "subscribe", "payload": {"query": CREATE, "variables": variables}}
    )
    created = await client.receive()
    await client.close()

    edges = _data(gateway, TOKEN_EVENTS, None, session)["viewer"]["activity"]["edges"]

    assert created["payload"]["data"]["createPersonalAccessToken"]["errors"] == [], created
    assert [e["node"]["device"] for e in edges] == ["Safari 17 on Mac OS X 10.15"]


@pytest.fixture(scope="module")
def bounded_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    env = fresh_gateway_env(tmp_path_factory.mktemp("socket-bound"))
    env["GARDIEN_WS_MAX_CONNECTIONS_PER_USER"] = "3"
    with start_gateway(env) as served:
        yield served


async def test_evt1_one_user_holds_a_bounded_number_of_sockets(
    bounded_gateway: ServedGateway,
) -> None:
    """Sessions and tokens of one user count together; a socket closed frees its place, and
    other users are not affected."""
    session = _sign_in(bounded_gateway, "lea.collab@demo.example")
    _, secret = _token(bounded_gateway, session, ["members:read"])
    held = [
        await GraphQLWebSocketClient.initialised(bounded_gateway.url, credential)
        for credential in (session, secret, session)
    ]
    extra = await GraphQLWebSocketClient.open(bounded_gateway.url)
    await extra.send({"type": "connection_init", "payload": {"authorization": f"Bearer {secret}"}})
    refused = await extra.closed_with()
    other = await GraphQLWebSocketClient.initialised(
        bounded_gateway.url, _sign_in(bounded_gateway, "anna.legal@demo.example")
    )
    await held.pop().close()
    await asyncio.sleep(0.2)  # the server sees the socket closed
    again = await GraphQLWebSocketClient.initialised(bounded_gateway.url, session)

    assert refused == (1008, "Too many connections")
    for client in (*held, other, again):
        await client.send({"type": "ping"})
        assert await client.receive() == {"type": "pong"}
        await client.close()
