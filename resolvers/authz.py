"""The one place that decides who may do what; every rule of the roles table is a function here."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gardien.models.enums import PlatformRole, ProductKind, Role, SupportPlan
from gardien.models.organisations import Membership, UserBlock
from gardien.models.products import ProductGrant
from gardien.resolvers import sql
from gardien.resolvers.errors import DomainError, ErrorCode

ORGANISATION_MANAGERS = frozenset({Role.LEGAL_REPRESENTATIVE, Role.ADMINISTRATOR})


@dataclass(frozen=True)
class CallerMembership:
    """The caller's standing in one organisation: role, organisation, its security policy."""

    id: int
    role: Role
    organisation_id: int
    organisation_name: str
    support_plan: SupportPlan
    require_two_factor: bool
    policy_updated_at: datetime


@dataclass(frozen=True)
class SignedInUser:
    """The signed-in account, read with its session: a snapshot for one request.

    An operation that changes the account loads its row inside its own transaction.
    """

    id: int
    email: str | None
    display_name: str
    language: str
    country: str | None
    timezone: str
    recovery_phone: str | None
    recovery_email: str | None
    support_code_encrypted: bytes | None
    current_organisation_id: int | None
    platform_role: PlatformRole


@dataclass(frozen=True)
class SignedInSession:
    id: int
    persistent: bool
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Actor:
    """Who is calling: a signed-in user with their session, or nobody. A value, caching nothing."""

    user: SignedInUser | None = None
    session: SignedInSession | None = None

    @property
    def user_id(self) -> int | None:
        return self.user.id if self.user else None


class RequestScope:
    """One request's caller, with the memberships looked up for it so far, by organisation id.

    Made anew for every request (the GraphQL context makes one), never shared: a role change or a
    removal is seen by the next request, and one user's answers never serve another's.
    """

    __slots__ = ("_memberships", "actor")

    def __init__(self, actor: Actor) -> None:
        self.actor = actor
        # Futures, not results: fields resolved concurrently share one lookup per organisation.
        self._memberships: dict[int, asyncio.Future[CallerMembership | None]] = {}


def require_user(actor: Actor) -> SignedInUser:
    if actor.user is None:
        raise DomainError(ErrorCode.UNAUTHENTICATED, "Sign in first.")
    return actor.user


def require(allowed: bool, refusal: DomainError) -> None:
    """Raises the refusal unless the rule allowed it: `require(can_x(...), not_found("x"))`."""
    if not allowed:
        raise refusal


def not_found(kind: str) -> DomainError:
    # The same answer for "does not exist" and "not yours", so nothing leaks (ACT-4, DOM-5).
    return DomainError(ErrorCode.NOT_FOUND, f"No such {kind}.")


def forbidden(message: str) -> DomainError:
    """For an object the caller may know exists (their own organisation) but not use this way."""
    return DomainError(ErrorCode.FORBIDDEN, message)


# The rules of the roles table (SPEC "Roles"). Each takes the caller's membership in the
# organisation concerned, None when they are not a member (or not signed in).


def can_view_organisation(membership: CallerMembership | None) -> bool:
    """Only members see an organisation; to anyone else it does not exist."""
    return membership is not None


def can_view_members(membership: CallerMembership | None) -> bool:
    """Every member sees the members list, with roles, 2FA status and product access (POL-2)."""
    return membership is not None


def can_view_products(membership: CallerMembership | None) -> bool:
    """Every member sees the organisation's products: the members list shows who may use which."""
    return membership is not None


def can_view_security_policy(membership: CallerMembership | None) -> bool:
    """Every member sees whether 2FA is required: POL-4 holds them to it."""
    return membership is not None


def can_view_organisation_activity(membership: CallerMembership | None) -> bool:
    """ACT-4: the organisation's activity is for administrators and legal representatives."""
    return membership is not None and membership.role in ORGANISATION_MANAGERS


ACTIVITY_FORBIDDEN = (
    "Only administrators and legal representatives see the organisation's activity."
)


def can_view_private_profile(actor: Actor, user_id: int) -> bool:
    """Recovery contacts, support code, second factors, memberships and the current organisation
    are for the user alone; fellow members see only the public part of a profile."""
    return actor.user_id is not None and actor.user_id == user_id


