"""Membership management: roles, removal, leaving, product access, contact preferences,
the current organisation and the support plan (ORG-2…ORG-7), each change recorded (ACT-1)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from tortoise.transactions import in_transaction

from gardien.models.enums import Role, SupportPlan
from gardien.models.organisations import Membership, Organisation
from gardien.models.products import Product, ProductGrant
from gardien.models.users import User
from gardien.resolvers import activity, authz, invitations, organisations, tokens
from gardien.resolvers.authz import CallerMembership, RequestScope
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.organisations import MemberEntry
from gardien.resolvers.services import RequestMeta, Services

# ORG-3: an organisation has a handful of products; a longer list is a mistake or an abuse.
MAX_PRODUCT_IDS = 100
# ORG-3: managers use and manage every product already; grants are for the other roles.
GRANTED_ROLES = frozenset({Role.COLLABORATOR, Role.EXTERNAL})


@dataclass(frozen=True)
class ContactPreferences:
    """ORG-4: which administrative notices a member receives."""

    billing: bool
    technical: bool
    security: bool
    domain_expiry: bool


def last_legal_representative() -> DomainError:
    return DomainError(
        ErrorCode.LAST_LEGAL_REPRESENTATIVE,
        "An organisation keeps at least one legal representative: appoint another one first.",
        "membershipId",
    )


def _management_forbidden() -> DomainError:
    return authz.forbidden(authz.MEMBER_MANAGEMENT_FORBIDDEN)


async def _caller_of_member(scope: RequestScope, membership_id: int) -> CallerMembership:
    """The caller's membership in the organisation of a membership they may see; NOT_FOUND for
    any other. Read before the transaction: the request scope reads on its own connection."""
    authz.require_user(scope.actor)
    target = await Membership.get_or_none(id=membership_id).only("id", "organisation_id")
    caller = await authz.membership_of(scope, target.organisation_id) if target else None
    authz.require(target is not None and authz.can_view_members(caller), authz.not_found("member"))
    assert caller is not None
    return caller


async def _lock_organisation(
    scope: RequestScope, cached: CallerMembership
) -> tuple[CallerMembership, Organisation]:
    """Inside a transaction: the organisation's row lock, then the caller's role as it is now.

    Every change to an organisation's members or plan takes this lock first, so they run one
    after the other: of two concurrent demotions of the last two legal representatives the
    second reads the first one's result and is refused (ORG-6). The caller's role is read again
    under the lock, since a concurrent change may have just taken it away.
    """
    user = authz.require_user(scope.actor)
    organisation_id = cached.organisation_id
    organisation = await Organisation.filter(id=organisation_id).select_for_update().first()
    row = await Membership.get_or_none(organisation_id=organisation_id, user_id=user.id)
    if organisation is None or row is None:
        raise authz.not_found("organisation")
    return replace(cached, id=row.id, role=authz.capped_role(scope.actor, row.role)), organisation


async def _locked_target(
    scope: RequestScope, cached: CallerMembership, membership_id: int
) -> tuple[CallerMembership, Membership]:
    caller, _ = await _lock_organisation(scope, cached)
    target = await Membership.get_or_none(id=membership_id, organisation_id=cached.organisation_id)
    if target is None:  # removed meanwhile
        raise authz.not_found("member")
    return caller, target


async def _keep_a_legal_representative(target: Membership) -> None:
    """ORG-6: read under the organisation's lock, so no concurrent change slips between."""
    others = (
        await Membership.filter(
            organisation_id=target.organisation_id, role=Role.LEGAL_REPRESENTATIVE
        )
        .exclude(id=target.id)
        .exists()
    )
    if not others:
        raise last_legal_representative()


async def _read_back(scope: RequestScope, membership_id: int) -> MemberEntry:
    # A fresh scope: the caller's own role may be what just changed.
    return await organisations.visible_member(RequestScope(scope.actor), membership_id)


async def change_member_role(
    services: Services, meta: RequestMeta, scope: RequestScope, membership_id: int, role: Role
) -> MemberEntry:
    """ORG-6: a manager changes a member's role; the same role again changes nothing."""
    cached = await _caller_of_member(scope, membership_id)
    async with in_transaction():
        caller, target = await _locked_target(scope, cached, membership_id)
        authz.require(authz.can_change_role(caller, target.role, role), _management_forbidden())
        previous = target.role
        if previous != role:
            if previous == Role.LEGAL_REPRESENTATIVE:
                await _keep_a_legal_representative(target)
            target.role = role
            await target.save(update_fields=["role"])
            await activity.member_role_changed(
                services,
                meta,
                actor_id=_user_id(scope),
                subject_id=target.user_id,
                organisation_id=target.organisation_id,
                membership_id=target.id,
                previous_role=previous.value,
                role=role.value,
            )
            await _revoke_beyond_role(
                services, meta, _user_id(scope), target, role, "member.role_changed"
            )
    return await _read_back(scope, membership_id)


