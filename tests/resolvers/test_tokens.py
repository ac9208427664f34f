"""Personal access tokens as operations and through the app: scopes, expiry, revocation, the
owner's rights and every use recorded, on SQLite and PostgreSQL (API-6, ACT-1)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from graphql import GraphQLList, GraphQLNonNull, GraphQLObjectType

from gardien.clock import ManualClock
from gardien.models.activity import ActivityEvent
from gardien.models.enums import InvitationStatus, Role
from gardien.models.invitations import Invitation
from gardien.models.mail import Mailbox, MailMessage
from gardien.models.mfa import AppPassword
from gardien.models.organisations import Membership, Organisation, UserBlock
from gardien.models.outbox import WebhookDelivery, WebhookEndpoint
from gardien.models.products import Product, ProductGrant
from gardien.models.sessions import ApiToken
from gardien.models.users import User
from gardien.resolvers import accounts, authz, tokens, webhooks
from gardien.resolvers.authz import Actor, RequestScope, SignedInToken
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.schema import schema
from gardien.schema.relay import encode_id
from tests import factories
from tests.conftest import GraphQLClient
from tests.querycount import count_queries

pytestmark = pytest.mark.usefixtures("database")


@dataclass
class Org:
    organisation: Organisation
    legal: RequestScope
    admin: RequestScope
    collaborator: RequestScope
    admin_user_id: int
    collaborator_membership_id: int
    external_membership_id: int


async def _org(services: Services) -> Org:
    legal = await factories.sign_up(services, email="legal@example.test", name="Anna Legal")
    organisation = legal.organisation
    admin = await factories.add_member(services, organisation, Role.ADMINISTRATOR, "admin@x.test")
    collaborator = await factories.add_member(
        services, organisation, Role.COLLABORATOR, "collab@x.test"
    )
    external = await factories.add_member(services, organisation, Role.EXTERNAL, "ext@x.test")
    return Org(
        organisation=organisation,
        legal=await factories.signed_in_scope(services, "legal@example.test"),
        admin=await factories.signed_in_scope(services, "admin@x.test"),
        collaborator=await factories.signed_in_scope(services, "collab@x.test"),
        admin_user_id=admin.user.id,
        collaborator_membership_id=collaborator.membership.id,
        external_membership_id=external.membership.id,
    )


async def _create(
    services: Services, scope: RequestScope, scopes: list[str], **options: Any
) -> tokens.IssuedToken:
    return await tokens.create_personal_access_token(
        services, RequestMeta(ip="198.51.100.1"), scope, label="CI script", scopes=scopes, **options
    )


# --- creating ----------------------------------------------------------------------------------


async def test_api6_secret_is_shown_once_and_only_its_keyed_digest_is_stored(
    services: Services, meta: RequestMeta
) -> None:
    org = await _org(services)

    issued = await tokens.create_personal_access_token(
        services, meta, org.admin, label=" CI script ", scopes=["members:read", "members:read"]
    )

    stored = await ApiToken.get(id=issued.token.id)
    assert issued.secret.startswith("gdn_pat_") and len(issued.secret) >= 8 + 43
    assert stored.token_hash == services.keyring.token_digest(issued.secret, "api-token")
    assert issued.secret not in repr(await ApiToken.filter(id=stored.id).values())
    assert stored.prefix == issued.secret[:12]
    assert (stored.name, stored.scopes, stored.owner_id) == (
        "CI script",
        ["members:read"],
        org.admin_user_id,
    )
    assert stored.expires_at == services.clock.now() + timedelta(days=90)
    event = await ActivityEvent.get(type="token.created")
    assert (event.actor_id, event.subject_id, event.ip) == (
        org.admin_user_id,
        org.admin_user_id,
        "203.0.113.7",
    )
    assert event.data["token_id"] == stored.id and event.data["scopes"] == ["members:read"]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"label": "   ", "scopes": ["members:read"]}, "label"),
        ({"label": "x" * 101, "scopes": ["members:read"]}, "label"),
        ({"label": "bell\x07", "scopes": ["members:read"]}, "label"),
        ({"label": "CI", "scopes": []}, "scopes"),
        ({"label": "CI", "scopes": ["members:read", "admin:everything"]}, "scopes"),
        ({"label": "CI", "scopes": ["members:read"], "expires_in": timedelta(0)}, "expiresAt"),
        (
            {"label": "CI", "scopes": ["members:read"], "expires_in": timedelta(days=367)},
            "expiresAt",
        ),
        ({"label": "CI", "scopes": ["members:read"], "naive": True}, "expiresAt"),
    ],
)
async def test_api6_bad_input_is_refused_with_its_field_and_changes_nothing(
    services: Services, meta: RequestMeta, options: dict[str, Any], field: str
) -> None:
    org = await _org(services)
    expires_at = None
    if "expires_in" in options:
        expires_at = services.clock.now() + options.pop("expires_in")
    if options.pop("naive", False):
        expires_at = (services.clock.now() + timedelta(days=1)).replace(tzinfo=None)

    with pytest.raises(DomainError) as refused:
        await tokens.create_personal_access_token(
            services, meta, org.admin, expires_at=expires_at, **options
        )

    assert (refused.value.code, refused.value.field) == (ErrorCode.INVALID_INPUT, field)
    assert await ApiToken.all().count() == 0
    assert await ActivityEvent.filter(type="token.created").count() == 0


async def test_api6_an_expiry_up_to_a_year_away_is_kept(services: Services) -> None:
    org = await _org(services)
    expires_at = services.clock.now() + timedelta(days=366)

    issued = await _create(services, org.admin, ["activity:read"], expires_at=expires_at)

    assert issued.token.expires_at == expires_at


async def test_api6_restriction_to_an_organisation_of_someone_else_is_not_found(
    services: Services,
) -> None:
    org = await _org(services)
    other = await factories.sign_up(services, email="other@example.test")

    with pytest.raises(DomainError) as refused:
        await _create(services, org.admin, ["members:read"], organisation_id=other.organisation.id)

    assert refused.value.code == ErrorCode.NOT_FOUND
    assert await ApiToken.all().count() == 0


async def test_api6_a_token_cannot_create_or_revoke_tokens(services: Services) -> None:
    org = await _org(services)
    issued = await _create(services, org.admin, ["members:write"])
    actor = await tokens.authenticate(services, RequestMeta(ip="198.51.100.9"), issued.secret)
    assert actor is not None

    with pytest.raises(DomainError) as create_refused:
        await _create(services, RequestScope(actor), ["members:write"])
    with pytest.raises(DomainError) as revoke_refused:
        await tokens.revoke_personal_access_token(
            services, RequestMeta(), RequestScope(actor), issued.token.id
        )

    assert create_refused.value.code == revoke_refused.value.code == ErrorCode.FORBIDDEN
    assert await ApiToken.filter(revoked_at=None).count() == 1


async def test_api6_active_tokens_are_capped_per_user(services: Services) -> None:
    org = await _org(services)
    for _ in range(tokens.MAX_ACTIVE_TOKENS):
        await _create(services, org.admin, ["members:read"])

    with pytest.raises(DomainError) as refused:
        await _create(services, org.admin, ["members:read"])

    assert refused.value.code == ErrorCode.TOKEN_LIMIT_REACHED
    assert await ApiToken.all().count() == tokens.MAX_ACTIVE_TOKENS


# --- using -------------------------------------------------------------------------------------


async def test_api6_token_acts_as_its_owner_and_every_use_is_recorded(
    services: Services, clock: ManualClock
) -> None:
    org = await _org(services)
    issued = await _create(services, org.admin, ["members:read"])
    first, second, moved = (RequestMeta(ip=ip) for ip in ("198.51.100.9", "198.51.100.9", "::1"))

    actor = await tokens.authenticate(services, first, issued.secret)
    clock.advance(timedelta(minutes=5))
    await tokens.authenticate(services, second, issued.secret)
    await tokens.authenticate(services, moved, issued.secret)

    assert actor is not None and actor.user is not None
    assert (actor.user.id, actor.session) == (org.admin_user_id, None)
    assert actor.token == SignedInToken(
        id=issued.token.id, scopes=frozenset({"members:read"}), organisation_id=None
    )
    stored = await ApiToken.get(id=issued.token.id)
    assert (stored.use_count, stored.last_used_at, stored.last_used_ip) == (3, clock.now(), "::1")
    used = await ActivityEvent.filter(type="token.used").order_by("id")
    assert [(e.ip, e.data["first_use"], e.subject_id) for e in used] == [
        ("198.51.100.9", True, org.admin_user_id),
        ("::1", False, org.admin_user_id),
    ]


async def test_api6_token_use_is_stamped_with_one_update_at_most_once_a_minute(
    services: Services, clock: ManualClock
) -> None:
    """A polling script costs one statement per request (the token's read), and one UPDATE a
    minute: the same resolution as a session's last_seen_at."""
    org = await _org(services)
    issued = await _create(services, org.admin, ["members:read"])
    meta = RequestMeta(ip="198.51.100.9")
    await tokens.authenticate(services, meta, issued.secret)  # the first use: stamped, recorded
    first_stamp = clock.now()

    clock.advance(timedelta(seconds=59))
    with count_queries() as within_the_minute:
        assert await tokens.authenticate(services, meta, issued.secret) is not None
    unchanged = await ApiToken.get(id=issued.token.id)
    clock.advance(timedelta(seconds=1))
    with count_queries() as a_minute_later:
        assert await tokens.authenticate(services, meta, issued.secret) is not None
    stamped = await ApiToken.get(id=issued.token.id)

    assert [q.split()[0].upper() for q in within_the_minute] == ["SELECT"]
    assert [q.split()[0].upper() for q in a_minute_later] == ["SELECT", "UPDATE"]
    assert (unchanged.use_count, unchanged.last_used_at) == (1, first_stamp)
    assert (stamped.use_count, stamped.last_used_at) == (2, clock.now())
    assert await ActivityEvent.filter(type="token.used").count() == 1


async def test_api6_expired_token_is_refused(services: Services, clock: ManualClock) -> None:
    org = await _org(services)
    issued = await _create(
        services, org.admin, ["members:read"], expires_at=clock.now() + timedelta(days=1)
    )
    assert await tokens.authenticate(services, RequestMeta(), issued.secret) is not None

    clock.advance(timedelta(days=1))

    assert await tokens.authenticate(services, RequestMeta(), issued.secret) is None
    assert (await ApiToken.get(id=issued.token.id)).use_count == 1


async def test_api6_forged_and_foreign_secrets_are_refused(services: Services) -> None:
    org = await _org(services)
    issued = await _create(services, org.admin, ["members:read"])

    forged = issued.secret[:-1] + ("A" if issued.secret[-1] != "A" else "B")
    for secret in (
        forged,
        "gdn_pat_",
        "gdn_pat_" + "a" * 200,
        issued.secret[8:],
        "gdn_sa_" + issued.secret[8:],
    ):
        assert await tokens.authenticate(services, RequestMeta(), secret) is None
    assert (await ApiToken.get(id=issued.token.id)).use_count == 0


async def test_api6_revoked_token_is_refused_and_revoking_is_recorded_once(
    services: Services, meta: RequestMeta
) -> None:
    org = await _org(services)
    issued = await _create(services, org.admin, ["members:read"])

    revoked = await tokens.revoke_personal_access_token(services, meta, org.admin, issued.token.id)
    again = await tokens.revoke_personal_access_token(services, meta, org.admin, issued.token.id)

    assert revoked.revoked_at == again.revoked_at == services.clock.now()
    assert await tokens.authenticate(services, RequestMeta(), issued.secret) is None
    events = await ActivityEvent.filter(type="token.revoked")
    assert [(e.actor_id, e.data["token_id"]) for e in events] == [
        (org.admin_user_id, issued.token.id)
    ]
    assert await tokens.own_tokens(org.admin, org.admin_user_id) == []


async def test_api6_someone_elses_token_is_not_found_to_revoke_or_list(
    services: Services, meta: RequestMeta
) -> None:
    org = await _org(services)
    issued = await _create(services, org.admin, ["members:read"])

    with pytest.raises(DomainError) as refused:
        await tokens.revoke_personal_access_token(services, meta, org.legal, issued.token.id)

    assert refused.value.code == ErrorCode.NOT_FOUND
    assert await tokens.own_tokens(org.legal, org.admin_user_id) == []
    assert [t.id for t in await tokens.own_tokens(org.admin, org.admin_user_id)] == [
        issued.token.id
    ]
    assert (await ApiToken.get(id=issued.token.id)).revoked_at is None


async def test_api6_token_dies_with_its_owner_blocked(services: Services) -> None:
    org = await _org(services)
    issued = await _create(services, org.admin, ["members:read"])
    block = await UserBlock.create(
        organisation=org.organisation,
        user_id=org.admin_user_id,
        justification="Laptop stolen, reported by the legal representative",
        created_at=services.clock.now(),
    )

    while_blocked = await tokens.authenticate(services, RequestMeta(), issued.secret)
    block.lifted_at = services.clock.now()
    await block.save()
    after_lift = await tokens.authenticate(services, RequestMeta(), issued.secret)

    assert while_blocked is None
    assert after_lift is not None


# --- the operation gate ------------------------------------------------------------------------


def _root_fields() -> set[str]:
    coordinates = set()
    for root in ("Query", "Mutation", "Subscription"):
        graphql_type = schema._schema.type_map.get(root)
        if isinstance(graphql_type, GraphQLObjectType):
            coordinates |= {f"{root}.{name}" for name in graphql_type.fields}
    return coordinates


def test_api6_every_root_field_has_a_token_rule() -> None:
    """A new root field must say which scope it needs, or that no token may run it."""
    rules = set(authz.TOKEN_ROOT_FIELDS)

    assert _root_fields() - rules == set(), "add it to authz.TOKEN_ROOT_FIELDS"
    assert rules - _root_fields() == set(), "rules for root fields the schema no longer has"
    assert {
        rule
        for rule in authz.TOKEN_ROOT_FIELDS.values()
        if rule not in (authz.TokenRule.ANY_SCOPE, authz.TokenRule.NEVER)
    } <= authz.TOKEN_SCOPES


def test_api6_gate_refuses_what_the_scopes_do_not_cover() -> None:
    reader = Actor(
        token=SignedInToken(id=1, scopes=frozenset({"members:read"}), organisation_id=None)
    )
    writer = Actor(
        token=SignedInToken(id=2, scopes=frozenset({"members:write"}), organisation_id=None)
    )

    def refusal(actor: Actor, kind: str, fields: set[str]) -> ErrorCode | None:
        try:
            authz.check_operation(actor, kind, frozenset(fields))
        except DomainError as error:
            return error.code
        return None

    assert refusal(reader, "query", {"viewer", "organisation"}) is None
    assert refusal(reader, "mutation", {"changeMemberRole"}) == ErrorCode.INSUFFICIENT_SCOPE
    assert refusal(writer, "mutation", {"changeMemberRole", "removeMember"}) is None
    assert refusal(writer, "mutation", {"changeMemberRole", "signOut"}) == (
        ErrorCode.INSUFFICIENT_SCOPE
    )
    assert refusal(writer, "query", {"node"}) == ErrorCode.INSUFFICIENT_SCOPE
    assert refusal(writer, "query", {"domainLookup"}) == ErrorCode.INSUFFICIENT_SCOPE
    assert refusal(writer, "subscription", {"anythingNew"}) == ErrorCode.INSUFFICIENT_SCOPE
    assert refusal(Actor(), "mutation", {"signOut"}) is None
    assert authz.token_has_scope(writer.token, "members:read")  # type: ignore[arg-type]
    assert not authz.token_has_scope(reader.token, "members:write")  # type: ignore[arg-type]


# --- through the app: Bearer tokens against the schema -----------------------------------------

MEMBERS = "query($id: ID!) { organisation(id: $id) { name members(first: 10) { totalCount } } }"
ACTIVITY = "query($id: ID!) { organisation(id: $id) { activity(first: 5) { totalCount } } }"
DOMAINS = "query($id: ID!) { organisation(id: $id) { domains(first: 5) { totalCount } } }"
INVITATIONS = "query($id: ID!) { organisation(id: $id) { invitations(first: 5) { totalCount } } }"
CHANGE_ROLE = (
    "mutation($input: ChangeMemberRoleInput!) {"
    " changeMemberRole(input: $input) { membership { role } errors { code } } }"
)
VIEWER = "{ viewer { email supportCode recoveryEmail memberships { totalCount } personalAccessTokens { id } } }"


def _codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]


