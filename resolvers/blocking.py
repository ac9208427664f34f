"""Product management blocks (BLK-1), mail maintenance (BLK-2), the secure-your-account procedure
(BLK-4), and the organisation's product list."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tortoise.transactions import in_transaction

from gardien.mail.templates import Template
from gardien.models.enums import ProductKind
from gardien.models.organisations import Membership, UserBlock
from gardien.models.products import Product, ProductGrant
from gardien.resolvers import activity, authz, ratelimits
from gardien.resolvers.authz import CallerMembership, RequestScope, SignedInUser
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.pagination import Counted, forward_page
from gardien.resolvers.services import RequestMeta, Services

# BLK-4: the procedure is an e-mail a manager makes the platform send; a few a day to one member
# is plenty, and more would let a manager flood someone's inbox under the platform's name.
SECURITY_PROCEDURES_PER_MEMBER = ratelimits.Rule(
    "security_procedure_member", 3, timedelta(hours=24)
)
# BLK-1: every block and unblock e-mails the members concerned; without a bound a manager could
# flood their inboxes (aliased block/unblock pairs, repeated). Ten changes an hour per product is
# far more than real management needs. Counted per product, whoever the manager.
BLOCK_CHANGES_PER_PRODUCT = ratelimits.Rule("product_block_change", 10, timedelta(hours=1))


async def organisation_products(
    scope: RequestScope, organisation_id: int, *, first: int | None, after_id: int | None
) -> Counted[Product]:
    """Every member sees the organisation's products with their block and maintenance state;
    no token scope covers products (they lead to mailboxes and their mail)."""
    authz.refuse_held_to_enrolment(scope.actor)
    membership = await authz.require_visible_organisation(scope, organisation_id)
    authz.refuse_tokens(scope.actor, "Products")
    authz.require(authz.can_view_products(membership), authz.not_found("organisation"))
    query = Product.filter(organisation_id=organisation_id)
    page = await forward_page(query, first, after_id)
    return Counted(page, lambda: query.count())


def products_link(services: Services) -> str:
    return f"{services.settings.public_url}/console/#/products"


def security_link(services: Services) -> str:
    return f"{services.settings.public_url}/console/#/security"


async def _product_for_manager(
    scope: RequestScope, product_id: int
) -> tuple[Product, CallerMembership]:
    """The product and the caller's membership; NOT_FOUND for a product of another organisation
    and an unknown one alike (as for domains, DOM-5)."""
    authz.require_user(scope.actor)
    product = await Product.get_or_none(id=product_id)
    caller = await authz.membership_of(scope, product.organisation_id) if product else None
    if product is None or not authz.can_view_products(caller):
        raise DomainError(ErrorCode.NOT_FOUND, "No such product.", "productId")
    assert caller is not None
    return product, caller


async def _locked_product(product_id: int) -> Product:
    product = await Product.filter(id=product_id).select_for_update().first()
    if product is None:  # deleted meanwhile
        raise DomainError(ErrorCode.NOT_FOUND, "No such product.", "productId")
    return product


async def product_notice_recipients(product: Product) -> list[Membership]:
    """BLK-1: who is told of a block or unblock (the rule: authz.is_told_of_product_block)."""
    members = await Membership.filter(organisation_id=product.organisation_id).select_related(
        "user"
    )
    granted_ids: list[Any] = await ProductGrant.filter(product_id=product.id).values_list(
        "membership_id", flat=True
    )
    blocked_ids: list[Any] = await UserBlock.filter(
        user_id__in=[m.user_id for m in members], lifted_at=None
    ).values_list("user_id", flat=True)
    granted, blocked = set(granted_ids), set(blocked_ids)
    return [
        m
        for m in members
        if m.user.email is not None
        and authz.is_told_of_product_block(
            m.role,
            granted=m.id in granted,
            notify_technical=m.notify_technical,
            blocked_user=m.user_id in blocked,
        )
    ]


async def _notify_members(
    services: Services,
    product: Product,
    manager_name: str,
    organisation_name: str,
    *,
    blocked: bool,
) -> int:
    recipients = await product_notice_recipients(product)
    for member in recipients:
        assert member.user.email is not None
        await services.mail.enqueue(
            Template.PRODUCT_MANAGEMENT_CHANGED,
            to=member.user.email,
            language=member.user.language,
            timezone=member.user.timezone,
            context={
                "organisation": organisation_name,
                "product": product.name,
                "manager": manager_name,
                "blocked": blocked,
                "link": products_link(services),
            },
        )
    return len(recipients)


async def block_product_management(
    services: Services, meta: RequestMeta, scope: RequestScope, product_id: int
) -> Product:
    """BLK-1: a manager blocks a product's management for the whole organisation.

    A mail service cannot be blocked this way (BLK-2): its members would lose their mail; it is
    put in maintenance instead.
    """
    return await _set_management_block(services, meta, scope, product_id, blocked=True)


async def unblock_product_management(
    services: Services, meta: RequestMeta, scope: RequestScope, product_id: int
) -> Product:
    """BLK-1: only managers unblock; members are told as of the block."""
    return await _set_management_block(services, meta, scope, product_id, blocked=False)


async def _set_management_block(
    services: Services, meta: RequestMeta, scope: RequestScope, product_id: int, *, blocked: bool
) -> Product:
    user = authz.require_user(scope.actor)
    product, caller = await _product_for_manager(scope, product_id)
    authz.require(
        authz.can_block_product_management(caller),
        authz.forbidden(authz.PRODUCT_BLOCKING_FORBIDDEN),
    )
    # Only blocking is refused for a mail service: unblocking one (never blocked) answers
    # PRODUCT_NOT_BLOCKED like any product that is not blocked.
    if blocked and product.kind == ProductKind.MAIL_SERVICE:
        raise DomainError(
            ErrorCode.MAIL_SERVICE_NOT_BLOCKABLE,
            "A mail service cannot be blocked: put it in maintenance instead (setMailMaintenance).",
            "productId",
        )
    # Counted before the change, outside its transaction, so concurrent changes cannot all pass;
    # given back when the change is refused (nothing changed, nobody e-mailed).
    subject = str(product.id)
    await ratelimits.require_allowed(services, BLOCK_CHANGES_PER_PRODUCT, subject)
    try:
        return await _change_management_block(services, meta, user, caller, product_id, blocked)
    except DomainError:
        await ratelimits.give_back(services, BLOCK_CHANGES_PER_PRODUCT, subject)
        raise


async def _change_management_block(
    services: Services,
    meta: RequestMeta,
    user: SignedInUser,
    caller: CallerMembership,
    product_id: int,
    blocked: bool,
) -> Product:
    async with in_transaction():
        product = await _locked_product(product_id)
        if (product.management_blocked_at is not None) == blocked:
            if blocked:
                raise DomainError(
                    ErrorCode.PRODUCT_ALREADY_BLOCKED,
                    "This product's management is already blocked.",
                    "productId",
                )
            raise DomainError(
                ErrorCode.PRODUCT_NOT_BLOCKED,
                "This product's management is not blocked.",
                "productId",
            )
        product.management_blocked_at = services.clock.now() if blocked else None
        product.management_blocked_by_id = user.id if blocked else None
        await product.save(update_fields=["management_blocked_at", "management_blocked_by_id"])
        notified = await _notify_members(
            services, product, user.display_name, caller.organisation_name, blocked=blocked
        )
        record = (
            activity.product_management_blocked
            if blocked
            else activity.product_management_unblocked
        )
        await record(
            services,
            meta,
            actor_id=user.id,
            organisation_id=product.organisation_id,
            product_id=product.id,
            name=product.name,
            kind=product.kind.value,
            notified=notified,
        )
    return product


async def set_mail_maintenance(
    services: Services, meta: RequestMeta, scope: RequestScope, product_id: int, enabled: bool
) -> Product:
    """BLK-2: while on, incoming mail is still stored and reading mailboxes is refused.

    The same state again changes nothing and records nothing.
    """
    user = authz.require_user(scope.actor)
    product, caller = await _product_for_manager(scope, product_id)
    authz.require(
        authz.can_set_mail_maintenance(caller), authz.forbidden(authz.MAIL_MAINTENANCE_FORBIDDEN)
    )
    if product.kind != ProductKind.MAIL_SERVICE:
        raise DomainError(
            ErrorCode.NOT_A_MAIL_SERVICE, "Only a mail service has a maintenance mode.", "productId"
        )
    async with in_transaction():
        product = await _locked_product(product_id)
        if (product.maintenance_since is not None) != enabled:
            product.maintenance_since = services.clock.now() if enabled else None
            await product.save(update_fields=["maintenance_since"])
            await activity.mail_maintenance_changed(
                services,
                meta,
                actor_id=user.id,
                organisation_id=product.organisation_id,
                product_id=product.id,
                name=product.name,
                enabled=enabled,
            )
    return product


async def send_security_procedure(
    services: Services, meta: RequestMeta, scope: RequestScope, membership_id: int
) -> Membership:
    """BLK-4: instead of blocking, a manager e-mails a member the secure-your-account procedure
    (enable 2FA, change the password, change mail passwords: ACT-5)."""
    user = authz.require_user(scope.actor)
    target = await Membership.get_or_none(id=membership_id).select_related("user")
    caller = await authz.membership_of(scope, target.organisation_id) if target else None
    authz.require(
        target is not None and authz.can_view_members(caller),
        DomainError(ErrorCode.NOT_FOUND, "No such member.", "membershipId"),
    )
    assert target is not None
    authz.require(
        authz.can_send_security_procedure(caller),
        authz.forbidden(authz.SECURITY_PROCEDURE_FORBIDDEN),
    )
    assert caller is not None
    address = target.user.email or target.user.recovery_email
    if address is None:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "This member has no e-mail address to write to.",
            "membershipId",
        )
    await ratelimits.require_allowed(services, SECURITY_PROCEDURES_PER_MEMBER, str(target.id))
    async with in_transaction():
        await services.mail.enqueue(
            Template.SECURE_ACCOUNT_PROCEDURE,
            to=address,
            language=target.user.language,
            timezone=target.user.timezone,
            context={
                "organisation": caller.organisation_name,
                "sender": user.display_name,
                "link": security_link(services),
            },
        )
        await activity.security_procedure_sent(
            services,
            meta,
            actor_id=user.id,
            subject_id=target.user_id,
            organisation_id=target.organisation_id,
            membership_id=target.id,
        )
    return target
