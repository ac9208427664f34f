"""Invitations as operations: every rule and bad input, on SQLite and PostgreSQL (INV-1…INV-5,
ORG-2, ACT-1)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from gardien.clock import ManualClock
from gardien.mail.templates import links_in
from gardien.models.activity import ActivityEvent
from gardien.models.enums import InvitationStatus, Role
from gardien.models.invitations import Invitation
from gardien.models.organisations import Membership, Organisation
from gardien.models.outbox import OutboxMessage
from gardien.models.products import Product, ProductGrant
from gardien.models.sessions import Session
from gardien.models.users import User
from gardien.resolvers import accounts, authz, invitations, sessions
from gardien.resolvers.authz import Actor, RequestScope
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.invitations import ContactPreferences, InviteRequest
from gardien.resolvers.services import RequestMeta, Services
from tests import factories

pytestmark = pytest.mark.usefixtures("database")

NEWCOMER_PASSWORD = "lantern over the river"


def _anonymous() -> RequestScope:
    return RequestScope(Actor())


@dataclass
class Org:
    organisation: Organisation
    legal: RequestScope
    admin: RequestScope
    collaborator: RequestScope
    external: RequestScope
    product: Product


async def _org(services: Services, *, legal_language: str = "fr") -> Org:
    legal = await factories.sign_up(services, email="legal@example.test", name="Anna Legal")
    legal.user.language = legal_language
    legal.user.timezone = "Europe/Berlin"
    await legal.user.save(update_fields=["language", "timezone"])
    organisation = legal.organisation
    for role, email in (
        (Role.ADMINISTRATOR, "admin@example.test"),
        (Role.COLLABORATOR, "collab@example.test"),
        (Role.EXTERNAL, "external@example.test"),
    ):
        await factories.add_member(services, organisation, role, email=email)
    product = await Product.create(
        organisation=organisation, kind="WEB_DRIVE", name="Drive", created_at=services.clock.now()
    )
    return Org(
        organisation=organisation,
        legal=await factories.signed_in_scope(services, "legal@example.test"),
        admin=await factories.signed_in_scope(services, "admin@example.test"),
        collaborator=await factories.signed_in_scope(services, "collab@example.test"),
        external=await factories.signed_in_scope(services, "external@example.test"),
        product=product,
    )


async def _state() -> dict[str, Any]:
    """Everything an invitation operation may change, to prove a refusal changed nothing."""
    return {
        "invitations": sorted(
            await Invitation.all().values_list("id", "status", "token_hash", "send_count")
        ),
        "users": await User.all().count(),
        "memberships": sorted(await Membership.all().values_list("id", "role")),
        "grants": await ProductGrant.all().count(),
        "sessions": await Session.all().count(),
        "outbox": await OutboxMessage.all().count(),
        "activity": await ActivityEvent.all().count(),
        "current": sorted(await User.all().values_list("id", "current_organisation_id")),
    }


def _request(org: Org, email: str, role: Role = Role.COLLABORATOR, **more: Any) -> InviteRequest:
    return InviteRequest(organisation_id=org.organisation.id, email=email, role=role, **more)


async def _invite(
    services: Services, scope: RequestScope, org: Org, email: str, **more: Any
) -> tuple[Invitation, str]:
    """Invite, and return the invitation with the token read from the e-mail's link."""
    view = await invitations.invite_member(
        services, RequestMeta(), scope, _request(org, email, **more)
    )
    return view.invitation, await _token_sent_to(email)


async def _token_sent_to(email: str) -> str:
    message = await OutboxMessage.filter(recipient=email).order_by("-id").first()
    assert message is not None
    (link,) = links_in(message.payload["text"])
    return _token_of(link)


def _token_of(link: str) -> str:
    fragment = urlsplit(link).fragment  # the console route: /invitations/accept?token=…
    route, _, query = fragment.partition("?")
    assert route == "/invitations/accept"
    (token,) = parse_qs(query)["token"]
    return token


async def _refused(operation: Any) -> DomainError:
    with pytest.raises(DomainError) as raised:
        await operation
    return raised.value


def _error(error: DomainError) -> tuple[ErrorCode, str | None]:
    return error.code, error.field


# --- inviting (INV-1, INV-2, INV-3, INV-5, ACT-1) ------------------------------------------------


