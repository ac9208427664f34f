"""Reading organisations, their members, their activity and the viewer's memberships."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from gardien.models.activity import ActivityEvent
from gardien.models.enums import Role
from gardien.models.mfa import TwoFactorMethod
from gardien.models.organisations import Membership, Organisation, SecurityPolicy
from gardien.models.products import Product, ProductGrant
from gardien.models.users import User
from gardien.resolvers import authz
from gardien.resolvers.authz import Actor
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.pagination import Page, forward_page
from tortoise.expressions import Subquery
from tortoise.queryset import QuerySet


def _members_query(
    organisation_id: int, two_factor_enabled: bool | None, role: Role | None
) -> QuerySet[Membership]:
    query = Membership.filter(organisation_id=organisation_id)
    if role is not None:
        query = query.filter(role=role)
    if two_factor_enabled is not None:
        # POL-2: filter on 2FA status in SQL, so totalCount and pages agree.
        with_two_factor = Subquery(
            TwoFactorMethod.filter(confirmed_at__isnull=False).values("user_id")
        )
        query = (
            query.filter(user_id__in=with_two_factor)
            if two_factor_enabled
            else query.filter(user_id__not_in=with_two_factor)
        )
    return query


async def members(
    membership: Membership,
    *,
    first: int | None,
    after_id: int | None,
    two_factor_enabled: bool | None = None,
    role: Role | None = None,
) -> Page[Membership]:
    """Members of the caller's organisation; `membership` is the caller's own, already checked."""
    query = _members_query(membership.organisation_id, two_factor_enabled, role)
    return await forward_page(query.select_related("user"), first, after_id)


async def count_members(
    membership: Membership, *, two_factor_enabled: bool | None = None, role: Role | None = None
) -> int:
    return await _members_query(membership.organisation_id, two_factor_enabled, role).count()


async def activity(
    membership: Membership, *, first: int | None, after_id: int | None
) -> Page[ActivityEvent]:
    if not authz.can_view_organisation_activity(membership):
        raise DomainError(
            ErrorCode.FORBIDDEN,
            "Only administrators and legal representatives see the organisation's activity.",
        )
    query = ActivityEvent.filter(organisation_id=membership.organisation_id)
    return await forward_page(query, first, after_id, descending=True)


async def count_activity(membership: Membership) -> int:
    return await ActivityEvent.filter(organisation_id=membership.organisation_id).count()


async def viewer_memberships(
    actor: Actor, *, first: int | None, after_id: int | None
) -> Page[Membership]:
    user = authz.require_user(actor)
    query = Membership.filter(user_id=user.id).select_related("organisation")
    return await forward_page(query, first, after_id)


async def count_viewer_memberships(actor: Actor) -> int:
    user = authz.require_user(actor)
    return await Membership.filter(user_id=user.id).count()


# Batch loads for DataLoaders: one query for a whole page, whatever its size.


async def load_users_with_two_factor(user_ids: list[int]) -> list[bool]:
    rows: list[Any] = await (
        TwoFactorMethod.filter(user_id__in=user_ids, confirmed_at__isnull=False)
        .distinct()
        .values_list("user_id", flat=True)
    )
    enabled = {int(user_id) for user_id in rows}
    return [user_id in enabled for user_id in user_ids]


async def load_product_access(membership_ids: list[int]) -> list[list[Product]]:
    grants = await ProductGrant.filter(membership_id__in=membership_ids).select_related("product")
    by_membership: dict[int, list[Product]] = defaultdict(list)
    for grant in sorted(grants, key=lambda g: g.product_id):
        by_membership[grant.membership_id].append(grant.product)
    return [by_membership.get(mid, []) for mid in membership_ids]


async def load_security_policies(organisation_ids: list[int]) -> list[SecurityPolicy | None]:
    policies = {
        p.organisation_id: p
        for p in await SecurityPolicy.filter(organisation_id__in=organisation_ids)
    }
    return [policies.get(oid) for oid in organisation_ids]


async def load_users(user_ids: list[int]) -> list[User | None]:
    users = {u.id: u for u in await User.filter(id__in=user_ids)}
    return [users.get(uid) for uid in user_ids]


async def load_organisations(organisation_ids: list[int]) -> list[Organisation | None]:
    found = {o.id: o for o in await Organisation.filter(id__in=organisation_ids)}
    return [found.get(oid) for oid in organisation_ids]