async def test_api6_read_scopes_apply_to_nested_connections(
    services: Services, gql: GraphQLClient
) -> None:
    org = await _org(services)
    issued = await _create(services, org.admin, ["members:read"])
    variables = {"id": encode_id("Organisation", org.organisation.id)}
    gql.token = issued.secret

    members = await gql(MEMBERS, variables)
    activity = await gql(ACTIVITY, variables)
    domains = await gql(DOMAINS, variables)
    invitations = await gql(INVITATIONS, variables)

    assert _codes(members) == []
    assert members["data"]["organisation"]["members"] == {"totalCount": 4}
    assert _codes(activity) == ["INSUFFICIENT_SCOPE"]
    assert activity["data"] == {"organisation": None}
    assert _codes(domains) == ["INSUFFICIENT_SCOPE"]
    assert _codes(invitations) == []


# --- nested fields, generated from the schema ----------------------------------------------------
# Below the roots a token may run (viewer, organisation), every field of Organisation and every
# field elsewhere that lists objects (a list or a connection) has a rule here: the scope a token
# needs for it, NEVER (no token reads it, whatever its scopes: it answers INSUFFICIENT_SCOPE,
# null or empty), or, in NESTED_ALLOWED, why any token may read it. Lists of scalars (a token's
# scopes, an endpoint's event types) are values of an object already reached, not listings.

