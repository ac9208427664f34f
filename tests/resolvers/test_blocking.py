"""Product management blocks, mail maintenance, mailboxes and the secure-your-account procedure
without GraphQL (BLK-1, BLK-2, BLK-4)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from tortoise import connections
from tortoise.transactions import in_transaction

from gardien import demo
from gardien.clock import ManualClock
from gardien.models.activity import ActivityEvent
from gardien.models.domains import Domain
from gardien.models.enums import DomainStatus, ProductKind, Role
from gardien.models.mail import Mailbox, MailMessage
from gardien.models.organisations import Membership, Organisation
from gardien.models.outbox import OutboxMessage
from gardien.models.products import Product, ProductGrant
from gardien.resolvers import authz, blocking, domains, mailboxes
from gardien.resolvers.authz import RequestScope
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from tests import factories
from tests.conftest import BACKEND

pytestmark = pytest.mark.usefixtures("database")


@dataclass
class Team:
    organisation: Organisation
    legal: RequestScope
    admin: RequestScope
    collaborator: RequestScope
    external: RequestScope
    members: dict[Role, factories.Member]


async def _team(services: Services) -> Team:
    owner = await factories.sign_up(services, email="legal@example.test")
    organisation = owner.organisation
    members = {
        role: await factories.add_member(
            services, organisation, role, email=f"{role.value.lower()}@example.test"
        )
        for role in (Role.ADMINISTRATOR, Role.COLLABORATOR, Role.EXTERNAL)
    }
    scopes = {
        role: await factories.signed_in_scope(services, f"{role.value.lower()}@example.test")
        for role in members
    }
    return Team(
        organisation=organisation,
        legal=await factories.signed_in_scope(services, "legal@example.test"),
        admin=scopes[Role.ADMINISTRATOR],
        collaborator=scopes[Role.COLLABORATOR],
        external=scopes[Role.EXTERNAL],
        members=members,
    )


async def _product(
    services: Services, organisation: Organisation, kind: ProductKind, name: str = "Product"
) -> Product:
    return await Product.create(
        organisation=organisation, kind=kind, name=name, created_at=services.clock.now()
    )


TEAM_DOMAIN = "team-mail.ch"


async def _mail_service(services: Services, organisation: Organisation) -> Product:
    """A mail service and a live domain of the organisation for its addresses (BLK-2)."""
    await factories.add_domain(services, organisation, TEAM_DOMAIN, expires_in=timedelta(days=200))
    return await _product(services, organisation, ProductKind.MAIL_SERVICE)


async def _grant(team: Team, role: Role, product: Product) -> None:
    await ProductGrant.create(membership=team.members[role].membership, product=product)


async def _state() -> tuple[list[dict[str, Any]], int, int, int, int]:
    """Everything a blocking operation could change."""
    return (
        await Product.all().order_by("id").values(),
        await ActivityEvent.all().count(),
        await OutboxMessage.all().count(),
        await Mailbox.all().count(),
        await MailMessage.all().count(),
    )


async def _refusal(call: Awaitable[Any]) -> DomainError:
    before = await _state()
    with pytest.raises(DomainError) as raised:
        await call
    assert await _state() == before, "a refused operation changed something"
    return raised.value


async def _refused(call: Awaitable[Any]) -> tuple[ErrorCode, str | None]:
    error = await _refusal(call)
    return error.code, error.field


# --- BLK-1 ---------------------------------------------------------------------------------------


async def test_blk1_act1_manager_blocks_management_and_the_members_concerned_are_emailed(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    drive = await _product(services, team.organisation, ProductKind.WEB_DRIVE, "Team drive")
    await _grant(team, Role.COLLABORATOR, drive)
    # The administrator asked for technical notices; the external member is not granted.
    await Membership.filter(id=team.members[Role.ADMINISTRATOR].membership.id).update(
        notify_technical=True
    )

    blocked = await blocking.block_product_management(services, meta, team.legal, drive.id)

    assert blocked.management_blocked_at == services.clock.now()
    assert (await Product.get(id=drive.id)).management_blocked_at is not None
    # The block notices only (signing the team in leaves new sign-in notices in the outbox).
    mails = await OutboxMessage.filter(template="product_management_changed").order_by("recipient")
    assert [m.recipient for m in mails] == [
        "administrator@example.test",
        "collaborator@example.test",
    ]
    assert "Team drive" in mails[0].payload["subject"]
    event = await ActivityEvent.get(type="product.management_blocked")
    assert (event.actor_id, event.organisation_id) == (
        team.legal.actor.user_id,
        team.organisation.id,
    )
    assert event.data == {
        "product_id": drive.id,
        "name": "Team drive",
        "kind": "WEB_DRIVE",
        "notified": 2,
    }


async def test_blk1_domains_granted_collaborator_renews_until_management_is_blocked(
    services: Services, meta: RequestMeta
) -> None:
    """The PRODUCT_BLOCKED rule holds for the domain product: a collaborator granted it manages
    the organisation's domains (ORG-3) until a manager blocks it, and again once unblocked."""
    team = await _team(services)
    product = await _product(services, team.organisation, ProductKind.DOMAIN, "Domains")
    await _grant(team, Role.COLLABORATOR, product)
    domain = await factories.add_domain(
        services, team.organisation, "team.ch", expires_in=timedelta(days=30)
    )

    await domains.renew_domain(services, meta, team.collaborator, domain.id, 1)
    await blocking.block_product_management(services, meta, team.admin, product.id)
    before = (await Domain.get(id=domain.id)).expires_at
    refused = await _refused(domains.renew_domain(services, meta, team.collaborator, domain.id, 1))
    warranty = await _refused(
        domains.set_renewal_warranty(services, meta, team.collaborator, domain.id, True)
    )
    await domains.renew_domain(services, meta, team.legal, domain.id, 1)
    await blocking.unblock_product_management(services, meta, team.legal, product.id)
    await domains.renew_domain(services, meta, team.collaborator, domain.id, 1)

    assert refused == warranty == (ErrorCode.PRODUCT_BLOCKED, None)
    after = (await Domain.get(id=domain.id)).expires_at
    assert after.year == before.year + 2


