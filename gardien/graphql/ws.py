"""GraphQL over WebSocket (graphql-transport-ws): live security events (EVT-1…EVT-4).

A thin transport on the engine, like http.py: documents are prepared, limited, gated and
executed by the same GraphQLEngine. What it adds is the protocol
(https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md) and the fan-out, built so
that one process serves 10,000 subscribers (bench/fanout.py has the measures):

- identical subscriptions (same document, operation, variables and visibility) form one group
  on this process, with one task; each event is executed once per group, and its `next` frame
  is encoded once per subscription id (usually one for the whole group): the JSON text, and
  the WebSocket frame's bytes (frames.py);
- the group's task writes those bytes straight to each subscriber's socket: no per-subscriber
  execution, JSON encoding, queue, task or coroutine. Only a socket whose buffer is full makes
  its frames wait, in order, in a bounded queue that a writer task (started then) sends through
  ASGI as the client reads; a client that does not read is closed (1013) once that queue is
  full, never buffered without end;
- authorization is decided when a subscription starts and kept: access changes (a role, a
  membership, a block, a session) published on the bus make every subscription of that user
  authorised again (EVT-4, within a second); one that no longer is ends with an error;
- one task per process keeps connections alive (a protocol ping to idle ones) and
  authenticates sessions again every few minutes, spread over time rather than in bursts;
  a connection otherwise costs one reader task;
- when the bus may have lost events (Redis unreachable), live activity is held back, and once
  it is whole again each subscription replays from the database what came after the last event
  it delivered (EVT-3), as a resume does (EVT-2).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from graphql import ExecutionResult, GraphQLError
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from gardien.events import EventBus
from gardien.graphql.documents import PreparedDocument, PreparedOperation
from gardien.graphql.engine import GraphQLEngine
from gardien.graphql.frames import FrameWriter, frame_writer, text_frame
from gardien.models.activity import ActivityEvent
from gardien.resolvers import events, tokens
from gardien.resolvers.authz import Actor, RequestScope
from gardien.resolvers.errors import ErrorCode
from gardien.resolvers.events import Stream
from gardien.resolvers.services import RequestMeta
from gardien.schema.context import Context
from gardien.schema.events import EventSource

logger = logging.getLogger("gardien.graphql.ws")

SUBPROTOCOL = "graphql-transport-ws"
# Close codes of the protocol.
BAD_REQUEST = 4400
UNAUTHORIZED = 4401
FORBIDDEN = 4403
SUBPROTOCOL_NOT_ACCEPTABLE = 4406
INIT_TIMEOUT = 4408
DUPLICATE_ID = 4409
TOO_MANY_INITIALISATIONS = 4429
# RFC 6455: the peer cannot keep up (we would have to buffer without end).
TRY_AGAIN_LATER = 1013
POLICY_VIOLATION = 1008
MAX_CLOSE_REASON_BYTES = 123
# The same keepalive ping for every connection, encoded once.
PING_FRAME = '{"type":"ping"}'
PING_WIRE = text_frame(PING_FRAME.encode())
# The keepalive task wakes this many times per keepalive interval (see _keep_alive).
KEEPALIVE_TICKS = 5


@dataclass(frozen=True)
class WebSocketLimits:
    init_timeout_seconds: float = 3.0
    max_subscriptions: int = 20
    # Acknowledged connections of one user at once (GARDIEN_WS_MAX_CONNECTIONS_PER_USER).
    max_connections_per_user: int = 100
    # Subscribe messages a connection may send per minute; a flood is closed (1008).
    max_subscribes_per_minute: int = 120
    max_message_bytes: int = 65_536
    # Frames waiting for a client; beyond, the client is too slow and is closed.
    max_pending_frames: int = 256
    keepalive_seconds: float = 15.0
    # EVT-4's fallback, and session upkeep: every so often each connection authenticates its
    # session again (which also counts the open socket as use of the session, so a dashboard
    # left open is not timed out as idle) and re-authorises its subscriptions. Access notices
    # make this immediate for role changes, removals, blocks and revocations; this catches
    # the rest (the session's absolute lifetime) at a cost of one lookup per connection.
    reauthenticate_seconds: float = 300.0


# The actor of a connection_init payload (or of the session cookie); None refuses it.
Authenticator = Callable[[WebSocket, dict[str, Any]], Awaitable[Actor | None]]
ContextMaker = Callable[[Actor, RequestMeta], Context]
# ACT-1: where the socket comes from, described as for an HTTP request (address, country, device).
ClientDescriber = Callable[[WebSocket], RequestMeta]


class ProtocolClose(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# --- Fan-out ---------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class Subscriber:
    connection: Connection
    id: str
    stream: Stream
    group: Group | None = None
    # While replaying (EVT-2), live frames wait here; the seam drops those already replayed.
    backlog: list[tuple[int, str]] | None = None
    ended: bool = False
    # EVT-3: the newest event delivered (or, before any, the newest when live delivery began):
    # after a bus outage the subscription replays from here.
    last_id: int | None = None
    # The bus came back while this subscription was still catching up: once more when done.
    resync_pending: bool = False

    def delivered(self, event_id: int) -> None:
        if self.last_id is None or event_id > self.last_id:
            self.last_id = event_id


GroupKey = tuple[str, str | None, bytes, tuple[str, int], int | None]


class Group:
    """Identical subscriptions: executed once per event, one encoded frame for all.

    One task per group (not per subscriber) takes the group's events in order, executes the
    selection set once, and writes the same frame bytes to every subscriber's socket.
    """

    def __init__(
        self,
        hub: SubscriptionHub,
        key: GroupKey,
        prepared: PreparedDocument,
        operation: PreparedOperation,
        variables: dict[str, Any],
        source: EventSource[Any],
        actor: Actor,
    ) -> None:
        self.hub = hub
        self.key = key
        self.prepared = prepared
        self.operation = operation
        self.variables = variables
        self.source = source
        self.stream = source.stream
        self.actor = actor
        self.subscribers: set[Subscriber] = set()
        self.queue: asyncio.Queue[ActivityEvent] = asyncio.Queue()
        self.task = asyncio.create_task(self._run(), name="subscription-group")

    async def render(self, event: ActivityEvent) -> str:
        """The `payload` of a `next` frame for this event, as JSON text."""
        context = self.hub.make_context(self.actor, RequestMeta())
        result = await self.hub.engine.execute(
            self.prepared,
            self.operation,
            self.variables,
            context,
            root_value=await self.source.root_value(event),
            gate=False,
        )
        return _result_json(self.hub.engine, result, "subscription")

    async def _run(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                payload = await self.render(event)
            except Exception:
                logger.exception("rendering a live event failed")
                continue
            started = time.perf_counter()
            # Subscribers usually share their id ("1"): one frame per distinct id, encoded once
            # (its JSON text, and its WebSocket frame). The loop is the per-subscriber cost of
            # an event, hence inlined: a few checks, then one write to the socket.
            frames: dict[str, tuple[str, bytes]] = {}
            for subscriber in list(self.subscribers):
                if subscriber.ended:
                    continue
                if subscriber.backlog is not None:
                    subscriber.backlog.append((event.id, payload))
                    continue
                last_id = subscriber.last_id  # EVT-3: where a catch-up after an outage starts
                if last_id is None or event.id > last_id:
                    subscriber.last_id = event.id
                encoded = frames.get(subscriber.id)
                if encoded is None:
                    text = next_frame(subscriber.id, payload)
                    encoded = frames[subscriber.id] = (text, text_frame(text.encode()))
                subscriber.connection.send_frame(*encoded)
            self.hub.fanout_seconds += time.perf_counter() - started


class SubscriptionHub:
    """This process's live subscriptions, fed by the bus."""

    def __init__(self, engine: GraphQLEngine, bus: EventBus, make_context: ContextMaker) -> None:
        self.engine = engine
        self.bus = bus
        self.make_context = make_context
        self.groups: dict[GroupKey, Group] = {}
        self.by_topic: dict[tuple[str, int], set[Group]] = {}
        self.connections_by_user: dict[int, set[Connection]] = {}
        self.fanout_seconds = 0.0
        self._unlisten: list[Callable[[], None]] = []

    def start(self) -> None:
        self._unlisten = [
            self.bus.listen(self.on_message),
            self.bus.on_resync(self.on_resync),
        ]

    async def stop(self) -> None:
        for unlisten in self._unlisten:
            unlisten()
        self._unlisten = []
        for group in list(self.groups.values()):
            group.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await group.task
        self.groups.clear()
        self.by_topic.clear()

    def on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("kind")
        if kind == events.ACCESS:
            for connection in list(self.connections_by_user.get(message["user_id"], ())):
                connection.recheck_access()
            return
        if kind != events.ACTIVITY or self.bus.in_outage:
            # During an outage other processes' events may be missing: the ones that do arrive
            # would jump ahead of them, so every subscription takes all of them, in order, from
            # the database when the bus is whole again.
            return
        topics = [("organisation", o) for o in message["audience"]]
        if message["subject_id"] is not None:
            topics.append(("user", message["subject_id"]))
        event: ActivityEvent | None = None
        for topic in topics:
            for group in self.by_topic.get(topic, ()):
                if group.stream.shows(message):
                    event = event or events.event_from_message(message)
                    group.queue.put_nowait(event)

    def on_resync(self) -> None:
        """EVT-3: the bus is whole again. Access notices may have been lost with the rest, so
        each connection is authorised again (EVT-4), then each subscription catches up from its
        last event."""
        for connections in list(self.connections_by_user.values()):
            for connection in list(connections):
                connection.transport.resync(connection)

    def join(
        self,
        subscriber: Subscriber,
        prepared: PreparedDocument,
        operation: PreparedOperation,
        query: str,
        variables: dict[str, Any],
        source: EventSource[Any],
    ) -> Group:
        stream = subscriber.stream
        # An organisation's stream shows every manager the same thing, so its groups execute as
        # nobody in particular (no private profile field answers); one's own stream is one's own.
        own = stream.organisation_id is None
        key: GroupKey = (
            query,
            operation.node.name.value if operation.node.name else None,
            orjson.dumps(variables, option=orjson.OPT_SORT_KEYS),
            stream.topic,
            stream.user_id if own else None,
        )
        group = self.groups.get(key)
        if group is None:
            actor = subscriber.connection.actor if own else Actor()
            group = Group(self, key, prepared, operation, variables, source, actor)
            self.groups[key] = group
            self.by_topic.setdefault(stream.topic, set()).add(group)
        group.subscribers.add(subscriber)
        subscriber.group = group
        return group

    def leave(self, subscriber: Subscriber) -> None:
        subscriber.ended = True
        group = subscriber.group
        if group is None:
            return
        group.subscribers.discard(subscriber)
        subscriber.group = None
        if not group.subscribers:
            del self.groups[group.key]
            topic_groups = self.by_topic.get(group.stream.topic)
            if topic_groups is not None:
                topic_groups.discard(group)
                if not topic_groups:
                    del self.by_topic[group.stream.topic]
            group.task.cancel()

    def register(self, connection: Connection) -> None:
        user_id = connection.actor.user_id
        if user_id is not None:
            self.connections_by_user.setdefault(user_id, set()).add(connection)

    def unregister(self, connection: Connection) -> None:
        user_id = connection.actor.user_id
        if user_id is None:
            return
        connections = self.connections_by_user.get(user_id)
        if connections is not None:
            connections.discard(connection)
            if not connections:
                del self.connections_by_user[user_id]


