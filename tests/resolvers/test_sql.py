"""Fixed statements (resolvers/sql.py) give back what the ORM would: the hot paths that read a
model with one give its callers the same object on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from gardien.models.activity import ActivityEvent
from gardien.models.enums import SessionKind
from gardien.models.sessions import Session
from gardien.models.users import User
from gardien.resolvers import accounts, events, sessions
from gardien.resolvers.services import RequestMeta, Services
from tests import factories

pytestmark = pytest.mark.usefixtures("database")


async def test_mfa7_an_account_read_by_a_fixed_statement_is_the_one_the_orm_loads(
    services: Services,
) -> None:
    ada = await factories.sign_up(services, email="ada@example.test")
    await User.filter(id=ada.user.id).update(recovery_phone="+41791234567", country="CH")

    found = await accounts.find_by_login("  Ada@Example.test ")
    loaded = await User.get(id=ada.user.id)

    assert found is not None and not found._partial and found._saved_in_db
    assert factories.columns(found) == factories.columns(loaded)
    assert await accounts.find_by_login("nobody@example.test") is None


async def test_act1_an_event_written_with_its_audience_is_the_one_the_orm_loads(
    services: Services,
) -> None:
    ada = await factories.sign_up(services, email="ada@example.test")

    event, audience = await events.record(
        events.NewEvent(
            type="sign_in.succeeded",
            occurred_at=services.clock.now(),
            actor_id=ada.user.id,
            subject_id=ada.user.id,
            subject_email=None,
            organisation_id=None,
            ip="203.0.113.7",
            country="CH",
            device="Firefox on Linux",
            data={"second_factor": "TOTP", "zone": "Europe/Zürich"},
        )
    )
    loaded = await ActivityEvent.get(id=event.id)

    assert not event._partial and event._saved_in_db
    assert factories.columns(event) == factories.columns(loaded)
    assert event.data == {"second_factor": "TOTP", "zone": "Europe/Zürich"}
    assert event.occurred_at == services.clock.now()
    assert audience == [ada.organisation.id]


@pytest.mark.parametrize("kind", [SessionKind.WEB, SessionKind.APP])
async def test_mfa7_a_session_opened_by_a_fixed_statement_is_the_one_the_orm_loads(
    services: Services, kind: SessionKind
) -> None:
    ada = await factories.sign_up(services, email="ada@example.test")
    meta = RequestMeta(ip="2001:db8::7", country="FR", device="Safari on iOS")

    issued = await sessions.open_session(services, ada.user, meta, persistent=True, kind=kind)
    loaded = await Session.get(id=issued.session.id)

    assert not issued.session._partial and issued.session._saved_in_db
    assert factories.columns(issued.session) == factories.columns(loaded)
    assert (loaded.kind, loaded.persistent, loaded.device) == (kind, True, "Safari on iOS")
    assert loaded.expires_at - loaded.created_at == sessions.ABSOLUTE_LIFETIME