NEVER = "never with a token"
NESTED_TOKEN_RULES: dict[str, str] = {
    "Organisation.members": "members:read",
    "Organisation.sharingRecipients": "members:read",
    "Organisation.invitations": "members:read",
    "Organisation.activity": "activity:read",
    "Organisation.domains": "domains:read",
    # Products lead to mailboxes and mail; service accounts and webhook endpoints are managed
    # from a web session only.
    "Organisation.products": NEVER,
    "Organisation.serviceAccounts": NEVER,
    "Organisation.webhookEndpoints": NEVER,
    "WebhookEndpoint.recentDeliveries": NEVER,
    # A member's products are part of the member (ORG-3); their mail is not.
    "Membership.productAccess": "members:read",
    "Product.mailboxes": NEVER,
    "Mailbox.messages": NEVER,
    # The private profile (can_view_private_profile, can_view_own_activity): the account
    # holder's, from a session only.
    "User.twoFactorMethods": NEVER,
    "User.appPasswords": NEVER,
    "User.memberships": NEVER,
    "User.activity": NEVER,
    "User.sessions": NEVER,
    "User.personalAccessTokens": NEVER,
}
NESTED_ALLOWED: dict[str, str] = {
    "Organisation.id": "what Query.organisation answers any token of a member",
    "Organisation.name": "what Query.organisation answers any token of a member",
    "Organisation.supportPlan": "what Query.organisation answers any token of a member",
    "Organisation.securityPolicy": "the 2FA requirement every member is shown; no secret",
}
TOKEN_ROOTS = ("viewer", "organisation")


