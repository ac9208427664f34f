"""The one place that decides who may do what; every rule of the roles table is a function here."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from gardien.models.enums import PlatformRole, ProductKind, Role, SessionKind, SupportPlan
from gardien.models.organisations import Membership, UserBlock
from gardien.models.products import Product, ProductGrant
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
    # REC-4: the login e-mail was deleted; read with the session or token (LOGIN_EMAIL_REQUIRED).
    must_set_login_email: bool = False

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> SignedInUser:
        """From the account's columns, as the session and token lookups read them."""
        return cls(
            id=row["id"],
            email=row["email"],
            display_name=row["display_name"],
            language=row["language"],
            country=row["country"],
            timezone=row["timezone"],
            recovery_phone=row["recovery_phone"],
            recovery_email=row["recovery_email"],
            support_code_encrypted=row["support_code_encrypted"],
            current_organisation_id=row["current_organisation_id"],
            platform_role=PlatformRole(row["platform_role"]),
            must_set_login_email=bool(row["must_set_login_email"]),
        )


@dataclass(frozen=True)
class SignedInSession:
    id: int
    persistent: bool
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    # MFA-6: an app session (opened with an app password) is never a web session.
    kind: SessionKind = SessionKind.WEB


@dataclass(frozen=True)
class SignedInToken:
    """API-6: the integrator token a request authenticated with, instead of a web session."""

    id: int
    scopes: frozenset[str]
    # Set when the token is restricted to one of its owner's organisations.
    organisation_id: int | None
    # A service account's role: the user's role in its organisation is lowered to it.
    role_cap: Role | None = None


@dataclass(frozen=True)
class SignedInDevice:
    """MFA-4: the approval app's device credential a request authenticated with: a push device
    (a TwoFactorMethod of kind PUSH) of its user. It opens DEVICE_ROOT_FIELDS and nothing else."""

    method_id: int


@dataclass(frozen=True)
class Actor:
    """Who is calling: a signed-in user with their session, or nobody. A value, caching nothing.

    A request authenticated with an integrator token (API-6) has the token's user, no session,
    and the token: it acts as that user, narrowed by the token's scopes.
    """

    user: SignedInUser | None = None
    session: SignedInSession | None = None
    token: SignedInToken | None = None
    # MFA-4: set when the request authenticated with a push device's credential (no session).
    device: SignedInDevice | None = None
    # POL-4: one of the user's organisations requires 2FA and the user has no second factor yet.
    # Read with the session (resolvers/sessions.py, TWO_FACTOR_ENROLMENT_REQUIRED_SQL).
    two_factor_enrolment_required: bool = False

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
    are for the user alone; fellow members see only the public part of a profile.

    An integrator token (API-6) does not see them either: no scope covers what proves the user's
    identity to support or recovers the account.
    """
    return actor.token is None and actor.user_id is not None and actor.user_id == user_id


def private_profile(actor: Actor, user_id: int) -> SignedInUser | None:
    """The caller's own full record when user_id is the caller; None for anyone else's."""
    return actor.user if can_view_private_profile(actor, user_id) else None


def can_read_support_code(actor: Actor, user_id: int) -> bool:
    """PRO-4: the support code speaks to support for its owner (BLK-3), so it is read from the
    owner's web session only, as it is regenerated: an app password is one factor kept in a sync
    tool's settings."""
    return can_view_private_profile(actor, user_id) and is_web_session(actor)


# BLK-3: while a block is active (not lifted) the user's web access is stopped: signing in is
# refused, and so is every session they already hold, at their very next request. A block is
# platform-wide (whichever organisation asked for it, and whatever the user's other memberships)
# and survives the user's removal from that organisation; that organisation's managers lift it
# through support (resolvers/support.py unblock_user). The session
# lookup (resolvers/sessions.py) reads this condition in the statement that finds the session,
# so no request slips between the block and a revocation; `u` is the session's user there. A
# sign-in reads it with the account (resolvers/accounts.py), `u` being that account.
def _not_blocked_sql(user: str) -> str:
    return (
        f"NOT EXISTS (SELECT 1 FROM user_block b WHERE b.user_id = {user} AND b.lifted_at IS NULL)"
    )


WEB_ACCESS_NOT_BLOCKED_SQL = _not_blocked_sql("u.id")
# The same rule for user $1: whether they may sign in on the web (and so open a web session).
# A password sign-in reads it with the second factors it may offer, in one statement
# (accounts.py).
MAY_SIGN_IN_WEB_SQL = _not_blocked_sql("$1")
_MAY_SIGN_IN_WEB = f"SELECT {MAY_SIGN_IN_WEB_SQL} AS may_sign_in"


async def may_sign_in_web(user_id: int) -> bool:
    """BLK-3: a web sign-in (and so a new web session) is refused while the user is blocked."""
    (row,) = await sql.fetch(_MAY_SIGN_IN_WEB, [user_id])
    return bool(row["may_sign_in"])


async def is_blocked(user_id: int) -> bool:
    """BLK-3: an active block stops the user's web access (sign-in, web sessions)."""
    return not await may_sign_in_web(user_id)


