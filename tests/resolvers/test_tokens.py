"""Personal access tokens as operations and through the app: scopes, expiry, revocation, the
owner's rights and every use recorded, on SQLite and PostgreSQL (API-6, ACT-1)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from graphql import GraphQLObjectType

from gardien.clock import ManualClock
from gardien.models.activity import ActivityEvent
from gardien.models.enums import Role
from gardien.models.organisations import Membership, Organisation, UserBlock
from gardien.models.sessions import ApiToken
from gardien.resolvers import authz, tokens
from gardien.resolvers.authz import Actor, RequestScope, SignedInToken
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.schema import schema
from gardien.schema.relay import encode_id
from tests import factories
from tests.conftest import GraphQLClient

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