@dataclass(frozen=True)
class Step:
    field: str
    connection: bool


def _object_type(graphql_type: Any) -> GraphQLObjectType | None:
    while hasattr(graphql_type, "of_type"):
        graphql_type = graphql_type.of_type
    return graphql_type if isinstance(graphql_type, GraphQLObjectType) else None


def _is_list(graphql_type: Any) -> bool:
    while isinstance(graphql_type, GraphQLNonNull):
        graphql_type = graphql_type.of_type
    return isinstance(graphql_type, GraphQLList)


def _connection_node(graphql_type: GraphQLObjectType) -> GraphQLObjectType | None:
    """The node type of a Relay connection, else None."""
    edges = graphql_type.fields.get("edges") if graphql_type.name.endswith("Connection") else None
    edge = _object_type(edges.type) if edges is not None else None
    return _object_type(edge.fields["node"].type) if edge is not None else None


def _children(graphql_type: GraphQLObjectType) -> list[tuple[str, GraphQLObjectType, bool]]:
    """(field, object type below it, through a connection) for every object-valued field."""
    children = []
    for name, graphql_field in graphql_type.fields.items():
        below = _object_type(graphql_field.type)
        if below is None:
            continue
        node = _connection_node(below)
        children.append((name, node or below, node is not None))
    return children


def _lists_something(graphql_type: GraphQLObjectType, name: str) -> bool:
    graphql_field = graphql_type.fields[name]
    below = _object_type(graphql_field.type)
    return below is not None and (
        _is_list(graphql_field.type) or _connection_node(below) is not None
    )


def _nested_coordinates() -> set[str]:
    """Every Organisation field, and every listing field of a type reachable from the roots."""
    query = schema._schema.type_map["Query"]
    assert isinstance(query, GraphQLObjectType)
    seen: set[str] = set()
    pending = [_object_type(query.fields[root].type) for root in TOKEN_ROOTS]
    coordinates: set[str] = set()
    while pending:
        graphql_type = pending.pop()
        if graphql_type is None or graphql_type.name in seen:
            continue
        seen.add(graphql_type.name)
        for name in graphql_type.fields:
            if graphql_type.name == "Organisation" or _lists_something(graphql_type, name):
                coordinates.add(f"{graphql_type.name}.{name}")
        pending.extend(below for _, below, _ in _children(graphql_type))
    return coordinates


