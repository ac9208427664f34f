"""What an app session (MFA-6) may not do: mint the longer-lived credentials of API-6.

An app password lives in a mail or calendar client, typed once and kept there; the session it
opens syncs. A personal access token or a service account made from it would outlive the app
password's revocation (and the removal of the last second factor, which revokes app passwords):
revoking the app password must be enough to cut a leaked one off."""

from __future__ import annotations

import pytest

from gardien.models.enums import Role
from gardien.models.mfa import AppPassword, TwoFactorMethod
from gardien.models.organisations import SecurityPolicy
from gardien.models.sessions import ApiToken, Session
from gardien.models.users import User
from gardien.resolvers import (
    account_security,
    app_passwords,
    security_policy,
    sessions,
    tokens,
    two_factor,
)
from gardien.resolvers.authz import Actor, RequestScope
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from tests import factories
from tests.conftest import GraphQLClient
from tests.resolvers.test_events import Recorded

pytestmark = pytest.mark.usefixtures("database")


async def _app_session(
    services: Services, meta: RequestMeta
) -> tuple[Actor, str, int, RequestScope]:
    """An administrator with 2FA on, signed in through an app password: (actor, token,
    organisation id, and the web session the administrator made the app password in)."""
    legal = await factories.sign_up(services, email="legal@example.test")
    admin = await factories.add_member(
        services, legal.organisation, Role.ADMINISTRATOR, "admin@example.test"
    )
    web = await factories.signed_in_scope(services, "admin@example.test")
    await factories.confirm_totp(services, await User.get(email="admin@example.test"))
    created = await app_passwords.create(services, meta, web.actor, label="Thunderbird")
    issued = await app_passwords.authenticate_app(
        services, meta, login="admin@example.test", app_password=created.secret
    )
    actor = await sessions.authenticate(services, issued.token)
    assert actor is not None and admin is not None
    return actor, issued.token, legal.organisation.id, web


async def test_mfa6_app_session_cannot_create_a_personal_access_token(
    services: Services, meta: RequestMeta
) -> None:
    actor, _, _, _ = await _app_session(services, meta)

    with pytest.raises(DomainError) as refused:
        await tokens.create_personal_access_token(
            services, meta, RequestScope(actor), label="Backdoor", scopes=["members:read"]
        )

    assert refused.value.code is ErrorCode.FORBIDDEN
    assert await ApiToken.all().count() == 0


async def test_mfa6_app_session_cannot_create_a_service_account(
    services: Services, meta: RequestMeta
) -> None:
    actor, _, organisation_id, _ = await _app_session(services, meta)

    with pytest.raises(DomainError) as refused:
        await tokens.create_service_account(
            services, meta, RequestScope(actor), organisation_id,
            name="Backdoor", role=Role.COLLABORATOR, scopes=["members:read"],
        )  # fmt: skip

    assert refused.value.code is ErrorCode.FORBIDDEN
    assert await ApiToken.all().count() == 0


async def test_mfa6_app_session_token_mint_refused_through_graphql(
    services: Services, meta: RequestMeta, gql: GraphQLClient
) -> None:
    _, token, _, _ = await _app_session(services, meta)
    gql.token = token

    body = await gql(
        'mutation { createPersonalAccessToken(input: {label: "x", scopes: ["members:read"]})'
        " { secret errors { code } } }"
    )

    assert body["data"]["createPersonalAccessToken"] == {
        "secret": None,
        "errors": [{"code": ErrorCode.FORBIDDEN.value}],
    }
    assert await ApiToken.all().count() == 0


async def test_mfa6_web_session_still_creates_personal_access_tokens(
    services: Services, meta: RequestMeta
) -> None:
    _, _, _, web = await _app_session(services, meta)

    issued = await tokens.create_personal_access_token(
        services, meta, web, label="CI", scopes=["members:read"]
    )

    assert issued.secret.startswith(tokens.PERSONAL_ACCESS_TOKEN_PREFIX)
    assert await ApiToken.all().count() == 1


async def test_mfa6_act5_app_session_cannot_secure_the_account_and_keep_itself(
    services: Services, meta: RequestMeta
) -> None:
    """ACT-5 keeps the caller's session and revokes every other one and every app password:
    from an app session, a leaked app password would sign its owner out everywhere and stay."""
    actor, _, _, web = await _app_session(services, meta)

    with pytest.raises(DomainError) as refused:
        await account_security.secure_account(services, meta, actor)

    assert refused.value.code is ErrorCode.FORBIDDEN
    assert web.actor.session is not None
    assert await Session.exists(id=web.actor.session.id, revoked_at=None)
    assert await AppPassword.filter(revoked_at=None).count() == 1