async def test_inv2_inv4_unknown_address_gets_a_new_account_invitation_in_the_inviters_language(
    services: Services,
) -> None:
    org = await _org(services, legal_language="de")

    view = await invitations.invite_member(
        services,
        RequestMeta(ip="198.51.100.9"),
        org.legal,
        _request(org, " New.Person@Example.TEST "),
    )

    message = await OutboxMessage.get(recipient="new.person@example.test")
    token = await _token_sent_to("new.person@example.test")
    invitation = await Invitation.get(id=view.invitation.id)
    event = await ActivityEvent.get(type="invitation.sent")
    assert (message.template, message.language) == ("invitation_new_account", "de")
    assert "Anna Legal" in message.payload["subject"]
    assert (
        message.payload["text"].count(
            f"{services.settings.public_url}/console/#/invitations/accept?token="
        )
        == 1
    )
    assert len(token) >= 43  # 256 random bits, URL-safe base64
    assert invitation.token_hash == services.keyring.token_digest(token, "invitation")
    assert token not in str(await Invitation.all().values())
    assert (invitation.email, invitation.role, invitation.status) == (
        "new.person@example.test",
        Role.COLLABORATOR,
        InvitationStatus.PENDING,
    )
    assert invitation.expires_at == services.clock.now() + timedelta(days=7)
    assert (event.actor_id, event.subject_email, event.organisation_id, event.ip) == (
        org.legal.actor.user_id,
        "new.person@example.test",
        org.organisation.id,
        "198.51.100.9",
    )
    assert event.data == {"invitation_id": invitation.id, "role": "COLLABORATOR"}


async def test_inv3_pro1_existing_user_gets_a_join_invitation_in_their_own_language(
    services: Services,
) -> None:
    org = await _org(services, legal_language="de")
    elsewhere = await factories.sign_up(services, email="known@example.test", name="Known")
    elsewhere.user.language = "it"
    await elsewhere.user.save(update_fields=["language"])

    await invitations.invite_member(
        services, RequestMeta(), org.admin, _request(org, "known@example.test", Role.EXTERNAL)
    )

    message = await OutboxMessage.get(recipient="known@example.test")
    event = await ActivityEvent.get(type="invitation.sent")
    assert (message.template, message.language) == ("invitation_join", "it")
    assert "esterno" in message.payload["text"]
    assert event.data == {"invitation_id": event.data["invitation_id"], "role": "EXTERNAL"}


async def test_org1_inv1_invitation_sent_reads_the_same_for_known_and_unknown_addresses(
    services: Services,
) -> None:
    """Managers and their webhooks read `invitation.sent`: whether the address has an account
    must not show in it, nor in what managers see of the invitation before it is accepted."""
    org = await _org(services)
    await factories.sign_up(services, email="known@example.test", name="Known")

    for email in ("known@example.test", "nobody@example.test"):
        await invitations.invite_member(services, RequestMeta(), org.admin, _request(org, email))

    events = await ActivityEvent.filter(type="invitation.sent").order_by("id")
    shapes = [
        (e.subject_id, e.actor_id, {k: v for k, v in e.data.items() if k != "invitation_id"})
        for e in events
    ]
    assert shapes == [(None, org.admin.actor.user_id, {"role": "COLLABORATOR"})] * 2
    page = await invitations.organisation_invitations(
        services, org.admin, org.organisation.id, first=10, after_id=None, status=None
    )
    first, second = (
        (v.status, [getattr(v.invitation, name) for name in _INVITATION_FIELDS]) for v in page.items
    )
    assert first == second


# What a manager reads of an invitation besides its address and dates.
_INVITATION_FIELDS = ("role", "product_ids", "contact_preferences", "send_count", "invited_by_id")


async def test_inv5_invitation_carries_role_products_and_contact_preferences(
    services: Services,
) -> None:
    org = await _org(services)

    view = await invitations.invite_member(
        services,
        RequestMeta(),
        org.admin,
        _request(
            org,
            "drive@example.test",
            Role.COLLABORATOR,
            product_ids=[org.product.id, org.product.id],
            contact_preferences=ContactPreferences(
                billing=True, technical=False, security=False, domain_expiry=True
            ),
        ),
    )

    stored = await Invitation.get(id=view.invitation.id)
    assert stored.product_ids == [org.product.id]
    assert stored.contact_preferences == {
        "billing": True,
        "technical": False,
        "security": False,
        "domain_expiry": True,
    }


