"""Support blocks a user at a manager's verified request, and support agents (BLK-3)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from gardien.models.activity import ActivityEvent
from gardien.models.enums import PlatformRole, Role
from gardien.models.organisations import Membership, Organisation, UserBlock
from gardien.models.sessions import Session
from gardien.models.users import User
from gardien.resolvers import accounts, app_passwords, sessions, support
from gardien.resolvers.authz import Actor
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.resolvers.support import SupportRequest
from tests import factories
from tests.querycount import count_queries

pytestmark = pytest.mark.usefixtures("database")

LEGAL_CODE = "482913"
ADMIN_CODE = "105577"
COLLABORATOR_CODE = "777001"
META_AGENT = RequestMeta(ip="198.51.100.9", country="CH", device="pytest")


@dataclass
class Case:
    organisation: Organisation
    agent: Actor
    target: User
    target_token: str
    legal: User
    request: SupportRequest


async def _signed_in(services: Services, email: str) -> tuple[Actor, str]:
    result = await accounts.sign_in(
        services, RequestMeta(ip="198.51.100.1"), login=email, password=factories.PASSWORD
    )
    assert result.session is not None
    actor = await sessions.authenticate(services, result.session.token)
    assert actor is not None
    return actor, result.session.token


async def _set_code(services: Services, user: User, code: str) -> None:
    user.support_code_encrypted = services.keyring.encrypt(code.encode(), "support-code")
    await user.save(update_fields=["support_code_encrypted"])


async def _case(services: Services) -> Case:
    legal = await factories.sign_up(services, email="legal@example.test")
    organisation = legal.organisation
    admin = await factories.add_member(services, organisation, Role.ADMINISTRATOR, "a@example.test")
    target = await factories.add_member(services, organisation, Role.COLLABORATOR, "t@example.test")
    await _set_code(services, legal.user, LEGAL_CODE)
    await _set_code(services, admin.user, ADMIN_CODE)
    await _set_code(services, target.user, COLLABORATOR_CODE)
    staff = await factories.sign_up(services, email="agent@provider.example")
    await support.set_support_agent(services, "Agent@Provider.example", agent=True)
    agent, _ = await _signed_in(services, "agent@provider.example")
    assert staff.user.id == agent.user_id
    _, token = await _signed_in(services, "t@example.test")
    return Case(
        organisation=organisation,
        agent=agent,
        target=target.user,
        target_token=token,
        legal=legal.user,
        request=SupportRequest(
            organisation_id=organisation.id,
            user_id=target.user.id,
            requester_support_code=ADMIN_CODE,
            justification="Laptop stolen, the administrator called at 10:02.",
        ),
    )


async def _state() -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    return (
        await UserBlock.all().order_by("id").values(),
        await Session.all().order_by("id").values("id", "revoked_at"),
        await ActivityEvent.exclude(type="support.code_rejected").count(),
    )


async def _refused(call: Awaitable[Any]) -> tuple[ErrorCode, str | None]:
    before = await _state()
    with pytest.raises(DomainError) as raised:
        await call
    assert await _state() == before, "a refused operation changed something"
    return raised.value.code, raised.value.field


async def test_blk3_act1_support_block_ends_sessions_and_refuses_web_sign_in(
    services: Services, meta: RequestMeta
) -> None:
    case = await _case(services)

    block = await support.block_user(services, meta, case.agent, case.request)

    assert await sessions.authenticate(services, case.target_token) is None
    assert await Session.filter(user_id=case.target.id, revoked_at=None).count() == 0
    with pytest.raises(DomainError) as refused:
        await accounts.sign_in(services, meta, login="t@example.test", password=factories.PASSWORD)
    assert refused.value.code == ErrorCode.ACCOUNT_BLOCKED
    assert (block.agent_id, block.requested_by_id, block.user_id) == (
        case.agent.user_id,
        (await User.get(email="a@example.test")).id,
        case.target.id,
    )
    event = await ActivityEvent.get(type="user.blocked_by_support")
    assert (event.actor_id, event.subject_id, event.organisation_id) == (
        case.agent.user_id,
        case.target.id,
        case.organisation.id,
    )
    assert event.data == {
        "requested_by": block.requested_by_id,
        "justification": "Laptop stolen, the administrator called at 10:02.",
        "sessions_revoked": 1,
    }


async def test_blk3_act1_unblock_lets_the_user_sign_in_again_but_old_sessions_stay_ended(
    services: Services, meta: RequestMeta
) -> None:
    case = await _case(services)
    await support.block_user(services, meta, case.agent, case.request)

    lifted = await support.unblock_user(
        services, meta, case.agent, replace(case.request, justification="Laptop found.")
    )
    signed_in = await accounts.sign_in(
        services, meta, login="t@example.test", password=factories.PASSWORD
    )

    assert lifted.lifted_at == services.clock.now()
    assert signed_in.session is not None
    assert await sessions.authenticate(services, case.target_token) is None
    event = await ActivityEvent.get(type="user.unblocked_by_support")
    assert event.data["justification"] == "Laptop found."


async def test_blk3_a_block_ends_the_trust_of_every_browser_and_of_sign_ins_under_way(
    services: Services, meta: RequestMeta
) -> None:
    """The block moves the user's credential generation under the row lock it takes before
    revoking: a session that a sign-in verified before the block has not opened yet is not
    opened after it (sessions.session_insert), and a browser's device cookie from before the
    block no longer vouches for it once the block is lifted: trust is earned again."""
    case = await _case(services)
    signed_in = await accounts.sign_in(
        services, meta, login="t@example.test", password=factories.PASSWORD
    )
    verified_before = await User.get(id=case.target.id)

    await support.block_user(services, meta, case.agent, case.request)
    await support.unblock_user(
        services, meta, case.agent, replace(case.request, justification="Laptop found.")
    )

    with pytest.raises(DomainError) as refused:
        await sessions.open_session(services, verified_before, meta, persistent=False)
    assert refused.value.code == ErrorCode.INVALID_CREDENTIALS
    assert await Session.filter(user_id=case.target.id, revoked_at=None).count() == 0
    after = await User.get(id=case.target.id)
    assert after.credential_generation == verified_before.credential_generation + 1
    assert await accounts.trusted_device(services, after, signed_in.device_cookie) is None


async def test_blk3_wrong_support_code_refused_and_recorded(
    services: Services, meta: RequestMeta
) -> None:
    case = await _case(services)

    wrong = await _refused(
        support.block_user(
            services, meta, case.agent, replace(case.request, requester_support_code="000000")
        )
    )

    assert wrong == (ErrorCode.INVALID_SUPPORT_CODE, "requesterSupportCode")
    assert await ActivityEvent.filter(type="support.code_rejected").count() == 1


@pytest.mark.parametrize("code", [COLLABORATOR_CODE, ""])
async def test_blk3_support_code_must_be_a_managers_of_that_organisation(
    services: Services, meta: RequestMeta, code: str
) -> None:
    case = await _case(services)

    refused = await _refused(
        support.block_user(
            services, meta, case.agent, replace(case.request, requester_support_code=code)
        )
    )

    assert refused == (ErrorCode.INVALID_SUPPORT_CODE, "requesterSupportCode")


async def test_blk3_support_code_of_a_manager_of_another_organisation_refused(
    services: Services, meta: RequestMeta
) -> None:
    case = await _case(services)
    other = await factories.sign_up(services, email="other@example.test")
    await _set_code(services, other.user, "999111")

    refused = await _refused(
        support.block_user(
            services, meta, case.agent, replace(case.request, requester_support_code="999111")
        )
    )

    assert refused == (ErrorCode.INVALID_SUPPORT_CODE, "requesterSupportCode")


async def test_blk3_wrong_support_codes_rate_limited_per_agent(
    services: Services, meta: RequestMeta
) -> None:
    case = await _case(services)
    for _ in range(support.SUPPORT_CODE_FAILURES_PER_AGENT.limit):
        await _refused(
            support.block_user(
                services, meta, case.agent, replace(case.request, requester_support_code="1")
            )
        )

    # The right code no longer helps: the budget is spent.
    refused = await _refused(support.block_user(services, meta, case.agent, case.request))

    assert refused == (ErrorCode.TOO_MANY_ATTEMPTS, None)


async def test_blk3_wrong_support_codes_rate_limited_per_organisation(
    services: Services, meta: RequestMeta
) -> None:
    case = await _case(services)
    agents = []
    for index in range(3):
        await factories.sign_up(services, email=f"agent{index}@provider.example")
        await support.set_support_agent(services, f"agent{index}@provider.example", agent=True)
        agents.append((await _signed_in(services, f"agent{index}@provider.example"))[0])
    wrong = replace(case.request, requester_support_code="1")
    for attempt in range(support.SUPPORT_CODE_FAILURES_PER_ORGANISATION.limit):
        await _refused(support.block_user(services, meta, agents[attempt % 3], wrong))

    refused = await _refused(support.block_user(services, meta, case.agent, case.request))

    assert refused == (ErrorCode.TOO_MANY_ATTEMPTS, None)


@pytest.mark.parametrize("justification", ["", "   \n "])
async def test_blk3_justification_is_mandatory(
    services: Services, meta: RequestMeta, justification: str
) -> None:
    case = await _case(services)

    refused = await _refused(
        support.block_user(
            services, meta, case.agent, replace(case.request, justification=justification)
        )
    )

    assert refused == (ErrorCode.INVALID_INPUT, "justification")


async def test_blk3_a_manager_who_is_no_agent_cannot_use_support_operations(
    services: Services, meta: RequestMeta
) -> None:
    case = await _case(services)
    manager, _ = await _signed_in(services, "legal@example.test")

    block = await _refused(support.block_user(services, meta, manager, case.request))
    unblock = await _refused(support.unblock_user(services, meta, manager, case.request))
    anonymous = await _refused(support.block_user(services, meta, Actor(), case.request))

    assert block == unblock == (ErrorCode.FORBIDDEN, None)
    assert anonymous == (ErrorCode.UNAUTHENTICATED, None)


async def test_blk3_unblocking_a_user_not_blocked_is_refused(
    services: Services, meta: RequestMeta
) -> None:
    case = await _case(services)

    refused = await _refused(support.unblock_user(services, meta, case.agent, case.request))
    await support.block_user(services, meta, case.agent, case.request)
    twice = await _refused(support.block_user(services, meta, case.agent, case.request))

    assert refused == (ErrorCode.USER_NOT_BLOCKED, "userId")
    assert twice == (ErrorCode.USER_ALREADY_BLOCKED, "userId")


async def test_blk3_an_administrator_cannot_have_a_legal_representative_blocked(
    services: Services, meta: RequestMeta
) -> None:
    case = await _case(services)

    refused = await _refused(
        support.block_user(services, meta, case.agent, replace(case.request, user_id=case.legal.id))
    )

    assert refused == (ErrorCode.FORBIDDEN, None)


async def test_blk3_user_outside_the_organisation_is_not_found(
    services: Services, meta: RequestMeta
) -> None:
    case = await _case(services)
    other = await factories.sign_up(services, email="other@example.test")

    refused = await _refused(
        support.block_user(services, meta, case.agent, replace(case.request, user_id=other.user.id))
    )

    assert refused == (ErrorCode.NOT_FOUND, "userId")


async def test_blk3_support_agents_granted_listed_and_withdrawn(services: Services) -> None:
    await factories.sign_up(services, email="staff@provider.example")

    granted = await support.set_support_agent(services, "staff@provider.example", agent=True)
    listed = [u.email for u in await support.support_agents()]
    withdrawn = await support.set_support_agent(services, "staff@provider.example", agent=False)

    assert granted.platform_role == PlatformRole.SUPPORT_AGENT
    assert listed == ["staff@provider.example"]
    assert withdrawn.platform_role == PlatformRole.CUSTOMER
    assert await support.support_agents() == []
    assert [e.type for e in await ActivityEvent.filter(type__startswith="support.")] == [
        "support.agent_granted",
        "support.agent_revoked",
    ]
    with pytest.raises(DomainError) as unknown:
        await support.set_support_agent(services, "nobody@provider.example", agent=True)
    assert unknown.value.code == ErrorCode.NOT_FOUND


# --- review findings: removal after a block, concurrency, bulk revocation (BLK-3) ------------


async def test_blk3_a_block_outlives_removal_and_the_organisation_can_still_lift_it(
    services: Services, meta: RequestMeta
) -> None:
    case = await _case(services)
    await support.block_user(services, meta, case.agent, case.request)
    await Membership.filter(organisation_id=case.organisation.id, user_id=case.target.id).delete()

    # Platform-wide: the removed user's web access stays stopped while the block lasts.
    with pytest.raises(DomainError) as refused:
        await accounts.sign_in(services, meta, login="t@example.test", password=factories.PASSWORD)
    lifted = await support.unblock_user(
        services, meta, case.agent, replace(case.request, justification="Left on good terms.")
    )
    signed_in = await accounts.sign_in(
        services, meta, login="t@example.test", password=factories.PASSWORD
    )

    assert refused.value.code == ErrorCode.ACCOUNT_BLOCKED
    assert lifted.lifted_at == services.clock.now()
    assert signed_in.session is not None
    assert not await UserBlock.exists(user_id=case.target.id, lifted_at=None)


async def test_blk3_unblock_of_a_removed_user_still_needs_a_managers_code(
    services: Services, meta: RequestMeta
) -> None:
    case = await _case(services)
    await support.block_user(services, meta, case.agent, case.request)
    await Membership.filter(organisation_id=case.organisation.id, user_id=case.target.id).delete()

    refused = await _refused(
        support.unblock_user(
            services, meta, case.agent, replace(case.request, requester_support_code="000000")
        )
    )

    assert refused == (ErrorCode.INVALID_SUPPORT_CODE, "requesterSupportCode")


async def test_blk3_concurrent_blocks_of_one_user_create_one_block(
    services: Services, meta: RequestMeta
) -> None:
    case = await _case(services)

    results = await asyncio.gather(
        *(support.block_user(services, meta, case.agent, case.request) for _ in range(4)),
        return_exceptions=True,
    )

    codes = sorted(
        r.code.value if isinstance(r, DomainError) else type(r).__name__ for r in results
    )
    assert codes == sorted(["UserBlock"] + [ErrorCode.USER_ALREADY_BLOCKED.value] * 3)
    assert await UserBlock.filter(user_id=case.target.id, lifted_at=None).count() == 1


async def test_blk3_unblock_lifts_every_active_block_of_the_organisation_and_user(
    services: Services, meta: RequestMeta
) -> None:
    case = await _case(services)
    first = await support.block_user(services, meta, case.agent, case.request)
    # A duplicate as left behind by the race this code now prevents.
    await UserBlock.create(
        organisation_id=first.organisation_id,
        user_id=first.user_id,
        requested_by_id=first.requested_by_id,
        agent_id=first.agent_id,
        justification=first.justification,
        created_at=services.clock.now(),
    )

    await support.unblock_user(services, meta, case.agent, case.request)
    signed_in = await accounts.sign_in(
        services, meta, login="t@example.test", password=factories.PASSWORD
    )

    assert await UserBlock.filter(user_id=case.target.id, lifted_at=None).count() == 0
    assert signed_in.session is not None
    assert await ActivityEvent.filter(type="user.unblocked_by_support").count() == 1


async def test_blk3_block_revokes_every_session_in_one_statement(
    services: Services, meta: RequestMeta
) -> None:
    case = await _case(services)
    for _ in range(3):
        await _signed_in(services, "t@example.test")

    with count_queries() as statements:
        await support.block_user(services, meta, case.agent, case.request)

    session_updates = [
        s for s in statements if s.lstrip().upper().startswith("UPDATE") and '"session"' in s
    ]
    assert len(session_updates) == 1, session_updates
    assert await Session.filter(user_id=case.target.id, revoked_at=None).count() == 0
    event = await ActivityEvent.get(type="user.blocked_by_support")
    assert event.data["sessions_revoked"] == 4


async def test_blk3_an_agents_app_password_neither_blocks_nor_unblocks(services: Services) -> None:
    # A block ends someone's access: support's web session only, never an app password (MFA-6).
    case = await _case(services)
    staff = await User.get(email="agent@provider.example")
    await factories.confirm_totp(services, staff)
    created = await app_passwords.create(services, META_AGENT, case.agent, label="Mail app")
    issued = await app_passwords.authenticate_app(
        services, META_AGENT, login=staff.email or "", app_password=created.secret
    )
    app = await sessions.authenticate(services, issued.token)
    assert app is not None

    blocked = await _refused(support.block_user(services, META_AGENT, app, case.request))
    await support.block_user(services, META_AGENT, case.agent, case.request)
    unblocked = await _refused(support.unblock_user(services, META_AGENT, app, case.request))

    assert (blocked, unblocked) == ((ErrorCode.FORBIDDEN, None), (ErrorCode.FORBIDDEN, None))