async def membership_of(scope: RequestScope, organisation_id: int) -> CallerMembership | None:
    """The caller's membership in an organisation: the scoping helper every lookup goes through."""
    user_id = scope.actor.user_id
    if user_id is None:
        return None
    if not token_reaches_organisation(scope.actor, organisation_id):
        return None
    lookup = scope._memberships.get(organisation_id)
    if lookup is None:
        lookup = asyncio.ensure_future(_read_membership(user_id, organisation_id))
        scope._memberships[organisation_id] = lookup
    # Shielded: the lookup belongs to every field sharing it, so one field cancelled (its
    # parent failed, the client left) must not cancel it under its siblings.
    membership = await asyncio.shield(lookup)
    if membership is None:
        return None
    return replace(membership, role=capped_role(scope.actor, membership.role))


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
    """Renew, restore, and the renewal warranty, whatever the grants: administrators and legal
    representatives (members granted the DOMAIN product: require_domain_manager)."""
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
    require_token_scope(scope.actor, DOMAINS_READ)
    if not await may_view_domains(scope, organisation_id):
        raise DomainError(ErrorCode.FORBIDDEN, "Only members granted the domains may see them.")


async def require_domain_manager(scope: RequestScope, organisation_id: int) -> None:
    """Managers, and members granted the organisation's DOMAIN product while its management is
    not blocked (ORG-3, BLK-1): the product rule of require_product_manager, for domains.

    Call it inside the operation's transaction: the granted products are read locked."""
    membership = await require_visible_organisation(scope, organisation_id)
    if can_manage_domains(membership.role):
        return
    granted_ids: list[Any] = await Product.filter(
        organisation_id=organisation_id,
        kind=ProductKind.DOMAIN,
        grants__membership_id=membership.id,
    ).values_list("id", flat=True)
    # Read locked: called inside the operation's transaction, so a block committed since the
    # caller started counts, and one placed meanwhile waits for the operation (BLK-1).
    granted = (
        await Product.filter(id__in=list(granted_ids)).select_for_update().order_by("id")
        if granted_ids
        else []
    )
    if not granted:
        raise DomainError(
            ErrorCode.FORBIDDEN, "Only administrators and legal representatives manage domains."
        )
    # Any one granted DOMAIN product still open to management is enough.
    chosen = next((p for p in granted if p.management_blocked_at is None), granted[0])
    await require_product_manager(
        scope,
        organisation_id,
        chosen.id,
        management_blocked=chosen.management_blocked_at is not None,
    )


def check_operation(actor: Actor, operation_type: str, root_fields: frozenset[str]) -> None:
    """The operation gate: may this actor run this operation's root fields at all?

    operation_type is "query", "mutation" or "subscription"; root_fields are the names of the
    fields the operation may run at its root (__typename aside). The GraphQL engine asks it once
    per operation, before anything executes; it raises DomainError to refuse.

    Its rules: MFA-4 (a device credential runs the approval app's fields and nothing else, and
    those fields run with a device credential only: check_device_operation), API-6 (an
    integrator token may run only the root fields its scopes grant, check_token_operation),
    REC-4 (an account whose login e-mail was deleted may only set a new one,
    check_login_email_recovery) and POL-4 (check_two_factor_enrolment).
    """
    if actor.token is not None:
        check_token_operation(actor.token, operation_type, root_fields)
    check_login_email_recovery(actor, operation_type, root_fields)
    check_two_factor_enrolment(actor, operation_type, root_fields)
    check_device_operation(actor, operation_type, root_fields)


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
    require_token_scope(scope.actor, MEMBERS_READ)
    if not can_view_invitations(membership):
        raise forbidden(INVITATIONS_FORBIDDEN)
    if role is not None and not can_manage_invitation(membership, role):
        raise DomainError(ErrorCode.FORBIDDEN, INVITE_LEGAL_FORBIDDEN, "role")
    return membership


# --- Products: management blocks (BLK-1), mail maintenance (BLK-2) ----------------------------
# The roles table: managers manage every product; a COLLABORATOR or EXTERNAL member manages only
# the products granted to them (ORG-3), and not while a manager has blocked that product's
# management (BLK-1). Every product-management operation goes through require_product_manager.


def can_block_product_management(membership: CallerMembership | None) -> bool:
    """BLK-1: only administrators and legal representatives block and unblock."""
    return is_organisation_manager(membership)


def can_set_mail_maintenance(membership: CallerMembership | None) -> bool:
    """BLK-2: maintenance is the managers' answer to a mail service they may not block."""
    return is_organisation_manager(membership)


def can_manage_product(role: Role, *, granted: bool, management_blocked: bool) -> bool:
    """ORG-3 and BLK-1: managers always; others when granted the product and it is not blocked."""
    if role in ORGANISATION_MANAGERS:
        return True
    return granted and not management_blocked


def can_use_product(role: Role, *, granted: bool) -> bool:
    """ORG-3: using a product (reading a mailbox) is not managing it: a block does not stop it."""
    return role in ORGANISATION_MANAGERS or granted