@pytest.mark.parametrize("caller", ["collaborator", "external"])
async def test_inv1_collaborator_and_external_cannot_invite(
    services: Services, caller: str
) -> None:
    org = await _org(services)
    before = await _state()

    error = await _refused(
        invitations.invite_member(
            services, RequestMeta(), getattr(org, caller), _request(org, "x@example.test")
        )
    )

    assert (error.code, error.message, error.field) == (
        ErrorCode.FORBIDDEN,
        "Only administrators and legal representatives manage invitations.",
        None,
    )
    assert await _state() == before


async def test_inv1_only_a_legal_representative_invites_a_legal_representative(
    services: Services,
) -> None:
    org = await _org(services)
    before = await _state()

    error = await _refused(
        invitations.invite_member(
            services,
            RequestMeta(),
            org.admin,
            _request(org, "heir@example.test", Role.LEGAL_REPRESENTATIVE),
        )
    )
    refused_state = await _state()
    view = await invitations.invite_member(
        services,
        RequestMeta(),
        org.legal,
        _request(org, "heir@example.test", Role.LEGAL_REPRESENTATIVE),
    )

    assert (error.code, error.message, error.field) == (
        ErrorCode.FORBIDDEN,
        "Only a legal representative may invite a legal representative.",
        "role",
    )
    assert refused_state == before
    assert view.invitation.role == Role.LEGAL_REPRESENTATIVE


async def test_inv1_non_member_and_anonymous_learn_nothing_about_the_organisation(
    services: Services,
) -> None:
    org = await _org(services)
    await factories.sign_up(services, email="outsider@example.test")
    outsider = await factories.signed_in_scope(services, "outsider@example.test")
    before = await _state()

    not_found = await _refused(
        invitations.invite_member(
            services, RequestMeta(), outsider, _request(org, "x@example.test")
        )
    )
    unauthenticated = await _refused(
        invitations.invite_member(
            services, RequestMeta(), _anonymous(), _request(org, "x@example.test")
        )
    )

    assert _error(not_found) == (ErrorCode.NOT_FOUND, None)
    assert _error(unauthenticated) == (ErrorCode.UNAUTHENTICATED, None)
    assert await _state() == before


@pytest.mark.parametrize(
    ("email", "product", "expected"),
    [
        ("not-an-address", "own", (ErrorCode.INVALID_INPUT, "email")),
        ("two@@example.test", "own", (ErrorCode.INVALID_INPUT, "email")),
        ("a@example.test\r\nBcc: x@example.test", "own", (ErrorCode.INVALID_INPUT, "email")),
        ("ok@example.test", "foreign", (ErrorCode.INVALID_INPUT, "productIds")),
        ("ok@example.test", "missing", (ErrorCode.INVALID_INPUT, "productIds")),
        ("Collab@Example.test", "own", (ErrorCode.ALREADY_MEMBER, "email")),
        ("legal@example.test", "own", (ErrorCode.ALREADY_MEMBER, "email")),
    ],
)
async def test_inv5_bad_input_is_refused_with_nothing_changed_and_no_email(
    services: Services, email: str, product: str, expected: tuple[ErrorCode, str]
) -> None:
    org = await _org(services)
    other = await factories.sign_up(services, email="other@example.test")
    foreign = await Product.create(
        organisation=other.organisation,
        kind="HOSTING",
        name="Theirs",
        created_at=services.clock.now(),
    )
    product_id = {"own": org.product.id, "foreign": foreign.id, "missing": 999_999}[product]
    before = await _state()

    error = await _refused(
        invitations.invite_member(
            services, RequestMeta(), org.legal, _request(org, email, product_ids=[product_id])
        )
    )

    assert _error(error) == expected
    assert await _state() == before


async def test_inv4_a_pending_invitation_is_not_replaced_until_it_expires(
    services: Services, clock: ManualClock
) -> None:
    org = await _org(services)
    first, _ = await _invite(services, org.legal, org, "twice@example.test")
    before = await _state()

    error = await _refused(
        invitations.invite_member(
            services, RequestMeta(), org.admin, _request(org, "twice@example.test", Role.EXTERNAL)
        )
    )
    refused_state = await _state()
    clock.advance(timedelta(days=7, seconds=1))
    second = await invitations.invite_member(
        services, RequestMeta(), org.admin, _request(org, "twice@example.test", Role.EXTERNAL)
    )

    assert (error.code, error.message, error.field) == (
        ErrorCode.INVITATION_ALREADY_PENDING,
        "An invitation to this address is pending; resend or revoke it.",
        "email",
    )
    assert refused_state == before
    assert (await Invitation.get(id=first.id)).status == InvitationStatus.EXPIRED
    assert second.status == InvitationStatus.PENDING


