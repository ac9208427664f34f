"""Mailboxes of a mail service: created and deleted by those who manage it (BLK-1), fed by the
mail system even in maintenance, read by those who use it except in maintenance (BLK-2)."""

from __future__ import annotations

import re

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from gardien.models.domains import Domain
from gardien.models.enums import DomainStatus, ProductKind
from gardien.models.mail import Mailbox, MailMessage
from gardien.models.products import Product
from gardien.resolvers import activity, authz, login_email
from gardien.resolvers.authz import RequestScope
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.pagination import Counted, forward_page
from gardien.resolvers.services import RequestMeta, Services
from gardien.resolvers.text import is_plain_text

# A local part and a domain of letters, digits and the usual punctuation; the mail system's
# own rules are stricter, this keeps obvious garbage out of the table.
_ADDRESS = re.compile(r"^[a-z0-9._%+-]{1,64}@[a-z0-9-]+(\.[a-z0-9-]+)+$")
MAX_SUBJECT_LENGTH = 998  # RFC 5322 2.1.1
MAX_BODY_LENGTH = 1_000_000
# A domain in redemption is still the organisation's alone (its live name is held until release)
# and may be restored, so its addresses stay usable; a released domain is nobody's.
_HOSTING_STATUSES = (DomainStatus.ACTIVE, DomainStatus.REDEMPTION)


def _no_such_mailbox() -> DomainError:
    return DomainError(ErrorCode.NOT_FOUND, "No such mailbox.", "mailboxId")


def _mail_maintenance() -> DomainError:
    return DomainError(
        ErrorCode.MAIL_MAINTENANCE,
        "This mail service is in maintenance: incoming mail is kept, reading is back afterwards.",
    )


async def _mail_service(scope: RequestScope, product_id: int) -> Product:
    authz.require_user(scope.actor)
    product = await Product.get_or_none(id=product_id)
    caller = await authz.membership_of(scope, product.organisation_id) if product else None
    if product is None or not authz.can_view_products(caller):
        raise DomainError(ErrorCode.NOT_FOUND, "No such product.", "productId")
    if product.kind != ProductKind.MAIL_SERVICE:
        raise DomainError(ErrorCode.NOT_A_MAIL_SERVICE, "This is not a mail service.", "productId")
    return product


async def _mailbox(scope: RequestScope, mailbox_id: int) -> tuple[Mailbox, Product]:
    authz.require_user(scope.actor)
    mailbox = await Mailbox.get_or_none(id=mailbox_id).select_related("product")
    if mailbox is None:
        raise _no_such_mailbox()
    caller = await authz.membership_of(scope, mailbox.product.organisation_id)
    if not authz.can_view_products(caller):
        raise _no_such_mailbox()
    return mailbox, mailbox.product


async def _require_manager_of_locked(scope: RequestScope, product: Product) -> None:
    """BLK-1 inside the operation's transaction: the product row is read locked, so a block
    committed after the caller looked at the product still stops them, and a block placed
    meanwhile waits for the operation to end."""
    locked = await Product.filter(id=product.id).select_for_update().first()
    if locked is None:  # deleted meanwhile
        raise DomainError(ErrorCode.NOT_FOUND, "No such product.", "productId")
    await authz.require_product_manager(
        scope,
        locked.organisation_id,
        locked.id,
        management_blocked=locked.management_blocked_at is not None,
    )


def normalise_address(raw: str) -> str:
    address = raw.strip().lower()
    if len(address) > 254 or not _ADDRESS.match(address):
        raise DomainError(ErrorCode.INVALID_INPUT, "This is not a mail address.", "address")
    return address


async def _hosts_domain(organisation_id: int, address: str) -> bool:
    return await Domain.exists(
        organisation_id=organisation_id,
        live_name=address.rsplit("@", 1)[1],
        status__in=_HOSTING_STATUSES,
    )


async def _require_own_domain(organisation_id: int, address: str) -> None:
    """An address is hosted only on a live domain of the organisation: otherwise one tenant could
    open a mailbox for another's domain and receive its mail. The refusal is the same whether the
    domain is someone else's or nobody's, so it tells nothing about other customers."""
    domain = address.rsplit("@", 1)[1]
    # Read locked: a release committed meanwhile waits for this operation, or is seen by it.
    owned = (
        await Domain.filter(
            organisation_id=organisation_id, live_name=domain, status__in=_HOSTING_STATUSES
        )
        .select_for_update()
        .first()
    )
    if owned is None:
        raise DomainError(
            ErrorCode.MAIL_DOMAIN_NOT_OWNED,
            "A mailbox address must be on one of your organisation's domains.",
            "address",
        )


