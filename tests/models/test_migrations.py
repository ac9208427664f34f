"""The migrations: they build the whole model, with its constraints, on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

import pytest
from tortoise.context import TortoiseContext
from tortoise.exceptions import IntegrityError
from tortoise.migrations.autodetector import MigrationAutodetector

from gardien.db import tortoise_config
from gardien.models.activity import ActivityEvent, ActivityEventAudience, AppendOnlyError
from gardien.models.domains import TldPolicy
from gardien.models.enums import Role
from gardien.models.organisations import Membership
from gardien.models.users import User
from gardien.resolvers.services import Services
from tests import factories

pytestmark = pytest.mark.usefixtures("database")


async def test_ops3_models_have_no_changes_missing_from_migrations(database: str) -> None:
    config = tortoise_config(database)
    context = TortoiseContext()
    with context:
        await context.init(config=config, init_connections=False)
        assert context.apps is not None
        detector = MigrationAutodetector(context.apps, config["apps"])
        writers = await detector.changes()

    assert [w.name for w in writers] == [], "run `tortoise makemigrations` (see README)"


async def test_dom3_tld_policies_are_reference_data_of_the_migrations() -> None:
    swiss = await TldPolicy.get(tld="ch")

    assert (swiss.redemption_days, swiss.restore_fee, swiss.currency) == (
        40,
        Decimal("120.00"),
        "CHF",
    )
    assert {p.tld for p in await TldPolicy.all()} >= {"ch", "fr", "be", "de", "com"}


async def test_org1_login_email_unique_in_the_database(services: Services) -> None:
    now = services.clock.now()
    await User.create(
        email="same@example.test",
        password_hash="x",
        password_changed_at=now,
        display_name="A",
        created_at=now,
    )

    with pytest.raises(IntegrityError):
        await User.create(
            email="same@example.test",
            password_hash="x",
            password_changed_at=now,
            display_name="B",
            created_at=now,
        )


async def test_org6_one_membership_per_user_and_organisation(services: Services) -> None:
    owner = await factories.sign_up(services)

    with pytest.raises(IntegrityError):
        await Membership.create(
            organisation=owner.organisation,
            user=owner.user,
            role=Role.EXTERNAL,
            created_at=services.clock.now(),
        )


async def test_act1_activity_events_are_append_only(services: Services) -> None:
    await factories.sign_up(services)
    event = await ActivityEvent.filter(type="account.signed_up").get()

    event.type = "something.else"
    with pytest.raises(AppendOnlyError):
        await event.save()
    with pytest.raises(AppendOnlyError):
        await event.delete()

    assert (await ActivityEvent.get(id=event.id)).type == "account.signed_up"


async def test_act1_act4_who_saw_an_event_is_append_only_too(services: Services) -> None:
    owner = await factories.sign_up(services)
    other = await factories.sign_up(services)
    event = await ActivityEvent.filter(type="account.signed_up", subject_id=owner.user.id).get()
    (audience,) = await ActivityEventAudience.filter(event_id=event.id)

    audience.organisation_id = other.organisation.id
    with pytest.raises(AppendOnlyError):
        await audience.save()
    with pytest.raises(AppendOnlyError):
        await audience.delete()

    rows = await ActivityEventAudience.filter(event_id=event.id).values_list("organisation_id")
    assert rows == [(owner.organisation.id,)]
