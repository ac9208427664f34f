"""Invitations: invite, accept, decline, revoke, resend, list (INV-1…INV-5, ORG-2, ACT-1)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from urllib.parse import quote

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F, Q
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from gardien.mail.templates import Template
from gardien.models.enums import InvitationStatus, Role
from gardien.models.invitations import Invitation
from gardien.models.organisations import Membership, Organisation
from gardien.models.products import Product, ProductGrant
from gardien.models.users import User
from gardien.resolvers import activity, authz, profile, ratelimits, sessions, two_factor
from gardien.resolvers.accounts import (
    LANGUAGES,
    check_password_policy,
    normalise_email,
    session_opened,
)
from gardien.resolvers.authz import RequestScope
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.organisations import (
    ContactPreferencesSummary,
    MemberEntry,
    ProductSummary,
    UserSummary,
)
from gardien.resolvers.pagination import Page, forward_page
from gardien.resolvers.services import RequestMeta, Services
from gardien.security import hash_password, new_token

# INV-4: an invitation is valid for a week from its last sending.
LIFETIME = timedelta(days=7)
TOKEN_PURPOSE = "invitation"
# Each invitation is an e-mail sent in the organisation's name to any address: a budget per
# organisation keeps a compromised manager account from turning it into a spam relay.
INVITATIONS_PER_ORGANISATION = ratelimits.Rule("invitation_org", 50, timedelta(hours=1))
# A resend goes to the same inbox: a few per hour are plenty for "I did not get it".
RESENDS_PER_INVITATION = ratelimits.Rule("invitation_resend", 3, timedelta(hours=1))
CONTACT_PREFERENCES = ("billing", "technical", "security", "domain_expiry")
# The defaults of a membership (models/organisations.py): security notices on, the rest off.
DEFAULT_CONTACT_PREFERENCES = {
    "billing": False,
    "technical": False,
    "security": True,
    "domain_expiry": False,
}


@dataclass(frozen=True)
class InvitationView:
    """An invitation as managers see it; a pending one past its expiry reads as EXPIRED."""

    invitation: Invitation
    status: InvitationStatus


@dataclass(frozen=True)
class Accepted:
    membership: MemberEntry
    # A new account gets its first web session; an existing user is already signed in.
    session: sessions.IssuedSession | None = None
    device_cookie: str | None = None


@dataclass(frozen=True)
class ContactPreferences:
    """ORG-4 notices the invitee will receive once a member (INV-5)."""

    billing: bool = False
    technical: bool = False
    security: bool = True
    domain_expiry: bool = False

    def as_dict(self) -> dict[str, bool]:
        return {name: bool(getattr(self, name)) for name in CONTACT_PREFERENCES}


@dataclass(frozen=True)
class InviteRequest:
    organisation_id: int
    email: str
    role: Role
    product_ids: list[int] = field(default_factory=list)
    contact_preferences: ContactPreferences = field(default_factory=ContactPreferences)


def status_at(invitation: Invitation, now: datetime) -> InvitationStatus:
    if invitation.status == InvitationStatus.PENDING and invitation.expires_at <= now:
        return InvitationStatus.EXPIRED
    return invitation.status


def accept_link(services: Services, token: str) -> str:
    return f"{services.settings.public_url}/console/#/invitations/accept?token={quote(token)}"


# --- managers ----------------------------------------------------------------------------------


async def invite_member(
    services: Services, meta: RequestMeta, scope: RequestScope, request: InviteRequest
) -> InvitationView:
    """INV-1…INV-5: one pending invitation per address and organisation.

    A second invitation while one is pending is refused (INVITATION_ALREADY_PENDING) rather than
    silently replacing it: the manager resends or revokes the pending one, so an invitee never
    holds two links to the same organisation with different roles, and every change of terms is
    a revocation on record (ACT-1). An expired pending invitation does not block a new one.
    """
    inviter = authz.require_user(scope.actor)
    membership = await authz.require_invitation_manager(
        scope, request.organisation_id, request.role
    )
    email = normalise_email(request.email)
    products = await _organisation_products(request.organisation_id, request.product_ids)
    now = services.clock.now()
    invitee = await User.get_or_none(email=email)
    await _refuse_member_or_pending(request.organisation_id, email, invitee, now)
    await ratelimits.require_allowed(
        services, INVITATIONS_PER_ORGANISATION, str(request.organisation_id)
    )
    token = new_token()
    async with in_transaction():
        # INV-4: the organisation's row lock (the one member changes take, members.py) makes
        # concurrent invitations of one address run one after the other: the second sees the
        # first's pending invitation. Under it the inviter's role is read again, since a
        # removal or demotion may have just taken it away (and revoked their invitations).
        await Organisation.filter(id=request.organisation_id).select_for_update().first()
        current = await Membership.get_or_none(
            organisation_id=request.organisation_id, user_id=inviter.id
        )
        authz.require(
            current is not None
            and authz.can_invite(
                replace(membership, role=authz.capped_role(scope.actor, current.role)),
                request.role,
            ),
            authz.forbidden(authz.INVITATIONS_FORBIDDEN),
        )
        await _refuse_member_or_pending(request.organisation_id, email, invitee, now)
        invitation = await Invitation.create(
            organisation_id=request.organisation_id,
            email=email,
            role=request.role,
            product_ids=products,
            contact_preferences=request.contact_preferences.as_dict(),
            token_hash=services.keyring.token_digest(token, TOKEN_PURPOSE),
            invited_by_id=inviter.id,
            expires_at=now + LIFETIME,
            last_sent_at=now,
            send_count=1,
            created_at=now,
        )
        await activity.invitation_sent(
            services,
            meta,
            actor_id=inviter.id,
            organisation_id=request.organisation_id,
            invitation_id=invitation.id,
            email=email,
            role=request.role.value,
        )
        await _send(services, invitation, token, membership.organisation_name, inviter, invitee)
    return InvitationView(invitation, InvitationStatus.PENDING)


async def resend_invitation(
    services: Services, meta: RequestMeta, scope: RequestScope, invitation_id: int
) -> InvitationView:
    """INV-4: a new token (the old link stops working), a new week, one more sending."""
    inviter = authz.require_user(scope.actor)
    invitation = await _managed_invitation(scope, invitation_id)
    if invitation.status != InvitationStatus.PENDING:
        raise _not_pending()
    await ratelimits.require_allowed(services, RESENDS_PER_INVITATION, str(invitation.id))
    await ratelimits.require_allowed(
        services, INVITATIONS_PER_ORGANISATION, str(invitation.organisation_id)
    )
    # The caller's membership, checked just above, carries the organisation's name.
    manager = await authz.require_visible_organisation(scope, invitation.organisation_id)
    invitee = await User.get_or_none(email=invitation.email)
    now = services.clock.now()
    token = new_token()
    async with in_transaction():
        updated = await Invitation.filter(id=invitation.id, status=InvitationStatus.PENDING).update(
            token_hash=services.keyring.token_digest(token, TOKEN_PURPOSE),
            expires_at=now + LIFETIME,
            last_sent_at=now,
            # Counted in the statement: two resends at once both count.
            send_count=F("send_count") + 1,
        )
        if updated != 1:
            raise _not_pending()
        invitation = await Invitation.get(id=invitation.id)
        await activity.invitation_resent(
            services,
            meta,
            actor_id=inviter.id,
            organisation_id=invitation.organisation_id,
            invitation_id=invitation.id,
            email=invitation.email,
            role=invitation.role.value,
            send_count=invitation.send_count,
        )
        await _send(services, invitation, token, manager.organisation_name, inviter, invitee)
    return InvitationView(invitation, InvitationStatus.PENDING)


async def revoke_invitation(
    services: Services, meta: RequestMeta, scope: RequestScope, invitation_id: int
) -> InvitationView:
    """INV-4: the link stops working at once; an expired pending invitation may be revoked too."""
    manager = authz.require_user(scope.actor)
    invitation = await _managed_invitation(scope, invitation_id)
    now = services.clock.now()
    async with in_transaction():
        updated = await Invitation.filter(id=invitation.id, status=InvitationStatus.PENDING).update(
            status=InvitationStatus.REVOKED, responded_at=now
        )
        if updated != 1:
            raise _not_pending()
        await activity.invitation_revoked(
            services,
            meta,
            actor_id=manager.id,
            organisation_id=invitation.organisation_id,
            invitation_id=invitation.id,
            email=invitation.email,
            role=invitation.role.value,
        )
    invitation.status = InvitationStatus.REVOKED
    invitation.responded_at = now
    return InvitationView(invitation, InvitationStatus.REVOKED)


async def organisation_invitations(
    services: Services,
    scope: RequestScope,
    organisation_id: int,
    *,
    first: int | None,
    after_id: int | None,
    status: InvitationStatus | None,
) -> Page[InvitationView]:
    """Newest first, for managers."""
    authz.refuse_held_to_enrolment(scope.actor)
    await authz.require_invitation_manager(scope, organisation_id)
    now = services.clock.now()
    page = await forward_page(
        _invitation_query(organisation_id, status, now), first, after_id, descending=True
    )
    return Page(
        items=[InvitationView(i, status_at(i, now)) for i in page.items],
        has_next_page=page.has_next_page,
    )


async def count_organisation_invitations(
    services: Services, organisation_id: int, status: InvitationStatus | None
) -> int:
    return await _invitation_query(organisation_id, status, services.clock.now()).count()


async def visible_invitation(
    services: Services, scope: RequestScope, invitation_id: int
) -> InvitationView | None:
    """node(id:): an invitation of an organisation the caller manages; None for any other."""
    invitation = await Invitation.get_or_none(id=invitation_id)
    if invitation is None or not authz.can_view_invitations(
        await authz.membership_of(scope, invitation.organisation_id)
    ):
        return None
    return InvitationView(invitation, status_at(invitation, services.clock.now()))


def _invitation_query(
    organisation_id: int, status: InvitationStatus | None, now: datetime
) -> QuerySet[Invitation]:
    query = Invitation.filter(organisation_id=organisation_id)
    if status == InvitationStatus.PENDING:
        return query.filter(status=InvitationStatus.PENDING, expires_at__gt=now)
    if status == InvitationStatus.EXPIRED:
        return query.filter(
            Q(status=InvitationStatus.EXPIRED)
            | Q(status=InvitationStatus.PENDING, expires_at__lte=now)
        )
    return query.filter(status=status) if status is not None else query


async def _managed_invitation(scope: RequestScope, invitation_id: int) -> Invitation:
    """The invitation once the caller may manage it; one NOT_FOUND for unknown and not theirs."""
    invitation = await Invitation.get_or_none(id=invitation_id)
    if invitation is None:
        raise _no_such_invitation()
    try:
        await authz.require_invitation_manager(scope, invitation.organisation_id, invitation.role)
    except DomainError as error:
        if error.code == ErrorCode.NOT_FOUND:
            raise _no_such_invitation() from None
        raise DomainError(error.code, error.message) from None
    return invitation


async def _refuse_member_or_pending(
    organisation_id: int, email: str, invitee: User | None, now: datetime
) -> None:
    if invitee is not None and await Membership.exists(
        organisation_id=organisation_id, user_id=invitee.id
    ):
        raise DomainError(ErrorCode.ALREADY_MEMBER, "This person is already a member.", "email")
    await _expire_lapsed(organisation_id, email, now)
    if await Invitation.exists(
        organisation_id=organisation_id, email=email, status=InvitationStatus.PENDING
    ):
        raise DomainError(
            ErrorCode.INVITATION_ALREADY_PENDING,
            "An invitation to this address is pending; resend or revoke it.",
            "email",
        )


async def _organisation_products(organisation_id: int, product_ids: list[int]) -> list[int]:
    """INV-5: granted products must be the organisation's own."""
    wanted = sorted(set(product_ids))
    if not wanted:
        return []
    found = await Product.filter(organisation_id=organisation_id, id__in=wanted).values_list(
        "id", flat=True
    )
    if sorted(int(str(pk)) for pk in found) != wanted:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "Grant only products of this organisation.",
            "productIds",
        )
    return wanted