def private_profile(actor: Actor, user_id: int) -> SignedInUser | None:
    """The caller's own full record when user_id is the caller; None for anyone else's."""
    return actor.user if can_view_private_profile(actor, user_id) else None


# BLK-3: while a block is active (not lifted) the user's web access is stopped: signing in is
# refused, and so is every session they already hold, at their very next request. The session
# lookup (resolvers/sessions.py) reads this condition in the statement that finds the session,
# so no request slips between the block and a revocation; `u` is the session's user there.
WEB_ACCESS_NOT_BLOCKED_SQL = (
    "NOT EXISTS (SELECT 1 FROM user_block b WHERE b.user_id = u.id AND b.lifted_at IS NULL)"
)


async def is_blocked(user_id: int) -> bool:
    """BLK-3: an active block stops the user's web access (sign-in, web sessions)."""
    return await UserBlock.exists(user_id=user_id, lifted_at=None)


async def may_sign_in_web(user_id: int) -> bool:
    """BLK-3: a web sign-in (and so a new web session) is refused while the user is blocked."""
    return not await is_blocked(user_id)


async def membership_of(scope: RequestScope, organisation_id: int) -> CallerMembership | None:
    """The caller's membership in an organisation: the scoping helper every lookup goes through."""
    user_id = scope.actor.user_id
    if user_id is None:
        return None
    lookup = scope._memberships.get(organisation_id)
    if lookup is None:
        lookup = asyncio.ensure_future(_read_membership(user_id, organisation_id))
        scope._memberships[organisation_id] = lookup
    # Shielded: the lookup belongs to every field sharing it, so one field cancelled (its
    # parent failed, the client left) must not cancel it under its siblings.
    return await asyncio.shield(lookup)


async def _read_membership(user_id: int, organisation_id: int) -> CallerMembership | None:
    rows = await sql.fetch(_CALLER_MEMBERSHIP, [user_id, organisation_id])
    if not rows:
        return None
    row = rows[0]
    return CallerMembership(
        id=row["id"],
        role=Role(row["role"]),
        organisation_id=organisation_id,
        organisation_name=row["name"],
        support_plan=SupportPlan(row["support_plan"]),
        require_two_factor=bool(row["require_two_factor"]),
        policy_updated_at=sql.as_datetime(row["updated_at"]),
    )


# Read on every organisation request: one fixed statement (see sql.py).
_CALLER_MEMBERSHIP = (
    "SELECT m.id, m.role, o.name, o.support_plan, p.require_two_factor, p.updated_at"
    " FROM membership m JOIN organisation o ON o.id = m.organisation_id"
    " JOIN security_policy p ON p.organisation_id = m.organisation_id"
    " WHERE m.user_id = $1 AND m.organisation_id = $2"
)


async def require_visible_organisation(
    scope: RequestScope, organisation_id: int
) -> CallerMembership:
    require_user(scope.actor)
    membership = await membership_of(scope, organisation_id)
    if not can_view_organisation(membership):
        raise not_found("organisation")
    assert membership is not None
    return membership


# --- Domains (DOM-1…DOM-5) -------------------------------------------------------------------
# Domains are managed by the organisation's managers; a COLLABORATOR or EXTERNAL member sees them
# only when granted the organisation's DOMAIN product (ORG-3).


def can_manage_domains(role: Role) -> bool:
    """Renew, restore, and the renewal warranty: administrators and legal representatives."""
    return role in ORGANISATION_MANAGERS


def can_view_domains(role: Role, *, granted_domain_product: bool) -> bool:
    return can_manage_domains(role) or granted_domain_product


async def _granted_domain_product(membership_id: int) -> bool:
    return await ProductGrant.filter(
        membership_id=membership_id, product__kind=ProductKind.DOMAIN
    ).exists()


def may_receive_domain_notices(role: Role, *, granted_domain_product: bool, blocked: bool) -> bool:
    """DOM-1: an expiry reminder names the domain and its expiry, so it goes only to a member who
    may see the organisation's domains, and never to a blocked user (BLK-3)."""
    return not blocked and can_view_domains(role, granted_domain_product=granted_domain_product)


