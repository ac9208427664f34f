"""The WebSocket transport under hostile clients, served in-process by uvicorn (EVT-1)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.typing import Subprotocol

from gardien.clock import ManualClock
from gardien.graphql.frames import text_frame
from gardien.graphql.ws import GraphQLWebSocket, WebSocketLimits
from gardien.resolvers import accounts, sessions
from gardien.resolvers.services import RequestMeta, Services
from tests import factories
from tests.served import served_in_process

pytestmark = pytest.mark.usefixtures("database")
HOST = "127.0.0.1"


@pytest_asyncio.fixture
async def served_app(app: Starlette) -> AsyncIterator[str]:
    """The app on a real socket, as `gardien serve` runs it (websockets-sansio, no deflate)."""
    async with served_in_process(app) as base:
        yield base.replace("http://", "ws://", 1) + "/graphql"


async def _slow_reader(url: str, token: str) -> ClientConnection:
    """A client whose socket barely reads: a tiny receive buffer, one frame queued at most."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    port = urlsplit(url).port
    assert port is not None
    await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
    client = await connect(
        url,
        sock=sock,
        subprotocols=[Subprotocol("graphql-transport-ws")],
        compression=None,
        max_queue=1,
        ping_interval=None,
    )
    await client.send(
        json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
    )
    assert json.loads(await client.recv()) == {"type": "connection_ack"}
    return client


async def test_evt1_a_client_that_never_reads_is_closed_and_forgotten(
    app: Starlette, served_app: str, services: Services
) -> None:
    """Bad input: a slow reader. Its frames queue up to the bound, then the gateway closes it
    and drops every trace of it; memory does not grow with what it refuses to read."""
    transport: GraphQLWebSocket = app.state.graphql_ws
    transport.limits = WebSocketLimits(max_pending_frames=8)
    signed_up = await factories.sign_up(services)
    client = await _slow_reader(served_app, signed_up.session.token)
    assert len(transport.connections) == 1
    (connection,) = transport.connections

    sent = 0
    try:
        while transport.connections and sent < 400_000:
            # Each ping owes a pong the client never reads.
            for _ in range(500):
                await client.send('{"type":"ping"}')
            sent += 500
            await asyncio.sleep(0)
    except ConnectionClosed:
        pass
    for _ in range(300):
        if not transport.connections:
            break
        await asyncio.sleep(0.01)

    assert transport.connections == set()
    assert connection.closing == (1013, "Slow consumer")
    assert connection.outgoing.qsize() <= 9  # the bound, and the writer's stop marker
    assert all(task.done() for task in connection.tasks)
    client.transport.abort()


async def test_evt1_a_reader_that_falls_behind_then_catches_up_gets_every_frame_once_in_order(
    app: Starlette, served_app: str, services: Services
) -> None:
    """Frames are written straight to an idle socket; once its buffer is full, the socket
    refuses them and they queue, in order, for the connection's writer, which sends them
    through ASGI as the client reads (later frames queue behind them). A reader that stops,
    then reads again, receives every frame exactly once, in order."""
    transport: GraphQLWebSocket = app.state.graphql_ws
    transport.limits = WebSocketLimits(max_pending_frames=1_000_000)
    signed_up = await factories.sign_up(services)
    client = await _slow_reader(served_app, signed_up.session.token)
    (connection,) = transport.connections

    sent = 0
    while not (connection.writing or connection.outgoing.qsize()) and sent < 400_000:
        for _ in range(200):
            await client.send('{"type":"ping"}')
        sent += 200
        for _ in range(5):
            await asyncio.sleep(0)
    fell_behind = connection.writing or connection.outgoing.qsize() > 0
    # A request after the pings: its answer must come after every pong, and only once.
    await client.send(json.dumps({"id": "last", "type": "subscribe", "payload": {"query": "{"}}))

    pongs = 0
    while True:
        message = json.loads(await asyncio.wait_for(client.recv(), 10))
        if message["type"] == "pong":
            pongs += 1
            continue
        break

    assert fell_behind
    assert pongs == sent
    assert message["id"] == "last"
    assert message["type"] == "error"
    assert connection.closing is None
    await client.close()


async def _read_until_closed(client: ClientConnection, messages: list[dict[str, Any]]) -> None:
    """Collects what the server sends (pings aside) until it closes the connection."""
    while True:
        message = json.loads(await asyncio.wait_for(client.recv(), 5))
        if message["type"] != "ping":
            messages.append(message)