async def _revoke_beyond_role(
    services: Services,
    meta: RequestMeta,
    actor_id: int,
    target: Membership,
    role: Role | None,
    reason: str,
) -> None:
    """Under the organisation's lock, in the change's transaction: what the member made with
    powers they no longer hold ends now (API-6, INV-1), so a later re-admission revives nothing."""
    await tokens.revoke_beyond_role(
        services,
        meta,
        actor_id=actor_id,
        user_id=target.user_id,
        organisation_id=target.organisation_id,
        role=role,
        reason=reason,
    )
    await invitations.revoke_beyond_role(
        services,
        meta,
        actor_id=actor_id,
        inviter_id=target.user_id,
        organisation_id=target.organisation_id,
        role=role,
        reason=reason,
    )


async def _end_membership(target: Membership) -> list[int]:
    """Deletes the membership and its product grants; the user's sessions stay, but no longer
    open this organisation. Returns the products the member could use until now."""
    product_ids = sorted(g.product_id for g in await ProductGrant.filter(membership_id=target.id))
    await ProductGrant.filter(membership_id=target.id).delete()
    await Membership.filter(id=target.id).delete()
    await User.filter(id=target.user_id, current_organisation_id=target.organisation_id).update(
        current_organisation_id=None
    )
    return product_ids


async def remove_member(
    services: Services, meta: RequestMeta, scope: RequestScope, membership_id: int
) -> None:
    """ORG-6: a manager removes a member, never the last legal representative."""
    cached = await _caller_of_member(scope, membership_id)
    async with in_transaction():
        caller, target = await _locked_target(scope, cached, membership_id)
        authz.require(authz.can_remove_member(caller, target.role), _management_forbidden())
        if target.role == Role.LEGAL_REPRESENTATIVE:
            await _keep_a_legal_representative(target)
        ended = await _end_membership(target)
        await activity.member_removed(
            services,
            meta,
            actor_id=_user_id(scope),
            subject_id=target.user_id,
            organisation_id=target.organisation_id,
            membership_id=target.id,
            role=target.role.value,
            product_ids=ended,
        )
        await _revoke_beyond_role(services, meta, _user_id(scope), target, None, "member.removed")


async def leave_organisation(
    services: Services, meta: RequestMeta, scope: RequestScope, organisation_id: int
) -> None:
    """ORG-6: an external member leaves; others are told who may remove them."""
    cached = await authz.require_visible_organisation(scope, organisation_id)
    async with in_transaction():
        caller, _ = await _lock_organisation(scope, cached)
        authz.require(
            authz.can_leave_organisation(caller), authz.forbidden(authz.who_may_remove(caller.role))
        )
        own = await Membership.get(id=caller.id)
        ended = await _end_membership(own)
        await activity.member_left(
            services,
            meta,
            user_id=_user_id(scope),
            organisation_id=organisation_id,
            membership_id=own.id,
            product_ids=ended,
        )
        await _revoke_beyond_role(services, meta, _user_id(scope), own, None, "member.left")


async def set_member_product_access(
    services: Services,
    meta: RequestMeta,
    scope: RequestScope,
    membership_id: int,
    product_ids: list[int],
) -> MemberEntry:
    """ORG-3: exactly these products of the organisation, for a collaborator or external."""
    wanted = set(product_ids)
    if len(wanted) > MAX_PRODUCT_IDS:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"At most {MAX_PRODUCT_IDS} products.", "productIds"
        )
    cached = await _caller_of_member(scope, membership_id)
    async with in_transaction():
        caller, target = await _locked_target(scope, cached, membership_id)
        authz.require(authz.can_grant_product_access(caller, target.role), _management_forbidden())
        if target.role not in GRANTED_ROLES:
            raise DomainError(
                ErrorCode.INVALID_INPUT,
                "Administrators and legal representatives use every product already.",
                "membershipId",
            )
        found = {
            p.id
            for p in await Product.filter(id__in=wanted, organisation_id=target.organisation_id)
        }
        if found != wanted:
            # A product of another organisation does not exist for this one (ACT-4, DOM-5).
            raise DomainError(ErrorCode.NOT_FOUND, "No such product.", "productIds")
        current = {g.product_id for g in await ProductGrant.filter(membership_id=target.id)}
        granted, revoked = sorted(wanted - current), sorted(current - wanted)
        if granted or revoked:
            await ProductGrant.filter(membership_id=target.id, product_id__in=revoked).delete()
            for product_id in granted:
                await ProductGrant.create(membership_id=target.id, product_id=product_id)
            await activity.member_product_access_changed(
                services,
                meta,
                actor_id=_user_id(scope),
                subject_id=target.user_id,
                organisation_id=target.organisation_id,
                membership_id=target.id,
                granted=granted,
                revoked=revoked,
            )
    return await _read_back(scope, membership_id)


