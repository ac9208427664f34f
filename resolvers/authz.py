"""The one place that decides who may do what; every rule of the roles table is a function here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from gardien.models.enums import PlatformRole, Role, SupportPlan
from gardien.resolvers import sql
from gardien.resolvers.errors import DomainError, ErrorCode

ORGANISATION_MANAGERS = frozenset({Role.LEGAL_REPRESENTATIVE, Role.ADMINISTRATOR})


@dataclass(frozen=True)
class Membership:
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
    """Who is calling: a signed-in user with their session, or nobody."""

    user: SignedInUser | None = None
    session: SignedInSession | None = None
    # The caller's memberships looked up during this request, by organisation id: an actor lives
    # for one request, so a role change is seen by the next one.
    _memberships: dict[int, Membership | None] = field(default_factory=dict, compare=False)

    @property
    def user_id(self) -> int | None:
        return self.user.id if self.user else None


def require_user(actor: Actor) -> SignedInUser:
    if actor.user is None:
        raise DomainError(ErrorCode.UNAUTHENTICATED, "Sign in first.")
    return actor.user


def can_view_organisation(membership: Membership | None) -> bool:
    """Only members see an organisation; to anyone else it does not exist."""
    return membership is not None


def can_view_organisation_activity(membership: Membership | None) -> bool:
    """ACT-4: the organisation's activity is for administrators and legal representatives."""
    return membership is not None and membership.role in ORGANISATION_MANAGERS


def can_view_private_profile(actor: Actor, user_id: int) -> bool:
    """Recovery contacts, support code and second factors are for the user alone."""
    return actor.user_id is not None and actor.user_id == user_id


def not_found(kind: str) -> DomainError:
    # The same answer for "does not exist" and "not yours", so nothing leaks (ACT-4, DOM-5).
    return DomainError(ErrorCode.NOT_FOUND, f"No such {kind}.")


async def membership_of(actor: Actor, organisation_id: int) -> Membership | None:
    """The caller's membership in an organisation: the scoping helper every lookup goes through."""
    if actor.user_id is None:
        return None
    if organisation_id not in actor._memberships:
        rows = await sql.fetch(_CALLER_MEMBERSHIP, [actor.user_id, organisation_id])
        actor._memberships[organisation_id] = (
            Membership(
                id=rows[0]["id"],
                role=Role(rows[0]["role"]),
                organisation_id=organisation_id,
                organisation_name=rows[0]["name"],
                support_plan=SupportPlan(rows[0]["support_plan"]),
                require_two_factor=bool(rows[0]["require_two_factor"]),
                policy_updated_at=sql.as_datetime(rows[0]["updated_at"]),
            )
            if rows
            else None
        )
    return actor._memberships[organisation_id]


# Read on every organisation request: one fixed statement (see sql.py).
_CALLER_MEMBERSHIP = (
    "SELECT m.id, m.role, o.name, o.support_plan, p.require_two_factor, p.updated_at"
    " FROM membership m JOIN organisation o ON o.id = m.organisation_id"
    " JOIN security_policy p ON p.organisation_id = m.organisation_id"
    " WHERE m.user_id = $1 AND m.organisation_id = $2"
)


async def require_visible_organisation(actor: Actor, organisation_id: int) -> Membership:
    require_user(actor)
    membership = await membership_of(actor, organisation_id)
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
    from gardien.models.enums import ProductKind
    from gardien.models.products import ProductGrant

    return await ProductGrant.filter(
        membership_id=membership_id, product__kind=ProductKind.DOMAIN
    ).exists()


async def may_view_domains(actor: Actor, organisation_id: int) -> bool:
    """Whether the caller sees the organisation's domains; False for non-members too."""
    membership = await membership_of(actor, organisation_id)
    if membership is None:
        return False
    if can_manage_domains(membership.role):
        return True
    return can_view_domains(
        membership.role, granted_domain_product=await _granted_domain_product(membership.id)
    )


async def require_domain_viewer(actor: Actor, organisation_id: int) -> None:
    """Non-members get NOT_FOUND (the organisation does not exist for them), others FORBIDDEN."""
    await require_visible_organisation(actor, organisation_id)
    if not await may_view_domains(actor, organisation_id):
        raise DomainError(ErrorCode.FORBIDDEN, "Only members granted the domains may see them.")


async def require_domain_manager(actor: Actor, organisation_id: int) -> None:
    membership = await require_visible_organisation(actor, organisation_id)
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