async def test_inv4_invitations_per_organisation_are_rate_limited(services: Services) -> None:
    org = await _org(services)
    for number in range(invitations.INVITATIONS_PER_ORGANISATION.limit):
        await invitations.invite_member(
            services, RequestMeta(), org.admin, _request(org, f"bulk{number}@example.test")
        )
    before = await _state()

    error = await _refused(
        invitations.invite_member(
            services, RequestMeta(), org.legal, _request(org, "one.more@example.test")
        )
    )

    assert error.code == ErrorCode.TOO_MANY_ATTEMPTS
    assert error.retry_after_seconds == 3600
    assert await _state() == before


# --- accepting with a new account (INV-2, ORG-2, ACT-1) -----------------------------------------


async def test_inv2_inv5_org2_accepting_creates_account_membership_and_session_at_once(
    services: Services,
) -> None:
    org = await _org(services, legal_language="en")
    invitation, token = await _invite(
        services,
        org.legal,
        org,
        "newcomer@example.test",
        role=Role.COLLABORATOR,
        product_ids=[org.product.id],
        contact_preferences=ContactPreferences(billing=True, security=True),
    )

    accepted = await invitations.accept_invitation(
        services,
        RequestMeta(ip="198.51.100.20"),
        _anonymous(),
        token=token,
        password=NEWCOMER_PASSWORD,
        display_name="  New   Comer ",
    )

    user = await User.get(email="newcomer@example.test")
    membership = await Membership.get(user_id=user.id)
    assert accepted.session is not None
    actor = await sessions.authenticate(services, accepted.session.token)
    assert actor is not None and actor.user_id == user.id
    assert (user.display_name, user.language, user.timezone) == ("New Comer", "en", "Europe/Berlin")
    assert user.current_organisation_id == org.organisation.id
    assert (membership.organisation_id, membership.role) == (org.organisation.id, Role.COLLABORATOR)
    assert (
        membership.notify_billing,
        membership.notify_technical,
        membership.notify_security,
        membership.notify_domain_expiry,
    ) == (True, False, True, False)
    grants = await ProductGrant.filter(membership_id=membership.id)
    assert [grant.product_id for grant in grants] == [org.product.id]
    assert (accepted.membership.membership_id, accepted.membership.role) == (
        membership.id,
        Role.COLLABORATOR,
    )
    assert [p.id for p in accepted.membership.products or []] == [org.product.id]
    assert (await Invitation.get(id=invitation.id)).status == InvitationStatus.ACCEPTED
    events = await ActivityEvent.filter(organisation_id=org.organisation.id).order_by("id")
    assert [(e.type, e.actor_id, e.subject_id) for e in events][-2:] == [
        ("invitation.accepted", user.id, user.id),
        ("member.joined", user.id, user.id),
    ]
    assert events[-1].ip == "198.51.100.20"
    signed_in = await accounts.sign_in(
        services, RequestMeta(), login="newcomer@example.test", password=NEWCOMER_PASSWORD
    )
    assert signed_in.session is not None


@pytest.mark.parametrize(
    ("password", "display_name", "language", "expected"),
    [
        (None, "New Comer", None, (ErrorCode.INVALID_INPUT, "password")),
        ("short", "New Comer", None, (ErrorCode.PASSWORD_TOO_SHORT, "password")),
        ("12345678", "New Comer", None, (ErrorCode.PASSWORD_TOO_COMMON, "password")),
        ("newcomer@example.test", "New Comer", None, (ErrorCode.PASSWORD_TOO_COMMON, "password")),
        (NEWCOMER_PASSWORD, None, None, (ErrorCode.INVALID_INPUT, "displayName")),
        (NEWCOMER_PASSWORD, "   ", None, (ErrorCode.INVALID_INPUT, "displayName")),
        (NEWCOMER_PASSWORD, "x" * 121, None, (ErrorCode.INVALID_INPUT, "displayName")),
        (NEWCOMER_PASSWORD, "New Comer", "es", (ErrorCode.INVALID_INPUT, "language")),
    ],
)
async def test_inv2_bad_new_account_input_changes_nothing_and_keeps_the_token(
    services: Services,
    password: str | None,
    display_name: str | None,
    language: str | None,
    expected: tuple[ErrorCode, str],
) -> None:
    org = await _org(services)
    _, token = await _invite(services, org.legal, org, "newcomer@example.test")
    before = await _state()

    error = await _refused(
        invitations.accept_invitation(
            services,
            RequestMeta(),
            _anonymous(),
            token=token,
            password=password,
            display_name=display_name,
            language=language,
        )
    )
    refused_state = await _state()
    accepted = await invitations.accept_invitation(
        services,
        RequestMeta(),
        _anonymous(),
        token=token,
        password=NEWCOMER_PASSWORD,
        display_name="New Comer",
    )

    assert _error(error) == expected
    assert refused_state == before
    assert accepted.session is not None