async def create_mailbox(
    services: Services, meta: RequestMeta, scope: RequestScope, product_id: int, raw_address: str
) -> Mailbox:
    """A product-management operation: managers, and granted members unless blocked (BLK-1)."""
    user = authz.require_user(scope.actor)
    product = await _mail_service(scope, product_id)
    try:
        async with in_transaction():
            await _require_manager_of_locked(scope, product)
            address = normalise_address(raw_address)
            await _require_own_domain(product.organisation_id, address)
            mailbox = await Mailbox.create(
                product_id=product.id, address=address, created_at=services.clock.now()
            )
            await activity.mailbox_created(
                services,
                meta,
                actor_id=user.id,
                organisation_id=product.organisation_id,
                product_id=product.id,
                mailbox_id=mailbox.id,
                address=address,
            )
    except IntegrityError:
        # The domain is the caller's own, so this is normally one of their own mailboxes; it can
        # also be one left by a former holder of the domain, so the wording names no mailbox,
        # product or organisation.
        raise DomainError(
            ErrorCode.EMAIL_UNAVAILABLE, "This address is not available.", "address"
        ) from None
    return mailbox


async def delete_mailbox(
    services: Services, meta: RequestMeta, scope: RequestScope, mailbox_id: int
) -> None:
    """A product-management operation, as create_mailbox. When the address is hosted here and is
    some user's login e-mail, that account goes into recovery in the same transaction (REC-4)."""
    user = authz.require_user(scope.actor)
    mailbox, product = await _mailbox(scope, mailbox_id)
    async with in_transaction():
        await _require_manager_of_locked(scope, product)
        deleted = await Mailbox.filter(id=mailbox.id).delete()
        if not deleted:  # deleted meanwhile
            raise _no_such_mailbox()
        await activity.mailbox_deleted(
            services,
            meta,
            actor_id=user.id,
            organisation_id=product.organisation_id,
            product_id=product.id,
            mailbox_id=mailbox.id,
            address=mailbox.address,
        )
        # Only a mailbox hosted here holds a login e-mail (REC-4). One left on a domain the
        # organisation no longer holds received nothing; the name may be another customer's
        # now, and so may the accounts whose login is on it.
        if await _hosts_domain(product.organisation_id, mailbox.address):
            await login_email.login_email_deleted(
                services, meta, actor_id=user.id, address=mailbox.address
            )


async def mailboxes(
    scope: RequestScope, product_id: int, *, first: int | None, after_id: int | None
) -> Counted[Mailbox]:
    """The mail service's mailboxes, for those who use it (listing is not reading mail). No
    token scope covers mail: a member's productAccess must not lead a token to it."""
    authz.refuse_tokens(scope.actor, "Mailboxes")
    authz.refuse_held_to_enrolment(scope.actor)
    product = await _mail_service(scope, product_id)
    await authz.require_product_user(scope, product.organisation_id, product.id)
    query = Mailbox.filter(product_id=product.id)
    page = await forward_page(query, first, after_id)
    return Counted(page, lambda: query.count())


async def read_mailbox(
    scope: RequestScope, mailbox_id: int, *, first: int | None, after_id: int | None
) -> Counted[MailMessage]:
    """BLK-2: newest first; refused while the mail service is in maintenance, and to tokens."""
    authz.refuse_tokens(scope.actor, "Mail")
    authz.refuse_held_to_enrolment(scope.actor)
    mailbox, product = await _mailbox(scope, mailbox_id)
    await authz.require_product_user(scope, product.organisation_id, product.id)
    if product.maintenance_since is not None:
        raise _mail_maintenance()
    query = MailMessage.filter(mailbox_id=mailbox.id)
    page = await forward_page(query, first, after_id, descending=True)
    return Counted(page, lambda: query.count())


async def accept_incoming_mail(
    services: Services, address: str, *, sender: str, subject: str, body: str
) -> MailMessage:
    """BLK-2: the mail system hands over a message for a hosted address; it is stored whether or
    not the service is in maintenance. NOT_FOUND when no mailbox has that address, or when its
    domain is no longer (or never was) a live domain of the mailbox's organisation."""
    mailbox = await Mailbox.get_or_none(address=address.strip().lower()).select_related("product")
    if mailbox is None or not await _hosts_domain(mailbox.product.organisation_id, mailbox.address):
        raise _no_such_mailbox()
    if not is_plain_text(sender) or not is_plain_text(subject):
        raise DomainError(ErrorCode.INVALID_INPUT, "Sender and subject are one line of text.")
    if len(body) > MAX_BODY_LENGTH:
        raise DomainError(ErrorCode.INVALID_INPUT, "This message is too large.")
    return await MailMessage.create(
        mailbox_id=mailbox.id,
        sender=sender[:254],
        subject=subject[:MAX_SUBJECT_LENGTH],
        # PostgreSQL refuses U+0000 in text; it has no meaning in a mail body.
        body=body.replace("\x00", ""),
        received_at=services.clock.now(),
    )


async def visible_mailbox(scope: RequestScope, mailbox_id: int) -> Mailbox:
    """node(id:): a mailbox of a mail service the caller uses; NOT_FOUND for any other."""
    mailbox, product = await _mailbox(scope, mailbox_id)
    try:
        await authz.require_product_user(scope, product.organisation_id, product.id)
    except DomainError:
        raise _no_such_mailbox() from None
    return mailbox
