"""REC-4 concerns a mailbox hosted here: a mailbox left behind on a domain its organisation no
longer holds receives nothing, and deleting it must not take the login e-mail of an account on
that domain, which may now be another customer's."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gardien.clock import ManualClock
from gardien.models.activity import ActivityEvent
from gardien.models.enums import OutboxChannel, ProductKind
from gardien.models.mail import Mailbox
from gardien.models.outbox import OutboxMessage
from gardien.models.products import Product
from gardien.models.users import User
from gardien.resolvers import accounts, authz, domain_lifecycle, mailboxes, sessions
from gardien.resolvers.services import RequestMeta, Services
from tests import factories

pytestmark = pytest.mark.usefixtures("database")

MAIL_DOMAIN = "team-mail.ch"
LOGIN = f"ada@{MAIL_DOMAIN}"


async def _scope(services: Services, login: str) -> authz.RequestScope:
    result = await accounts.sign_in(
        services,
        RequestMeta(ip="198.51.100.1"),
        login=login,
        password=factories.PASSWORD,
        device_cookie=factories.device_cookie(login),
    )
    assert result.session is not None
    actor = await sessions.authenticate(services, result.session.token)
    assert actor is not None
    return authz.RequestScope(actor)


async def test_rec4_deleting_a_mailbox_of_a_released_domain_leaves_the_login_to_its_owner(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    former = await factories.sign_up(services, email="admin@example.test")
    domain = await factories.add_domain(
        services, former.organisation, MAIL_DOMAIN, expires_in=timedelta(days=1)
    )
    mail = await Product.create(
        organisation=former.organisation,
        kind=ProductKind.MAIL_SERVICE,
        name="Mail",
        created_at=services.clock.now(),
    )
    leftover = await mailboxes.create_mailbox(
        services, meta, await _scope(services, "admin@example.test"), mail.id, LOGIN
    )
    clock.advance(timedelta(days=2))
    await domain_lifecycle.expire_due(services)
    clock.advance(timedelta(days=90))
    await domain_lifecycle.release_due(services)
    await domain.refresh_from_db()
    assert domain.live_name is None
    # The name is registered again by another customer, whose member signs up with an address
    # on it.
    holder = await factories.sign_up(services, email="owner@example.org")
    await factories.add_domain(
        services, holder.organisation, MAIL_DOMAIN, expires_in=timedelta(days=365)
    )
    member = await factories.sign_up(services, email=LOGIN, name="Ada Lovelace")
    member.user.recovery_phone = "+41791234567"
    await member.user.save(update_fields=["recovery_phone"])

    await mailboxes.delete_mailbox(
        services, meta, await _scope(services, "admin@example.test"), leftover.id
    )

    stored = await User.get(id=member.user.id)
    assert (stored.email, stored.must_set_login_email, stored.generated_username) == (
        LOGIN,
        False,
        None,
    )
    assert not await Mailbox.exists(id=leftover.id)
    assert await ActivityEvent.filter(type="login_email.deleted").count() == 0
    assert await OutboxMessage.filter(channel=OutboxChannel.SMS).count() == 0
