"""An invitation over real SMTP: it arrives in the recipient's language, and the token in its link
accepts it (INV-2, INV-3, PRO-1, OPS-6)."""

from __future__ import annotations

from email.message import EmailMessage
from urllib.parse import parse_qs, urlsplit

import pytest

from gardien.mail.templates import links_in
from gardien.models.enums import Role
from gardien.models.organisations import Membership
from gardien.resolvers import invitations
from gardien.resolvers.authz import Actor, RequestScope
from gardien.resolvers.invitations import InviteRequest
from gardien.resolvers.services import RequestMeta, Services
from tests import factories
from tests.gardien.mail.conftest import SmtpTestServer, make_worker

pytestmark = pytest.mark.usefixtures("database")


def _text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def _token(text: str) -> str:
    (link,) = [link for link in links_in(text) if "/invitations/accept" in link]
    (token,) = parse_qs(urlsplit(link).fragment.partition("?")[2])["token"]
    return token


async def test_inv2_pro1_ops6_new_account_invitation_arrives_in_german_and_its_link_accepts(
    services: Services, smtp_server: SmtpTestServer
) -> None:
    legal = await factories.sign_up(services, email="legal@example.test", name="Anna Legal")
    legal.user.language = "de"
    await legal.user.save(update_fields=["language"])
    scope = await factories.signed_in_scope(services, "legal@example.test")
    await invitations.invite_member(
        services,
        RequestMeta(),
        scope,
        InviteRequest(legal.organisation.id, "neu@example.test", Role.COLLABORATOR),
    )

    delivered = await make_worker(services, smtp_server.url).drain()

    (message,) = smtp_server.messages
    text = _text(message)
    accepted = await invitations.accept_invitation(
        services,
        RequestMeta(),
        RequestScope(Actor()),
        token=_token(text),
        password="lantern over the river",
        display_name="Neu Person",
    )
    assert delivered == 1
    assert message["To"] == "neu@example.test"
    assert message["Subject"] == "Anna Legal lädt Sie zu Anna Legal ein"
    assert "als Mitarbeiter" in text
    assert accepted.membership.organisation_id == legal.organisation.id
    assert accepted.session is not None


async def test_inv3_pro1_join_invitation_arrives_in_the_invitees_italian_and_its_link_accepts(
    services: Services, smtp_server: SmtpTestServer
) -> None:
    legal = await factories.sign_up(services, email="legal@example.test", name="Anna Legal")
    known = await factories.sign_up(services, email="noto@example.test", name="Noto")
    known.user.language = "it"
    await known.user.save(update_fields=["language"])
    inviter = await factories.signed_in_scope(services, "legal@example.test")
    await invitations.invite_member(
        services,
        RequestMeta(),
        inviter,
        InviteRequest(legal.organisation.id, "noto@example.test", Role.EXTERNAL),
    )

    await make_worker(services, smtp_server.url).drain()

    (message,) = smtp_server.messages
    invitee = await factories.signed_in_scope(services, "noto@example.test")
    accepted = await invitations.accept_invitation(
        services, RequestMeta(), invitee, token=_token(_text(message)), make_current=True
    )
    assert "esterno" in _text(message)
    assert message["Subject"] == "Anna Legal vi invita a unirvi a Anna Legal"
    assert accepted.session is None
    assert await Membership.exists(
        organisation_id=legal.organisation.id, user_id=known.user.id, role=Role.EXTERNAL
    )
