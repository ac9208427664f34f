"""Reading organisations, their members, their activity and the viewer's memberships."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from tortoise.queryset import QuerySet

from gardien.models.activity import ActivityEvent
from gardien.models.enums import ProductKind, Role, SupportPlan
from gardien.models.products import Product
from gardien.models.users import User
from gardien.resolvers import authz, events, sql
from gardien.resolvers.activity_log import ActivityFilter
from gardien.resolvers.authz import CallerMembership, RequestScope
from gardien.resolvers.pagination import Counted, Page, forward_page, page_size


@dataclass(frozen=True)
class ProductSummary:
    id: int
    name: str
    kind: ProductKind
    # BLK-1, BLK-2: shown wherever a product is, so a member sees why managing it is refused.
    management_blocked: bool
    mail_maintenance: bool


@dataclass(frozen=True)
class UserSummary:
    """What fellow members see of a user."""

    id: int
    email: str | None
    display_name: str
    language: str
    country: str | None
    timezone: str
    # None when the caller may not see it (POL-2: fellow collaborators do not).
    two_factor_enabled: bool | None


@dataclass(frozen=True)
class ContactPreferencesSummary:
    """ORG-4: which administrative notices the member receives."""

    billing: bool
    technical: bool
    security: bool
    domain_expiry: bool


@dataclass(frozen=True)
class MemberEntry:
    membership_id: int
    role: Role
    organisation_id: int
    organisation_name: str
    support_plan: SupportPlan
    user: UserSummary
    # None when the caller may not see them (POL-2, ORG-4): see _as_seen_by.
    products: list[ProductSummary] | None
    contact_preferences: ContactPreferencesSummary | None


# Members are read on every page of the console: one fixed statement (see sql.py) per page,
# whatever its size: the page of memberships with the total matching the filters, then each
# one's user, 2FA status and granted products (one row per product, grouped below).
_HAS_TWO_FACTOR = (
    "EXISTS (SELECT 1 FROM two_factor_method t"
    " WHERE t.user_id = m.user_id AND t.confirmed_at IS NOT NULL)"
)
_MEMBER_PAGE = """
WITH page AS (
  SELECT m.id, m.role, m.organisation_id, m.user_id, m.notify_billing, m.notify_technical,
         m.notify_security, m.notify_domain_expiry,
         (SELECT COUNT(*) FROM membership m WHERE {scope}) AS total
  FROM membership m WHERE {conditions} ORDER BY m.id LIMIT {limit}
)
SELECT page.id, page.role, page.organisation_id, page.total, page.notify_billing,
       page.notify_technical, page.notify_security, page.notify_domain_expiry,
       o.name AS organisation_name, o.support_plan,
       u.id AS user_id, u.email, u.display_name, u.language, u.country, u.timezone,
       EXISTS (SELECT 1 FROM two_factor_method t
               WHERE t.user_id = page.user_id AND t.confirmed_at IS NOT NULL)
         AS two_factor_enabled,
       p.id AS product_id, p.name AS product_name, p.kind AS product_kind,
       p.management_blocked_at AS product_blocked_at, p.maintenance_since AS product_maintenance
