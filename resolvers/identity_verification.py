"""No recovery option left (REC-2): a case support reviews; approval sends a one-time reset link."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

from tortoise.transactions import in_transaction

from gardien.mail.templates import Template
from gardien.models.enums import CaseStatus
from gardien.models.recovery import IdentityVerificationCase
from gardien.models.users import User
from gardien.resolvers import accounts, activity, authz, ratelimits, recovery
from gardien.resolvers.authz import Actor, SignedInUser
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.pagination import Counted, forward_page
from gardien.resolvers.services import RequestMeta, Services
from gardien.resolvers.text import is_plain_text
from gardien.security import new_token

RESET_LINK_PURPOSE = "identity-verification-reset"
RESET_LINK_LIFETIME = timedelta(hours=24)
MAX_DETAILS_LENGTH = 4000
# Each case is work for a person at support: a handful per address a day is plenty.
CASES_PER_IP = ratelimits.Rule("identity_case_ip", 10, timedelta(hours=24))
# And per login named (or, without one, per contact address), from whatever address: one account
# cannot bury support in cases from many IPs. Counted alike for a known and an unknown login.
CASES_PER_LOGIN = ratelimits.Rule("identity_case_login", 3, timedelta(hours=24))
RESET_LINK_ATTEMPTS_PER_IP = ratelimits.Rule("identity_reset_ip", 20, timedelta(hours=1))


def _details(text: str) -> str:
    details = text.strip()
    if not details or len(details) > MAX_DETAILS_LENGTH:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"Tell support who you are in 1 to {MAX_DETAILS_LENGTH} characters.",
            "details",
        )
    if not is_plain_text(details.replace("\n", " ").replace("\r", " ")):
        raise DomainError(ErrorCode.INVALID_INPUT, "Use plain text only.", "details")
    return details


async def request_identity_verification(
    services: Services,
    meta: RequestMeta,
    *,
    login: str | None,
    contact_email: str,
    details: str,
) -> None:
    """REC-2: open a case. The answer is the same whether or not the login has an account."""
    contact = accounts.normalise_email(contact_email, "contactEmail")
    evidence = _details(details)
    given_login = (login or "").strip().lower() or None
    if given_login is not None and (
        len(given_login) > recovery.MAX_LOGIN_LENGTH or not is_plain_text(given_login)
    ):
        raise DomainError(ErrorCode.INVALID_INPUT, "This is not a login.", "login")
    await ratelimits.require_allowed(services, CASES_PER_IP, ratelimits.ip_subject(meta.ip))
    await ratelimits.require_allowed(
        services,
        CASES_PER_LOGIN,
        f"login:{given_login}" if given_login is not None else f"contact:{contact}",
    )
    user = await accounts.find_by_login(given_login) if given_login is not None else None
    async with in_transaction():
        case = await IdentityVerificationCase.create(
            user_id=user.id if user is not None else None,
            login=given_login,
            contact_email=contact,
            details=evidence,
            status=CaseStatus.OPEN,
            created_at=services.clock.now(),
        )
        await activity.identity_verification_requested(
            services, meta, user_id=user.id if user is not None else None, case_id=case.id
        )


async def _require_agent(services: Services, meta: RequestMeta, actor: Actor) -> SignedInUser:
    user = authz.require_user(actor)
    if not authz.can_review_identity_verification(actor):
        async with in_transaction():
            await activity.identity_verification_review_refused(services, meta, actor_id=user.id)
        raise authz.forbidden(authz.SUPPORT_FORBIDDEN)
    return user


async def cases(
    services: Services,
    meta: RequestMeta,
    actor: Actor,
    *,
    status: CaseStatus | None,
    first: int | None,
    after_id: int | None,
) -> Counted[IdentityVerificationCase]:
    """REC-2: the cases support works through, oldest first."""
    await _require_agent(services, meta, actor)
    query = IdentityVerificationCase.all()
    if status is not None:
        query = query.filter(status=status)
    page = await forward_page(query, first, after_id)
    return Counted(page=page, count=query.count)


async def review(
    services: Services,
    meta: RequestMeta,
    actor: Actor,
    *,
    case_id: int,
    approve: bool,
    contact_email: str | None,
) -> IdentityVerificationCase:
    """REC-2: approve (a one-time link to set a new password goes to the contact the agent
    recorded) or reject an open case."""
    agent = await _require_agent(services, meta, actor)
    contact = accounts.normalise_email(contact_email or "", "contactEmail") if approve else None
    now = services.clock.now()
    async with in_transaction():
        case = await IdentityVerificationCase.select_for_update().get_or_none(id=case_id)
        authz.require(case is not None, authz.not_found("identity verification case"))
        assert case is not None
        if case.status is not CaseStatus.OPEN:
            raise DomainError(
                ErrorCode.CASE_ALREADY_REVIEWED, "This case was reviewed already.", "caseId"
            )
        if approve and case.user_id is None:
            raise DomainError(
                ErrorCode.INVALID_INPUT,
                "This case names no account: reject it and ask for the account's login.",
                "approve",
            )
        case.status = CaseStatus.APPROVED if approve else CaseStatus.REJECTED
        case.reviewed_by_id = agent.id
        case.reviewed_at = now
        if approve:
            assert contact is not None
            user = await User.get(id=case.user_id)
            token = new_token()
            case.reset_contact_email = contact
            case.reset_token_hash = services.keyring.token_digest(token, RESET_LINK_PURPOSE)
            case.reset_expires_at = now + RESET_LINK_LIFETIME
            await services.mail.enqueue(
                Template.IDENTITY_VERIFICATION_RESET,
                to=contact,
                language=user.language,
                timezone=user.timezone,
                context={"link": reset_link(services, token), "expires_at": case.reset_expires_at},
            )
        await case.save()
        await activity.identity_verification_reviewed(
            services,
            meta,
            agent_id=agent.id,
            user_id=case.user_id,
            case_id=case.id,
            approved=approve,
        )
    return case


def reset_link(services: Services, token: str) -> str:
    return f"{services.settings.public_url}/console/#/recovery/identity?token={quote(token)}"


def _link_invalid() -> DomainError:
    return DomainError(
        ErrorCode.RESET_LINK_INVALID, "This link is not valid or was used already.", "token"
    )


async def complete_reset(
    services: Services, meta: RequestMeta, *, token: str, new_password: str
) -> None:
    """REC-2: the approved link sets the new password once, and every way in ends (as REC-1)."""
    await ratelimits.require_allowed(
        services, RESET_LINK_ATTEMPTS_PER_IP, ratelimits.ip_subject(meta.ip)
    )
    if not token or len(token) > recovery.MAX_TOKEN_LENGTH:
        raise _link_invalid()
    case = await IdentityVerificationCase.get_or_none(
        reset_token_hash=services.keyring.token_digest(token, RESET_LINK_PURPOSE)
    )
    if case is None or case.reset_used_at is not None or case.user_id is None:
        raise _link_invalid()
    now = services.clock.now()
    if case.reset_expires_at is None or case.reset_expires_at <= now:
        raise DomainError(
            ErrorCode.RESET_LINK_EXPIRED, "This link has expired; contact support again.", "token"
        )
    user = await User.get(id=case.user_id)
    password_hash = await recovery.checked_password_hash(user, new_password)
    async with in_transaction():
        # The user's row first, as every credential change takes it (see recovery.reset_password).
        await User.select_for_update().filter(id=user.id).first()
        claimed = await IdentityVerificationCase.filter(id=case.id, reset_used_at=None).update(
            reset_used_at=now
        )
        if claimed != 1:
            raise _link_invalid()
        await recovery.reset_credentials(
            services, meta, user, password_hash, via="identity_verification"
        )