def _path_to(type_name: str, avoided: frozenset[str]) -> tuple[str, list[Step]] | None:
    """The shortest way from a token root to an object of this type, avoiding some fields."""
    query = schema._schema.type_map["Query"]
    assert isinstance(query, GraphQLObjectType)
    queue: deque[tuple[GraphQLObjectType, str, list[Step]]] = deque()
    for root in TOKEN_ROOTS:
        root_type = _object_type(query.fields[root].type)
        assert root_type is not None
        queue.append((root_type, root, []))
    seen: set[str] = set()
    while queue:
        graphql_type, root, steps = queue.popleft()
        if graphql_type.name == type_name:
            return root, steps
        if graphql_type.name in seen:
            continue
        seen.add(graphql_type.name)
        for name, below, through_connection in _children(graphql_type):
            if f"{graphql_type.name}.{name}" not in avoided:
                queue.append((below, root, [*steps, Step(name, through_connection)]))
    return None


def _nested_query(root: str, steps: list[Step], last: GraphQLObjectType, name: str) -> str:
    below = _object_type(last.fields[name].type)
    if below is None:
        selection = name
    elif _connection_node(below) is not None:
        selection = f"{name}(first: 10) {{ edges {{ node {{ __typename }} }} }}"
    else:
        selection = f"{name} {{ __typename }}"
    for step in reversed(steps):
        if step.connection:
            selection = f"{step.field}(first: 10) {{ edges {{ node {{ {selection} }} }} }}"
        else:
            selection = f"{step.field} {{ {selection} }}"
    if root == "organisation":
        return f"query($id: ID!) {{ organisation(id: $id) {{ {selection} }} }}"
    return f"{{ viewer {{ {selection} }} }}"


def _values(data: Any, steps: list[Step], name: str) -> list[Any]:
    """The field's values under every object the path reached."""
    level = [data]
    for step in steps:
        following = []
        for value in level:
            if value is None:
                continue
            found = value[step.field]
            if step.connection:
                found = None if found is None else [edge["node"] for edge in found["edges"]]
            following.extend(found if isinstance(found, list) else [found])
        level = following
    return [value[name] for value in level if value is not None]


def _reached(values: list[Any]) -> bool:
    """Something was listed: a non-empty list, a connection with edges, or an object."""
    for value in values:
        if isinstance(value, dict) and "edges" in value:
            if value["edges"]:
                return True
        elif value not in (None, []):
            return True
    return False


async def _nested_world(services: Services, org: Org) -> None:
    """Something for the administrator to see behind every rule, so "empty" means refused."""
    now = services.clock.now()
    admin = await User.get(id=org.admin_user_id)
    await factories.confirm_totp(services, admin)
    await AppPassword.create(user=admin, label="Mail", password_hash="x", created_at=now)
    mail = await Product.create(
        organisation=org.organisation, kind="MAIL_SERVICE", name="Mail", created_at=now
    )
    await ProductGrant.create(membership_id=org.collaborator_membership_id, product=mail)
    # Listed in the administrator's own productAccess too (viewer.memberships).
    await ProductGrant.create(membership=await Membership.get(user_id=admin.id), product=mail)
    mailbox = await Mailbox.create(product=mail, address="box@example.test", created_at=now)
    await MailMessage.create(
        mailbox=mailbox, sender="a@example.test", subject="Hi", body="Secret", received_at=now
    )
    await factories.add_domain(
        services, org.organisation, "scopes-demo.ch", expires_in=timedelta(days=60)
    )
    await Invitation.create(
        organisation=org.organisation,
        email="invited@example.test",
        role=Role.COLLABORATOR,
        token_hash="nested-invitation",
        status=InvitationStatus.PENDING,
        invited_by_id=org.admin_user_id,
        expires_at=now + timedelta(days=7),
        last_sent_at=now,
        created_at=now,
    )
    await tokens.create_service_account(
        services,
        RequestMeta(ip=None),
        org.admin,
        org.organisation.id,
        name="Sync",
        role=Role.COLLABORATOR,
        scopes=["members:read"],
    )
    endpoint = await WebhookEndpoint.create(
        organisation=org.organisation,
        url="https://93.184.215.14/hooks",
        event_types=["member.role_changed"],
        secret_encrypted=webhooks.encrypt_secret(services, org.organisation.id, "whsec_x"),
        created_at=now,
    )
    event = await ActivityEvent.filter(organisation_id=org.organisation.id).first()
    assert event is not None
    await WebhookDelivery.create(endpoint=endpoint, event=event, next_attempt_at=now)


def test_api6_every_nested_listing_has_a_token_rule() -> None:
    """A new field of Organisation, or a new listing below the token roots, must say which
    scope it needs, that no token reads it, or why any token may."""
    ruled = set(NESTED_TOKEN_RULES) | set(NESTED_ALLOWED)

    assert _nested_coordinates() - ruled == set(), "add it to NESTED_TOKEN_RULES"
    assert ruled - _nested_coordinates() == set(), "rules for fields the schema no longer has"
    assert set(NESTED_TOKEN_RULES.values()) <= authz.TOKEN_SCOPES | {NEVER}


