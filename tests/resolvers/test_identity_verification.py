"""No recovery option left (REC-2): a case opened by anyone, reviewed by support agents only,
and a one-time link that sets a new password."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from gardien.clock import ManualClock
from gardien.mail.templates import Template, links_in
from gardien.models.activity import ActivityEvent
from gardien.models.enums import CaseStatus
from gardien.models.outbox import OutboxMessage
from gardien.models.recovery import IdentityVerificationCase
from gardien.models.sessions import Session
from gardien.models.users import User
from gardien.resolvers import identity_verification, sessions, support
from gardien.resolvers.authz import Actor
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.security import verify_password
from tests import factories
from tests.conftest import GraphQLClient

pytestmark = pytest.mark.usefixtures("database")

META = RequestMeta(ip="198.51.100.30", country="CH", device="pytest")
OWNER = "lost.owner@example.ch"
CONTACT = "lost.owner.new@example.org"
NEW_PASSWORD = "granite harbour at dawn"


async def _refused(call: Awaitable[Any]) -> DomainError:
    with pytest.raises(DomainError) as caught:
        await call
    return caught.value


async def _actor(services: Services, email: str) -> Actor:
    return (await factories.signed_in_scope(services, email)).actor


async def _agent(services: Services) -> Actor:
    await factories.sign_up(services, email="agent@gardien.example", name="Sam Support")
    await support.set_support_agent(services, "agent@gardien.example", agent=True)
    return await _actor(services, "agent@gardien.example")


async def _open_case(services: Services, login: str | None = OWNER) -> IdentityVerificationCase:
    await identity_verification.request_identity_verification(
        services, META, login=login, contact_email=CONTACT, details="Invoice 2024-117, IBAN CH93"
    )
    case = await IdentityVerificationCase.all().order_by("-id").first()
    assert case is not None
    return case


def _token_of(message: OutboxMessage) -> str:
    (link,) = links_in(message.payload["text"])
    (token,) = parse_qs(urlsplit(link).fragment.split("?", 1)[1])["token"]
    return token


REQUEST_CASE = """
mutation($input: RequestIdentityVerificationInput!) {
  requestIdentityVerification(input: $input) { errors { code message field } }
}
"""


async def test_rec2_case_opens_the_same_way_for_known_and_unknown_login(
    services: Services, gql: GraphQLClient
) -> None:
    owner = await factories.sign_up(services, email=OWNER)

    answers = [
        await gql(
            REQUEST_CASE,
            {"input": {"login": login, "contactEmail": CONTACT, "details": "It is me."}},
        )
        for login in (OWNER, "nobody@example.ch")
    ]

    cases = await IdentityVerificationCase.all().order_by("id")
    assert answers[0] == answers[1] == {"data": {"requestIdentityVerification": {"errors": []}}}
    assert [(c.user_id, c.login, c.status) for c in cases] == [
        (owner.user.id, OWNER, CaseStatus.OPEN),
        (None, "nobody@example.ch", CaseStatus.OPEN),
    ]
    assert await OutboxMessage.all().count() == 0


async def test_rec2_bad_input_is_typed_and_opens_nothing(services: Services) -> None:
    refusals = [
        await _refused(
            identity_verification.request_identity_verification(
                services, META, login=OWNER, contact_email="not-an-address", details="x"
            )
        ),
        await _refused(
            identity_verification.request_identity_verification(
                services, META, login=OWNER, contact_email=CONTACT, details="   "
            )
        ),
        await _refused(
            identity_verification.request_identity_verification(
                services, META, login=OWNER, contact_email=CONTACT, details="a\x00b"
            )
        ),
    ]

    assert [(r.code, r.field) for r in refusals] == [
        (ErrorCode.INVALID_INPUT, "contactEmail"),
        (ErrorCode.INVALID_INPUT, "details"),
        (ErrorCode.INVALID_INPUT, "details"),
    ]
    assert await IdentityVerificationCase.all().count() == 0


async def test_rec2_cases_limited_per_ip(services: Services) -> None:
    for n in range(identity_verification.CASES_PER_IP.limit):
        await _open_case(services, login=f"owner{n}@example.ch")

    refused = await _refused(_open_case(services, login="one.more@example.ch"))

    assert refused.code is ErrorCode.TOO_MANY_ATTEMPTS
    assert await IdentityVerificationCase.all().count() == identity_verification.CASES_PER_IP.limit


@pytest.mark.parametrize(
    "login", [OWNER, "nobody@example.ch", None], ids=["known", "unknown", "none"]
)
async def test_rec2_cases_limited_per_login_from_any_address(
    services: Services, login: str | None
) -> None:
    """Per login named, or per contact address when there is none; a known and an unknown login
    are refused alike, so the limit tells nothing about accounts."""
    await factories.sign_up(services, email=OWNER)
    for n in range(identity_verification.CASES_PER_LOGIN.limit):
        await identity_verification.request_identity_verification(
            services,
            RequestMeta(ip=f"203.0.113.{n}", country="CH", device="pytest"),
            login=login,
            contact_email=CONTACT,
            details="Invoice 2024-117",
        )

    refused = await _refused(
        identity_verification.request_identity_verification(
            services,
            RequestMeta(ip="203.0.113.99", country="CH", device="pytest"),
            login=login,
            contact_email=CONTACT,
            details="Invoice 2024-117",
        )
    )

    assert (refused.code, refused.field) == (ErrorCode.TOO_MANY_ATTEMPTS, None)
    assert (
        await IdentityVerificationCase.all().count() == identity_verification.CASES_PER_LOGIN.limit
    )
    # Another login is still heard.
    await _open_case(services, login="someone.else@example.ch")
    assert (
        await IdentityVerificationCase.all().count()
        == identity_verification.CASES_PER_LOGIN.limit + 1
    )


async def test_rec2_non_agent_can_neither_list_nor_review_and_is_recorded(
    services: Services,
) -> None:
    await factories.sign_up(services, email=OWNER)
    case = await _open_case(services)
    await factories.sign_up(services, email="curious@example.ch")
    curious = await _actor(services, "curious@example.ch")

    listed = await _refused(
        identity_verification.cases(services, META, curious, status=None, first=None, after_id=None)
    )
    reviewed = await _refused(
        identity_verification.review(
            services, META, curious, case_id=case.id, approve=True, contact_email=CONTACT
        )
    )

    assert (listed.code, reviewed.code) == (ErrorCode.FORBIDDEN, ErrorCode.FORBIDDEN)
    unchanged = await IdentityVerificationCase.get(id=case.id)
    assert (unchanged.status, unchanged.reset_token_hash) == (CaseStatus.OPEN, None)
    refusals = await ActivityEvent.filter(type="recovery.identity_verification_review_refused")
    assert [e.actor_id for e in refusals] == [curious.user_id] * 2
    assert await OutboxMessage.all().count() == 0


async def test_rec2_agent_lists_open_cases(services: Services) -> None:
    agent = await _agent(services)
    first = await _open_case(services)
    second = await _open_case(services, login=None)
    await identity_verification.review(
        services, META, agent, case_id=first.id, approve=False, contact_email=None
    )

    open_cases = await identity_verification.cases(
        services, META, agent, status=CaseStatus.OPEN, first=10, after_id=None
    )
    every_case = await identity_verification.cases(
        services, META, agent, status=None, first=1, after_id=None
    )

    assert [c.id for c in open_cases.page.items] == [second.id]
    assert await open_cases.count() == 1
    assert [c.id for c in every_case.page.items] == [first.id]
    assert every_case.page.has_next_page and await every_case.count() == 2


async def test_rec2_approval_sends_a_one_time_link_that_resets_the_password(
    services: Services, clock: ManualClock
) -> None:
    owner = await factories.sign_up(services, email=OWNER)
    agent = await _agent(services)
    case = await _open_case(services)

    reviewed = await identity_verification.review(
        services, META, agent, case_id=case.id, approve=True, contact_email=CONTACT
    )
    message = await OutboxMessage.get(template=Template.IDENTITY_VERIFICATION_RESET.value)
    token = _token_of(message)
    clock.advance(timedelta(hours=23))
    await identity_verification.complete_reset(
        services, META, token=token, new_password=NEW_PASSWORD
    )
    reused = await _refused(
        identity_verification.complete_reset(
            services, META, token=token, new_password="another fine sentence"
        )
    )

    assert (reviewed.status, reviewed.reviewed_by_id) == (CaseStatus.APPROVED, agent.user_id)
    assert message.recipient == CONTACT
    user = await User.get(id=owner.user.id)
    assert await verify_password(user.password_hash, NEW_PASSWORD)
    assert await Session.filter(user_id=user.id, revoked_at=None).count() == 0
    assert await sessions.authenticate(services, owner.session.token) is None
    assert (reused.code, reused.field) == (ErrorCode.RESET_LINK_INVALID, "token")
    event = await ActivityEvent.get(type="password.reset")
    assert (event.subject_id, event.data["via"]) == (user.id, "identity_verification")
    reviewed_event = await ActivityEvent.get(type="recovery.identity_verification_reviewed")
    assert (reviewed_event.actor_id, reviewed_event.data["approved"]) == (agent.user_id, True)
    # The token is kept only as a keyed digest.
    assert token not in str((await IdentityVerificationCase.get(id=case.id)).reset_token_hash)


async def test_rec2_link_expires(services: Services, clock: ManualClock) -> None:
    owner = await factories.sign_up(services, email=OWNER)
    agent = await _agent(services)
    case = await _open_case(services)
    await identity_verification.review(
        services, META, agent, case_id=case.id, approve=True, contact_email=CONTACT
    )
    token = _token_of(await OutboxMessage.get(template=Template.IDENTITY_VERIFICATION_RESET.value))

    clock.advance(identity_verification.RESET_LINK_LIFETIME)
    refused = await _refused(
        identity_verification.complete_reset(services, META, token=token, new_password=NEW_PASSWORD)
    )

    assert refused.code is ErrorCode.RESET_LINK_EXPIRED
    assert (await User.get(id=owner.user.id)).password_hash == owner.user.password_hash


async def test_rec2_rejected_case_sends_nothing_and_is_reviewed_once(services: Services) -> None:
    await factories.sign_up(services, email=OWNER)
    agent = await _agent(services)
    case = await _open_case(services)

    rejected = await identity_verification.review(
        services, META, agent, case_id=case.id, approve=False, contact_email=None
    )
    again = await _refused(
        identity_verification.review(
            services, META, agent, case_id=case.id, approve=True, contact_email=CONTACT
        )
    )

    assert rejected.status is CaseStatus.REJECTED
    assert (again.code, again.field) == (ErrorCode.CASE_ALREADY_REVIEWED, "caseId")
    assert await OutboxMessage.all().count() == 0


async def test_rec2_approval_needs_a_contact_and_an_account(services: Services) -> None:
    agent = await _agent(services)
    unknown = await _open_case(services, login="nobody@example.ch")

    no_contact = await _refused(
        identity_verification.review(
            services, META, agent, case_id=unknown.id, approve=True, contact_email=None
        )
    )
    no_account = await _refused(
        identity_verification.review(
            services, META, agent, case_id=unknown.id, approve=True, contact_email=CONTACT
        )
    )
    missing = await _refused(
        identity_verification.review(
            services, META, agent, case_id=unknown.id + 99, approve=False, contact_email=None
        )
    )

    assert [(r.code, r.field) for r in (no_contact, no_account)] == [
        (ErrorCode.INVALID_INPUT, "contactEmail"),
        (ErrorCode.INVALID_INPUT, "approve"),
    ]
    assert missing.code is ErrorCode.NOT_FOUND
    assert (await IdentityVerificationCase.get(id=unknown.id)).status is CaseStatus.OPEN
    assert await OutboxMessage.all().count() == 0
