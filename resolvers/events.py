"""Which security events an organisation and a user see, live and replayed (ACT-4, EVT-1…EVT-4)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from tortoise.queryset import QuerySet

from gardien import db
from gardien.models.activity import ActivityEvent, ActivityEventAudience
from gardien.resolvers import activity_log, authz, sql
from gardien.resolvers.authz import RequestScope
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import Services

# Every type resolvers/activity.py records (one list, kept whole by a test in activity_log); the
# `types` filter accepts these only, so a typo is an error instead of a subscription that
# silently never fires.
EVENT_TYPES = activity_log.EVENT_TYPES
MAX_TYPES = len(EVENT_TYPES)

# EVT-4: events after which the subject's live subscriptions are authorised again.
ACCESS_CHANGING_TYPES = frozenset(
    {
        "member.role_changed",
        "member.removed",
        "member.left",
        "session.signed_out",
        "session.revoked",
        "account.secured",
        "user.blocked_by_support",
        # A socket opened with a personal access token ends with it, as a session's does.
        "token.revoked",
    }
)

# Replayed from the database in pages of this size (EVT-2).
REPLAY_PAGE = 200

ACTIVITY = "activity"
ACCESS = "access"


# ACT-4: the organisations whose managers see the event `event` (id, organisation_id,
# subject_id): its own organisation, or, for a member's account security event (the parameter
# given as `security`), every organisation the member belongs to now. One statement whether the
# member belongs to no organisation, one or many, and whether the subject exists at all (NULL
# matches no row): an answer about an unknown login (REC-1) costs the same statements as one
# about a member, so their timing tells them apart no more than their text.
def _audience_insert(security: str) -> str:
    return (
        "INSERT INTO activity_event_organisation (event_id, organisation_id)"
        " SELECT event.id, event.organisation_id FROM event"
        " WHERE event.organisation_id IS NOT NULL"
        " UNION ALL SELECT event.id, m.organisation_id FROM event"
        " JOIN membership m ON m.user_id = event.subject_id"
        f" WHERE event.organisation_id IS NULL AND {security}"
        " RETURNING organisation_id"
    )


# The audience of an event already written.
_AUDIENCE = (
    "WITH event AS (SELECT CAST($1 AS BIGINT) AS id, CAST($2 AS INTEGER) AS organisation_id,"
    f" CAST($3 AS INTEGER) AS subject_id) {_audience_insert('$4')}"
)


def event_and_audience(source: str | None = None) -> str:
    """The WITH parts `event` (the INSERT, RETURNING the row) and `audience` that write an event
    and its audience in one statement on PostgreSQL (every part of a WITH sees the event the
    INSERT returns), with NewEvent.params as $1…$11. Given a `source` (an earlier part of the
    WITH), the event is written once per row it returns: with another write of the same
    statement, and only if that write was made. SQLite has no writing WITH: see record."""
    origin = f" FROM {source}" if source is not None else ""
    return (
        "event AS (INSERT INTO activity_event (type, occurred_at, actor_id, subject_id,"
        " subject_email, organisation_id, ip, country, device, data)"
        f" SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10{origin} RETURNING *),"
        f" audience AS ({_audience_insert('$11')})"
    )


_EVENT_AND_AUDIENCE = (
    f"WITH {event_and_audience()}"
    " SELECT event.*, audience.organisation_id AS audience_organisation_id"
    " FROM event LEFT JOIN audience ON TRUE"
)
# The column a statement built on event_and_audience answers each audience organisation in
# (one row per organisation, one row with NULL for none).
AUDIENCE_COLUMN = "audience_organisation_id"


@dataclass(frozen=True)
class NewEvent:
    """An ActivityEvent to write (ACT-1): its columns but the id."""

    type: str
    occurred_at: datetime
    actor_id: int | None
    subject_id: int | None
    subject_email: str | None
    organisation_id: int | None
    ip: str | None
    country: str | None
    device: str | None
    data: dict[str, Any]

    def params(self) -> list[Any]:
        """The parameters of event_and_audience, in its order."""
        encoded = ActivityEvent._meta.fields_map["data"].to_db_value(self.data, ActivityEvent)
        security = activity_log.is_account_security_event(self.type)
        return [*self.columns().values(), encoded, security]

    def as_written(self, event_id: int) -> ActivityEvent:
        """The event as written under this id, for publication (never saved again)."""
        return ActivityEvent(id=event_id, **self.columns(), data=self.data)

    def columns(self) -> dict[str, Any]:
        """The columns but the id and data, by name (the ORM's create takes them so), in the
        order the fields are declared, which is the column order of event_and_audience's
        INSERT: params() follows it, data last."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "data"}


async def record(new: NewEvent) -> tuple[ActivityEvent, list[int]]:
    """ACT-1, ACT-4: the event and its audience, in the caller's transaction; answers both."""
    if not sql.writes_in_with():
        event = await ActivityEvent.create(**new.columns(), data=new.data)
        return event, await record_audience(event)
    rows = await sql.fetch(_EVENT_AND_AUDIENCE, new.params())
    row = {key: value for key, value in rows[0].items() if key != AUDIENCE_COLUMN}
    return sql.model_from_row(ActivityEvent, row), audience_in(rows)


def audience_in(rows: list[dict[str, Any]]) -> list[int]:
    """The audience a statement built on event_and_audience answered (AUDIENCE_COLUMN)."""
    return sorted(int(row[AUDIENCE_COLUMN]) for row in rows if row[AUDIENCE_COLUMN] is not None)


async def record_audience(event: ActivityEvent) -> list[int]:
    """ACT-4: store the audience of an event already written (in its transaction). History,
    replay and live delivery all read it, so they agree."""
    security = activity_log.is_account_security_event(event.type)
    rows = await sql.fetch(_AUDIENCE, [event.id, event.organisation_id, event.subject_id, security])
    return sorted(int(row["organisation_id"]) for row in rows)


async def audience_of(event_id: int) -> list[int]:
    """The organisations whose managers see the event, as record_audience stored them."""
    rows = await ActivityEventAudience.filter(event_id=event_id).values("organisation_id")
    return sorted(int(row["organisation_id"]) for row in rows)


def organisation_events(
    organisation_id: int, *, after_id: int | None = None, before_id: int | None = None
) -> QuerySet[ActivityEvent]:
    """ACT-4: the organisation's events, the one predicate of its list and its subscription.

    A page's cursor bounds the audience index itself, so PostgreSQL starts reading it at the
    cursor instead of walking the organisation's newer events to get there.
    """
    query = ActivityEvent.filter(audience__organisation_id=organisation_id)
    if after_id is not None:
        query = query.filter(audience__event_id__gt=after_id)
    if before_id is not None:
        query = query.filter(audience__event_id__lt=before_id)
    return query


def user_events(user_id: int) -> QuerySet[ActivityEvent]:
    """A user's own security events: those whose subject they are."""
    return ActivityEvent.filter(subject_id=user_id)


# --- Publication (EVT-1, EVT-3) ------------------------------------------------------------------


def publish_after_commit(services: Services, event: ActivityEvent, audience: list[int]) -> None:
    """Queue the event for live subscribers; it leaves only once the caller's transaction commits.

    Its audience (the organisations whose stream shows it) is the one record_audience stored.
    """
    message = {"kind": ACTIVITY, "audience": audience, **event_fields(event)}
    bus = services.events
    db.after_commit(lambda: bus.publish(message))
    if event.subject_id is not None and event.type in ACCESS_CHANGING_TYPES:
        access_changed(services, event.subject_id)


def access_changed(services: Services, user_id: int) -> None:
    """EVT-4: after commit, every process re-authorises the user's live subscriptions."""
    bus = services.events
    db.after_commit(lambda: bus.publish({"kind": ACCESS, "user_id": user_id}))


def event_fields(event: ActivityEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "occurred_at": event.occurred_at.isoformat(),
        "actor_id": event.actor_id,
        "subject_id": event.subject_id,
        "subject_email": event.subject_email,
        "organisation_id": event.organisation_id,
        "ip": event.ip,
        "country": event.country,
        "device": event.device,
        "data": event.data,
    }


def event_from_message(message: dict[str, Any]) -> ActivityEvent:
    """The committed event as published: read, never saved again (the log is append-only)."""
    return ActivityEvent(
        id=message["id"],
        type=message["type"],
        occurred_at=datetime.fromisoformat(message["occurred_at"]),
        actor_id=message["actor_id"],
        subject_id=message["subject_id"],
        subject_email=message["subject_email"],
        organisation_id=message["organisation_id"],
        ip=message["ip"],
        country=message["country"],
        device=message["device"],
        data=message["data"],
    )


# --- Subscriptions (EVT-1, EVT-2, EVT-4) ---------------------------------------------------------


@dataclass(frozen=True)
class Stream:
    """What one subscription follows: an organisation's or a user's events, maybe some types."""

    organisation_id: int | None
    user_id: int  # the subscriber; with no organisation, the events are their own
    types: frozenset[str] | None
    after_id: int | None
    # The subscription field, when another than the security events' (MFA-4's devices).
    field: str | None = None

    @property
    def root_field(self) -> str:
        """The subscription field that follows this stream, as the operation gate names it."""
        if self.field is not None:
            return self.field
        return (
            "organisationSecurityEvents"
            if self.organisation_id is not None
            else ("viewerSecurityEvents")
        )

    @property
    def topic(self) -> tuple[str, int]:
        if self.organisation_id is not None:
            return ("organisation", self.organisation_id)
        return ("user", self.user_id)

    def shows(self, message: dict[str, Any]) -> bool:
        """The live side of organisation_events / user_events, on a published message."""
        if self.types is not None and message["type"] not in self.types:
            return False
        if self.organisation_id is not None:
            return self.organisation_id in message["audience"]
        return bool(message["subject_id"] == self.user_id)

    def query(self, after_id: int | None = None) -> QuerySet[ActivityEvent]:
        if self.organisation_id is not None:
            base = organisation_events(self.organisation_id, after_id=after_id)
        else:
            base = user_events(self.user_id)
            if after_id is not None:
                base = base.filter(id__gt=after_id)
        return base.filter(type__in=sorted(self.types)) if self.types is not None else base


async def organisation_stream(
    scope: RequestScope, organisation_id: int, types: list[str] | None, after_id: int | None
) -> Stream:
    """EVT-1: an organisation's events, for its administrators and legal representatives."""
    user = authz.require_user(scope.actor)
    membership = await authz.require_visible_organisation(scope, organisation_id)
    authz.require(
        authz.can_watch_organisation_events(membership),
        authz.forbidden(authz.ACTIVITY_FORBIDDEN),
    )
    return await _stream(organisation_id, user.id, types, after_id)


async def viewer_stream(
    scope: RequestScope, types: list[str] | None, after_id: int | None
) -> Stream:
    """EVT-1: the caller's own events."""
    user = authz.require_user(scope.actor)
    return await _stream(None, user.id, types, after_id)


async def _stream(
    organisation_id: int | None, user_id: int, types: list[str] | None, after_id: int | None
) -> Stream:
    if types is not None:
        unknown = sorted(set(types) - EVENT_TYPES)
        if unknown or not types:
            message = f"Unknown event type {unknown[0][:64]!r}." if unknown else "Name a type."
            raise DomainError(ErrorCode.INVALID_INPUT, message, "types")
    # A cursor beyond the newest event was not made by this gateway: refused, not waited on.
    if after_id is not None and after_id > await newest_event_id():
        raise DomainError(ErrorCode.INVALID_INPUT, "This cursor is not valid.", "after")
    return Stream(
        organisation_id=organisation_id,
        user_id=user_id,
        types=frozenset(types) if types is not None else None,
        after_id=after_id,
    )


async def replay(stream: Stream, after_id: int | None) -> list[ActivityEvent]:
    """EVT-2: the next page of events after the cursor, oldest first."""
    return await stream.query(after_id).order_by("id").limit(REPLAY_PAGE)


async def newest_event_id() -> int:
    newest: list[Any] = (
        await ActivityEvent.all().order_by("-id").limit(1).values_list("id", flat=True)
    )
    return int(newest[0]) if newest else 0


async def still_allowed(scope: RequestScope, stream: Stream) -> bool:
    """EVT-4: whether the subscriber may still follow the stream (asked on access changes)."""
    if scope.actor.user_id != stream.user_id:
        return False
    try:
        # The operation gate again (POL-4: a member the 2FA policy now holds follows nothing).
        authz.check_operation(scope.actor, "subscription", frozenset({stream.root_field}))
    except DomainError:
        return False
    if stream.organisation_id is None:
        return True
    membership = await authz.membership_of(scope, stream.organisation_id)
    return authz.can_watch_organisation_events(membership)