async def test_api6_nested_fields_refuse_tokens_without_their_scope(
    services: Services, gql: GraphQLClient
) -> None:
    """API-6: for every ruled field, the administrator's web session reaches something there,
    and the administrator's token lacking the field's scope (holding every other scope; every
    scope for NEVER) gets INSUFFICIENT_SCOPE, null or nothing."""
    org = await _org(services)
    signed_in = await accounts.sign_in(
        services, RequestMeta(ip=None), login="admin@x.test", password=factories.PASSWORD
    )
    assert signed_in.session is not None
    await _nested_world(services, org)  # a second factor too: signed in before it
    variables = {"id": encode_id("Organisation", org.organisation.id)}
    leaks = []
    for coordinate, rule in sorted(NESTED_TOKEN_RULES.items()):
        type_name, name = coordinate.split(".")
        missing = (
            set()
            if rule == NEVER
            else {rule} | {writer for writer, read in authz._IMPLIED_SCOPES.items() if read == rule}
        )
        held = sorted(authz.TOKEN_SCOPES - missing)
        denied = {c for c, r in NESTED_TOKEN_RULES.items() if r == NEVER or r in missing}
        # Through fields this token may use when there is a way; else the shortest way at all.
        found = _path_to(type_name, frozenset(denied)) or _path_to(type_name, frozenset())
        assert found is not None, coordinate
        root, steps = found
        parent = schema._schema.type_map[type_name]
        assert isinstance(parent, GraphQLObjectType)
        document = _nested_query(root, steps, parent, name)
        issued = await _create(services, org.admin, held)

        arguments = variables if root == "organisation" else None
        gql.token = signed_in.session.token
        web = await gql(document, arguments)
        gql.token = issued.secret
        with_token = await gql(document, arguments)

        assert _codes(web) == [], (coordinate, web)
        assert _reached(_values(web["data"][root], steps, name)), (coordinate, document)
        data = (with_token.get("data") or {}).get(root)
        reached = data is not None and _reached(_values(data, steps, name))
        if reached or set(_codes(with_token)) - {"INSUFFICIENT_SCOPE"}:
            leaks.append((coordinate, held, with_token))
        await ApiToken.filter(id=issued.token.id).delete()

    assert leaks == []


async def test_api6_activity_scope_reads_activity_as_far_as_the_role_allows(
    services: Services, gql: GraphQLClient
) -> None:
    org = await _org(services)
    admin_token = await _create(services, org.admin, ["activity:read"])
    collaborator_token = await _create(services, org.collaborator, ["activity:read"])
    variables = {"id": encode_id("Organisation", org.organisation.id)}

    gql.token = admin_token.secret
    allowed = await gql(ACTIVITY, variables)
    members = await gql(MEMBERS, variables)
    gql.token = collaborator_token.secret
    beyond_role = await gql(ACTIVITY, variables)

    assert _codes(allowed) == [] and allowed["data"]["organisation"]["activity"]["totalCount"] > 0
    assert _codes(members) == ["INSUFFICIENT_SCOPE"]
    assert _codes(beyond_role) == ["FORBIDDEN"]


async def test_api6_a_write_token_never_exceeds_its_owners_role(
    services: Services, gql: GraphQLClient
) -> None:
    org = await _org(services)
    admin_token = await _create(services, org.admin, ["members:write"])
    collaborator_token = await _create(services, org.collaborator, ["members:write"])
    reader_token = await _create(services, org.admin, ["members:read"])
    external = {"input": {"membershipId": encode_id("Membership", org.external_membership_id)}}

    gql.token = reader_token.secret
    unscoped = await gql.post(CHANGE_ROLE, {"input": {**external["input"], "role": "COLLABORATOR"}})
    gql.token = collaborator_token.secret
    beyond_role = await gql(CHANGE_ROLE, {"input": {**external["input"], "role": "COLLABORATOR"}})
    gql.token = admin_token.secret
    changed = await gql(CHANGE_ROLE, {"input": {**external["input"], "role": "COLLABORATOR"}})

    assert unscoped.status_code == 200
    assert unscoped.json()["data"] is None
    assert _codes(unscoped.json()) == ["INSUFFICIENT_SCOPE"]
    assert beyond_role["data"]["changeMemberRole"] == {
        "membership": None,
        "errors": [{"code": "FORBIDDEN"}],
    }
    assert changed["data"]["changeMemberRole"] == {
        "membership": {"role": "COLLABORATOR"},
        "errors": [],
    }
    event = await ActivityEvent.get(type="member.role_changed")
    assert event.actor_id == org.admin_user_id


async def test_api6_token_sees_no_private_profile_and_cannot_reach_nodes_or_tokens(
    services: Services, gql: GraphQLClient
) -> None:
    org = await _org(services)
    issued = await _create(services, org.admin, ["members:read", "activity:read"])
    gql.token = issued.secret

    viewer = await gql(VIEWER)
    node = await gql(
        "query($id: ID!) { node(id: $id) { id } }",
        {"id": encode_id("PersonalAccessToken", issued.token.id)},
    )
    create = await gql(
        'mutation { createPersonalAccessToken(input: {label: "x", scopes: ["members:read"]})'
        " { secret errors { code } } }"
    )

    assert viewer["data"]["viewer"] == {
        "email": "admin@x.test",
        "supportCode": None,
        "recoveryEmail": None,
        "memberships": {"totalCount": 0},
        "personalAccessTokens": [],
    }
    assert (node["data"], _codes(node)) == (None, ["INSUFFICIENT_SCOPE"])
    assert (create["data"], _codes(create)) == (None, ["INSUFFICIENT_SCOPE"])
    assert await ApiToken.all().count() == 1


async def test_api6_token_restricted_to_one_organisation_knows_no_other(
    services: Services, gql: GraphQLClient
) -> None:
    org = await _org(services)
    second = (await factories.sign_up(services, email="second@example.test")).organisation
    await Membership.create(
        organisation=second,
        user_id=org.admin_user_id,
        role=Role.ADMINISTRATOR,
        created_at=services.clock.now(),
    )
    restricted = await _create(
        services, org.admin, ["members:read"], organisation_id=org.organisation.id
    )
    gql.token = restricted.secret

    own = await gql(MEMBERS, {"id": encode_id("Organisation", org.organisation.id)})
    other = await gql(MEMBERS, {"id": encode_id("Organisation", second.id)})

    assert _codes(own) == []
    assert (other["data"], _codes(other)) == ({"organisation": None}, ["NOT_FOUND"])