async def set_contact_preferences(
    services: Services,
    meta: RequestMeta,
    scope: RequestScope,
    membership_id: int,
    preferences: ContactPreferences,
) -> MemberEntry:
    """ORG-4: managers set anyone's, a member their own."""
    cached = await _caller_of_member(scope, membership_id)
    async with in_transaction():
        caller, target = await _locked_target(scope, cached, membership_id)
        is_self = target.user_id == _user_id(scope)
        authz.require(
            authz.can_set_contact_preferences(caller, is_self=is_self),
            authz.forbidden(authz.CONTACT_PREFERENCES_FORBIDDEN),
        )
        before = contact_preferences_of(target)
        if before != preferences:
            target.notify_billing = preferences.billing
            target.notify_technical = preferences.technical
            target.notify_security = preferences.security
            target.notify_domain_expiry = preferences.domain_expiry
            await target.save(
                update_fields=[
                    "notify_billing",
                    "notify_technical",
                    "notify_security",
                    "notify_domain_expiry",
                ]
            )
            await activity.member_contact_preferences_changed(
                services,
                meta,
                actor_id=_user_id(scope),
                subject_id=target.user_id,
                organisation_id=target.organisation_id,
                membership_id=target.id,
                preferences={
                    "billing": preferences.billing,
                    "technical": preferences.technical,
                    "security": preferences.security,
                    "domain_expiry": preferences.domain_expiry,
                },
            )
    return await _read_back(scope, membership_id)


def contact_preferences_of(membership: Membership) -> ContactPreferences:
    return ContactPreferences(
        billing=membership.notify_billing,
        technical=membership.notify_technical,
        security=membership.notify_security,
        domain_expiry=membership.notify_domain_expiry,
    )


async def switch_organisation(
    services: Services, meta: RequestMeta, scope: RequestScope, organisation_id: int
) -> CallerMembership:
    """ORG-2: the caller works in another organisation they belong to."""
    user = authz.require_user(scope.actor)
    caller = await authz.membership_of(scope, organisation_id)
    authz.require(authz.can_switch_organisation(caller), authz.not_found("organisation"))
    assert caller is not None
    async with in_transaction():
        row = await User.filter(id=user.id).select_for_update().first()
        # Still a member now, not only when the request began.
        still_member = await Membership.exists(organisation_id=organisation_id, user_id=user.id)
        if row is None or not still_member:
            raise authz.not_found("organisation")
        previous = row.current_organisation_id
        if previous != organisation_id:
            await User.filter(id=user.id).update(current_organisation_id=organisation_id)
            await activity.organisation_switched(
                services,
                meta,
                user_id=user.id,
                organisation_id=organisation_id,
                previous_organisation_id=previous,
            )
    return caller


async def set_support_plan(
    services: Services,
    meta: RequestMeta,
    scope: RequestScope,
    organisation_id: int,
    plan: SupportPlan,
) -> CallerMembership:
    """ORG-7: managers subscribe to premium support, or cancel it; who and when are recorded."""
    cached = await authz.require_visible_organisation(scope, organisation_id)
    async with in_transaction():
        caller, organisation = await _lock_organisation(scope, cached)
        authz.require(
            authz.can_manage_support_plan(caller), authz.forbidden(authz.SUPPORT_PLAN_FORBIDDEN)
        )
        previous = organisation.support_plan
        if previous != plan:
            organisation.support_plan = plan
            organisation.support_plan_changed_at = services.clock.now()
            await organisation.save(update_fields=["support_plan", "support_plan_changed_at"])
            await activity.support_plan_changed(
                services,
                meta,
                actor_id=_user_id(scope),
                organisation_id=organisation_id,
                previous_plan=previous.value,
                plan=plan.value,
            )
    return replace(caller, support_plan=plan)


def _user_id(scope: RequestScope) -> int:
    return authz.require_user(scope.actor).id