PRODUCT_BLOCKING_FORBIDDEN = (
    "Only administrators and legal representatives block or unblock a product's management."
)
MAIL_MAINTENANCE_FORBIDDEN = (
    "Only administrators and legal representatives put a mail service in maintenance."
)
PRODUCT_MANAGEMENT_FORBIDDEN = "Only members granted this product may manage it."
PRODUCT_USE_FORBIDDEN = "Only members granted this product may use it."


def product_blocked() -> DomainError:
    return DomainError(
        ErrorCode.PRODUCT_BLOCKED,
        "An administrator blocked the management of this product for the organisation.",
    )


async def require_product_manager(
    scope: RequestScope, organisation_id: int, product_id: int, *, management_blocked: bool
) -> CallerMembership:
    """BLK-1: the one check of every product-management operation.

    Non-members get NOT_FOUND, members not granted the product FORBIDDEN, and granted
    collaborators and external members PRODUCT_BLOCKED while its management is blocked.
    `management_blocked` is the product's state as the operation read it.
    """
    membership = await require_visible_organisation(scope, organisation_id)
    granted = membership.role in ORGANISATION_MANAGERS or await ProductGrant.exists(
        membership_id=membership.id, product_id=product_id
    )
    if not granted:
        raise forbidden(PRODUCT_MANAGEMENT_FORBIDDEN)
    if not can_manage_product(
        membership.role, granted=granted, management_blocked=management_blocked
    ):
        raise product_blocked()
    return membership


async def require_product_user(
    scope: RequestScope, organisation_id: int, product_id: int
) -> CallerMembership:
    """ORG-3: managers, and members granted the product, use it."""
    membership = await require_visible_organisation(scope, organisation_id)
    granted = membership.role in ORGANISATION_MANAGERS or await ProductGrant.exists(
        membership_id=membership.id, product_id=product_id
    )
    if not can_use_product(membership.role, granted=granted):
        raise forbidden(PRODUCT_USE_FORBIDDEN)
    return membership


# --- Support (BLK-3) and the secure-your-account procedure (BLK-4) ---------------------------
# Support agents are platform staff, not members: they act only through the support operations,
# and only at the request of a manager who proved who they are with their support code.


def can_act_as_support(user: SignedInUser | None) -> bool:
    return user is not None and user.platform_role == PlatformRole.SUPPORT_AGENT


SUPPORT_FORBIDDEN = "Only support agents may do this."


def can_work_as_support(actor: Actor) -> bool:
    """Support's work (BLK-3 blocks, REC-2 identity reviews) is for support agents (platform
    staff flag) from a web session: a block ends someone's access and an approval hands an
    account to the contact the agent types in, which an app password (one factor, kept in a sync
    tool's settings) or an integrator token must never be enough for."""
    return actor.token is None and is_web_session(actor) and can_act_as_support(actor.user)


def can_review_identity_verification(actor: Actor) -> bool:
    """REC-2: identity-verification cases are support's work alone."""
    return can_work_as_support(actor)


def can_request_user_block(requester_role: Role, target_role: Role) -> bool:
    """BLK-3: a manager may ask to block whom they manage (a legal representative only by another
    legal representative, as in ORG-6)."""
    if requester_role not in ORGANISATION_MANAGERS:
        return False
    if target_role == Role.LEGAL_REPRESENTATIVE:
        return requester_role == Role.LEGAL_REPRESENTATIVE
    return True


def can_send_security_procedure(membership: CallerMembership | None) -> bool:
    """BLK-4: instead of blocking, a manager sends a member the secure-your-account procedure."""
    return is_organisation_manager(membership)


SECURITY_PROCEDURE_FORBIDDEN = (
    "Only administrators and legal representatives send the secure-your-account procedure."
)
# --- Own security: activity, sessions, e-mails, "secure my account" (ACT-4…ACT-6) -------------
# A user's own sessions and security settings are theirs alone: no role of any organisation
# reaches them, and a session of someone else answers exactly like one that does not exist.


def can_view_own_activity(actor: Actor, user_id: int | None) -> bool:
    """ACT-4: one's own security record (activity, sessions, security e-mails), from a web or
    app session only: no token scope covers what tells how the account is reached (API-6)."""
    return actor.token is None and actor.user is not None and user_id == actor.user.id


def can_manage_session(actor: Actor, session_owner_id: int | None) -> bool:
    """ACT-6: list and revoke one's own sessions only, and never with an integrator token."""
    return actor.token is None and actor.user is not None and session_owner_id == actor.user.id


def can_revoke_session(actor: Actor, session_id: int) -> bool:
    """ACT-6, MFA-6: an app session ends itself only. Ending the owner's other sessions is done
    from a web session: else a leaked app password would end each web session its owner opens,
    before the owner could revoke it."""
    return is_web_session(actor) or (actor.session is not None and actor.session.id == session_id)


SESSIONS_REVOKED_FROM_WEB_ONLY = "Other sessions are ended from a signed-in web session."


def can_secure_account(actor: Actor) -> bool:
    """ACT-5: from a signed-in web session, which is the one kept. Not from an app session
    (MFA-6): a leaked app password would sign its owner out everywhere and stay signed in."""
    return actor.user is not None and is_web_session(actor)