# --- tokens: single use, expiry, revocation, forgery (INV-4) ------------------------------------


def _invalid(error: DomainError) -> tuple[ErrorCode, str, str | None]:
    return error.code, error.message, error.field


INVALID = (
    ErrorCode.INVITATION_INVALID,
    "This invitation link is not valid; it may have been used or withdrawn.",
    "token",
)


async def _accept_new(services: Services, token: str) -> invitations.Accepted:
    return await invitations.accept_invitation(
        services,
        RequestMeta(),
        _anonymous(),
        token=token,
        password=NEWCOMER_PASSWORD,
        display_name="New Comer",
    )


async def test_inv4_a_token_is_single_use(services: Services) -> None:
    org = await _org(services)
    _, token = await _invite(services, org.legal, org, "newcomer@example.test")
    await _accept_new(services, token)
    before = await _state()

    again = await _refused(_accept_new(services, token))
    decline = await _refused(
        invitations.decline_invitation(services, RequestMeta(), _anonymous(), token)
    )

    assert _invalid(again) == INVALID
    assert _invalid(decline) == INVALID
    assert await _state() == before


async def test_inv4_an_expired_token_is_refused_with_its_own_code(
    services: Services, clock: ManualClock
) -> None:
    org = await _org(services)
    _, token = await _invite(services, org.legal, org, "newcomer@example.test")
    clock.advance(timedelta(days=7))
    before = await _state()

    error = await _refused(_accept_new(services, token))
    declined = await _refused(
        invitations.decline_invitation(services, RequestMeta(), _anonymous(), token)
    )

    assert (error.code, error.message, error.field) == (
        ErrorCode.INVITATION_EXPIRED,
        "This invitation has expired; ask the organisation to send it again.",
        "token",
    )
    assert declined.code == ErrorCode.INVITATION_EXPIRED
    assert await _state() == before


async def test_inv4_a_revoked_token_is_refused(services: Services) -> None:
    org = await _org(services)
    invitation, token = await _invite(services, org.legal, org, "newcomer@example.test")

    revoked = await invitations.revoke_invitation(services, RequestMeta(), org.admin, invitation.id)
    before = await _state()
    error = await _refused(_accept_new(services, token))
    twice = await _refused(
        invitations.revoke_invitation(services, RequestMeta(), org.admin, invitation.id)
    )

    event = await ActivityEvent.get(type="invitation.revoked")
    assert revoked.status == InvitationStatus.REVOKED
    assert (event.actor_id, event.subject_email) == (
        org.admin.actor.user_id,
        "newcomer@example.test",
    )
    assert _invalid(error) == INVALID
    assert (twice.code, twice.message, twice.field) == (
        ErrorCode.INVITATION_NOT_PENDING,
        "Only a pending invitation can be revoked or sent again.",
        "invitationId",
    )
    assert await _state() == before


@pytest.mark.parametrize("token", ["", "forged", "A" * 43, "x" * 300])
async def test_inv4_a_forged_token_is_refused(services: Services, token: str) -> None:
    org = await _org(services)
    await _invite(services, org.legal, org, "newcomer@example.test")
    before = await _state()

    error = await _refused(_accept_new(services, token))

    assert _invalid(error) == INVALID
    assert await _state() == before


