"""What a member made with powers they lose ends when they lose them, for good: service accounts,
personal tokens restricted to the organisation, pending invitations (API-6, INV-1, ORG-6)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest

from gardien.mail.templates import links_in
from gardien.models.activity import ActivityEvent
from gardien.models.enums import InvitationStatus, Role
from gardien.models.invitations import Invitation
from gardien.models.organisations import Membership, Organisation
from gardien.models.outbox import OutboxMessage
from gardien.models.sessions import ApiToken
from gardien.resolvers import invitations, members, tokens
from gardien.resolvers.authz import Actor, RequestScope
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.invitations import InviteRequest
from gardien.resolvers.services import RequestMeta, Services
from tests import factories

pytestmark = pytest.mark.usefixtures("database")


@dataclass
class Org:
    organisation: Organisation
    legal: RequestScope
    admin: RequestScope
    other_admin: RequestScope
    admin_membership: Membership


async def _org(services: Services) -> Org:
    legal = await factories.sign_up(services, email="legal@example.test", name="Anna Legal")
    organisation = legal.organisation
    admin = await factories.add_member(services, organisation, Role.ADMINISTRATOR, "adm@x.test")
    await factories.add_member(services, organisation, Role.ADMINISTRATOR, "adm2@x.test")
    return Org(
        organisation=organisation,
        legal=await factories.signed_in_scope(services, "legal@example.test"),
        admin=await factories.signed_in_scope(services, "adm@x.test"),
        other_admin=await factories.signed_in_scope(services, "adm2@x.test"),
        admin_membership=admin.membership,
    )


async def _service_account(
    services: Services, scope: RequestScope, organisation: Organisation
) -> tokens.IssuedToken:
    return await tokens.create_service_account(
        services,
        RequestMeta(),
        scope,
        organisation.id,
        name="HR sync",
        role=Role.ADMINISTRATOR,
        scopes=["members:read"],
    )


async def _personal_token(
    services: Services, scope: RequestScope, organisation: Organisation | None
) -> tokens.IssuedToken:
    return await tokens.create_personal_access_token(
        services,
        RequestMeta(),
        scope,
        label="Script",
        scopes=["members:read"],
        organisation_id=organisation.id if organisation is not None else None,
    )


async def _works(services: Services, issued: tokens.IssuedToken) -> bool:
    return await tokens.authenticate(services, RequestMeta(), issued.secret) is not None


async def _readmit(organisation: Organisation, user_id: int | None, role: Role) -> None:
    assert user_id is not None
    await Membership.create(
        organisation=organisation, user_id=user_id, role=role, created_at=organisation.created_at
    )


async def _revoked(*issued: tokens.IssuedToken) -> list[bool]:
    return [(await ApiToken.get(id=i.token.id)).revoked_at is not None for i in issued]


async def test_api6_org6_removing_a_creator_revokes_their_service_accounts_and_tokens_for_good(
    services: Services,
) -> None:
    org = await _org(services)
    account = await _service_account(services, org.admin, org.organisation)
    restricted = await _personal_token(services, org.admin, org.organisation)
    unrestricted = await _personal_token(services, org.admin, None)
    others = await _service_account(services, org.other_admin, org.organisation)

    await members.remove_member(
        services, RequestMeta(ip="198.51.100.4"), org.legal, org.admin_membership.id
    )
    await _readmit(org.organisation, org.admin.actor.user_id, Role.ADMINISTRATOR)

    assert await _revoked(account, restricted, unrestricted, others) == [
        True,
        True,
        False,
        False,
    ]
    assert [await _works(services, i) for i in (account, restricted, unrestricted, others)] == [
        False,
        False,
        True,
        True,
    ]
    events = await ActivityEvent.filter(
        type__in=["service_account.revoked", "token.revoked"]
    ).order_by("id")
    assert [
        (e.type, e.actor_id, e.subject_id, e.organisation_id, e.ip, e.data) for e in events
    ] == [
        (
            "service_account.revoked",
            org.legal.actor.user_id,
            org.admin.actor.user_id,
            org.organisation.id,
            "198.51.100.4",
            {"token_id": account.token.id, "name": "HR sync", "reason": "member.removed"},
        ),
        (
            "token.revoked",
            org.legal.actor.user_id,
            org.admin.actor.user_id,
            org.organisation.id,
            "198.51.100.4",
            {"token_id": restricted.token.id, "label": "Script", "reason": "member.removed"},
        ),
    ]


async def test_api6_org6_demoting_a_creator_below_manager_ends_their_service_accounts_only(
    services: Services,
) -> None:
    org = await _org(services)
    account = await _service_account(services, org.admin, org.organisation)
    restricted = await _personal_token(services, org.admin, org.organisation)

    await members.change_member_role(
        services, RequestMeta(), org.legal, org.admin_membership.id, Role.COLLABORATOR
    )
    await members.change_member_role(
        services, RequestMeta(), org.legal, org.admin_membership.id, Role.ADMINISTRATOR
    )

    # The personal token acts with its owner's role of the moment: it lives on.
    assert await _revoked(account, restricted) == [True, False]
    assert [await _works(services, i) for i in (account, restricted)] == [False, True]
    event = await ActivityEvent.get(type="service_account.revoked")
    assert (event.actor_id, event.subject_id, event.data["reason"]) == (
        org.legal.actor.user_id,
        org.admin.actor.user_id,
        "member.role_changed",
    )


async def test_api6_org6_a_legal_representative_made_administrator_keeps_service_accounts(
    services: Services,
) -> None:
    org = await _org(services)
    await factories.add_member(services, org.organisation, Role.LEGAL_REPRESENTATIVE, "l2@x.test")
    second_legal = await factories.signed_in_scope(services, "l2@x.test")
    account = await _service_account(services, org.legal, org.organisation)
    legal_membership = await Membership.get(
        organisation_id=org.organisation.id, user_id=org.legal.actor.user_id
    )

    await members.change_member_role(
        services, RequestMeta(), second_legal, legal_membership.id, Role.ADMINISTRATOR
    )

    assert await _revoked(account) == [False]
    assert await _works(services, account)
    assert not await ActivityEvent.exists(type="service_account.revoked")


async def test_api6_org6_leaving_revokes_personal_tokens_restricted_to_the_organisation(
    services: Services,
) -> None:
    org = await _org(services)
    await factories.add_member(services, org.organisation, Role.EXTERNAL, "ext@x.test")
    external = await factories.signed_in_scope(services, "ext@x.test")
    restricted = await _personal_token(services, external, org.organisation)
    unrestricted = await _personal_token(services, external, None)

    await members.leave_organisation(services, RequestMeta(), external, org.organisation.id)
    await _readmit(org.organisation, external.actor.user_id, Role.EXTERNAL)

    assert await _revoked(restricted, unrestricted) == [True, False]
    assert not await _works(services, restricted)
    event = await ActivityEvent.get(type="token.revoked")
    assert (event.actor_id, event.subject_id, event.data) == (
        external.actor.user_id,
        external.actor.user_id,
        {"token_id": restricted.token.id, "label": "Script", "reason": "member.left"},
    )


# --- invitations (INV-1) -------------------------------------------------------------------------


async def _invite(
    services: Services, scope: RequestScope, org: Org, email: str, role: Role
) -> tuple[Invitation, str]:
    view = await invitations.invite_member(
        services,
        RequestMeta(),
        scope,
        InviteRequest(organisation_id=org.organisation.id, email=email, role=role),
    )
    message = await OutboxMessage.filter(recipient=email).order_by("-id").first()
    assert message is not None
    (link,) = links_in(message.payload["text"])
    (token,) = parse_qs(urlsplit(link).fragment.partition("?")[2])["token"]
    return view.invitation, token


async def _statuses(*pending: Invitation) -> list[InvitationStatus]:
    return [(await Invitation.get(id=i.id)).status for i in pending]


async def test_inv1_org6_removing_an_inviter_revokes_their_pending_invitations(
    services: Services,
) -> None:
    org = await _org(services)
    theirs, token = await _invite(services, org.admin, org, "new@x.test", Role.ADMINISTRATOR)
    also_theirs, _ = await _invite(services, org.admin, org, "new2@x.test", Role.EXTERNAL)
    others, _ = await _invite(services, org.other_admin, org, "new3@x.test", Role.ADMINISTRATOR)

    await members.remove_member(services, RequestMeta(), org.legal, org.admin_membership.id)

    assert await _statuses(theirs, also_theirs, others) == [
        InvitationStatus.REVOKED,
        InvitationStatus.REVOKED,
        InvitationStatus.PENDING,
    ]
    events = await ActivityEvent.filter(type="invitation.revoked").order_by("id")
    assert [(e.actor_id, e.subject_email, e.data) for e in events] == [
        (
            org.legal.actor.user_id,
            "new@x.test",
            {"invitation_id": theirs.id, "role": "ADMINISTRATOR", "reason": "member.removed"},
        ),
        (
            org.legal.actor.user_id,
            "new2@x.test",
            {"invitation_id": also_theirs.id, "role": "EXTERNAL", "reason": "member.removed"},
        ),
    ]
    with pytest.raises(DomainError) as refused:
        await invitations.accept_invitation(
            services,
            RequestMeta(),
            RequestScope(Actor()),
            token=token,
            password="lantern over the river",
            display_name="New Person",
        )
    assert refused.value.code == ErrorCode.INVITATION_INVALID


async def test_inv1_org6_demoting_an_inviter_revokes_only_invitations_beyond_their_new_role(
    services: Services,
) -> None:
    org = await _org(services)
    await factories.add_member(services, org.organisation, Role.LEGAL_REPRESENTATIVE, "l2@x.test")
    second_legal = await factories.signed_in_scope(services, "l2@x.test")
    as_legal, _ = await _invite(services, org.legal, org, "heir@x.test", Role.LEGAL_REPRESENTATIVE)
    as_admin, _ = await _invite(services, org.legal, org, "adm3@x.test", Role.ADMINISTRATOR)
    by_admin, _ = await _invite(services, org.admin, org, "c@x.test", Role.COLLABORATOR)
    legal_membership = await Membership.get(
        organisation_id=org.organisation.id, user_id=org.legal.actor.user_id
    )

    await members.change_member_role(
        services, RequestMeta(), second_legal, legal_membership.id, Role.ADMINISTRATOR
    )
    await members.change_member_role(
        services, RequestMeta(), second_legal, org.admin_membership.id, Role.COLLABORATOR
    )

    assert await _statuses(as_legal, as_admin, by_admin) == [
        InvitationStatus.REVOKED,
        InvitationStatus.PENDING,
        InvitationStatus.REVOKED,
    ]
    revoked = await ActivityEvent.filter(type="invitation.revoked").order_by("id")
    assert [(e.data["invitation_id"], e.data["reason"]) for e in revoked] == [
        (as_legal.id, "member.role_changed"),
        (by_admin.id, "member.role_changed"),
    ]