SECURE_ACCOUNT_FROM_WEB_ONLY = "Secure your account from a signed-in web session."


# --- Integrator tokens (API-6) -----------------------------------------------------------------
# A personal access token acts as its owner, never beyond: every role rule above still applies,
# and the token's scopes narrow it further. The operation gate checks the root fields against
# TOKEN_ROOT_FIELDS; fields below a root that read something a scope covers (an organisation's
# members, activity, domains, invitations) ask require_token_scope themselves.

MEMBERS_READ = "members:read"
MEMBERS_WRITE = "members:write"
ACTIVITY_READ = "activity:read"
DOMAINS_READ = "domains:read"
DOMAINS_WRITE = "domains:write"
TOKEN_SCOPES = frozenset({MEMBERS_READ, MEMBERS_WRITE, ACTIVITY_READ, DOMAINS_READ, DOMAINS_WRITE})
# A write scope reads what it writes: a mutation's payload returns the member or domain changed.
_IMPLIED_SCOPES = {MEMBERS_WRITE: MEMBERS_READ, DOMAINS_WRITE: DOMAINS_READ}


class TokenRule(StrEnum):
    """Root fields that need no particular scope, or that a token may never run."""

    ANY_SCOPE = "any token"
    NEVER = "never with a token"


# Every root field of the schema, by its coordinate: the scope it needs, or a TokenRule. A root
# field missing here is refused to every token (fail closed); a test generated from the schema
# asserts that none is missing. Accounts, sessions, tokens and invitations addressed to the user
# are the user's own business: a token can neither sign in or out, nor mint or revoke tokens,
# nor accept, leave or switch organisations on the user's behalf.
TOKEN_ROOT_FIELDS: dict[str, str] = {
    # Who the token acts as (the public part of the profile: see can_view_private_profile).
    "Query.viewer": TokenRule.ANY_SCOPE,
    # The organisation's name and policy; its members, activity and domains need their scopes;
    # its products (and their mail), service accounts and webhook endpoints refuse every token.
    "Query.organisation": TokenRule.ANY_SCOPE,
    "Query.domainLookup": DOMAINS_READ,
    # Any object by ID would bypass the nested scope checks of the fields that list them.
    "Query.node": TokenRule.NEVER,
    "Mutation.signUp": TokenRule.NEVER,
    "Mutation.confirmSignUp": TokenRule.NEVER,
    "Mutation.signIn": TokenRule.NEVER,
    "Mutation.signOut": TokenRule.NEVER,
    "Mutation.renewDomain": DOMAINS_WRITE,
    "Mutation.restoreDomain": DOMAINS_WRITE,
    "Mutation.setDomainRenewalWarranty": DOMAINS_WRITE,
    "Mutation.changeMemberRole": MEMBERS_WRITE,
    "Mutation.removeMember": MEMBERS_WRITE,
    "Mutation.leaveOrganisation": TokenRule.NEVER,
    "Mutation.setMemberProductAccess": MEMBERS_WRITE,
    "Mutation.setContactPreferences": MEMBERS_WRITE,
    "Mutation.switchOrganisation": TokenRule.NEVER,
    # Billing: no scope covers it.
    "Mutation.setSupportPlan": TokenRule.NEVER,
    "Mutation.inviteMember": MEMBERS_WRITE,
    "Mutation.acceptInvitation": TokenRule.NEVER,
    "Mutation.declineInvitation": TokenRule.NEVER,
    "Mutation.revokeInvitation": MEMBERS_WRITE,
    "Mutation.resendInvitation": MEMBERS_WRITE,
    "Mutation.createPersonalAccessToken": TokenRule.NEVER,
    "Mutation.revokePersonalAccessToken": TokenRule.NEVER,
    "Mutation.createServiceAccount": TokenRule.NEVER,
    "Mutation.revokeServiceAccount": TokenRule.NEVER,
    # Organisation security controls and the mail product: no scope covers them (BLK-1…BLK-4).
    "Mutation.blockProductManagement": TokenRule.NEVER,
    "Mutation.unblockProductManagement": TokenRule.NEVER,
    "Mutation.setMailMaintenance": TokenRule.NEVER,
    "Mutation.createMailbox": TokenRule.NEVER,
    "Mutation.deleteMailbox": TokenRule.NEVER,
    "Mutation.supportBlockUser": TokenRule.NEVER,
    "Mutation.supportUnblockUser": TokenRule.NEVER,
    "Mutation.sendSecurityProcedure": TokenRule.NEVER,
    # The user's own sessions and security e-mails (ACT-4…ACT-6): the account holder's alone.
    "Mutation.revokeSession": TokenRule.NEVER,
    "Mutation.secureAccount": TokenRule.NEVER,
    "Mutation.setSecurityEmailPreferences": TokenRule.NEVER,
    # Webhooks (EVT-5): the catalogue is public; endpoints hold signing secrets, so they are
    # managed from a web session only.
    "Query.webhookEventTypes": TokenRule.ANY_SCOPE,
    # Live security events (EVT-1): the organisation's stream is activity; one's own is private.
    "Subscription.organisationSecurityEvents": ACTIVITY_READ,
    "Subscription.viewerSecurityEvents": TokenRule.NEVER,
    "Mutation.createWebhookEndpoint": TokenRule.NEVER,
    "Mutation.updateWebhookEndpoint": TokenRule.NEVER,
    "Mutation.rotateWebhookSecret": TokenRule.NEVER,
    "Mutation.deleteWebhookEndpoint": TokenRule.NEVER,
    # Second factors and the 2FA policy (MFA-*, POL-*): what proves who the user is.
    "Mutation.completeSecondFactor": TokenRule.NEVER,
    "Mutation.beginTotpEnrolment": TokenRule.NEVER,
    "Mutation.confirmTotpEnrolment": TokenRule.NEVER,
    "Mutation.regenerateBackupCodes": TokenRule.NEVER,
    "Mutation.removeTwoFactorMethod": TokenRule.NEVER,
    "Mutation.createAppPassword": TokenRule.NEVER,
    "Mutation.revokeAppPassword": TokenRule.NEVER,
    "Mutation.authenticateApp": TokenRule.NEVER,
    "Mutation.updateSecurityPolicy": TokenRule.NEVER,
    "Mutation.sendSecurityAlert": TokenRule.NEVER,
    # Security keys (MFA-2): registering one, and the request a key answers at sign-in.
    "Mutation.beginSecurityKeyRegistration": TokenRule.NEVER,
    "Mutation.completeSecurityKeyRegistration": TokenRule.NEVER,
    "Mutation.beginSecurityKeySignIn": TokenRule.NEVER,
    # The user's own profile, contacts and login (PRO-1…PRO-5): a recovery contact or the login
    # e-mail decides who can take the account over; language and zone are the person's choice.
    "Mutation.updateProfile": TokenRule.NEVER,
    "Mutation.setRecoveryPhone": TokenRule.NEVER,
    "Mutation.setRecoveryEmail": TokenRule.NEVER,
    "Mutation.regenerateSupportCode": TokenRule.NEVER,
    "Mutation.requestLoginEmailChange": TokenRule.NEVER,
    "Mutation.confirmLoginEmailChange": TokenRule.NEVER,
    # Account recovery (REC-1…REC-3): for people who cannot sign in, and support's review of
    # identity checks; no integrator acts in them.
    "Mutation.requestPasswordReset": TokenRule.NEVER,
    "Mutation.sendRecoveryCode": TokenRule.NEVER,
    "Mutation.resetPassword": TokenRule.NEVER,
    "Mutation.requestIdentityVerification": TokenRule.NEVER,
    "Mutation.reviewIdentityVerification": TokenRule.NEVER,
    "Mutation.completeIdentityVerificationReset": TokenRule.NEVER,
    "Mutation.recoverLoginIdentifier": TokenRule.NEVER,
    "Query.identityVerificationCases": TokenRule.NEVER,
    # Push approval (MFA-4): registering a device mints a credential; asking for an approval is
    # the sign-in's second step; the app's fields run with its device credential only.
    "Mutation.registerPushDevice": TokenRule.NEVER,
    "Mutation.requestLoginApproval": TokenRule.NEVER,
    "Mutation.answerLoginApproval": TokenRule.NEVER,
    "Subscription.loginApprovalRequests": TokenRule.NEVER,
    # SMS second factor (MFA-3).
    "Mutation.beginSmsEnrolment": TokenRule.NEVER,
    "Mutation.confirmSmsEnrolment": TokenRule.NEVER,
    "Mutation.sendSignInCode": TokenRule.NEVER,
}