async def _expire_lapsed(organisation_id: int, email: str, now: datetime) -> None:
    await Invitation.filter(
        organisation_id=organisation_id,
        email=email,
        status=InvitationStatus.PENDING,
        expires_at__lte=now,
    ).update(status=InvitationStatus.EXPIRED)


async def _send(
    services: Services,
    invitation: Invitation,
    token: str,
    organisation_name: str,
    inviter: authz.SignedInUser,
    invitee: User | None,
) -> None:
    """INV-2/INV-3 and PRO-1: in the invitee's language when they have an account, else the
    inviter's (who knows whom they invite better than a default)."""
    await services.mail.enqueue(
        Template.INVITATION_JOIN if invitee is not None else Template.INVITATION_NEW_ACCOUNT,
        to=invitation.email,
        language=invitee.language if invitee is not None else inviter.language,
        timezone=invitee.timezone if invitee is not None else inviter.timezone,
        context={
            "organisation": organisation_name,
            "inviter": inviter.display_name,
            "role": invitation.role.value,
            "link": accept_link(services, token),
            "expires_at": invitation.expires_at,
        },
    )


# --- invitees ----------------------------------------------------------------------------------


async def accept_invitation(
    services: Services,
    meta: RequestMeta,
    scope: RequestScope,
    *,
    token: str,
    password: str | None = None,
    display_name: str | None = None,
    language: str | None = None,
    make_current: bool = False,
) -> Accepted:
    """INV-2, INV-3, ORG-2: join the organisation; single use.

    Without an account for the invited address, the account is created with the membership in
    one transaction (the e-mail that carried the token proved the address) and a web session
    opens. With an account, the caller must be signed in as that account; anyone else learns
    nothing about the invitation (INVITATION_INVALID, as for a forged token).
    """
    invitation = await _pending_by_token(services, token)
    invitee = await User.get_or_none(email=invitation.email)
    now = services.clock.now()
    if invitee is None:
        return await _accept_with_new_account(
            services, meta, invitation, password, display_name, language
        )
    caller = scope.actor.user
    if caller is None:
        raise DomainError(ErrorCode.UNAUTHENTICATED, "Sign in with the invited account to accept.")
    if caller.id != invitee.id or not hmac.compare_digest(
        (caller.email or "").encode(), invitation.email.encode()
    ):
        raise _invalid()
    if await Membership.exists(organisation_id=invitation.organisation_id, user_id=invitee.id):
        raise _already_member()
    try:
        async with in_transaction():
            await _claim(invitation, InvitationStatus.ACCEPTED, now)
            membership = await _join(services, meta, invitation, invitee, new_account=False)
            if make_current:
                await _make_current(services, meta, invitee.id, invitation.organisation_id)
    except IntegrityError:
        # Joined by another way between the check and now (the unique membership constraint).
        raise _already_member() from None
    return Accepted(membership=await _member_entry(membership.id))