async def test_inv4_resending_issues_a_new_token_and_a_new_week(
    services: Services, clock: ManualClock
) -> None:
    org = await _org(services)
    invitation, old_token = await _invite(services, org.legal, org, "newcomer@example.test")
    clock.advance(timedelta(days=6))

    resent = await invitations.resend_invitation(services, RequestMeta(), org.admin, invitation.id)

    new_token = await _token_sent_to("newcomer@example.test")
    stored = await Invitation.get(id=invitation.id)
    event = await ActivityEvent.get(type="invitation.resent")
    assert new_token != old_token
    assert (stored.send_count, resent.invitation.send_count) == (2, 2)
    assert stored.expires_at == services.clock.now() + timedelta(days=7)
    assert stored.last_sent_at == services.clock.now()
    assert await OutboxMessage.filter(recipient="newcomer@example.test").count() == 2
    assert event.data["send_count"] == 2
    assert _invalid(await _refused(_accept_new(services, old_token))) == INVALID
    clock.advance(timedelta(days=6))  # past the first week, within the second
    assert (await _accept_new(services, new_token)).session is not None


async def test_inv4_resending_an_expired_invitation_revives_it(
    services: Services, clock: ManualClock
) -> None:
    org = await _org(services)
    invitation, _ = await _invite(services, org.legal, org, "late@example.test")
    clock.advance(timedelta(days=10))

    await invitations.resend_invitation(services, RequestMeta(), org.legal, invitation.id)

    token = await _token_sent_to("late@example.test")
    assert (await _accept_new_as(services, token, "late")).session is not None


async def _accept_new_as(services: Services, token: str, name: str) -> invitations.Accepted:
    return await invitations.accept_invitation(
        services,
        RequestMeta(),
        _anonymous(),
        token=token,
        password=NEWCOMER_PASSWORD,
        display_name=name,
    )


async def test_inv4_resending_is_throttled_per_invitation(services: Services) -> None:
    org = await _org(services)
    invitation, _ = await _invite(services, org.legal, org, "inbox@example.test")
    for _ in range(invitations.RESENDS_PER_INVITATION.limit):
        await invitations.resend_invitation(services, RequestMeta(), org.legal, invitation.id)
    before = await _state()

    error = await _refused(
        invitations.resend_invitation(services, RequestMeta(), org.legal, invitation.id)
    )

    assert error.code == ErrorCode.TOO_MANY_ATTEMPTS
    assert await _state() == before


async def test_inv1_revoke_and_resend_follow_the_invitation_rules(services: Services) -> None:
    org = await _org(services)
    heir, _ = await _invite(
        services, org.legal, org, "heir@example.test", role=Role.LEGAL_REPRESENTATIVE
    )
    other = await factories.sign_up(services, email="outsider@example.test")
    outsider = await factories.signed_in_scope(services, "outsider@example.test")
    assert other.organisation.id != org.organisation.id
    before = await _state()

    refusals = [
        _error(await _refused(operation(services, RequestMeta(), scope, invitation_id)))
        for operation in (invitations.revoke_invitation, invitations.resend_invitation)
        for scope, invitation_id in (
            (org.admin, heir.id),
            (org.collaborator, heir.id),
            (outsider, heir.id),
            (org.legal, 999_999),
            (_anonymous(), heir.id),
        )
    ]

    assert refusals == 2 * [
        (ErrorCode.FORBIDDEN, None),
        (ErrorCode.FORBIDDEN, None),
        (ErrorCode.NOT_FOUND, "invitationId"),
        (ErrorCode.NOT_FOUND, "invitationId"),
        (ErrorCode.UNAUTHENTICATED, None),
    ]
    assert await _state() == before


# --- existing users: accept, make current, decline (INV-3, ORG-2) ------------------------------


async def _existing_user_invited(
    services: Services, org: Org, role: Role = Role.COLLABORATOR
) -> tuple[RequestScope, Invitation, str, int]:
    own = await factories.sign_up(services, email="known@example.test", name="Known Person")
    scope = await factories.signed_in_scope(services, "known@example.test")
    invitation, token = await _invite(services, org.admin, org, "known@example.test", role=role)
    return scope, invitation, token, own.organisation.id


@pytest.mark.parametrize("make_current", [True, False])
async def test_inv3_org2_signed_in_invitee_joins_and_may_make_it_current(
    services: Services, make_current: bool
) -> None:
    org = await _org(services)
    scope, invitation, token, own_organisation_id = await _existing_user_invited(services, org)
    sessions_before = await Session.all().count()

    accepted = await invitations.accept_invitation(
        services, RequestMeta(), scope, token=token, make_current=make_current
    )

    user = await User.get(email="known@example.test")
    assert accepted.session is None
    assert await Session.all().count() == sessions_before
    assert (accepted.membership.organisation_id, accepted.membership.role) == (
        org.organisation.id,
        Role.COLLABORATOR,
    )
    assert await Membership.filter(user_id=user.id).count() == 2
    assert user.current_organisation_id == (
        org.organisation.id if make_current else own_organisation_id
    )
    assert (await Invitation.get(id=invitation.id)).status == InvitationStatus.ACCEPTED
    assert await ActivityEvent.filter(type="member.joined", subject_id=user.id).count() == 1