_ROOT_TYPES = {"query": "Query", "mutation": "Mutation", "subscription": "Subscription"}


def token_has_scope(token: SignedInToken, scope: str) -> bool:
    return scope in token.scopes or any(
        _IMPLIED_SCOPES.get(granted) == scope for granted in token.scopes
    )


def insufficient_scope(scope: str) -> DomainError:
    return DomainError(ErrorCode.INSUFFICIENT_SCOPE, f"This token's scopes do not include {scope}.")


def check_token_operation(
    token: SignedInToken, operation_type: str, root_fields: frozenset[str]
) -> None:
    """API-6: every root field of the operation must be granted to the token."""
    root = _ROOT_TYPES.get(operation_type, operation_type)
    for name in sorted(root_fields):
        coordinate = f"{root}.{name}"
        rule = TOKEN_ROOT_FIELDS.get(coordinate, TokenRule.NEVER)
        if rule == TokenRule.NEVER:
            raise DomainError(
                ErrorCode.INSUFFICIENT_SCOPE,
                f"{name} cannot be used with an integrator token; sign in to the Manager.",
            )
        if rule != TokenRule.ANY_SCOPE and not token_has_scope(token, rule):
            raise insufficient_scope(rule)


def require_token_scope(actor: Actor, scope: str) -> None:
    """For fields below a root: a token must hold the scope; a web session needs none."""
    if actor.token is not None and not token_has_scope(actor.token, scope):
        raise insufficient_scope(scope)