def next_frame(subscription_id: str, payload: str) -> str:
    """A `next` frame around a payload already encoded as JSON text."""
    encoded_id = orjson.dumps(subscription_id).decode()
    return '{"id":' + encoded_id + ',"type":"next","payload":' + payload + "}"


def _result_json(engine: GraphQLEngine, result: ExecutionResult, request_id: str) -> str:
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = engine.format_errors(list(result.errors), request_id)
    return orjson.dumps(body).decode()


# --- One connection --------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class Connection:
    websocket: WebSocket
    transport: GraphQLWebSocket
    actor: Actor = field(default_factory=Actor)
    init_payload: dict[str, Any] = field(default_factory=dict)
    # Counts access notices, so a subscription authorised while one arrived is checked again.
    access_changes: int = 0
    subscribers: dict[str, Subscriber] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    # Frames waiting for a socket that could not take them at once, in order; None ends them.
    outgoing: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    closing: tuple[int, str] | None = None
    acknowledged: bool = False
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    subscribe_times: list[float] = field(default_factory=list)
    meta: RequestMeta = field(default_factory=RequestMeta)
    # Writes encoded frames straight to the socket (frames.py); None under another server.
    frame_writer: FrameWriter | None = None
    # Started with the first frame that has to wait, so an idle connection costs no task.
    writer: asyncio.Task[None] | None = None
    # The writer task is sending a frame: later ones queue behind it, to keep their order.
    writing: bool = False
    # Keepalive (loop times): when the session was last authenticated again, when the
    # connection was last looked at, and whether a frame was sent to it since.
    authenticated_at: float = 0.0
    looked_at: float = 0.0
    active: bool = False

    def send(self, message: dict[str, Any]) -> None:
        self.send_frame(orjson.dumps(message).decode(), None)

    def send_next(self, subscription_id: str, payload: str) -> None:
        # The payload is shared by the whole group; only the id differs per subscriber.
        self.send_frame(next_frame(subscription_id, payload), None)

    def send_frame(self, frame: str, wire: bytes | None) -> None:
        """`wire` is `frame` already encoded as a WebSocket frame, when the caller has it."""
        if self.closing is not None:
            return
        self.active = True
        writer = self.frame_writer
        # Fan-out: with nothing waiting, the frame is written right here, with no task switch,
        # coroutine or per-connection encoding; a full socket buffer refuses it.
        if (
            writer is not None
            and not self.writing
            and self.outgoing.empty()
            and writer.write(wire if wire is not None else text_frame(frame.encode()))
        ):
            return
        if self.outgoing.qsize() >= self.transport.limits.max_pending_frames:
            self.close(TRY_AGAIN_LATER, "Slow consumer")
            return
        self.outgoing.put_nowait(frame)
        if self.writer is None:
            self.writer = asyncio.create_task(self.transport.write(self), name="ws-writer")

    def close(self, code: int, reason: str) -> None:
        if self.closing is None:
            # RFC 6455 §5.5: a close frame's reason is at most 123 bytes of UTF-8; a longer one
            # (a quoted subscription id) would drop the socket without its close code.
            reason = reason.encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")
            self.closing = (code, reason)
            self.closed.set()

    def spawn(self, coroutine: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def recheck_access(self) -> None:
        self.access_changes += 1
        self.spawn(self.transport.recheck(self))


class GraphQLWebSocket:
    """The /graphql WebSocket endpoint."""

    def __init__(
        self,
        engine: GraphQLEngine,
        hub: SubscriptionHub,
        authenticate: Authenticator,
        describe_client: ClientDescriber,
        *,
        limits: WebSocketLimits | None = None,
    ) -> None:
        self.engine = engine
        self.hub = hub
        self._authenticate = authenticate
        self._describe_client = describe_client
        self.limits = limits or WebSocketLimits()
        self.connections: set[Connection] = set()
        self._upkeep: asyncio.Task[None] | None = None

    async def handle(self, websocket: WebSocket) -> None:
        if SUBPROTOCOL not in websocket.scope.get("subprotocols", []):
            await websocket.accept()
            await websocket.close(SUBPROTOCOL_NOT_ACCEPTABLE, "Subprotocol not acceptable")
            return
        await websocket.accept(subprotocol=SUBPROTOCOL)
        connection = Connection(
            websocket,
            self,
            frame_writer=frame_writer(websocket.scope),
            meta=self._describe_client(websocket),
        )
        self.connections.add(connection)
        if self._upkeep is None or self._upkeep.done():
            self._upkeep = asyncio.create_task(self._keep_alive(), name="ws-upkeep")
        reader = asyncio.create_task(self._read(connection), name="ws-reader")
        try:
            await connection.closed.wait()
        finally:
            for task in (reader, *connection.tasks):
                task.cancel()
            for subscriber in list(connection.subscribers.values()):
                self.hub.leave(subscriber)
            connection.subscribers.clear()
            self.hub.unregister(connection)
            self.connections.discard(connection)
            if not self.connections and self._upkeep is not None:
                # The last connection: nothing to keep alive (a new one starts it again).
                self._upkeep.cancel()
                self._upkeep = None
            await self._finish(connection)
            for task in (reader, *list(connection.tasks)):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _finish(self, connection: Connection) -> None:
        """Flush what is queued (a final error), then close with the code; a stuck client is
        given a second, then dropped."""
        code, reason = connection.closing or (1000, "")
        writer = connection.writer
        if writer is not None:
            connection.outgoing.put_nowait(None)
            if code == TRY_AGAIN_LATER:
                writer.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, 1.0)
        if connection.websocket.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.websocket.close(code, reason), 1.0)

    async def write(self, connection: Connection) -> None:
        """Sends, through ASGI and in order, the frames the socket could not take at once."""
        websocket = connection.websocket
        while True:
            frame = await connection.outgoing.get()
            if frame is None:
                return
            connection.writing = True
            try:
                await websocket.send_text(frame)
            except Exception:
                connection.close(1000, "")
                return
            finally:
                connection.writing = False

    async def _keep_alive(self) -> None:
        """One task for every connection of this process, alive while there are any.

        Pings keep idle connections open through proxies (clients answer with pongs): each
        connection is looked at every `keepalive_seconds`, from its own acknowledgement on, so
        the pings of thousands of connections are spread instead of sent (and their pongs read)
        in one burst; one that was sent a frame since it was last looked at is not idle and is
        not pinged. The ping is the protocol's; the server's WebSocket-level ping is off
        (`gardien serve`), so there is only one keepalive. Only acknowledged connections are
        pinged: a client awaiting its connection_ack (authentication can take a moment) never
        sees anything else first. Sessions are authenticated again every
        `reauthenticate_seconds`, spread the same way."""
        loop = asyncio.get_running_loop()
        while self.connections:
            limits = self.limits
            await asyncio.sleep(limits.keepalive_seconds / KEEPALIVE_TICKS)
            now = loop.time()
            for connection in list(self.connections):
                if not connection.acknowledged or connection.closing is not None:
                    continue
                if now - connection.looked_at >= limits.keepalive_seconds:
                    connection.looked_at = now
                    if not connection.active:
                        connection.send_frame(PING_FRAME, PING_WIRE)
                    connection.active = False  # the ping itself does not count
                if now - connection.authenticated_at >= limits.reauthenticate_seconds:
                    connection.authenticated_at = now
                    connection.spawn(self.recheck(connection))

    async def _read(self, connection: Connection) -> None:
        websocket = connection.websocket
        loop = asyncio.get_running_loop()
        # Until connection_init is acknowledged, not just until a first message: a ping or a
        # pong sent first must not hold an unauthenticated socket open.
        init_deadline = loop.time() + self.limits.init_timeout_seconds
        try:
            while True:
                if connection.acknowledged:
                    message = await websocket.receive()
                else:
                    try:
                        message = await asyncio.wait_for(
                            websocket.receive(), init_deadline - loop.time()
                        )
                    except TimeoutError:
                        raise ProtocolClose(
                            INIT_TIMEOUT, "Connection initialisation timeout"
                        ) from None
                if message["type"] == "websocket.disconnect":
                    connection.close(1000, "")
                    return
                await self._on_message(connection, self._decode(message))
        except ProtocolClose as close:
            connection.close(close.code, close.reason)
        except WebSocketDisconnect:
            connection.close(1000, "")
        except Exception:
            logger.exception("WebSocket connection failed")
            connection.close(1011, "Internal error")

    def _decode(self, message: Mapping[str, Any]) -> dict[str, Any]:
        raw = message.get("text")
        if raw is None:
            raw = message.get("bytes") or b""
        if len(raw) > self.limits.max_message_bytes:
            raise ProtocolClose(BAD_REQUEST, "Message too large")
        try:
            decoded = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ProtocolClose(BAD_REQUEST, "Invalid message received") from None
        if not isinstance(decoded, dict) or not isinstance(decoded.get("type"), str):
            raise ProtocolClose(BAD_REQUEST, "Invalid message received")
        return decoded

    async def _on_message(self, connection: Connection, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "connection_init":
            if connection.acknowledged:
                raise ProtocolClose(TOO_MANY_INITIALISATIONS, "Too many initialisation requests")
            payload = message.get("payload")
            if payload is not None and not isinstance(payload, dict):
                raise ProtocolClose(BAD_REQUEST, "Invalid message received")
            actor = await self._authenticate(connection.websocket, payload or {})
            if actor is None or actor.user is None:
                raise ProtocolClose(FORBIDDEN, "Forbidden")
            held = self.hub.connections_by_user.get(actor.user.id, ())
            if len(held) >= self.limits.max_connections_per_user:
                # Checked and registered with no await in between: parallel handshakes of one
                # user cannot all slip under the bound.
                raise ProtocolClose(POLICY_VIOLATION, "Too many connections")
            connection.actor = actor
            if actor.token is not None:
                # API-6: what a query or mutation over this socket records names the token.
                connection.meta = replace(connection.meta, via_token=tokens.token_use(actor.token))
            connection.init_payload = payload or {}
            connection.acknowledged = True
            connection.authenticated_at = connection.looked_at = asyncio.get_running_loop().time()
            self.hub.register(connection)
            connection.send({"type": "connection_ack"})
        elif kind == "ping":
            connection.send({"type": "pong"})
        elif kind == "pong":
            pass
        elif kind == "subscribe":
            self._on_subscribe(connection, message)
        elif kind == "complete":
            subscription_id = message.get("id")
            if not isinstance(subscription_id, str):
                raise ProtocolClose(BAD_REQUEST, "Invalid message received")
            subscriber = connection.subscribers.pop(subscription_id, None)
            if subscriber is not None:
                self.hub.leave(subscriber)
        else:
            raise ProtocolClose(BAD_REQUEST, "Invalid message received")

    def _on_subscribe(self, connection: Connection, message: dict[str, Any]) -> None:
        subscription_id = message.get("id")
        payload = message.get("payload")
        if (
            not isinstance(subscription_id, str)
            or not subscription_id
            or not isinstance(payload, dict)
            or not isinstance(payload.get("query"), str)
            or not isinstance(payload.get("variables") or {}, dict)
            or not isinstance(payload.get("operationName") or "", str)
        ):
            raise ProtocolClose(BAD_REQUEST, "Invalid message received")
        if not connection.acknowledged:
            raise ProtocolClose(UNAUTHORIZED, "Unauthorized")
        if subscription_id in connection.subscribers:
            reason = f"Subscriber for {subscription_id[:64]} already exists"
            raise ProtocolClose(DUPLICATE_ID, reason)
        now = time.monotonic()
        recent = [t for t in connection.subscribe_times if now - t < 60]
        if len(recent) >= self.limits.max_subscribes_per_minute:
            raise ProtocolClose(POLICY_VIOLATION, "Too many subscribe messages")
        recent.append(now)
        connection.subscribe_times = recent
        if len(connection.subscribers) >= self.limits.max_subscriptions:
            connection.send(
                _error_message(
                    subscription_id,
                    f"At most {self.limits.max_subscriptions} subscriptions per connection.",
                    ErrorCode.TOO_MANY_SUBSCRIPTIONS,
                )
            )
            return
        # Reserved now, so a second subscribe with the same id is a duplicate while this one
        # is still being prepared and replayed.
        subscriber = Subscriber(connection, subscription_id, _PENDING_STREAM, backlog=[])
        connection.subscribers[subscription_id] = subscriber
        connection.spawn(self._subscribe(connection, subscriber, payload))

    async def _subscribe(
        self, connection: Connection, subscriber: Subscriber, payload: dict[str, Any]
    ) -> None:
        subscription_id = subscriber.id
        try:
            await self._run_subscription(connection, subscriber, payload)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("subscription failed")
            self.engine.count_error(ErrorCode.INTERNAL_ERROR)
            self._end(
                connection,
                subscriber,
                _error_message(subscription_id, "Internal error.", ErrorCode.INTERNAL_ERROR),
            )

    def _end(self, connection: Connection, subscriber: Subscriber, message: dict[str, Any]) -> None:
        if connection.subscribers.get(subscriber.id) is subscriber:
            del connection.subscribers[subscriber.id]
        self.hub.leave(subscriber)
        connection.send(message)

    def _errors(
        self, connection: Connection, subscriber: Subscriber, errors: list[GraphQLError]
    ) -> None:
        formatted = self.engine.format_errors(errors, subscriber.id)
        message = {"id": subscriber.id, "type": "error", "payload": formatted}
        self._end(connection, subscriber, message)

    async def _run_subscription(
        self, connection: Connection, subscriber: Subscriber, payload: dict[str, Any]
    ) -> None:
        engine = self.engine
        query: str = payload["query"]
        variables: dict[str, Any] = payload.get("variables") or {}
        prepared = engine.prepare(query)
        if prepared.document is None:
            self._errors(connection, subscriber, list(prepared.errors))
            return
        operation = prepared.operation(payload.get("operationName"))
        if operation is None:
            self._errors(
                connection,
                subscriber,
                [_coded("Name an operation of the document in operationName.")],
            )
            return
        variable_errors = engine.coerce_variables(operation, variables)
        if variable_errors:
            self._errors(connection, subscriber, variable_errors)
            return
        access_changes = connection.access_changes
        context = self.hub.make_context(connection.actor, connection.meta)
        if operation.kind != "subscription":
            # Queries and mutations over the socket: one result, then complete.
            result = await engine.execute(prepared, operation, variables, context)
            if connection.subscribers.get(subscriber.id) is subscriber:
                del connection.subscribers[subscriber.id]
                connection.send_next(subscriber.id, _result_json(engine, result, subscriber.id))
                connection.send({"id": subscriber.id, "type": "complete"})
            return
        source = await engine.open_stream(prepared, operation, variables, context)
        if isinstance(source, ExecutionResult):
            self._errors(connection, subscriber, list(source.errors or []))
            return
        if not isinstance(source, EventSource):
            self._errors(connection, subscriber, [_coded("This field cannot be subscribed to.")])
            return
        if subscriber.ended:
            return
        subscriber.stream = source.stream
        group = self.hub.join(subscriber, prepared, operation, query, variables, source)
        if connection.access_changes != access_changes and not await events.still_allowed(
            RequestScope(connection.actor), subscriber.stream
        ):
            # Access changed while this subscription was being authorised: asked again.
            self._end(connection, subscriber, _no_longer_allowed(subscriber.id))
            return
        await self._replay(subscriber, group)

    async def _replay(self, subscriber: Subscriber, group: Group) -> None:
        """EVT-2: every event after the cursor, then live ones; live events that arrived during
        the replay wait in the backlog, and those the replay already sent are dropped."""
        after_id = subscriber.stream.after_id
        # Where a catch-up after a bus outage starts if nothing is delivered before it.
        if after_id is not None:
            subscriber.last_id = after_id
        elif self.hub.bus.distributed:
            subscriber.last_id = await events.newest_event_id()
        await self._catch_up(subscriber, group, after_id)

    async def _catch_up(self, subscriber: Subscriber, group: Group, after_id: int | None) -> None:
        while True:
            sent: set[int] = set()
            if after_id is not None:
                cursor = after_id
                while not subscriber.ended:
                    page = await events.replay(subscriber.stream, cursor)
                    for event in page:
                        subscriber.connection.send_next(subscriber.id, await group.render(event))
                        subscriber.delivered(event.id)
                        sent.add(event.id)
                        cursor = event.id
                    if len(page) < events.REPLAY_PAGE:
                        break
            backlog, subscriber.backlog = subscriber.backlog or [], None
            for event_id, frame_payload in backlog:
                if event_id not in sent and (after_id is None or event_id > after_id):
                    subscriber.delivered(event_id)
                    subscriber.connection.send_next(subscriber.id, frame_payload)
            if not subscriber.resync_pending or subscriber.ended:
                return
            # The bus came back (again) during this catch-up: what it lost comes after here.
            subscriber.resync_pending = False
            subscriber.backlog = []
            after_id = subscriber.last_id

    def resync(self, connection: Connection) -> None:
        """EVT-3: replay what the bus may have lost since each subscription's last event."""
        catching_up: list[Subscriber] = []
        for subscriber in connection.subscribers.values():
            if subscriber.ended:
                continue
            if subscriber.backlog is not None:
                subscriber.resync_pending = True  # still catching up: it goes round once more
                continue
            # From now on live events wait, until the replay has sent what came before them.
            subscriber.backlog = []
            catching_up.append(subscriber)
        connection.access_changes += 1
        connection.spawn(self._resync(connection, catching_up))

    async def _resync(self, connection: Connection, subscribers: list[Subscriber]) -> None:
        try:
            await self.recheck(connection)
        except Exception:
            # Whether it may still follow anything is unknown: it must sign in again.
            logger.exception("authorising a connection again after a bus outage failed")
            connection.close(1011, "Internal error")
            return
        for subscriber in subscribers:
            group = subscriber.group
            if subscriber.ended or group is None:
                continue
            try:
                await self._catch_up(subscriber, group, subscriber.last_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("catching up after a bus outage failed")
                self.engine.count_error(ErrorCode.INTERNAL_ERROR)
                self._end(
                    connection,
                    subscriber,
                    _error_message(subscriber.id, "Internal error.", ErrorCode.INTERNAL_ERROR),
                )

    async def recheck(self, connection: Connection) -> None:
        """EVT-4: the user's access changed somewhere; is each subscription still allowed?"""
        actor = await self._authenticate(connection.websocket, connection.init_payload)
        if actor is None or actor.user_id != connection.actor.user_id:
            for subscriber in list(connection.subscribers.values()):
                self._end(
                    connection,
                    subscriber,
                    _error_message(
                        subscriber.id, "The session has ended.", ErrorCode.UNAUTHENTICATED
                    ),
                )
            connection.close(FORBIDDEN, "Forbidden")
            return
        connection.actor = actor
        scope = RequestScope(actor)
        for subscriber in list(connection.subscribers.values()):
            if subscriber.stream is _PENDING_STREAM:
                continue
            if not await events.still_allowed(scope, subscriber.stream):
                self._end(connection, subscriber, _no_longer_allowed(subscriber.id))


_PENDING_STREAM = Stream(organisation_id=None, user_id=0, types=frozenset(), after_id=None)


def _coded(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": ErrorCode.BAD_REQUEST.value})


def _error_message(subscription_id: str, message: str, code: ErrorCode) -> dict[str, Any]:
    return {
        "id": subscription_id,
        "type": "error",
        "payload": [{"message": message, "extensions": {"code": code.value}}],
    }


def _no_longer_allowed(subscription_id: str) -> dict[str, Any]:
    return _error_message(
        subscription_id, "You may no longer follow these events.", ErrorCode.FORBIDDEN
    )