@pytest.mark.parametrize("make_current", [True, False])
async def test_org2_inv3_accepting_with_make_current_records_the_switch(
    services: Services, make_current: bool
) -> None:
    org = await _org(services)
    scope, _, token, own_organisation_id = await _existing_user_invited(services, org)

    await invitations.accept_invitation(
        services, RequestMeta(ip="198.51.100.7"), scope, token=token, make_current=make_current
    )

    user_id = scope.actor.user_id
    switched = await ActivityEvent.filter(type="organisation.switched", subject_id=user_id)
    expected = [
        (
            user_id,
            "198.51.100.7",
            {
                "organisation_id": org.organisation.id,
                "previous_organisation_id": own_organisation_id,
            },
        )
    ]
    assert [(e.actor_id, e.ip, e.data) for e in switched] == (expected if make_current else [])


async def test_inv3_an_existing_account_must_be_signed_in_as_the_invitee(
    services: Services,
) -> None:
    org = await _org(services)
    _, _, token, _ = await _existing_user_invited(services, org)
    await factories.sign_up(services, email="someone.else@example.test")
    someone_else = await factories.signed_in_scope(services, "someone.else@example.test")
    before = await _state()

    anonymous = await _refused(
        invitations.accept_invitation(
            services,
            RequestMeta(),
            _anonymous(),
            token=token,
            password=NEWCOMER_PASSWORD,
            display_name="Impostor",
        )
    )
    wrong_account = await _refused(
        invitations.accept_invitation(services, RequestMeta(), someone_else, token=token)
    )
    fellow_member = await _refused(
        invitations.accept_invitation(services, RequestMeta(), org.legal, token=token)
    )

    assert (anonymous.code, anonymous.message) == (
        ErrorCode.UNAUTHENTICATED,
        "Sign in with the invited account to accept.",
    )
    assert _invalid(wrong_account) == INVALID
    assert _invalid(fellow_member) == INVALID
    assert await _state() == before


async def test_inv3_act1_declining_answers_the_invitation_for_good(services: Services) -> None:
    org = await _org(services)
    scope, invitation, token, _ = await _existing_user_invited(services, org)

    await invitations.decline_invitation(services, RequestMeta(), scope, token)
    before = await _state()
    error = await _refused(
        invitations.accept_invitation(services, RequestMeta(), scope, token=token)
    )

    event = await ActivityEvent.get(type="invitation.declined")
    assert (await Invitation.get(id=invitation.id)).status == InvitationStatus.DECLINED
    assert (event.actor_id, event.subject_email, event.organisation_id) == (
        scope.actor.user_id,
        "known@example.test",
        org.organisation.id,
    )
    assert _invalid(error) == INVALID
    assert await _state() == before


async def test_inv4_a_concurrent_double_accept_makes_exactly_one_membership(
    services: Services,
) -> None:
    org = await _org(services)
    scope, invitation, token, _ = await _existing_user_invited(services, org)

    results = await asyncio.gather(
        invitations.accept_invitation(services, RequestMeta(), scope, token=token),
        invitations.accept_invitation(services, RequestMeta(), scope, token=token),
        return_exceptions=True,
    )

    user = await User.get(email="known@example.test")
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], DomainError), results
    assert errors[0].code in (ErrorCode.INVITATION_INVALID, ErrorCode.ALREADY_MEMBER)
    assert (
        await Membership.filter(user_id=user.id, organisation_id=org.organisation.id).count() == 1
    )
    assert await ActivityEvent.filter(type="member.joined", subject_id=user.id).count() == 1
    assert (await Invitation.get(id=invitation.id)).status == InvitationStatus.ACCEPTED


async def test_inv4_a_concurrent_double_accept_of_a_new_account_makes_one_account(
    services: Services,
) -> None:
    org = await _org(services)
    _, token = await _invite(services, org.legal, org, "newcomer@example.test")

    results = await asyncio.gather(
        _accept_new(services, token), _accept_new(services, token), return_exceptions=True
    )

    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], DomainError), results
    assert errors[0].code in (ErrorCode.INVITATION_INVALID, ErrorCode.EMAIL_UNAVAILABLE)
    assert await User.filter(email="newcomer@example.test").count() == 1
    assert await Membership.filter(organisation_id=org.organisation.id).count() == 5