@pytest.mark.parametrize("role", [Role.COLLABORATOR, Role.EXTERNAL])
async def test_blk1_collaborator_and_external_can_neither_block_nor_unblock(
    services: Services, meta: RequestMeta, role: Role
) -> None:
    team = await _team(services)
    drive = await _product(services, team.organisation, ProductKind.WEB_DRIVE)
    await _grant(team, role, drive)
    scope = team.collaborator if role == Role.COLLABORATOR else team.external

    block = await _refused(blocking.block_product_management(services, meta, scope, drive.id))
    await blocking.block_product_management(services, meta, team.admin, drive.id)
    unblock = await _refused(blocking.unblock_product_management(services, meta, scope, drive.id))

    assert block == unblock == (ErrorCode.FORBIDDEN, None)


async def test_blk1_blocking_twice_and_unblocking_what_is_not_blocked_are_refused(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    hosting = await _product(services, team.organisation, ProductKind.HOSTING)

    not_blocked = await _refused(
        blocking.unblock_product_management(services, meta, team.legal, hosting.id)
    )
    await blocking.block_product_management(services, meta, team.legal, hosting.id)
    twice = await _refused(
        blocking.block_product_management(services, meta, team.admin, hosting.id)
    )

    assert not_blocked == (ErrorCode.PRODUCT_NOT_BLOCKED, "productId")
    assert twice == (ErrorCode.PRODUCT_ALREADY_BLOCKED, "productId")


async def test_blk1_unblock_is_recorded_and_members_told(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    drive = await _product(services, team.organisation, ProductKind.WEB_DRIVE, "Drive")
    await _grant(team, Role.EXTERNAL, drive)
    await blocking.block_product_management(services, meta, team.legal, drive.id)

    unblocked = await blocking.unblock_product_management(services, meta, team.admin, drive.id)

    assert unblocked.management_blocked_at is None and unblocked.management_blocked_by_id is None
    mails = await OutboxMessage.filter(template="product_management_changed").order_by("id")
    assert [m.recipient for m in mails] == ["external@example.test"] * 2
    assert "unblocked" in mails[1].payload["text"] or "débloqué" in mails[1].payload["text"]
    event = await ActivityEvent.get(type="product.management_unblocked")
    assert event.actor_id == team.admin.actor.user_id and event.data["notified"] == 1


async def test_blk1_product_of_another_organisation_is_not_found(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    other = await factories.sign_up(services, email="other@example.test")
    theirs = await _product(services, other.organisation, ProductKind.HOSTING)

    refused = await _refused(
        blocking.block_product_management(services, meta, team.legal, theirs.id)
    )
    unknown = await _refused(
        blocking.block_product_management(services, meta, team.legal, theirs.id + 100)
    )

    assert refused == unknown == (ErrorCode.NOT_FOUND, "productId")


async def test_blk1_products_list_shows_block_and_maintenance_to_every_member(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    mail = await _product(services, team.organisation, ProductKind.MAIL_SERVICE, "Mail")
    drive = await _product(services, team.organisation, ProductKind.WEB_DRIVE, "Drive")
    await blocking.block_product_management(services, meta, team.legal, drive.id)
    await blocking.set_mail_maintenance(services, meta, team.legal, mail.id, True)

    listed = await blocking.organisation_products(
        team.external, team.organisation.id, first=10, after_id=None
    )

    assert [
        (p.name, p.management_blocked_at is not None, p.maintenance_since is not None)
        for p in listed.page.items
    ] == [("Mail", False, True), ("Drive", True, False)]
    assert await listed.count() == 2


# --- BLK-2 ---------------------------------------------------------------------------------------


async def test_blk2_mail_service_cannot_be_blocked_and_the_error_points_to_maintenance(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    mail = await _product(services, team.organisation, ProductKind.MAIL_SERVICE)

    error = await _refusal(blocking.block_product_management(services, meta, team.legal, mail.id))

    assert (error.code, error.field) == (ErrorCode.MAIL_SERVICE_NOT_BLOCKABLE, "productId")
    assert "maintenance" in error.message


async def test_blk2_act1_maintenance_keeps_incoming_mail_and_refuses_reading(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    mail = await _mail_service(services, team.organisation)
    await _grant(team, Role.COLLABORATOR, mail)
    mailbox = await mailboxes.create_mailbox(
        services, meta, team.admin, mail.id, "Team@Team-Mail.ch"
    )

    await blocking.set_mail_maintenance(services, meta, team.admin, mail.id, True)
    stored = await mailboxes.accept_incoming_mail(
        services, "team@team-mail.ch", sender="a@example.test", subject="Hi", body="Hello"
    )
    refused = [
        await _refused(mailboxes.read_mailbox(scope, mailbox.id, first=10, after_id=None))
        for scope in (team.legal, team.collaborator)
    ]
    await blocking.set_mail_maintenance(services, meta, team.admin, mail.id, False)
    read = await mailboxes.read_mailbox(team.collaborator, mailbox.id, first=10, after_id=None)

    assert mailbox.address == "team@team-mail.ch"
    assert refused == [(ErrorCode.MAIL_MAINTENANCE, None)] * 2
    assert [m.id for m in read.page.items] == [stored.id]
    assert [e.type for e in await ActivityEvent.filter(type__startswith="product.")] == [
        "product.mail_maintenance_started",
        "product.mail_maintenance_ended",
    ]


async def test_blk2_maintenance_again_in_the_same_state_records_nothing(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    mail = await _product(services, team.organisation, ProductKind.MAIL_SERVICE)
    before = await ActivityEvent.all().count()

    await blocking.set_mail_maintenance(services, meta, team.legal, mail.id, False)

    assert await ActivityEvent.all().count() == before


async def test_blk2_maintenance_is_for_managers_and_mail_services_only(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    mail = await _product(services, team.organisation, ProductKind.MAIL_SERVICE)
    drive = await _product(services, team.organisation, ProductKind.WEB_DRIVE)
    await _grant(team, Role.COLLABORATOR, mail)

    by_collaborator = await _refused(
        blocking.set_mail_maintenance(services, meta, team.collaborator, mail.id, True)
    )
    not_mail = await _refused(
        blocking.set_mail_maintenance(services, meta, team.legal, drive.id, True)
    )

    assert by_collaborator == (ErrorCode.FORBIDDEN, None)
    assert not_mail == (ErrorCode.NOT_A_MAIL_SERVICE, "productId")


async def test_blk1_mailbox_management_goes_through_the_product_rule(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    mail = await _mail_service(services, team.organisation)
    await _grant(team, Role.COLLABORATOR, mail)

    not_granted = await _refused(
        mailboxes.create_mailbox(services, meta, team.external, mail.id, "x@team-mail.ch")
    )
    created = await mailboxes.create_mailbox(
        services, meta, team.collaborator, mail.id, "c@team-mail.ch"
    )
    taken = await _refused(
        mailboxes.create_mailbox(services, meta, team.admin, mail.id, "C@team-mail.ch")
    )
    bad = await _refused(mailboxes.create_mailbox(services, meta, team.admin, mail.id, "nope"))
    delete_refused = await _refused(
        mailboxes.delete_mailbox(services, meta, team.external, created.id)
    )
    await mailboxes.delete_mailbox(services, meta, team.collaborator, created.id)

    assert not_granted == delete_refused == (ErrorCode.FORBIDDEN, None)
    assert taken == (ErrorCode.EMAIL_UNAVAILABLE, "address")
    assert bad == (ErrorCode.INVALID_INPUT, "address")
    assert not await Mailbox.exists(id=created.id)
    assert [e.type for e in await ActivityEvent.filter(type__startswith="mailbox.")] == [
        "mailbox.created",
        "mailbox.deleted",
    ]


async def test_blk2_incoming_mail_for_an_unknown_address_is_not_stored(
    services: Services,
) -> None:
    refused = await _refused(
        mailboxes.accept_incoming_mail(
            services, "nobody@example.test", sender="a@example.test", subject="Hi", body="Hello"
        )
    )

    assert refused == (ErrorCode.NOT_FOUND, "mailboxId")


async def test_blk2_rec4_mailbox_for_another_customers_domain_is_refused(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    mail = await _mail_service(services, team.organisation)
    other = await factories.sign_up(services, email="someone@elsewhere.test")
    await factories.add_domain(
        services, other.organisation, "other-sa.ch", expires_in=timedelta(days=200)
    )

    others_domain = await _refusal(
        mailboxes.create_mailbox(services, meta, team.admin, mail.id, "billing@other-sa.ch")
    )
    nobodys_domain = await _refusal(
        mailboxes.create_mailbox(services, meta, team.admin, mail.id, "billing@free-sa.ch")
    )
    sub_domain = await _refusal(
        mailboxes.create_mailbox(services, meta, team.admin, mail.id, "b@mx.other-sa.ch")
    )
    # The mail for the other customer's domain finds no mailbox.
    incoming = await _refused(
        mailboxes.accept_incoming_mail(
            services, "billing@other-sa.ch", sender="a@example.test", subject="Hi", body="Hello"
        )
    )

    # One answer whether the domain is another customer's or nobody's: nothing is revealed.
    answers = {(e.code, e.field, e.message) for e in (others_domain, nobodys_domain, sub_domain)}
    assert answers == {
        (
            ErrorCode.MAIL_DOMAIN_NOT_OWNED,
            "address",
            "A mailbox address must be on one of your organisation's domains.",
        )
    }
    assert incoming == (ErrorCode.NOT_FOUND, "mailboxId")


async def test_blk2_mailbox_on_a_domain_in_redemption_yes_released_no(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    mail = await _product(services, team.organisation, ProductKind.MAIL_SERVICE)
    await factories.add_domain(
        services,
        team.organisation,
        "lapsing-sa.ch",
        expires_in=timedelta(days=-5),
        status=DomainStatus.REDEMPTION,
        redemption_ends_in=timedelta(days=25),
    )
    await factories.add_domain(
        services,
        team.organisation,
        "gone-sa.ch",
        expires_in=timedelta(days=-100),
        status=DomainStatus.RELEASED,
    )

    kept = await mailboxes.create_mailbox(services, meta, team.admin, mail.id, "a@lapsing-sa.ch")
    released = await _refused(
        mailboxes.create_mailbox(services, meta, team.admin, mail.id, "a@gone-sa.ch")
    )

    assert kept.address == "a@lapsing-sa.ch"
    assert released == (ErrorCode.MAIL_DOMAIN_NOT_OWNED, "address")


async def test_blk2_rec4_mailbox_left_on_a_domain_no_longer_held_gets_no_mail(
    services: Services, meta: RequestMeta
) -> None:
    """A mailbox made before the domain rule, or whose domain was released since, receives
    nothing: the domain's mail is not the organisation's any more."""
    team = await _team(services)
    mail = await _mail_service(services, team.organisation)
    mailbox = await mailboxes.create_mailbox(
        services, meta, team.admin, mail.id, "kept@team-mail.ch"
    )
    await Domain.filter(live_name=TEAM_DOMAIN).update(
        status=DomainStatus.RELEASED, live_name=None, released_at=services.clock.now()
    )

    refused = await _refused(
        mailboxes.accept_incoming_mail(
            services, "kept@team-mail.ch", sender="a@example.test", subject="Hi", body="Hello"
        )
    )

    assert refused == (ErrorCode.NOT_FOUND, "mailboxId")
    assert not await MailMessage.exists(mailbox_id=mailbox.id)


# --- BLK-4 ---------------------------------------------------------------------------------------


async def test_blk4_act1_manager_sends_the_secure_account_procedure_in_the_members_language(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    collaborator = team.members[Role.COLLABORATOR]
    collaborator.user.language = "de"
    await collaborator.user.save(update_fields=["language"])

    await blocking.send_security_procedure(services, meta, team.admin, collaborator.membership.id)

    mail = await OutboxMessage.get(template="secure_account_procedure")
    assert (mail.recipient, mail.language) == ("collaborator@example.test", "de")
    assert "Zwei-Faktor" in mail.payload["text"] and "Passw" in mail.payload["text"]
    event = await ActivityEvent.get(type="member.security_procedure_sent")
    assert (event.actor_id, event.subject_id, event.organisation_id) == (
        team.admin.actor.user_id,
        collaborator.user.id,
        team.organisation.id,
    )


@pytest.mark.parametrize("role", [Role.COLLABORATOR, Role.EXTERNAL])
async def test_blk4_only_managers_send_the_procedure(
    services: Services, meta: RequestMeta, role: Role
) -> None:
    team = await _team(services)
    scope = team.collaborator if role == Role.COLLABORATOR else team.external
    target = team.members[Role.ADMINISTRATOR].membership.id

    refused = await _refused(blocking.send_security_procedure(services, meta, scope, target))

    assert refused == (ErrorCode.FORBIDDEN, None)


async def test_blk4_procedure_to_one_member_is_rate_limited(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    target = team.members[Role.EXTERNAL].membership.id
    for _ in range(blocking.SECURITY_PROCEDURES_PER_MEMBER.limit):
        await blocking.send_security_procedure(services, meta, team.legal, target)

    refused = await _refused(blocking.send_security_procedure(services, meta, team.legal, target))

    assert refused == (ErrorCode.TOO_MANY_ATTEMPTS, None)


async def test_blk4_procedure_to_a_member_of_another_organisation_is_not_found(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    other = await factories.sign_up(services, email="other@example.test")
    theirs = await Membership.get(organisation_id=other.organisation.id)

    refused = await _refused(
        blocking.send_security_procedure(services, meta, team.legal, theirs.id)
    )

    assert refused == (ErrorCode.NOT_FOUND, "membershipId")


@pytest.mark.parametrize(
    ("role", "granted", "blocked", "allowed"),
    [
        (Role.LEGAL_REPRESENTATIVE, False, True, True),
        (Role.ADMINISTRATOR, False, True, True),
        (Role.COLLABORATOR, True, False, True),
        (Role.COLLABORATOR, True, True, False),
        (Role.COLLABORATOR, False, False, False),
        (Role.EXTERNAL, True, False, True),
        (Role.EXTERNAL, True, True, False),
        (Role.EXTERNAL, False, False, False),
    ],
)
def test_blk1_org3_product_management_rule_by_role_grant_and_block(
    role: Role, granted: bool, blocked: bool, allowed: bool
) -> None:
    assert authz.can_manage_product(role, granted=granted, management_blocked=blocked) is allowed


# --- BLK-1 under concurrency: the block state is read locked inside the operation ------------


async def _someone_waits_on_a_row_lock() -> bool:
    rows = await connections.get("default").execute_query_dict(
        "SELECT count(*) AS n FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    return bool(rows[0]["n"])


async def _with_a_block_committed_meanwhile(
    services: Services, product_id: int, operation: Callable[[], Coroutine[Any, Any, Any]]
) -> Any:
    """Runs the operation while another transaction holds the product's row and blocks its
    management, and commits that block only once the operation waits for the row (or ended).
    The operation's answer, or the DomainError it raised."""
    locked, release = asyncio.Event(), asyncio.Event()

    async def block() -> None:
        async with in_transaction():
            await Product.filter(id=product_id).select_for_update().get()
            locked.set()
            await release.wait()
            await Product.filter(id=product_id).update(management_blocked_at=services.clock.now())

    blocker = asyncio.create_task(block())
    await locked.wait()
    running: asyncio.Task[Any] = asyncio.create_task(operation())
    async with asyncio.timeout(10):
        # The wait is another connection's state inside PostgreSQL: no event to await, so poll.
        while not running.done() and not await _someone_waits_on_a_row_lock():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    release.set()
    await blocker
    try:
        return await running
    except DomainError as error:
        return error


postgres_only = pytest.mark.skipif(
    BACKEND != "postgres",
    reason="SQLite runs one transaction at a time, so no block can land inside an operation",
)


@postgres_only
async def test_blk1_domain_operations_see_a_block_committed_after_they_started(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    product = await _product(services, team.organisation, ProductKind.DOMAIN, "Domains")
    await _grant(team, Role.COLLABORATOR, product)
    domain = await factories.add_domain(
        services, team.organisation, "team.ch", expires_in=timedelta(days=30)
    )
    before = (await Domain.get(id=domain.id)).expires_at

    renewed = await _with_a_block_committed_meanwhile(
        services,
        product.id,
        lambda: domains.renew_domain(services, meta, team.collaborator, domain.id, 1),
    )
    await Product.filter(id=product.id).update(management_blocked_at=None)
    warranty = await _with_a_block_committed_meanwhile(
        services,
        product.id,
        lambda: domains.set_renewal_warranty(services, meta, team.collaborator, domain.id, True),
    )

    assert isinstance(renewed, DomainError) and renewed.code == ErrorCode.PRODUCT_BLOCKED
    assert isinstance(warranty, DomainError) and warranty.code == ErrorCode.PRODUCT_BLOCKED
    after = await Domain.get(id=domain.id)
    assert (after.expires_at, after.renewal_warranty) == (before, False)


@postgres_only
async def test_blk1_mailbox_operations_see_a_block_committed_after_they_started(
    services: Services, meta: RequestMeta
) -> None:
    team = await _team(services)
    mail = await _mail_service(services, team.organisation)
    await _grant(team, Role.COLLABORATOR, mail)
    kept = await mailboxes.create_mailbox(services, meta, team.admin, mail.id, "k@team-mail.ch")

    created = await _with_a_block_committed_meanwhile(
        services,
        mail.id,
        lambda: mailboxes.create_mailbox(
            services, meta, team.collaborator, mail.id, "c@team-mail.ch"
        ),
    )
    deleted = await _with_a_block_committed_meanwhile(
        services,
        mail.id,
        lambda: mailboxes.delete_mailbox(services, meta, team.collaborator, kept.id),
    )

    assert isinstance(created, DomainError) and created.code == ErrorCode.PRODUCT_BLOCKED
    assert isinstance(deleted, DomainError) and deleted.code == ErrorCode.PRODUCT_BLOCKED
    assert [m.address for m in await Mailbox.all()] == ["k@team-mail.ch"]


# --- BLK-1: who is told of a block, one named rule ---------------------------------------------


@pytest.mark.parametrize(
    ("role", "granted", "notify_technical", "blocked_user", "told"),
    [
        (Role.COLLABORATOR, True, False, False, True),
        (Role.EXTERNAL, True, False, False, True),
        (Role.COLLABORATOR, False, False, False, False),
        (Role.ADMINISTRATOR, True, False, False, False),
        (Role.LEGAL_REPRESENTATIVE, False, True, False, True),
        (Role.EXTERNAL, False, True, False, True),
        (Role.COLLABORATOR, True, True, True, False),
    ],
)
def test_blk1_who_is_told_of_a_product_block_is_an_authz_rule(
    role: Role, granted: bool, notify_technical: bool, blocked_user: bool, told: bool
) -> None:
    assert (
        authz.is_told_of_product_block(
            role, granted=granted, notify_technical=notify_technical, blocked_user=blocked_user
        )
        is told
    )


async def test_blk2_demo_mailboxes_are_on_a_domain_of_the_demo_organisation(
    services: Services,
) -> None:
    await demo._create(services)

    stored = [
        await mailboxes.accept_incoming_mail(
            services, address, sender="a@example.test", subject="Hi", body="Hello"
        )
        for address in demo.DEMO_MAILBOXES
    ]

    assert len(stored) == len(demo.DEMO_MAILBOXES)


async def test_blk1_block_changes_per_product_are_rate_limited(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    team = await _team(services)
    drive = await _product(services, team.organisation, ProductKind.WEB_DRIVE, "Drive")
    other = await _product(services, team.organisation, ProductKind.HOSTING, "Hosting")
    await _grant(team, Role.EXTERNAL, drive)
    limit = blocking.BLOCK_CHANGES_PER_PRODUCT.limit
    # A refused change (nothing changed, nobody told) does not use the budget up.
    await _refused(blocking.unblock_product_management(services, meta, team.admin, drive.id))
    for _ in range(limit // 2):
        await blocking.block_product_management(services, meta, team.admin, drive.id)
        await blocking.unblock_product_management(services, meta, team.legal, drive.id)
    mails = await OutboxMessage.filter(template="product_management_changed").count()

    # Another manager gets no fresh budget: it is the product's.
    refused = await _refusal(
        blocking.block_product_management(services, meta, team.legal, drive.id)
    )
    other_product = await blocking.block_product_management(services, meta, team.admin, other.id)
    clock.advance(blocking.BLOCK_CHANGES_PER_PRODUCT.window)
    after_the_window = await blocking.block_product_management(services, meta, team.admin, drive.id)

    assert (refused.code, refused.field) == (ErrorCode.TOO_MANY_ATTEMPTS, None)
    assert refused.retry_after_seconds is not None and refused.retry_after_seconds > 0
    assert mails == limit  # the granted external, once per change
    assert other_product.management_blocked_at is not None
    assert after_the_window.management_blocked_at is not None