def token_reaches_organisation(actor: Actor, organisation_id: int) -> bool:
    """A token restricted to one organisation knows no other: their members are not found."""
    return (
        actor.token is None
        or actor.token.organisation_id is None
        or actor.token.organisation_id == organisation_id
    )


def can_manage_own_tokens(actor: Actor) -> bool:
    """Tokens are created, listed and revoked from a web session only: a leaked token cannot
    make itself a successor, nor hide from its owner by revoking the others. Nor an app session
    (MFA-6): a token made from a leaked app password would outlive the app password's revocation."""
    return actor.user is not None and actor.token is None and is_web_session(actor)


def can_view_token(actor: Actor, owner_id: int | None) -> bool:
    """A personal access token is its owner's alone, like the rest of the private profile."""
    return owner_id is not None and can_view_private_profile(actor, owner_id)


TOKENS_FROM_WEB_SESSION_ONLY = "Integrator tokens are managed from a signed-in web session."


# --- Service accounts (API-6) ------------------------------------------------------------------
# An organisation's service account is created by one of its managers, with a role no higher
# than ADMINISTRATOR, and acts for that manager in that organisation only: with the lower of the
# two roles, narrowed by its scopes. It stops working when the manager is no longer a manager
# there (demoted, removed, account deleted) or is blocked: its rights are the creator's at every
# use, so it can never outlive or exceed them.

_ROLE_RANK = {
    Role.EXTERNAL: 0,
    Role.COLLABORATOR: 1,
    Role.ADMINISTRATOR: 2,
    Role.LEGAL_REPRESENTATIVE: 3,
}
SERVICE_ACCOUNT_ROLES = frozenset({Role.ADMINISTRATOR, Role.COLLABORATOR, Role.EXTERNAL})

# Read with the token (resolvers/tokens.py), so a creator's demotion or block ends the service
# account at its next request: `m` is the creator's membership in the token's organisation.
# The roles are ORGANISATION_MANAGERS, written out: the statement is a fixed text.
SERVICE_ACCOUNT_CREATOR_IS_MANAGER_SQL = "m.role IN ('LEGAL_REPRESENTATIVE', 'ADMINISTRATOR')"


def capped_role(actor: Actor, role: Role) -> Role:
    """The role the caller acts with: a service account's token lowers it to its own role."""
    cap = actor.token.role_cap if actor.token is not None else None
    if cap is None or _ROLE_RANK[cap] >= _ROLE_RANK[role]:
        return role
    return cap


def refuse_tokens(actor: Actor, what: str) -> None:
    """For fields below a root that no scope covers: integrator tokens themselves."""
    if actor.token is not None:
        raise DomainError(
            ErrorCode.INSUFFICIENT_SCOPE, f"{what} cannot be read with an integrator token."
        )


def can_manage_service_accounts(membership: CallerMembership | None) -> bool:
    """Creating, listing and revoking an organisation's service accounts: its managers."""
    return is_organisation_manager(membership)


def can_give_service_account_role(membership: CallerMembership | None, role: Role) -> bool:
    """A service account never holds the legal representative's powers, whatever its creator."""
    return can_manage_service_accounts(membership) and role in SERVICE_ACCOUNT_ROLES


SERVICE_ACCOUNTS_FORBIDDEN = (
    "Only administrators and legal representatives manage the organisation's service accounts."
)
SERVICE_ACCOUNT_ROLE_FORBIDDEN = (
    "A service account may be an administrator, a collaborator or an external member."
)
# --- Webhooks (EVT-5) --------------------------------------------------------------------------
# An endpoint receives the organisation's security activity: managing one is for those who see
# that activity (ACT-4), and so are the notices about it.


def can_manage_webhooks(membership: CallerMembership | None) -> bool:
    """EVT-5: administrators and legal representatives register, change and remove endpoints."""
    return is_organisation_manager(membership)


WEBHOOKS_FORBIDDEN = "Only administrators and legal representatives manage webhooks."


async def require_webhook_manager(scope: RequestScope, organisation_id: int) -> CallerMembership:
    """Non-members get NOT_FOUND (the organisation does not exist for them), members FORBIDDEN."""
    membership = await require_visible_organisation(scope, organisation_id)
    if not can_manage_webhooks(membership):
        raise forbidden(WEBHOOKS_FORBIDDEN)
    return membership


async def webhook_notice_recipients(organisation_id: int) -> list[Membership]:
    """EVT-5: a disabled endpoint is told to the organisation's managers, never to a blocked user
    (BLK-3); with their user and organisation, in two queries."""
    managers = await Membership.filter(
        organisation_id=organisation_id, role__in=list(ORGANISATION_MANAGERS)
    ).select_related("user", "organisation")
    blocked_ids: list[Any] = await UserBlock.filter(
        user_id__in=[m.user_id for m in managers], lifted_at=None
    ).values_list("user_id", flat=True)
    blocked = set(blocked_ids)
    return [m for m in managers if m.user_id not in blocked and m.user.email]


# --- Two-factor authentication (MFA-*) and the organisation security policy (POL-*) -----------