async def domain_notice_recipients(organisation_id: int) -> list[Membership]:
    """The members who asked for domain notices and may receive them, with their user and
    organisation: three queries, however many members."""
    asked = await Membership.filter(
        organisation_id=organisation_id, notify_domain_expiry=True
    ).select_related("user", "organisation")
    if not asked:
        return []
    granted_ids: list[Any] = await ProductGrant.filter(
        membership_id__in=[m.id for m in asked], product__kind=ProductKind.DOMAIN
    ).values_list("membership_id", flat=True)
    blocked_ids: list[Any] = await UserBlock.filter(
        user_id__in=[m.user_id for m in asked], lifted_at=None
    ).values_list("user_id", flat=True)
    granted, blocked = set(granted_ids), set(blocked_ids)
    return [
        m
        for m in asked
        if may_receive_domain_notices(
            m.role, granted_domain_product=m.id in granted, blocked=m.user_id in blocked
        )
    ]


async def may_view_domains(scope: RequestScope, organisation_id: int) -> bool:
    """Whether the caller sees the organisation's domains; False for non-members too."""
    membership = await membership_of(scope, organisation_id)
    if membership is None:
        return False
    if can_manage_domains(membership.role):
        return True
    return can_view_domains(
        membership.role, granted_domain_product=await _granted_domain_product(membership.id)
    )


async def require_domain_viewer(scope: RequestScope, organisation_id: int) -> None:
    """Non-members get NOT_FOUND (the organisation does not exist for them), others FORBIDDEN."""
    await require_visible_organisation(scope, organisation_id)
    if not await may_view_domains(scope, organisation_id):
        raise DomainError(ErrorCode.FORBIDDEN, "Only members granted the domains may see them.")


async def require_domain_manager(scope: RequestScope, organisation_id: int) -> None:
    membership = await require_visible_organisation(scope, organisation_id)
    if not can_manage_domains(membership.role):
        raise DomainError(
            ErrorCode.FORBIDDEN, "Only administrators and legal representatives manage domains."
        )


def check_operation(actor: Actor, operation_type: str, root_fields: frozenset[str]) -> None:
    """The operation gate: may this actor run this operation's root fields at all?

    operation_type is "query", "mutation" or "subscription"; root_fields are the names of the
    fields the operation may run at its root (__typename aside). The GraphQL engine asks it once
    per operation, before anything executes; it raises DomainError to refuse.

    Today it allows everything. Its rules to come: POL-4 (a member of an
    organisation that requires 2FA, not yet enrolled, may run only the enrolment and sign-out
    fields), API-6 (an integrator token may run only the fields its scopes grant) and REC-4
    (a session in recovery mode may run only the recovery fields).
    """


# --- Membership management (ORG-*) -----------------------------------------------------------
# The roles table: legal representatives may do everything and are the only ones to grant or
# take away LEGAL_REPRESENTATIVE; administrators manage every other member. That an organisation
# keeps at least one legal representative (ORG-6) is a fact about rows, not about the caller:
# resolvers/members.py enforces it under the organisation's row lock.


def is_organisation_manager(membership: CallerMembership | None) -> bool:
    return membership is not None and membership.role in ORGANISATION_MANAGERS


def can_view_member_security(caller: CallerMembership | None, *, is_self: bool) -> bool:
    """POL-2: 2FA status and product grants of a member are for managers and the member alone.

    A list of fellow members without 2FA is a list of phishing targets; collaborators and
    external members see names, e-mails and roles only.
    """
    return is_self or is_organisation_manager(caller)


def can_filter_members_by_two_factor(caller: CallerMembership | None) -> bool:
    """POL-2: filtering on 2FA status would reveal it; managers only."""
    return is_organisation_manager(caller)


MEMBER_SECURITY_FILTER_FORBIDDEN = (
    "Only administrators and legal representatives may filter members on their 2FA status."
)


def _may_manage_role(caller: CallerMembership, role: Role) -> bool:
    if role == Role.LEGAL_REPRESENTATIVE:
        return caller.role == Role.LEGAL_REPRESENTATIVE
    return caller.role in ORGANISATION_MANAGERS


def can_change_role(caller: CallerMembership | None, target_role: Role, new_role: Role) -> bool:
    """ORG-6: managers change roles; only a legal representative grants or takes away the legal
    representative role."""
    return (
        caller is not None
        and _may_manage_role(caller, target_role)
        and _may_manage_role(caller, new_role)
    )


def can_remove_member(caller: CallerMembership | None, target_role: Role) -> bool:
    """ORG-6: managers remove members; a legal representative only by another one (or herself)."""
    return caller is not None and _may_manage_role(caller, target_role)


