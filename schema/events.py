"""Live security events (EVT-1, EVT-2): the Subscription root fields and what each event carries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeVar

import strawberry

from gardien.models.activity import ActivityEvent
from gardien.resolvers import events
from gardien.resolvers.events import Stream
from gardien.schema.activity import ActivityEventNode
from gardien.schema.context import Info
from gardien.schema.relay import decode_cursor, decode_id, encode_cursor

ItemT = TypeVar("ItemT")


@strawberry.type(description="One security event, with the cursor to resume after it (EVT-2).")
class SecurityEventEdge:
    cursor: str = strawberry.field(description="Give it as `after` to resume after this event.")
    event: ActivityEventNode


class EventSource(AsyncIterator[ItemT]):
    """What a subscription field answers: the authorised stream to follow.

    The WebSocket transport (gardien/graphql/ws.py) follows it: it replays, groups identical
    subscriptions and executes the selection once per group for each event, with
    `await root_value(event)` as the field's value. Iterating it directly yields nothing. A
    field whose values are not security events themselves (MFA-4's approval requests) follows
    a stream the same way, with a subclass that says what an event becomes.
    """

    def __init__(self, stream: Stream) -> None:
        self.stream = stream

    async def root_value(self, event: ActivityEvent) -> Any:
        return SecurityEventEdge(
            cursor=encode_cursor(event.id), event=ActivityEventNode.from_model(event)
        )

    def __aiter__(self) -> EventSource[ItemT]:
        return self

    async def __anext__(self) -> ItemT:
        raise StopAsyncIteration


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="An organisation's security events as they happen, its members' account"
        " events included (EVT-1, ACT-4): administrators and legal representatives only. With"
        " `after`, every event after that cursor first (EVT-2)."
    )
    async def organisation_security_events(
        self,
        info: Info,
        organisation_id: strawberry.ID,
        types: list[str] | None = None,
        after: str | None = None,
    ) -> AsyncIterator[SecurityEventEdge]:
        stream = await events.organisation_stream(
            info.context.scope,
            decode_id(organisation_id, "Organisation", "organisationId"),
            types,
            decode_cursor(after),
        )
        return EventSource(stream)

    @strawberry.subscription(
        description="Your own security events as they happen (EVT-1); with `after`, every event"
        " after that cursor first (EVT-2)."
    )
    async def viewer_security_events(
        self, info: Info, types: list[str] | None = None, after: str | None = None
    ) -> AsyncIterator[SecurityEventEdge]:
        stream = await events.viewer_stream(info.context.scope, types, decode_cursor(after))
        return EventSource(stream)