async def _make_current(
    services: Services, meta: RequestMeta, user_id: int, organisation_id: int
) -> None:
    """ORG-2: the same switch, recorded the same way, as switchOrganisation."""
    row = await User.filter(id=user_id).select_for_update().first()
    previous = row.current_organisation_id if row is not None else None
    if previous != organisation_id:
        await User.filter(id=user_id).update(current_organisation_id=organisation_id)
        await activity.organisation_switched(
            services,
            meta,
            user_id=user_id,
            organisation_id=organisation_id,
            previous_organisation_id=previous,
        )


async def _accept_with_new_account(
    services: Services,
    meta: RequestMeta,
    invitation: Invitation,
    password: str | None,
    display_name: str | None,
    language: str | None,
) -> Accepted:
    if not display_name or not (name := " ".join(display_name.split())) or len(name) > 120:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "Give a name of 1 to 120 characters.", "displayName"
        )
    if password is None:
        raise DomainError(ErrorCode.INVALID_INPUT, "Choose a password.", "password")
    check_password_policy(
        password, context=(invitation.email, invitation.email.split("@")[0], name)
    )
    lang, zone = await _newcomer_locale(invitation, language)
    password_hash = await hash_password(password)
    now = services.clock.now()
    try:
        async with in_transaction():
            await _claim(invitation, InvitationStatus.ACCEPTED, now)
            user = await User.create(
                email=invitation.email,
                password_hash=password_hash,
                password_changed_at=now,
                display_name=name,
                language=lang,
                timezone=zone,
                support_code_encrypted=profile.new_support_code(services),
                # ORG-2: their only organisation is the one they were invited to.
                current_organisation_id=invitation.organisation_id,
                created_at=now,
            )
            membership = await _join(services, meta, invitation, user, new_account=True)
            issued = await sessions.open_session(services, user, meta, persistent=False)
            await activity.sign_in_succeeded(services, meta, user.id, second_factor=None)
            # ACT-2: the newcomer's browser becomes their first known device.
            cookie = await session_opened(services, meta, user, None)
    except IntegrityError:
        # The address got an account between the lookup and now: accept as that account.
        raise DomainError(
            ErrorCode.EMAIL_UNAVAILABLE,
            "An account with this address exists; sign in to accept the invitation.",
        ) from None
    return Accepted(
        membership=await _member_entry(membership.id), session=issued, device_cookie=cookie
    )