async def test_api6_token_dies_with_removal_expiry_and_forgery_over_http(
    services: Services, gql: GraphQLClient, clock: ManualClock
) -> None:
    org = await _org(services)
    issued = await _create(
        services, org.admin, ["members:read"], expires_at=clock.now() + timedelta(days=2)
    )
    variables = {"id": encode_id("Organisation", org.organisation.id)}
    gql.token = issued.secret

    member = await gql(MEMBERS, variables)
    await Membership.filter(user_id=org.admin_user_id).delete()
    removed = await gql(MEMBERS, variables)
    clock.advance(timedelta(days=2))
    expired = await gql.post(MEMBERS, variables)
    gql.token = "gdn_pat_" + "x" * 43
    forged = await gql.post(MEMBERS, variables)

    assert _codes(member) == []
    assert (removed["data"], _codes(removed)) == ({"organisation": None}, ["NOT_FOUND"])
    for refused in (expired, forged):
        assert refused.status_code == 401
        assert _codes(refused.json()) == ["UNAUTHENTICATED"]
        assert refused.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_api6_create_list_and_revoke_through_the_schema(
    services: Services, gql: GraphQLClient
) -> None:
    signed_in = await factories.sign_up(services, email="owner@example.test")
    gql.token = signed_in.session.token

    created = await gql(
        "mutation($input: CreatePersonalAccessTokenInput!) { createPersonalAccessToken(input:"
        " $input) { token { id label scopes expiresAt lastUsedAt prefix useCount } secret"
        " errors { code field } } }",
        {"input": {"label": "Backup", "scopes": ["domains:write"]}},
    )
    bad = await gql(
        "mutation($input: CreatePersonalAccessTokenInput!) { createPersonalAccessToken(input:"
        " $input) { token { id } secret errors { code field } } }",
        {"input": {"label": "Backup", "scopes": ["root"]}},
    )
    payload = created["data"]["createPersonalAccessToken"]
    listed = await gql("{ viewer { personalAccessTokens { id label lastUsedAt useCount } } }")
    revoked = await gql(
        "mutation($input: RevokePersonalAccessTokenInput!) { revokePersonalAccessToken(input:"
        " $input) { token { id revokedAt } errors { code } } }",
        {"input": {"tokenId": payload["token"]["id"]}},
    )
    after = await gql("{ viewer { personalAccessTokens { id } } }")

    assert payload["errors"] == []
    assert payload["secret"].startswith(payload["token"]["prefix"])
    assert (payload["token"]["label"], payload["token"]["scopes"]) == ("Backup", ["domains:write"])
    assert (payload["token"]["lastUsedAt"], payload["token"]["useCount"]) == (None, 0)
    assert bad["data"]["createPersonalAccessToken"] == {
        "token": None,
        "secret": None,
        "errors": [{"code": "INVALID_INPUT", "field": "scopes"}],
    }
    assert listed["data"]["viewer"]["personalAccessTokens"] == [
        {"id": payload["token"]["id"], "label": "Backup", "lastUsedAt": None, "useCount": 0}
    ]
    assert revoked["data"]["revokePersonalAccessToken"]["errors"] == []
    assert revoked["data"]["revokePersonalAccessToken"]["token"]["revokedAt"] is not None
    assert after["data"]["viewer"]["personalAccessTokens"] == []


# --- service accounts ----------------------------------------------------------------------------


async def _service_account(
    services: Services,
    scope: RequestScope,
    organisation: Organisation,
    role: Role,
    scopes: list[str],
) -> tokens.IssuedToken:
    return await tokens.create_service_account(
        services,
        RequestMeta(ip="198.51.100.1"),
        scope,
        organisation.id,
        name="HR sync",
        role=role,
        scopes=scopes,
    )


async def test_api6_service_account_is_created_by_a_manager_with_at_most_administrator(
    services: Services, meta: RequestMeta
) -> None:
    org = await _org(services)
    outsider = await factories.sign_up(services, email="outsider@example.test")
    outsider_scope = await factories.signed_in_scope(services, "outsider@example.test")

    issued = await tokens.create_service_account(
        services,
        meta,
        org.admin,
        org.organisation.id,
        name="HR sync",
        role=Role.ADMINISTRATOR,
        scopes=["members:write"],
    )
    refusals = []
    for scope, role in (
        (org.legal, Role.LEGAL_REPRESENTATIVE),
        (org.collaborator, Role.EXTERNAL),
        (outsider_scope, Role.EXTERNAL),
    ):
        with pytest.raises(DomainError) as refused:
            await _service_account(services, scope, org.organisation, role, ["members:read"])
        refusals.append((refused.value.code, refused.value.field))

    assert issued.secret.startswith("gdn_sa_")
    stored = await ApiToken.get(id=issued.token.id)
    assert (stored.owner_id, stored.organisation_id, stored.created_by_id, stored.role) == (
        None,
        org.organisation.id,
        org.admin_user_id,
        Role.ADMINISTRATOR,
    )
    assert stored.token_hash == services.keyring.token_digest(issued.secret, "api-token")
    assert refusals == [
        (ErrorCode.FORBIDDEN, "role"),
        (ErrorCode.FORBIDDEN, None),
        (ErrorCode.NOT_FOUND, None),
    ]
    assert await ApiToken.all().count() == 1
    event = await ActivityEvent.get(type="service_account.created")
    assert (event.actor_id, event.organisation_id, event.data["role"]) == (
        org.admin_user_id,
        org.organisation.id,
        "ADMINISTRATOR",
    )
    assert outsider.organisation.id != org.organisation.id


