"""ActivityEvent: one security-relevant action (ACT-1)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from gardien.models.activity import ActivityEvent
from gardien.resolvers import organisations
from gardien.schema.context import Info
from gardien.schema.relay import Node, encode_id
from gardien.schema.users import UserNode


@strawberry.type(name="ActivityEvent")
class ActivityEventNode(Node):
    type: str = strawberry.field(description="What happened, e.g. sign_in.failed.")
    occurred_at: datetime
    ip: str | None
    country: str | None
    device: str | None
    _model: strawberry.Private[ActivityEvent]

    @classmethod
    def from_model(cls, event: ActivityEvent) -> ActivityEventNode:
        return cls(
            id=encode_id("ActivityEvent", event.id),
            type=event.type,
            occurred_at=event.occurred_at,
            ip=event.ip,
            country=event.country,
            device=event.device,
            _model=event,
        )

    @strawberry.field(description="Who acted, when it was a signed-in user.")
    async def actor(self, info: Info) -> UserNode | None:
        return await _user(info, self._model.actor_id)

    @strawberry.field(description="Whose account the event concerns.")
    async def subject(self, info: Info) -> UserNode | None:
        return await _user(info, self._model.subject_id)


async def _user(info: Info, user_id: int | None) -> UserNode | None:
    if user_id is None:
        return None
    user = await info.context.loaders.user.load(user_id)
    return await UserNode.load(info, user) if user else None


async def activity_event_by_id(info: Info, event_id: int) -> ActivityEventNode:
    """node(id:): an event of an organisation whose activity the caller may see (ACT-4)."""
    event = await organisations.visible_activity_event(info.context.scope, event_id)
    return ActivityEventNode.from_model(event)