FROM page
JOIN user_account u ON u.id = page.user_id
JOIN organisation o ON o.id = page.organisation_id
LEFT JOIN product_grant g ON g.membership_id = page.id
LEFT JOIN product p ON p.id = g.product_id
ORDER BY page.id, p.id
"""


@dataclass(frozen=True)
class MemberScope:
    """Which memberships: of an organisation (with filters), of a user, or one by id."""

    column: Literal["organisation_id", "user_id", "id"]
    value: int
    role: Role | None = None
    two_factor_enabled: bool | None = None
    # ORG-5: sharing recipients are the members of every role but this one.
    excluded_role: Role | None = None

    def where(self) -> tuple[list[str], list[Any]]:
        conditions: list[str] = [f"m.{self.column} = $1"]
        params: list[Any] = [self.value]
        if self.role is not None:
            params.append(self.role.value)
            conditions.append(f"m.role = ${len(params)}")
        if self.excluded_role is not None:
            params.append(self.excluded_role.value)
            conditions.append(f"m.role <> ${len(params)}")
        if self.two_factor_enabled is not None:
            # POL-2: filtered in SQL, so totalCount and pages agree.
            conditions.append(
                _HAS_TWO_FACTOR if self.two_factor_enabled else f"NOT {_HAS_TWO_FACTOR}"
            )
        return conditions, params


async def _member_entries(
    scope: MemberScope, first: int | None, after_id: int | None
) -> Page[MemberEntry]:
    size = page_size(first)
    scope_conditions, params = scope.where()
    conditions = list(scope_conditions)
    if after_id is not None:
        params.append(after_id)
        conditions.append(f"m.id > ${len(params)}")
    params.append(size + 1)
    rows = await sql.fetch(
        _MEMBER_PAGE.format(
            scope=" AND ".join(scope_conditions),
            conditions=" AND ".join(conditions),
            limit=f"${len(params)}",
        ),
        params,
    )
    entries: list[MemberEntry] = []
    products: list[ProductSummary] = []
    for row in rows:
        if not entries or entries[-1].membership_id != row["id"]:
            products = []
            entries.append(_entry(row, products))
        if row["product_id"] is not None:
            products.append(
                ProductSummary(
                    id=row["product_id"],
                    name=row["product_name"],
                    kind=ProductKind(row["product_kind"]),
                    management_blocked=row["product_blocked_at"] is not None,
                    mail_maintenance=row["product_maintenance"] is not None,
                )
            )
    total = int(rows[0]["total"]) if rows else None
    return Page(items=entries[:size], has_next_page=len(entries) > size, total_count=total)


def _entry(row: dict[str, Any], products: list[ProductSummary]) -> MemberEntry:
    return MemberEntry(
        membership_id=row["id"],
        role=Role(row["role"]),
        organisation_id=row["organisation_id"],
        organisation_name=row["organisation_name"],
        support_plan=SupportPlan(row["support_plan"]),
        user=UserSummary(
            id=row["user_id"],
            email=row["email"],
            display_name=row["display_name"],
            language=row["language"],
            country=row["country"],
            timezone=row["timezone"],
            two_factor_enabled=bool(row["two_factor_enabled"]),
        ),
        products=products,
        contact_preferences=ContactPreferencesSummary(
            billing=bool(row["notify_billing"]),
            technical=bool(row["notify_technical"]),
            security=bool(row["notify_security"]),
            domain_expiry=bool(row["notify_domain_expiry"]),
        ),
    )


def _as_seen_by(entry: MemberEntry, caller: CallerMembership | None, viewer_id: int) -> MemberEntry:
    """The entry with what the caller may not see of it set to None (POL-2, ORG-4)."""
    is_self = entry.user.id == viewer_id
    security = authz.can_view_member_security(caller, is_self=is_self)
    preferences = authz.can_view_contact_preferences(caller, is_self=is_self)
    if security and preferences:
        return entry
    return replace(
        entry,
        user=entry.user if security else replace(entry.user, two_factor_enabled=None),
        products=entry.products if security else None,
        contact_preferences=entry.contact_preferences if preferences else None,
    )


async def _count_members(scope: MemberScope) -> int:
    conditions, params = scope.where()
    rows = await sql.fetch(
        f"SELECT COUNT(*) AS n FROM membership m WHERE {' AND '.join(conditions)}", params
    )
    return int(rows[0]["n"])


async def visible_organisation(scope: RequestScope, organisation_id: int) -> CallerMembership:
    """An organisation the caller belongs to, read with their membership and its policy."""
    return await authz.require_visible_organisation(scope, organisation_id)


async def current_organisation(scope: RequestScope, user_id: int) -> CallerMembership | None:
    """ORG-2: the organisation the user works in now, while still a member of it; private to
    the user: None when user_id is anyone but the caller."""
    user = authz.private_profile(scope.actor, user_id)
    if user is None or user.current_organisation_id is None:
        return None
    membership = await authz.membership_of(scope, user.current_organisation_id)
    return membership if authz.can_view_organisation(membership) else None


async def security_policy(scope: RequestScope, organisation_id: int) -> CallerMembership:
    """The organisation's policy (POL-1), read with the caller's membership there."""
    membership = await authz.membership_of(scope, organisation_id)
    authz.require(authz.can_view_security_policy(membership), authz.not_found("organisation"))
    assert membership is not None
    return membership


async def members(
    scope: RequestScope,
    organisation_id: int,
    *,
    first: int | None,
    after_id: int | None,
    two_factor_enabled: bool | None = None,
    role: Role | None = None,
) -> Counted[MemberEntry]:
    """Members of an organisation the caller belongs to, oldest first (POL-2 filters)."""
    caller = await _require_members(scope, organisation_id, two_factor_enabled)
    scope_filter = MemberScope("organisation_id", organisation_id, role, two_factor_enabled)
    page = _seen_by(await _member_entries(scope_filter, first, after_id), scope, caller)
    return Counted(page, lambda: _count_members(scope_filter))


def _seen_by(
    page: Page[MemberEntry], scope: RequestScope, caller: CallerMembership | None
) -> Page[MemberEntry]:
    viewer_id = authz.require_user(scope.actor).id
    return replace(page, items=[_as_seen_by(entry, caller, viewer_id) for entry in page.items])


async def sharing_recipients(
    scope: RequestScope, organisation_id: int, *, first: int | None, after_id: int | None
) -> Counted[MemberEntry]:
    """ORG-5: the members organisation-wide sharing reaches: everyone but EXTERNAL members."""
    authz.require_user(scope.actor)
    authz.refuse_held_to_enrolment(scope.actor)
    caller = await authz.membership_of(scope, organisation_id)
    authz.require(authz.can_view_sharing_recipients(caller), authz.not_found("organisation"))
    authz.require_token_scope(scope.actor, authz.MEMBERS_READ)
    scope_filter = MemberScope("organisation_id", organisation_id, excluded_role=Role.EXTERNAL)
    page = _seen_by(await _member_entries(scope_filter, first, after_id), scope, caller)
    return Counted(page, lambda: _count_members(scope_filter))


async def _require_members(
    scope: RequestScope, organisation_id: int, two_factor_enabled: bool | None
) -> CallerMembership:
    authz.require_user(scope.actor)
    authz.refuse_held_to_enrolment(scope.actor)
    membership = await authz.membership_of(scope, organisation_id)
    authz.require(authz.can_view_members(membership), authz.not_found("organisation"))
    authz.require_token_scope(scope.actor, authz.MEMBERS_READ)
    if two_factor_enabled is not None:
        authz.require(
            authz.can_filter_members_by_two_factor(membership),
            authz.forbidden(authz.MEMBER_SECURITY_FILTER_FORBIDDEN),
        )
    assert membership is not None
    return membership


async def visible_member(scope: RequestScope, membership_id: int) -> MemberEntry:
    """One membership, as the members list of its organisation shows it to the caller."""
    viewer = authz.require_user(scope.actor)
    page = await _member_entries(MemberScope("id", membership_id), 1, None)
    entry = page.items[0] if page.items else None
    caller = await authz.membership_of(scope, entry.organisation_id) if entry else None
    authz.require(entry is not None and authz.can_view_members(caller), authz.not_found("member"))
    authz.require_token_scope(scope.actor, authz.MEMBERS_READ)
    assert entry is not None
    return _as_seen_by(entry, caller, viewer.id)


async def activity(
    scope: RequestScope,
    organisation_id: int,
    *,
    first: int | None,
    after_id: int | None,
    filters: ActivityFilter | None = None,
) -> Counted[ActivityEvent]:
    """ACT-4: the organisation's security activity, newest first, filtered by type and time."""
    authz.refuse_held_to_enrolment(scope.actor)
    membership = await authz.require_visible_organisation(scope, organisation_id)
    authz.require(
        authz.can_view_organisation_activity(membership),
        authz.forbidden(authz.ACTIVITY_FORBIDDEN),
    )
    authz.require_token_scope(scope.actor, authz.ACTIVITY_READ)

    def matching(before_id: int | None = None) -> QuerySet[ActivityEvent]:
        query = events.organisation_events(organisation_id, before_id=before_id)
        return filters.apply(query) if filters is not None else query

    # The page reads the audience index from its cursor on; the count is of every match.
    page = await forward_page(matching(after_id), first, after_id, descending=True)
    return Counted(page, lambda: matching().count())


