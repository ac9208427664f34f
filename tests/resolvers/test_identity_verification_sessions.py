"""REC-2: reviewing a case can hand any account to a contact the agent types in, so it is done
from the agent's web session only. An app password (MFA-6) is one factor kept in a sync tool's
settings: it must not list cases nor approve one."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import pytest

from gardien.models.enums import CaseStatus, SessionKind
from gardien.models.outbox import OutboxMessage
from gardien.models.recovery import IdentityVerificationCase
from gardien.resolvers import app_passwords, identity_verification, sessions, support
from gardien.resolvers.authz import Actor
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from tests import factories

pytestmark = pytest.mark.usefixtures("database")

META = RequestMeta(ip="198.51.100.30", country="CH", device="pytest")
AGENT = "agent@gardien.example"
OWNER = "lost.owner@example.ch"
CONTACT = "someone.else@example.org"


async def _refused(call: Awaitable[Any]) -> DomainError:
    with pytest.raises(DomainError) as caught:
        await call
    return caught.value


async def _agent_app_session(services: Services) -> Actor:
    """The agent's sync tool: an app password minted from the agent's web session."""
    signed_up = await factories.sign_up(services, email=AGENT, name="Sam Support")
    await support.set_support_agent(services, AGENT, agent=True)
    web = (await factories.signed_in_scope(services, AGENT)).actor
    await factories.confirm_totp(services, signed_up.user)
    created = await app_passwords.create(services, META, web, label="Thunderbird")
    issued = await app_passwords.authenticate_app(
        services, META, login=AGENT, app_password=created.secret
    )
    actor = await sessions.authenticate(services, issued.token)
    assert actor is not None and actor.session is not None
    assert actor.session.kind == SessionKind.APP
    return actor


async def test_rec2_an_agents_app_password_neither_lists_nor_approves_cases(
    services: Services,
) -> None:
    await factories.sign_up(services, email=OWNER)
    app = await _agent_app_session(services)
    await identity_verification.request_identity_verification(
        services, META, login=OWNER, contact_email=CONTACT, details="It is me, trust me"
    )
    case = await IdentityVerificationCase.get(login=OWNER)

    listed = await _refused(
        identity_verification.cases(services, META, app, status=None, first=None, after_id=None)
    )
    reviewed = await _refused(
        identity_verification.review(
            services, META, app, case_id=case.id, approve=True, contact_email=CONTACT
        )
    )

    assert (listed.code, reviewed.code) == (ErrorCode.FORBIDDEN, ErrorCode.FORBIDDEN)
    unchanged = await IdentityVerificationCase.get(id=case.id)
    assert (unchanged.status, unchanged.reset_token_hash) == (CaseStatus.OPEN, None)
    assert not await OutboxMessage.filter(recipient=CONTACT).exists()