# POL-4: what a member held to 2FA, not yet enrolled, may still do in a web session: see who they
# are, enrol a second factor, leave (the resolver lets only EXTERNAL members do so) and sign out.
# A new way to enrol a second factor adds its root fields here.
TWO_FACTOR_ENROLMENT_FIELDS = frozenset(
    {
        "viewer",
        "signOut",
        "leaveOrganisation",
        "beginTotpEnrolment",
        "confirmTotpEnrolment",
        "beginSecurityKeyRegistration",
        "completeSecurityKeyRegistration",
        "registerPushDevice",
        "beginSmsEnrolment",
        "confirmSmsEnrolment",
        # REC-4 leaves an account whose login e-mail was deleted nothing but these two; held to
        # 2FA too, it sets its login e-mail first (proved by its password and the new mailbox),
        # then enrols, instead of being stuck between the two gates.
        "requestLoginEmailChange",
        "confirmLoginEmailChange",
    }
)
TWO_FACTOR_ENROLMENT_REQUIRED_MESSAGE = (
    "An organisation you belong to requires two-factor authentication: set up a second factor"
    " first."
)

# POL-4: read in the statement that finds the session (resolvers/sessions.py), so the gate knows
# without a query of its own; `u` is the session's user there.
TWO_FACTOR_ENROLMENT_REQUIRED_SQL = (
    "(EXISTS (SELECT 1 FROM membership m2 JOIN security_policy p2"
    " ON p2.organisation_id = m2.organisation_id"
    " WHERE m2.user_id = u.id AND p2.require_two_factor)"
    " AND NOT EXISTS (SELECT 1 FROM two_factor_method t2"
    " WHERE t2.user_id = u.id AND t2.confirmed_at IS NOT NULL))"
)


def is_web_session(actor: Actor) -> bool:
    return actor.session is not None and actor.session.kind == SessionKind.WEB


def check_two_factor_enrolment(
    actor: Actor, operation_type: str, root_fields: frozenset[str]
) -> None:
    """POL-4: in a web session, a member held to 2FA and not enrolled may run only the enrolment,
    viewer, leave and sign-out fields. App sessions (app passwords, MFA-6) are not held to it:
    sync tools keep working while their owner enrols."""
    if not is_held_to_enrolment(actor):
        return
    if root_fields <= TWO_FACTOR_ENROLMENT_FIELDS and operation_type != "subscription":
        return
    raise DomainError(
        ErrorCode.TWO_FACTOR_ENROLMENT_REQUIRED, TWO_FACTOR_ENROLMENT_REQUIRED_MESSAGE
    )


def is_held_to_enrolment(actor: Actor) -> bool:
    """POL-4: a web session of a member an organisation holds to 2FA, not yet enrolled."""
    return actor.two_factor_enrolment_required and is_web_session(actor)


def refuse_held_to_enrolment(actor: Actor) -> None:
    """POL-4 below `viewer`, which the gate lets a held member run: an organisation's lists
    (members, activity, domains…) and the mail its products lead to stay closed to them, as
    they are through `organisation` and `node`."""
    if is_held_to_enrolment(actor):
        raise DomainError(
            ErrorCode.TWO_FACTOR_ENROLMENT_REQUIRED, TWO_FACTOR_ENROLMENT_REQUIRED_MESSAGE
        )


def can_manage_second_factors(actor: Actor) -> bool:
    """MFA-1, MFA-5, MFA-6, MFA-9: a user manages their own second factors and app passwords,
    from a web session only: an app password must never open the way to more credentials."""
    return actor.user is not None and is_web_session(actor)


SECOND_FACTORS_FROM_WEB_ONLY = "Second factors and app passwords are managed from a web session."


def can_update_security_policy(membership: CallerMembership | None) -> bool:
    """POL-1: administrators and legal representatives require 2FA of every member, or lift it."""
    return is_organisation_manager(membership)


SECURITY_POLICY_FORBIDDEN = (
    "Only administrators and legal representatives change the security policy."
)


def can_update_security_policy_from(actor: Actor) -> bool:
    """POL-1, MFA-6: from a web session. An app session's password skipped the second factor;
    it must not switch the organisation's 2FA requirement off (nor on) for every member."""
    return is_web_session(actor)


SECURITY_POLICY_FROM_WEB_ONLY = "The security policy is changed from a signed-in web session."


def can_send_security_alert(membership: CallerMembership | None) -> bool:
    """POL-3: managers send a member the summary of their security settings."""
    return is_organisation_manager(membership)


SECURITY_ALERT_FORBIDDEN = "Only administrators and legal representatives send security alerts."


def require_second_factor_manager(actor: Actor) -> SignedInUser:
    user = require_user(actor)
    require(can_manage_second_factors(actor), forbidden(SECOND_FACTORS_FROM_WEB_ONLY))
    return user


# --- Live security events (EVT-1, EVT-4) -------------------------------------------------------
# Asked when a subscription starts and again whenever the subscriber's access changes (role,
# membership, block, session), so a demoted manager stops receiving at once.


def can_watch_organisation_events(membership: CallerMembership | None) -> bool:
    """EVT-1: the organisation's live events are its activity (ACT-4): managers only."""
    return can_view_organisation_activity(membership)