async def decline_invitation(
    services: Services, meta: RequestMeta, scope: RequestScope, token: str
) -> None:
    """INV-3: the holder of the link declines; nothing is said to them about the organisation."""
    invitation = await _pending_by_token(services, token)
    now = services.clock.now()
    async with in_transaction():
        await _claim(invitation, InvitationStatus.DECLINED, now)
        await activity.invitation_declined(
            services,
            meta,
            actor_id=scope.actor.user_id,
            organisation_id=invitation.organisation_id,
            invitation_id=invitation.id,
            email=invitation.email,
            role=invitation.role.value,
        )


async def _pending_by_token(services: Services, token: str) -> Invitation:
    """The pending invitation of a token.

    Unknown, forged, used, declined and revoked tokens get one answer (INVITATION_INVALID). An
    expired one gets its own (INVITATION_EXPIRED): only the holder of a real token can see it,
    and it tells them what to do (ask for the invitation again) without telling anyone else
    anything.
    """
    if not token or len(token) > 256:
        raise _invalid()
    invitation = await Invitation.get_or_none(
        token_hash=services.keyring.token_digest(token, TOKEN_PURPOSE)
    )
    if invitation is None or invitation.status not in (
        InvitationStatus.PENDING,
        InvitationStatus.EXPIRED,
    ):
        raise _invalid()
    if status_at(invitation, services.clock.now()) == InvitationStatus.EXPIRED:
        raise DomainError(
            ErrorCode.INVITATION_EXPIRED,
            "This invitation has expired; ask the organisation to send it again.",
            "token",
        )
    return invitation


