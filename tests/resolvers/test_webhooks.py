"""Webhook endpoints as operations: managers only, safe URLs, known types, secrets shown once,
every change on record (EVT-5, ACT-1)."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass

import pytest
from cryptography.exceptions import InvalidTag

from gardien.models.activity import ActivityEvent
from gardien.models.enums import OutboxStatus, Role
from gardien.models.organisations import Organisation
from gardien.models.outbox import WebhookDelivery, WebhookEndpoint
from gardien.resolvers import activity_log, webhooks
from gardien.resolvers.authz import Actor, RequestScope
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.resolvers.webhook_fanout import EVENT_TYPES
from gardien.settings import Settings
from gardien.webhooks import SECRET_PREFIX, is_public_address
from tests import factories
from tests.querycount import count_queries

pytestmark = pytest.mark.usefixtures("database")

META = RequestMeta(ip="203.0.113.9")
# A public address literal: registration checks it without DNS and never connects.
PUBLIC_URL = "https://93.184.215.14/hooks/gardien"
TYPES = ["member.role_changed", "invitation.sent"]


@dataclass
class Org:
    organisation: Organisation
    legal: RequestScope
    admin: RequestScope
    collaborator: RequestScope
    external: RequestScope
    outsider: RequestScope


async def _org(services: Services) -> Org:
    legal = await factories.sign_up(services, email="legal@example.test", name="Anna Legal")
    scopes: dict[Role, RequestScope] = {}
    for role in (Role.ADMINISTRATOR, Role.COLLABORATOR, Role.EXTERNAL):
        email = f"{role.value.lower()}@example.test"
        await factories.add_member(services, legal.organisation, role, email=email)
        scopes[role] = await factories.signed_in_scope(services, email)
    await factories.sign_up(services, email="outsider@example.test", name="Grace")
    return Org(
        organisation=legal.organisation,
        legal=await factories.signed_in_scope(services, "legal@example.test"),
        admin=scopes[Role.ADMINISTRATOR],
        collaborator=scopes[Role.COLLABORATOR],
        external=scopes[Role.EXTERNAL],
        outsider=await factories.signed_in_scope(services, "outsider@example.test"),
    )


async def _create(
    services: Services, scope: RequestScope, organisation_id: int, url: str = PUBLIC_URL
) -> webhooks.EndpointWithSecret:
    return await webhooks.create_webhook_endpoint(
        services, META, scope, organisation_id, url, TYPES
    )


async def _snapshot() -> tuple[list[tuple[object, ...]], int]:
    rows = (
        await WebhookEndpoint.all()
        .order_by("id")
        .values_list("id", "url", "event_types", "secret_encrypted", "disabled_at")
    )
    return [tuple(row) for row in rows], await ActivityEvent.all().count()


async def test_evt5_manager_registers_endpoint_secret_shown_once_and_stored_encrypted(
    services: Services,
) -> None:
    org = await _org(services)

    created = await _create(services, org.admin, org.organisation.id)

    endpoint = await WebhookEndpoint.get(id=created.view.endpoint.id)
    assert created.secret.startswith(SECRET_PREFIX) and len(created.secret) >= 40
    assert created.secret.encode() not in endpoint.secret_encrypted
    assert webhooks.decrypt_secret(services, endpoint) == created.secret
    moved = WebhookEndpoint(
        organisation_id=endpoint.organisation_id + 1, secret_encrypted=endpoint.secret_encrypted
    )
    with pytest.raises(InvalidTag):  # bound to its organisation
        webhooks.decrypt_secret(services, moved)
    assert (endpoint.url, endpoint.event_types, endpoint.disabled_at) == (PUBLIC_URL, TYPES, None)
    listed = await webhooks.organisation_webhook_endpoints(org.legal, org.organisation.id)
    assert [view.endpoint.id for view in listed] == [endpoint.id]
    assert listed[0].last_delivery is None
    event = await ActivityEvent.get(type="webhook.endpoint_created")
    assert (event.organisation_id, event.actor_id) == (
        org.organisation.id,
        org.admin.actor.user_id,
    )
    assert event.data == {"endpoint_id": endpoint.id, "url": PUBLIC_URL, "event_types": TYPES}
    assert created.secret not in str(event.data)


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.215.14/hook",  # not HTTPS
        "https://127.0.0.1/hook",  # loopback
        "https://[::1]/hook",
        "https://10.1.2.3/hook",  # private
        "https://192.168.0.10/hook",
        "https://169.254.169.254/latest/meta-data",  # link-local: cloud metadata
        "https://[::ffff:10.0.0.1]/hook",  # private, written as IPv6
        "https://[::7f00:1]/hook",  # loopback, IPv4-compatible
        "https://[2002:a00:1::1]/hook",  # 6to4 of a private address
        "https://[64:ff9b::a00:1]/hook",  # NAT64 of a private address
        "https://[fec0::1]/hook",  # site-local
        "https://100.64.0.1/hook",  # shared address space
        "https://localhost/hook",  # resolves to loopback
        "https://user:pw@93.184.215.14/hook",  # credentials in the URL
        "ftp://93.184.215.14/hook",
        "https:///hook",
        "https://no-such-host.invalid/hook",
        "https://93.184.215.14/ho ok",
    ],
)
async def test_evt5_unsafe_url_refused_typed_nothing_changed(services: Services, url: str) -> None:
    org = await _org(services)
    before = await _snapshot()

    with pytest.raises(DomainError) as refused:
        await _create(services, org.legal, org.organisation.id, url)

    assert (refused.value.code, refused.value.field) == (ErrorCode.UNSAFE_WEBHOOK_URL, "url")
    assert await _snapshot() == before


async def test_evt5_unresolvable_and_private_hosts_get_one_answer(services: Services) -> None:
    """The check does not tell a manager which internal names exist."""
    org = await _org(services)
    messages = set()
    for url in ("https://no-such-host.invalid/hook", "https://localhost/hook", "https://[::1]/"):
        with pytest.raises(DomainError) as refused:
            await _create(services, org.legal, org.organisation.id, url)
        messages.add((refused.value.code, refused.value.message))

    assert messages == {
        (ErrorCode.UNSAFE_WEBHOOK_URL, "The URL's host does not resolve to a public address.")
    }


async def test_evt5_development_setting_allows_http_loopback(
    services: Services, settings: Settings
) -> None:
    dev = dataclasses.replace(
        services, settings=dataclasses.replace(settings, webhook_allow_private=True)
    )
    org = await _org(dev)

    created = await _create(dev, org.legal, org.organisation.id, "http://127.0.0.1:8081/hook")

    assert created.view.endpoint.url == "http://127.0.0.1:8081/hook"


@pytest.mark.parametrize(
    ("event_types", "message"),
    [
        (["member.role_changed", "sign_in.failed"], "Unknown event type: sign_in.failed."),
        (["nothing.at_all"], "Unknown event type: nothing.at_all."),
        ([], "Choose at least one event type."),
    ],
)
async def test_evt5_unknown_event_type_refused_typed_nothing_changed(
    services: Services, event_types: list[str], message: str
) -> None:
    org = await _org(services)
    before = await _snapshot()

    with pytest.raises(DomainError) as refused:
        await webhooks.create_webhook_endpoint(
            services, META, org.legal, org.organisation.id, PUBLIC_URL, event_types
        )

    assert (refused.value.code, refused.value.field, refused.value.message) == (
        ErrorCode.UNKNOWN_EVENT_TYPE,
        "eventTypes",
        message,
    )
    assert await _snapshot() == before


async def test_evt5_collaborator_and_external_may_not_manage_webhooks(services: Services) -> None:
    org = await _org(services)
    endpoint_id = (await _create(services, org.legal, org.organisation.id)).view.endpoint.id
    before = await _snapshot()

    for scope in (org.collaborator, org.external):
        with pytest.raises(DomainError) as refused:
            await _create(services, scope, org.organisation.id)
        assert refused.value.code is ErrorCode.FORBIDDEN
        for operation in (
            webhooks.rotate_webhook_secret(services, META, scope, endpoint_id),
            webhooks.delete_webhook_endpoint(services, META, scope, endpoint_id),
            webhooks.update_webhook_endpoint(
                services, META, scope, endpoint_id, event_types=None, enabled=False
            ),
            webhooks.organisation_webhook_endpoints(scope, org.organisation.id),
        ):
            with pytest.raises(DomainError) as refused:
                await operation
            assert refused.value.code is ErrorCode.FORBIDDEN
        assert await webhooks.visible_endpoint(scope, endpoint_id) is None

    assert await _snapshot() == before


async def test_evt5_another_organisations_endpoint_is_not_found_nothing_changed(
    services: Services,
) -> None:
    org = await _org(services)
    other = await factories.sign_up(services, email="other@example.test", name="Other Legal")
    other_legal = await factories.signed_in_scope(services, "other@example.test")
    theirs = (await _create(services, other_legal, other.organisation.id)).view.endpoint.id
    before = await _snapshot()

    for scope in (org.legal, org.outsider):
        for operation in (
            webhooks.rotate_webhook_secret(services, META, scope, theirs),
            webhooks.delete_webhook_endpoint(services, META, scope, theirs),
            webhooks.update_webhook_endpoint(
                services, META, scope, theirs, event_types=["member.left"], enabled=None
            ),
            webhooks.rotate_webhook_secret(services, META, scope, theirs + 1000),
        ):
            with pytest.raises(DomainError) as refused:
                await operation
            assert (refused.value.code, refused.value.field) == (ErrorCode.NOT_FOUND, "endpointId")
        assert await webhooks.visible_endpoint(scope, theirs) is None
    with pytest.raises(DomainError) as refused:
        await _create(services, org.legal, other.organisation.id)
    assert refused.value.code is ErrorCode.NOT_FOUND
    with pytest.raises(DomainError) as refused:
        await _create(services, RequestScope(Actor()), org.organisation.id)
    assert refused.value.code is ErrorCode.UNAUTHENTICATED

    assert await _snapshot() == before


async def test_evt5_rotation_replaces_the_secret_and_is_recorded(services: Services) -> None:
    org = await _org(services)
    created = await _create(services, org.legal, org.organisation.id)

    rotated = await webhooks.rotate_webhook_secret(
        services, META, org.admin, created.view.endpoint.id
    )

    assert rotated.secret != created.secret and rotated.secret.startswith(SECRET_PREFIX)
    endpoint = await WebhookEndpoint.get(id=created.view.endpoint.id)
    assert webhooks.decrypt_secret(services, endpoint) == rotated.secret
    event = await ActivityEvent.get(type="webhook.secret_rotated")
    assert event.data == {"endpoint_id": endpoint.id, "url": PUBLIC_URL}
    assert event.actor_id == org.admin.actor.user_id


async def test_evt5_update_changes_types_and_disabling_gives_up_queued_deliveries(
    services: Services,
) -> None:
    org = await _org(services)
    created = await _create(services, org.legal, org.organisation.id)
    endpoint_id = created.view.endpoint.id
    await webhooks.update_webhook_endpoint(
        services,
        META,
        org.legal,
        endpoint_id,
        event_types=["webhook.endpoint_updated", "member.left", "member.left"],
        enabled=None,
    )
    # Its own update events are queued for it now.
    assert await WebhookDelivery.filter(endpoint_id=endpoint_id).count() == 1

    disabled = await webhooks.update_webhook_endpoint(
        services, META, org.legal, endpoint_id, event_types=None, enabled=False
    )

    assert disabled.endpoint.event_types == ["member.left", "webhook.endpoint_updated"]
    assert disabled.endpoint.disabled_at == services.clock.now()
    assert [d.delivery.status for d in disabled.recent_deliveries] == [OutboxStatus.DEAD]
    assert [d.event_type for d in disabled.recent_deliveries] == ["webhook.endpoint_updated"]
    # Disabled: its own "disabled" event is not queued for it.
    assert await WebhookDelivery.filter(endpoint_id=endpoint_id).count() == 1
    updates = await ActivityEvent.filter(type="webhook.endpoint_updated").order_by("id")
    assert [e.data["enabled"] for e in updates] == [True, False]

    await WebhookEndpoint.filter(id=endpoint_id).update(consecutive_failures=7)
    enabled = await webhooks.update_webhook_endpoint(
        services, META, org.legal, endpoint_id, event_types=None, enabled=True
    )
    assert (enabled.endpoint.disabled_at, enabled.endpoint.consecutive_failures) == (None, 0)
    assert await WebhookDelivery.filter(endpoint_id=endpoint_id).count() == 2


async def test_evt5_delete_removes_endpoint_and_queue_and_is_recorded(services: Services) -> None:
    org = await _org(services)
    endpoint_id = (await _create(services, org.legal, org.organisation.id)).view.endpoint.id
    await webhooks.update_webhook_endpoint(
        services,
        META,
        org.legal,
        endpoint_id,
        event_types=["webhook.endpoint_updated"],
        enabled=None,
    )

    await webhooks.delete_webhook_endpoint(services, META, org.legal, endpoint_id)

    assert not await WebhookEndpoint.exists(id=endpoint_id)
    assert await WebhookDelivery.all().count() == 0
    event = await ActivityEvent.get(type="webhook.endpoint_deleted")
    assert event.data == {"endpoint_id": endpoint_id, "url": PUBLIC_URL}
    with pytest.raises(DomainError) as refused:
        await webhooks.delete_webhook_endpoint(services, META, org.legal, endpoint_id)
    assert refused.value.code is ErrorCode.NOT_FOUND


async def test_evt5_endpoints_per_organisation_are_bounded(services: Services) -> None:
    org = await _org(services)
    for _ in range(webhooks.MAX_ENDPOINTS_PER_ORGANISATION):
        await _create(services, org.legal, org.organisation.id)
    before = await _snapshot()

    with pytest.raises(DomainError) as refused:
        await _create(services, org.legal, org.organisation.id)

    assert refused.value.code is ErrorCode.TOO_MANY_WEBHOOK_ENDPOINTS
    assert await _snapshot() == before


def test_evt5_event_catalogue_holds_organisation_events_only() -> None:
    assert len(set(EVENT_TYPES)) == len(EVENT_TYPES)
    assert not [t for t in EVENT_TYPES if t.startswith(("sign_in.", "session."))]
    assert "organisation.switched" not in EVENT_TYPES
    # Every subscribable type is one the activity log writes (and filters on): no dead entry.
    assert set(EVENT_TYPES) <= activity_log.EVENT_TYPES


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("169.254.169.254", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("0.0.0.0", False),  # noqa: S104 - an address under test, nothing binds it
        ("224.0.0.1", False),
        ("192.0.2.1", False),  # documentation
        # IPv6 forms that embed an IPv4 address or are deprecated.
        ("::7f00:1", False),  # IPv4-compatible 127.0.0.1
        ("::5db8:d70e", False),  # IPv4-compatible, even of a public IPv4 address
        ("2002:a00:1::1", False),  # 6to4 of 10.0.0.1
        ("2002:5db8:d70e::1", False),  # 6to4 is deprecated whatever it embeds
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("64:ff9b:1::a00:1", False),  # local-use NAT64
        ("fec0::1", False),  # site-local
        ("2a00:1450:4001::1", True),
    ],
)
def test_evt5_only_global_unicast_addresses_are_public(address: str, public: bool) -> None:
    assert is_public_address(address) is public


# --- the endpoint list, the cap under concurrency, the catalogue (EVT-5) ------------------------


async def test_evt5_endpoint_list_costs_fixed_statements_however_many_endpoints(
    services: Services,
) -> None:
    org = await _org(services)

    async def create() -> None:
        # Each registration is an event the endpoints registered so far, itself included, receive.
        await webhooks.create_webhook_endpoint(
            services, META, org.legal, org.organisation.id, PUBLIC_URL, ["webhook.endpoint_created"]
        )

    for _ in range(2):
        await create()
    with count_queries() as few:
        small = await webhooks.organisation_webhook_endpoints(org.legal, org.organisation.id)
    for _ in range(12):
        await create()
    with count_queries() as many:
        large = await webhooks.organisation_webhook_endpoints(org.legal, org.organisation.id)

    # The endpoints, then their recent deliveries (the caller's membership is cached by then).
    assert len(few) == len(many) == 2, many
    assert [len(view.recent_deliveries) for view in small] == [2, 1]
    assert [len(view.recent_deliveries) for view in large] == [
        min(14 - i, webhooks.RECENT_DELIVERIES) for i in range(14)
    ]
    newest = await WebhookDelivery.filter(endpoint_id=large[0].endpoint.id).order_by("-id").first()
    assert newest is not None
    listed = large[0].recent_deliveries
    assert [d.delivery.id for d in listed] == sorted((d.delivery.id for d in listed), reverse=True)
    assert listed[0].delivery.id == newest.id
    assert (listed[0].event_type, listed[0].delivery.status) == (
        "webhook.endpoint_created",
        OutboxStatus.PENDING,
    )
    assert listed[0].delivery.next_attempt_at == newest.next_attempt_at
    assert large[0].last_delivery == listed[0]


async def test_evt5_concurrent_registrations_keep_to_the_endpoint_cap(services: Services) -> None:
    org = await _org(services)
    for _ in range(webhooks.MAX_ENDPOINTS_PER_ORGANISATION - 1):
        await _create(services, org.legal, org.organisation.id)

    results = await asyncio.gather(
        *(_create(services, org.legal, org.organisation.id) for _ in range(3)),
        return_exceptions=True,
    )

    refused = [r.code for r in results if isinstance(r, DomainError)]
    assert refused == [ErrorCode.TOO_MANY_WEBHOOK_ENDPOINTS] * 2, results
    assert (
        await WebhookEndpoint.filter(organisation_id=org.organisation.id).count()
        == webhooks.MAX_ENDPOINTS_PER_ORGANISATION
    )


def test_evt5_a_sign_up_is_not_offered_as_it_never_reaches_an_endpoint() -> None:
    # Recorded as the organisation is created: no endpoint of it can exist yet.
    assert "account.signed_up" not in EVENT_TYPES