def is_told_of_product_block(
    role: Role, *, granted: bool, notify_technical: bool, blocked_user: bool
) -> bool:
    """BLK-1: who is e-mailed when a product's management is blocked or unblocked.

    Collaborators and external members granted the product always: the block takes a right from
    them (can_manage_product). Everyone else when they asked for technical notices (ORG-4). A
    user whose web access is blocked (BLK-3) gets nothing."""
    if blocked_user:
        return False
    loses_a_right = granted and role not in ORGANISATION_MANAGERS
    return loses_a_right or notify_technical


# --- What a member keeps when their role changes or their membership ends (API-6, INV-1) -------
# A role given or a membership ended is judged once, when it happens: what the member made with
# powers they no longer hold is revoked then, so that re-admitting them later revives nothing.


def may_keep_service_accounts(role: Role | None) -> bool:
    """A service account lives while its creator manages its organisation (None: not a member)."""
    return role in ORGANISATION_MANAGERS


def may_keep_organisation_tokens(role: Role | None) -> bool:
    """A personal token restricted to an organisation lives while its owner is a member of it;
    it acts with the owner's role of the moment, so a role change alone does not end it."""
    return role is not None


def may_keep_invitation(inviter_role: Role | None, invitation_role: Role) -> bool:
    """A pending invitation keeps only a role its inviter could still grant (INV-1, can_invite)."""
    if inviter_role not in ORGANISATION_MANAGERS:
        return False
    return invitation_role != Role.LEGAL_REPRESENTATIVE or inviter_role == Role.LEGAL_REPRESENTATIVE


# --- The user's profile, contacts and login e-mail (PRO-1…PRO-5, REC-4) ----------------------


def can_change_own_profile(actor: Actor) -> bool:
    """PRO-1…PRO-5: one's own profile, recovery contacts, support code and login e-mail, from a
    web session only: an app password or a token must not reach what recovers the account."""
    return actor.user is not None and actor.token is None and is_web_session(actor)


PROFILE_FROM_WEB_ONLY = "Your profile and contacts are changed from a signed-in web session."


def require_profile_owner(actor: Actor) -> SignedInUser:
    user = require_user(actor)
    require(can_change_own_profile(actor), forbidden(PROFILE_FROM_WEB_ONLY))
    return user


# REC-4: what an account whose login e-mail was deleted may still do, whatever signed it in: see
# who it is, set a new login e-mail (PRO-5, confirmed from that address) and sign out.
LOGIN_EMAIL_RECOVERY_FIELDS = frozenset(
    {"viewer", "signOut", "requestLoginEmailChange", "confirmLoginEmailChange"}
)
LOGIN_EMAIL_REQUIRED_MESSAGE = (
    "The login e-mail address of this account was deleted: set a new login e-mail address first."
)


def check_login_email_recovery(
    actor: Actor, operation_type: str, root_fields: frozenset[str]
) -> None:
    """REC-4: until a new login e-mail is confirmed, the account may run only the recovery fields,
    from any session or token (a token reaches only `viewer` of them: the rest never take one)."""
    if actor.user is None or not actor.user.must_set_login_email:
        return
    if root_fields <= LOGIN_EMAIL_RECOVERY_FIELDS and operation_type != "subscription":
        return
    raise DomainError(ErrorCode.LOGIN_EMAIL_REQUIRED, LOGIN_EMAIL_REQUIRED_MESSAGE)


# --- Push approval devices (MFA-4) -------------------------------------------------------------
# The approval app holds a device credential, not a session: it may follow its user's approval
# requests and answer them, nothing else (a stolen phone's credential reads no profile, opens no
# session, registers nothing). Those two fields, in turn, accept a device credential only: a
# browser session never answers its own sign-in.
DEVICE_ROOT_FIELDS = frozenset(
    {"Subscription.loginApprovalRequests", "Mutation.answerLoginApproval"}
)
DEVICE_ONLY_MESSAGE = "A device credential only follows and answers sign-in approval requests."
DEVICE_REQUIRED_MESSAGE = "Authenticate with the approval app's device credential."


def check_device_operation(actor: Actor, operation_type: str, root_fields: frozenset[str]) -> None:
    """MFA-4, for the operation gate: a device credential and the device fields go together."""
    root = _ROOT_TYPES.get(operation_type, operation_type)
    coordinates = {f"{root}.{name}" for name in root_fields}
    if actor.device is not None:
        if not coordinates <= DEVICE_ROOT_FIELDS:
            raise DomainError(ErrorCode.FORBIDDEN, DEVICE_ONLY_MESSAGE)
    elif coordinates & DEVICE_ROOT_FIELDS:
        raise DomainError(ErrorCode.UNAUTHENTICATED, DEVICE_REQUIRED_MESSAGE)


def require_device(actor: Actor) -> tuple[SignedInUser, SignedInDevice]:
    """The push device a device-credential request comes from, with its user."""
    if actor.device is None or actor.user is None:
        raise DomainError(ErrorCode.UNAUTHENTICATED, DEVICE_REQUIRED_MESSAGE)
    return actor.user, actor.device