async def _claim(invitation: Invitation, status: InvitationStatus, now: datetime) -> None:
    """Single use even under concurrency: one conditional UPDATE wins, the others change nothing
    (on PostgreSQL a second transaction waits for the first, then finds no PENDING row)."""
    claimed = await Invitation.filter(
        id=invitation.id,
        status=InvitationStatus.PENDING,
        token_hash=invitation.token_hash,
        expires_at__gt=now,
    ).update(status=status, responded_at=now)
    if claimed != 1:
        raise _invalid()


async def _join(
    services: Services,
    meta: RequestMeta,
    invitation: Invitation,
    user: User,
    *,
    new_account: bool,
) -> Membership:
    """The membership with the invitation's role, products and contact preferences (INV-5)."""
    preferences = {**DEFAULT_CONTACT_PREFERENCES, **invitation.contact_preferences}
    now = services.clock.now()
    membership = await Membership.create(
        organisation_id=invitation.organisation_id,
        user_id=user.id,
        role=invitation.role,
        notify_billing=preferences["billing"],
        notify_technical=preferences["technical"],
        notify_security=preferences["security"],
        notify_domain_expiry=preferences["domain_expiry"],
        created_at=now,
    )
    # Products deleted since the invitation was sent are simply not granted.
    existing = await Product.filter(
        organisation_id=invitation.organisation_id, id__in=invitation.product_ids or [0]
    ).values_list("id", flat=True)
    for product_id in sorted(int(str(pk)) for pk in existing):
        await ProductGrant.create(membership_id=membership.id, product_id=product_id)
    await activity.invitation_accepted(
        services,
        meta,
        user_id=user.id,
        organisation_id=invitation.organisation_id,
        invitation_id=invitation.id,
        email=invitation.email,
        role=invitation.role.value,
        new_account=new_account,
    )
    await activity.member_joined(
        services,
        meta,
        user_id=user.id,
        organisation_id=invitation.organisation_id,
        membership_id=membership.id,
        role=invitation.role.value,
        invited_by_id=invitation.invited_by_id,
    )
    return membership


