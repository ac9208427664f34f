"""Support: agents block and unblock a user at a manager's verified request (BLK-3); agents are
granted from the command line only."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import timedelta

from cryptography.exceptions import InvalidTag
from tortoise.transactions import in_transaction

from gardien.models.enums import PlatformRole
from gardien.models.organisations import Membership, UserBlock
from gardien.models.users import User
from gardien.resolvers import activity, authz, profile, ratelimits, sessions
from gardien.resolvers.authz import Actor, SignedInUser
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.resolvers.text import is_plain_text

# A support code has six digits (PRO-4): a million values. Five wrong codes an hour per agent and
# ten per organisation keep a guesser (or a phished agent account) far from any of them.
SUPPORT_CODE_FAILURES_PER_AGENT = ratelimits.Rule("support_code_agent", 5, timedelta(hours=1))
SUPPORT_CODE_FAILURES_PER_ORGANISATION = ratelimits.Rule(
    "support_code_organisation", 10, timedelta(hours=1)
)
MAX_JUSTIFICATION_LENGTH = 2000
MAX_SUPPORT_CODE_LENGTH = 32


@dataclass(frozen=True)
class SupportRequest:
    """What the agent types in while the manager is on the line."""

    organisation_id: int
    user_id: int
    requester_support_code: str
    justification: str


def _require_agent(actor: Actor) -> SignedInUser:
    user = authz.require_user(actor)
    authz.require(authz.can_work_as_support(actor), authz.forbidden(authz.SUPPORT_FORBIDDEN))
    return user


def _justification(text: str) -> str:
    justification = text.strip()
    if not justification:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "Say why: the justification is mandatory.", "justification"
        )
    if len(justification) > MAX_JUSTIFICATION_LENGTH or not is_plain_text(
        justification.replace("\n", " ")
    ):
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"The justification is plain text of at most {MAX_JUSTIFICATION_LENGTH} characters.",
            "justification",
        )
    return justification


def _codes_match(services: Services, stored: bytes | None, given: str) -> bool:
    if stored is None:
        return False
    try:
        code = profile.read_support_code(services, stored)
    except InvalidTag:
        return False
    return hmac.compare_digest(code.encode(), given.encode())


async def _verified_requester(
    services: Services, meta: RequestMeta, agent: SignedInUser, request: SupportRequest
) -> tuple[Membership, Membership | None]:
    """The manager whose support code was given, and the target's membership (None when the
    target is no member of the organisation: the caller decides whether that is fatal).

    Every attempt is counted against the agent and the organisation before any code is compared,
    and given back when it proves right, so only wrong codes spend the budgets.
    """
    organisation_key = str(request.organisation_id)
    agent_key = str(agent.id)
    for rule, key in (
        (SUPPORT_CODE_FAILURES_PER_AGENT, agent_key),
        (SUPPORT_CODE_FAILURES_PER_ORGANISATION, organisation_key),
    ):
        attempt = await ratelimits.consume(services, rule, key)
        if not attempt.allowed:
            raise ratelimits.refusal(services, attempt)
    target = await Membership.get_or_none(
        organisation_id=request.organisation_id, user_id=request.user_id
    )
    managers = await Membership.filter(
        organisation_id=request.organisation_id, role__in=list(authz.ORGANISATION_MANAGERS)
    ).select_related("user")
    given = "".join(request.requester_support_code.split())[:MAX_SUPPORT_CODE_LENGTH]
    # Every manager's code is compared, so the time taken says nothing of which one matched.
    matches = [m for m in managers if _codes_match(services, m.user.support_code_encrypted, given)]
    if not matches or not given:
        async with in_transaction():
            await activity.support_code_rejected(
                services, meta, agent_id=agent.id, organisation_id=request.organisation_id
            )
        raise DomainError(
            ErrorCode.INVALID_SUPPORT_CODE,
            "This support code belongs to no administrator or legal representative of the"
            " organisation.",
            "requesterSupportCode",
        )
    await ratelimits.give_back(services, SUPPORT_CODE_FAILURES_PER_AGENT, agent_key)
    await ratelimits.give_back(services, SUPPORT_CODE_FAILURES_PER_ORGANISATION, organisation_key)
    requester = matches[0]
    if target is not None:
        authz.require(
            authz.can_request_user_block(requester.role, target.role),
            authz.forbidden("Only a legal representative may ask to block a legal representative."),
        )
    return requester, target


async def block_user(
    services: Services, meta: RequestMeta, actor: Actor, request: SupportRequest
) -> UserBlock:
    """BLK-3: the user's web access stops at once: every web session is revoked, and new web
    sign-ins are refused while the block lasts (authz.may_sign_in_web, the session lookup)."""
    agent = _require_agent(actor)
    justification = _justification(request.justification)
    requester, target = await _verified_requester(services, meta, agent, request)
    if target is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such member.", "userId")
    async with in_transaction():
        # The user's row lock serialises concurrent blocks of the same user, so two agents (or a
        # double click) cannot both find no active block and each create one.
        await User.select_for_update().get(id=target.user_id)
        if await UserBlock.exists(
            organisation_id=request.organisation_id, user_id=target.user_id, lifted_at=None
        ):
            raise DomainError(
                ErrorCode.USER_ALREADY_BLOCKED, "This user is already blocked.", "userId"
            )
        block = await UserBlock.create(
            organisation_id=request.organisation_id,
            user_id=target.user_id,
            requested_by_id=requester.user_id,
            agent_id=agent.id,
            justification=justification,
            created_at=services.clock.now(),
        )
        # Revoked too, not only refused while blocked: lifting the block must not revive them.
        # The trust of every browser ends with them (the credential generation moves), so after
        # the block is lifted each browser is new again, and announced.
        revoked = await sessions.revoke_all_sessions(services, target.user_id)
        await activity.user_blocked_by_support(
            services,
            meta,
            agent_id=agent.id,
            subject_id=target.user_id,
            organisation_id=request.organisation_id,
            requested_by_id=requester.user_id,
            justification=justification,
            sessions_revoked=revoked,
        )
    return block


async def unblock_user(
    services: Services, meta: RequestMeta, actor: Actor, request: SupportRequest
) -> UserBlock:
    """BLK-3: lifting a block asks the same proof and a justification as placing it.

    The block is found by (organisation, user), not through a membership: a user removed from the
    organisation after being blocked stays blocked platform-wide, and the managers of the
    organisation that asked for the block must still be able to lift it. Every active block of
    that pair is lifted, so no stray duplicate keeps the user out.
    """
    agent = _require_agent(actor)
    justification = _justification(request.justification)
    requester, _ = await _verified_requester(services, meta, agent, request)
    async with in_transaction():
        await User.select_for_update().filter(id=request.user_id).first()
        blocks = (
            await UserBlock.filter(
                organisation_id=request.organisation_id, user_id=request.user_id, lifted_at=None
            )
            .select_for_update()
            .order_by("id")
        )
        if not blocks:
            raise DomainError(ErrorCode.USER_NOT_BLOCKED, "This user is not blocked.", "userId")
        now = services.clock.now()
        await UserBlock.filter(id__in=[block.id for block in blocks]).update(lifted_at=now)
        for block in blocks:
            block.lifted_at = now
        await activity.user_unblocked_by_support(
            services,
            meta,
            agent_id=agent.id,
            subject_id=request.user_id,
            organisation_id=request.organisation_id,
            requested_by_id=requester.user_id,
            justification=justification,
        )
    return blocks[0]


# --- support agents, from the command line (never through the API) ---------------------------


async def set_support_agent(services: Services, email: str, *, agent: bool) -> User:
    """Grant or withdraw the SUPPORT_AGENT staff flag; NOT_FOUND for an unknown account."""
    async with in_transaction():
        user = await User.filter(email=email.strip().lower()).select_for_update().first()
        if user is None:
            raise DomainError(ErrorCode.NOT_FOUND, f"No account with the login {email}.", "email")
        role = PlatformRole.SUPPORT_AGENT if agent else PlatformRole.CUSTOMER
        if user.platform_role != role:
            user.platform_role = role
            await user.save(update_fields=["platform_role"])
            await activity.support_agent_changed(
                services,
                RequestMeta(device="gardien support-agent"),
                subject_id=user.id,
                granted=agent,
            )
    return user


async def support_agents() -> list[User]:
    return await User.filter(platform_role=PlatformRole.SUPPORT_AGENT).order_by("email")