async def test_api6_service_account_acts_with_the_lower_of_its_role_and_its_creators(
    services: Services, gql: GraphQLClient
) -> None:
    org = await _org(services)
    as_admin = await _service_account(
        services, org.legal, org.organisation, Role.ADMINISTRATOR, ["members:write"]
    )
    as_collaborator = await _service_account(
        services, org.legal, org.organisation, Role.COLLABORATOR, ["members:write"]
    )
    legal_membership = await Membership.get(user__email="legal@example.test")

    def change(membership_id: int, role: str) -> dict[str, Any]:
        return {"input": {"membershipId": encode_id("Membership", membership_id), "role": role}}

    gql.token = as_collaborator.secret
    collaborator_refused = await gql(
        CHANGE_ROLE, change(org.external_membership_id, "COLLABORATOR")
    )
    gql.token = as_admin.secret
    legal_refused = await gql(CHANGE_ROLE, change(legal_membership.id, "ADMINISTRATOR"))
    changed = await gql(CHANGE_ROLE, change(org.external_membership_id, "COLLABORATOR"))

    assert collaborator_refused["data"]["changeMemberRole"]["errors"] == [{"code": "FORBIDDEN"}]
    assert legal_refused["data"]["changeMemberRole"]["errors"] == [{"code": "FORBIDDEN"}]
    assert changed["data"]["changeMemberRole"] == {
        "membership": {"role": "COLLABORATOR"},
        "errors": [],
    }
    assert (await Membership.get(id=legal_membership.id)).role == Role.LEGAL_REPRESENTATIVE


async def test_api6_service_account_knows_only_its_organisation(
    services: Services, gql: GraphQLClient
) -> None:
    org = await _org(services)
    second = (await factories.sign_up(services, email="second@example.test")).organisation
    await Membership.create(
        organisation=second,
        user_id=org.admin_user_id,
        role=Role.ADMINISTRATOR,
        created_at=services.clock.now(),
    )
    issued = await _service_account(
        services, org.admin, org.organisation, Role.ADMINISTRATOR, ["members:read"]
    )
    gql.token = issued.secret

    own = await gql(MEMBERS, {"id": encode_id("Organisation", org.organisation.id)})
    other = await gql(MEMBERS, {"id": encode_id("Organisation", second.id)})
    listing = await gql(
        "query($id: ID!) { organisation(id: $id) { serviceAccounts { id } } }",
        {"id": encode_id("Organisation", org.organisation.id)},
    )

    assert own["data"]["organisation"]["members"] == {"totalCount": 4}
    assert (other["data"], _codes(other)) == ({"organisation": None}, ["NOT_FOUND"])
    assert _codes(listing) == ["INSUFFICIENT_SCOPE"]


async def test_api6_service_account_dies_when_its_creator_is_demoted_or_blocked(
    services: Services,
) -> None:
    org = await _org(services)
    issued = await _service_account(
        services, org.admin, org.organisation, Role.ADMINISTRATOR, ["members:read"]
    )
    admin_membership = Membership.filter(user_id=org.admin_user_id)

    working = await tokens.authenticate(services, RequestMeta(), issued.secret)
    await admin_membership.update(role=Role.COLLABORATOR)
    demoted = await tokens.authenticate(services, RequestMeta(), issued.secret)
    await admin_membership.update(role=Role.ADMINISTRATOR)
    promoted_again = await tokens.authenticate(services, RequestMeta(), issued.secret)
    await UserBlock.create(
        organisation=org.organisation,
        user_id=org.admin_user_id,
        justification="Account taken over, reported by the legal representative",
        created_at=services.clock.now(),
    )
    blocked = await tokens.authenticate(services, RequestMeta(), issued.secret)
    await admin_membership.delete()
    removed = await tokens.authenticate(services, RequestMeta(), issued.secret)

    assert working is not None and working.token is not None
    assert working.token.role_cap == Role.ADMINISTRATOR
    assert working.token.organisation_id == org.organisation.id
    assert (demoted, blocked, removed) == (None, None, None)
    assert promoted_again is not None


async def test_api6_service_accounts_are_listed_and_revoked_by_any_manager(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    org = await _org(services)
    issued = await _service_account(
        services, org.admin, org.organisation, Role.COLLABORATOR, ["members:read"]
    )

    listed = await tokens.organisation_service_accounts(org.legal, org.organisation.id)
    with pytest.raises(DomainError) as collaborator_listing:
        await tokens.organisation_service_accounts(org.collaborator, org.organisation.id)
    with pytest.raises(DomainError) as collaborator_revoking:
        await tokens.revoke_service_account(services, meta, org.collaborator, issued.token.id)
    still_working = await tokens.authenticate(services, RequestMeta(), issued.secret)
    revoked = await tokens.revoke_service_account(services, meta, org.legal, issued.token.id)
    clock.advance(timedelta(minutes=1))
    again = await tokens.revoke_service_account(services, meta, org.legal, issued.token.id)

    assert [t.id for t in listed] == [issued.token.id]
    assert (
        collaborator_listing.value.code == collaborator_revoking.value.code == ErrorCode.FORBIDDEN
    )
    assert still_working is not None
    assert revoked.revoked_at == again.revoked_at
    assert await tokens.authenticate(services, RequestMeta(), issued.secret) is None
    assert await tokens.organisation_service_accounts(org.legal, org.organisation.id) == []
    events = await ActivityEvent.filter(type="service_account.revoked")
    assert [(e.actor_id, e.organisation_id) for e in events] == [
        ((await Membership.get(user__email="legal@example.test")).user_id, org.organisation.id)
    ]
    with pytest.raises(DomainError) as personal:
        await tokens.revoke_personal_access_token(services, meta, org.legal, issued.token.id)
    assert personal.value.code == ErrorCode.NOT_FOUND