async def test_mfa6_act6_app_session_cannot_revoke_the_owners_web_sessions(
    services: Services, meta: RequestMeta
) -> None:
    """Else a leaked app password would end each web session its owner opens, before the owner
    could revoke it: the owner locked out of their own console."""
    actor, _, _, web = await _app_session(services, meta)
    assert web.actor.session is not None

    with pytest.raises(DomainError) as refused:
        await sessions.revoke_own_session(services, meta, actor, web.actor.session.id)

    assert refused.value.code is ErrorCode.FORBIDDEN
    assert await Session.exists(id=web.actor.session.id, revoked_at=None)


async def test_mfa6_act6_app_session_still_ends_itself_and_web_session_ends_it(
    services: Services, meta: RequestMeta
) -> None:
    actor, token, _, web = await _app_session(services, meta)
    assert actor.session is not None

    await sessions.revoke_own_session(services, meta, actor, actor.session.id)
    again = await app_passwords.authenticate_app(
        services, meta, login="admin@example.test",
        app_password=await _new_app_password(services, meta, web),
    )  # fmt: skip
    reopened = await sessions.authenticate(services, again.token)
    assert reopened is not None and reopened.session is not None
    await sessions.revoke_own_session(services, meta, web.actor, reopened.session.id)

    assert await sessions.authenticate(services, token) is None
    assert await sessions.authenticate(services, again.token) is None


async def _new_app_password(services: Services, meta: RequestMeta, web: RequestScope) -> str:
    created = await app_passwords.create(services, meta, web.actor, label="Calendar")
    return created.secret


async def test_mfa6_pol1_app_session_cannot_lift_the_two_factor_requirement(
    services: Services, meta: RequestMeta
) -> None:
    """An app password skipped the second factor once; it must not switch the organisation's
    2FA requirement off (nor on) for everyone."""
    actor, _, organisation_id, web = await _app_session(services, meta)
    await security_policy.update_policy(
        services, meta, web, organisation_id=organisation_id,
        require_two_factor=True, confirm=True,
    )  # fmt: skip

    with pytest.raises(DomainError) as refused:
        await security_policy.update_policy(
            services, meta, RequestScope(actor), organisation_id=organisation_id,
            require_two_factor=False, confirm=True,
        )  # fmt: skip

    assert refused.value.code is ErrorCode.FORBIDDEN
    policy = await SecurityPolicy.get(organisation_id=organisation_id)
    assert policy.require_two_factor is True


# --- EVT-4: a revoked app session loses its open WebSocket at once ------------------------------


async def test_mfa6_evt4_revoking_an_app_password_tells_the_sockets(
    services: Services, meta: RequestMeta
) -> None:
    """The app session's socket keeps the actor it authenticated with: without the access
    notice it would run operations and follow events until its periodic re-authentication."""
    actor, _, _, web = await _app_session(services, meta)
    assert actor.user is not None
    found = await AppPassword.get(user_id=actor.user.id)
    recorded = await Recorded.start(services)

    await app_passwords.revoke(services, meta, web.actor, app_password_id=found.id)

    notices = [m for m in await recorded.settled() if m["kind"] == "access"]
    assert notices == [{"kind": "access", "user_id": actor.user.id}]


async def test_mfa6_evt4_removing_the_last_second_factor_tells_the_app_sessions_sockets(
    services: Services, meta: RequestMeta
) -> None:
    actor, _, _, web = await _app_session(services, meta)
    assert actor.user is not None
    method = await TwoFactorMethod.get(user_id=actor.user.id)
    recorded = await Recorded.start(services)

    still_on = await two_factor.remove_method(
        services, meta, web.actor, method_id=method.id, password=factories.PASSWORD
    )

    notices = [m for m in await recorded.settled() if m["kind"] == "access"]
    assert still_on is False
    assert notices == [{"kind": "access", "user_id": actor.user.id}]


async def test_api6_evt4_revoking_a_personal_access_token_tells_the_sockets(
    services: Services, meta: RequestMeta
) -> None:
    """A socket opened with the token keeps its actor: "ends the token at once" holds on the
    socket only once it authenticates again, which the access notice asks for."""
    _, _, _, web = await _app_session(services, meta)
    issued = await tokens.create_personal_access_token(
        services, meta, web, label="CI", scopes=["members:read"]
    )
    assert web.actor.user is not None
    recorded = await Recorded.start(services)

    await tokens.revoke_personal_access_token(services, meta, web, issued.token.id)

    notices = [m for m in await recorded.settled() if m["kind"] == "access"]
    assert notices == [{"kind": "access", "user_id": web.actor.user.id}]