async def test_evt4_subscription_ends_when_its_session_reaches_its_lifetime(
    app: Starlette, served_app: str, services: Services, clock: ManualClock
) -> None:
    """No access notice marks the end of a session's 12 hours: the periodic re-authentication
    does, and ends the subscription (UNAUTHENTICATED, then close 4403)."""
    transport: GraphQLWebSocket = app.state.graphql_ws
    transport.limits = WebSocketLimits(keepalive_seconds=0.05, reauthenticate_seconds=0.1)
    signed_up = await factories.sign_up(services)
    async with connect(
        served_app, subprotocols=[Subprotocol("graphql-transport-ws")], compression=None
    ) as client:
        await client.send(
            json.dumps(
                {
                    "type": "connection_init",
                    "payload": {"authorization": f"Bearer {signed_up.session.token}"},
                }
            )
        )
        assert json.loads(await client.recv()) == {"type": "connection_ack"}
        await client.send(
            json.dumps(
                {
                    "id": "mine",
                    "type": "subscribe",
                    "payload": {"query": "subscription { viewerSecurityEvents { cursor } }"},
                }
            )
        )
        await asyncio.sleep(0.3)  # several re-authentications while the session is valid
        still_open = transport.connections != set()

        clock.advance(sessions.ABSOLUTE_LIFETIME + timedelta(seconds=1))
        messages: list[dict[str, Any]] = []
        with pytest.raises(ConnectionClosed) as closed:
            await _read_until_closed(client, messages)

    assert still_open
    assert messages == [
        {
            "id": "mine",
            "type": "error",
            "payload": [
                {"message": "The session has ended.", "extensions": {"code": "UNAUTHENTICATED"}}
            ],
        }
    ]
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4403, "Forbidden")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65_535, 65_536, 70_000])
def test_evt1_frames_encoded_once_are_what_websockets_would_send(size: int) -> None:
    """The fan-out encodes a `next` frame itself, once per group: byte for byte the unmasked
    text frame websockets builds, at each boundary of the length's encoding (RFC 6455 5.2)."""
    data = b"x" * size

    assert text_frame(data) == Frame(Opcode.TEXT, data).serialize(mask=False)


async def test_evt1_an_event_reaches_every_subscriber_as_one_frame_written_straight_to_sockets(
    app: Starlette, served_app: str, services: Services
) -> None:
    """Identical subscriptions form one group; its event is executed once and the same frame is
    written to each subscriber's socket by the group's task: no connection needs a writer task
    (one starts only for frames a full socket cannot take at once)."""
    transport: GraphQLWebSocket = app.state.graphql_ws
    email = "fanout.reader@example.test"
    signed_up = await factories.sign_up(services, email)
    query = "subscription { viewerSecurityEvents { cursor event { id type } } }"
    # The app's lifespan connects its subscription hub to its event bus (served_app runs
    # without one); the sign-in below goes through the app's services, so onto that bus.
    async with app.router.lifespan_context(app):
        clients = [await _subscribed(served_app, signed_up.session.token, query) for _ in range(3)]
        for _ in range(300):
            groups = list(transport.hub.groups.values())
            if len(groups) == 1 and len(groups[0].subscribers) == 3:
                break
            await asyncio.sleep(0.01)

        await accounts.sign_in(
            app.state.services,
            RequestMeta(device="pytest"),
            login=email,
            password=factories.PASSWORD,
        )
        frames = [await _next_frame(client) for client in clients]

        assert len(transport.hub.groups) == 1
        assert len(transport.connections) == 3
        assert all(c.frame_writer is not None for c in transport.connections)
        assert all(c.writer is None for c in transport.connections)
        for client in clients:
            await client.close()
    assert len(set(frames)) == 1
    message = json.loads(frames[0])
    assert (message["id"], message["type"]) == ("1", "next")
    event = message["payload"]["data"]["viewerSecurityEvents"]["event"]
    assert event["type"] == "sign_in.succeeded"


async def _subscribed(url: str, token: str, query: str) -> ClientConnection:
    client = await connect(
        url, subprotocols=[Subprotocol("graphql-transport-ws")], compression=None
    )
    await client.send(
        json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
    )
    assert json.loads(await client.recv()) == {"type": "connection_ack"}
    await client.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
    return client


async def _next_frame(client: ClientConnection) -> str | bytes:
    """The next frame other than a keepalive ping."""
    while True:
        frame = await asyncio.wait_for(client.recv(), 5)
        if json.loads(frame)["type"] != "ping":
            return frame