def can_grant_product_access(caller: CallerMembership | None, target_role: Role) -> bool:
    """ORG-3: managers decide which products a member may use, as they manage that member."""
    return caller is not None and _may_manage_role(caller, target_role)


def can_set_contact_preferences(caller: CallerMembership | None, *, is_self: bool) -> bool:
    """ORG-4: which notices a member receives: managers for anyone, a member for themself."""
    return caller is not None and (is_self or caller.role in ORGANISATION_MANAGERS)


def can_view_contact_preferences(caller: CallerMembership | None, *, is_self: bool) -> bool:
    return can_set_contact_preferences(caller, is_self=is_self)


def can_leave_organisation(caller: CallerMembership | None) -> bool:
    """ORG-6: an external member may leave; everyone else is removed by a manager."""
    return caller is not None and caller.role == Role.EXTERNAL


def who_may_remove(role: Role) -> str:
    """The refusal of leaveOrganisation says whom to ask."""
    if role == Role.LEGAL_REPRESENTATIVE:
        return "Only external members may leave; another legal representative may remove you."
    return (
        "Only external members may leave; a legal representative or an administrator may"
        " remove you."
    )


def can_switch_organisation(caller: CallerMembership | None) -> bool:
    """ORG-2: a user works in any organisation they belong to."""
    return caller is not None


def can_view_sharing_recipients(caller: CallerMembership | None) -> bool:
    """ORG-5: every member shares with the organisation, so every member sees with whom."""
    return caller is not None


def can_manage_support_plan(caller: CallerMembership | None) -> bool:
    """ORG-7: managers subscribe, change and cancel premium support."""
    return is_organisation_manager(caller)


MEMBER_MANAGEMENT_FORBIDDEN = (
    "Only administrators and legal representatives manage members; only a legal representative"
    " manages legal representatives."
)
SUPPORT_PLAN_FORBIDDEN = "Only administrators and legal representatives manage the support plan."
CONTACT_PREFERENCES_FORBIDDEN = (
    "Only administrators, legal representatives and the member themself set these preferences."
)


# --- Invitations (INV-*) -----------------------------------------------------------------------
# Inviting is managing members: administrators and legal representatives; only a legal
# representative may make someone a legal representative (INV-1, and the roles table).


def can_invite(membership: CallerMembership | None, role: Role) -> bool:
    """INV-1: managers invite; only a LEGAL_REPRESENTATIVE invites as LEGAL_REPRESENTATIVE."""
    if membership is None or membership.role not in ORGANISATION_MANAGERS:
        return False
    return role != Role.LEGAL_REPRESENTATIVE or membership.role == Role.LEGAL_REPRESENTATIVE


def can_view_invitations(membership: CallerMembership | None) -> bool:
    """Pending invitations name people who are not members yet: for managers only."""
    return membership is not None and membership.role in ORGANISATION_MANAGERS


def can_manage_invitation(membership: CallerMembership | None, role: Role) -> bool:
    """Revoke or resend: whoever may send this invitation (an administrator cannot revoke or
    re-send a legal representative's invitation, as they could not have sent it)."""
    return can_invite(membership, role)


INVITATIONS_FORBIDDEN = "Only administrators and legal representatives manage invitations."
INVITE_LEGAL_FORBIDDEN = "Only a legal representative may invite a legal representative."


async def require_invitation_manager(
    scope: RequestScope, organisation_id: int, role: Role | None = None
) -> CallerMembership:
    """Non-members get NOT_FOUND (the organisation does not exist for them), members FORBIDDEN.

    With a role: the caller must also be allowed to invite as that role (INV-1).
    """
    membership = await require_visible_organisation(scope, organisation_id)
    if not can_view_invitations(membership):
        raise forbidden(INVITATIONS_FORBIDDEN)
    if role is not None and not can_manage_invitation(membership, role):
        raise DomainError(ErrorCode.FORBIDDEN, INVITE_LEGAL_FORBIDDEN, "role")
    return membership


# --- Live security events (EVT-1, EVT-4) -------------------------------------------------------
# Asked when a subscription starts and again whenever the subscriber's access changes (role,
# membership, block, session), so a demoted manager stops receiving at once.


def can_watch_organisation_events(membership: CallerMembership | None) -> bool:
    """EVT-1: the organisation's live events are its activity (ACT-4): managers only."""
    return can_view_organisation_activity(membership)