async def visible_activity_event(scope: RequestScope, event_id: int) -> ActivityEvent:
    """One event, when the caller may see the activity of an organisation that lists it (ACT-4).

    Read from the event's stored audience, as `activity` lists it: a member's account security
    event, recorded without an organisation, is found by its id by the managers who see it in
    their organisation's history, and by nobody else.
    """
    authz.require_user(scope.actor)
    audience = await events.audience_of(event_id)
    visible = False
    for organisation_id in audience:
        if authz.can_view_organisation_activity(await authz.membership_of(scope, organisation_id)):
            visible = True
            break
    authz.require(visible, authz.not_found("event"))
    authz.require_token_scope(scope.actor, authz.ACTIVITY_READ)
    return await ActivityEvent.get(id=event_id)


async def visible_product(scope: RequestScope, product_id: int) -> Product:
    """One product, for the members of its organisation (ORG-3: the members list shows them)."""
    authz.require_user(scope.actor)
    product = await Product.get_or_none(id=product_id)
    caller = await authz.membership_of(scope, product.organisation_id) if product else None
    authz.require(authz.can_view_products(caller), authz.not_found("product"))
    assert product is not None
    return product


async def own_memberships(
    scope: RequestScope, user_id: int, *, first: int | None, after_id: int | None
) -> Counted[MemberEntry]:
    """ORG-2: a user's memberships, private to the user: empty for anyone else's profile."""
    user = authz.private_profile(scope.actor, user_id)
    if user is None:
        return Counted(Page(items=[], has_next_page=False, total_count=0), _no_members)
    scope_filter = MemberScope("user_id", user.id)
    page = await _member_entries(scope_filter, first, after_id)
    return Counted(page, lambda: _count_members(scope_filter))


async def _no_members() -> int:
    return 0


# Batch loads for DataLoaders: one query for a whole page, whatever its size.


async def load_users(user_ids: list[int]) -> list[User | None]:
    users = {u.id: u for u in await User.filter(id__in=user_ids)}
    return [users.get(uid) for uid in user_ids]