async def _newcomer_locale(invitation: Invitation, language: str | None) -> tuple[str, str]:
    """The new account's language and zone: as chosen, else the inviter's (the e-mail's)."""
    if language is not None and language not in LANGUAGES:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"Choose one of: {', '.join(LANGUAGES)}.", "language"
        )
    inviter = (
        await User.get_or_none(id=invitation.invited_by_id)
        if invitation.invited_by_id is not None
        else None
    )
    default_language = inviter.language if inviter is not None else "fr"
    zone = inviter.timezone if inviter is not None else "Europe/Zurich"
    return language or default_language, zone


async def _member_entry(membership_id: int) -> MemberEntry:
    """The new membership as its member sees it."""
    membership = await Membership.get(id=membership_id).prefetch_related(
        "organisation", "user", "product_grants__product"
    )
    user = membership.user
    organisation = membership.organisation
    return MemberEntry(
        membership_id=membership.id,
        role=membership.role,
        organisation_id=organisation.id,
        organisation_name=organisation.name,
        support_plan=organisation.support_plan,
        user=UserSummary(
            id=user.id,
            email=user.email,
            display_name=user.display_name,
            language=user.language,
            country=user.country,
            timezone=user.timezone,
            two_factor_enabled=bool(await two_factor.confirmed_kinds(user.id)),
        ),
        products=[
            ProductSummary(
                id=g.product.id,
                name=g.product.name,
                kind=g.product.kind,
                management_blocked=g.product.management_blocked_at is not None,
                mail_maintenance=g.product.maintenance_since is not None,
            )
            for g in sorted(membership.product_grants, key=lambda g: g.product_id)
        ],
        contact_preferences=ContactPreferencesSummary(
            billing=membership.notify_billing,
            technical=membership.notify_technical,
            security=membership.notify_security,
            domain_expiry=membership.notify_domain_expiry,
        ),
    )


def _invalid() -> DomainError:
    return DomainError(
        ErrorCode.INVITATION_INVALID,
        "This invitation link is not valid; it may have been used or withdrawn.",
        "token",
    )


def _already_member() -> DomainError:
    return DomainError(ErrorCode.ALREADY_MEMBER, "You are already a member of this organisation.")


def _not_pending() -> DomainError:
    return DomainError(
        ErrorCode.INVITATION_NOT_PENDING,
        "Only a pending invitation can be revoked or sent again.",
        "invitationId",
    )


def _no_such_invitation() -> DomainError:
    return DomainError(ErrorCode.NOT_FOUND, "No such invitation.", "invitationId")


# --- inviters losing their role -----------------------------------------------------------------


async def revoke_beyond_role(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int,
    inviter_id: int,
    organisation_id: int,
    role: Role | None,
    reason: str,
) -> list[int]:
    """In the caller's transaction, once the inviter's role in the organisation is `role` (None:
    no longer a member): revokes their pending invitations of a role they could no longer grant,
    so an invitation never gives more than its inviter may (INV-1). Returns the ids revoked."""
    now = services.clock.now()
    revoked = []
    pending = await Invitation.filter(
        organisation_id=organisation_id, invited_by_id=inviter_id, status=InvitationStatus.PENDING
    ).order_by("id")
    for invitation in pending:
        if authz.may_keep_invitation(role, invitation.role):
            continue
        updated = await Invitation.filter(id=invitation.id, status=InvitationStatus.PENDING).update(
            status=InvitationStatus.REVOKED, responded_at=now
        )
        if updated != 1:  # accepted, declined or revoked meanwhile
            continue
        revoked.append(invitation.id)
        await activity.invitation_revoked_with_inviter(
            services,
            meta,
            actor_id=actor_id,
            organisation_id=organisation_id,
            invitation_id=invitation.id,
            email=invitation.email,
            role=invitation.role.value,
            reason=reason,
        )
    return revoked