async def test_inv4_concurrent_invitations_of_one_address_leave_one_pending(
    services: Services,
) -> None:
    """Managers inviting the same address at once (or a double click): one invitation, one
    e-mail, one event; the others are told one is pending."""
    org = await _org(services)

    results = await asyncio.gather(
        *(
            invitations.invite_member(
                services, RequestMeta(), scope, _request(org, "twice@example.test")
            )
            for scope in (org.legal, org.admin) * 4
        ),
        return_exceptions=True,
    )

    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 7, results
    assert {(e.code if isinstance(e, DomainError) else e) for e in errors} == {
        ErrorCode.INVITATION_ALREADY_PENDING
    }
    assert await Invitation.filter(email="twice@example.test").count() == 1
    assert await OutboxMessage.filter(recipient="twice@example.test").count() == 1
    assert await ActivityEvent.filter(type="invitation.sent").count() == 1


async def test_inv1_org6_an_inviter_removed_meanwhile_cannot_invite(services: Services) -> None:
    """The inviter's role is read again under the organisation's lock: a removal that ran
    after the request was authorised, and revoked their invitations, is not undone by it."""
    org = await _org(services)
    admin_membership = await Membership.get(
        organisation_id=org.organisation.id, user_id=org.admin.actor.user_id
    )
    await authz.require_invitation_manager(org.admin, org.organisation.id)  # cached as manager
    await Membership.filter(id=admin_membership.id).update(role=Role.COLLABORATOR)
    before = await _state()

    error = await _refused(
        invitations.invite_member(
            services, RequestMeta(), org.admin, _request(org, "late@example.test")
        )
    )

    assert error.code == ErrorCode.FORBIDDEN
    assert await _state() == before


async def test_inv3_a_member_by_then_gets_already_member(services: Services) -> None:
    org = await _org(services)
    scope, _, token, _ = await _existing_user_invited(services, org)
    user = await User.get(email="known@example.test")
    await Membership.create(
        organisation_id=org.organisation.id,
        user_id=user.id,
        role=Role.EXTERNAL,
        created_at=services.clock.now(),
    )
    before = await _state()

    error = await _refused(
        invitations.accept_invitation(services, RequestMeta(), scope, token=token)
    )

    assert _error(error) == (ErrorCode.ALREADY_MEMBER, None)
    assert await _state() == before


# --- the managers' list (INV-4) ------------------------------------------------------------------


async def test_inv4_managers_list_invitations_with_their_status(
    services: Services, clock: ManualClock
) -> None:
    org = await _org(services)
    lapsed, _ = await _invite(services, org.legal, org, "lapsed@example.test")
    clock.advance(timedelta(days=8))
    pending, _ = await _invite(services, org.legal, org, "pending@example.test")
    revoked, _ = await _invite(services, org.legal, org, "revoked@example.test")
    await invitations.revoke_invitation(services, RequestMeta(), org.legal, revoked.id)

    async def listed(status: InvitationStatus | None) -> list[tuple[str, InvitationStatus]]:
        page = await invitations.organisation_invitations(
            services, org.admin, org.organisation.id, first=10, after_id=None, status=status
        )
        return [(view.invitation.email, view.status) for view in page.items]

    everything = await listed(None)
    only_expired = await listed(InvitationStatus.EXPIRED)
    only_pending = await listed(InvitationStatus.PENDING)
    counts = [
        await invitations.count_organisation_invitations(services, org.organisation.id, status)
        for status in (None, InvitationStatus.EXPIRED, InvitationStatus.PENDING)
    ]
    forbidden = await _refused(
        invitations.organisation_invitations(
            services, org.collaborator, org.organisation.id, first=10, after_id=None, status=None
        )
    )

    assert everything == [
        ("revoked@example.test", InvitationStatus.REVOKED),
        ("pending@example.test", InvitationStatus.PENDING),
        ("lapsed@example.test", InvitationStatus.EXPIRED),
    ]
    assert only_expired == [("lapsed@example.test", InvitationStatus.EXPIRED)]
    assert only_pending == [("pending@example.test", InvitationStatus.PENDING)]
    assert counts == [3, 1, 1]
    assert _error(forbidden) == (ErrorCode.FORBIDDEN, None)
    assert (pending.id, lapsed.id) != (0, 0)
