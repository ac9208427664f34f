"""Blocking in GraphQL: product blocks, mail maintenance and mailboxes, support blocks of users,
the secure-your-account procedure (BLK-1…BLK-4)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from gardien.models.mail import Mailbox, MailMessage
from gardien.resolvers import blocking, mailboxes, support
from gardien.resolvers.errors import DomainError
from gardien.schema.context import Info
from gardien.schema.errors import UserError
from gardien.schema.members import ProductNode
from gardien.schema.relay import (
    Connection,
    Node,
    counted_connection,
    decode_cursor,
    decode_id,
    encode_id,
)


@strawberry.type(name="MailMessage", description="A message received in a mailbox (BLK-2).")
class MailMessageType:
    sender: str
    subject: str
    body: str
    received_at: datetime

    @classmethod
    def from_model(cls, message: MailMessage) -> MailMessageType:
        return cls(
            sender=message.sender,
            subject=message.subject,
            body=message.body,
            received_at=message.received_at,
        )


@strawberry.type(name="Mailbox", description="A mailbox of a mail service.")
class MailboxNode(Node):
    address: str
    _mailbox_id: strawberry.Private[int]

    @classmethod
    def from_model(cls, mailbox: Mailbox) -> MailboxNode:
        return cls(
            id=encode_id("Mailbox", mailbox.id), address=mailbox.address, _mailbox_id=mailbox.id
        )

    @strawberry.field(
        description="Messages, newest first; MAIL_MAINTENANCE while the service is in"
        " maintenance (BLK-2)."
    )
    async def messages(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[MailMessageType]:
        counted = await mailboxes.read_mailbox(
            info.context.scope, self._mailbox_id, first=first, after_id=decode_cursor(after)
        )
        return counted_connection(counted, MailMessageType.from_model, lambda m: m.id)


async def organisation_products(
    info: Info, organisation_id: int, first: int | None, after: str | None
) -> Connection[ProductNode]:
    counted = await blocking.organisation_products(
        info.context.scope, organisation_id, first=first, after_id=decode_cursor(after)
    )
    return counted_connection(counted, ProductNode.from_model, lambda p: p.id)


async def product_mailboxes(
    info: Info, product_id: int, first: int | None, after: str | None
) -> Connection[MailboxNode]:
    counted = await mailboxes.mailboxes(
        info.context.scope, product_id, first=first, after_id=decode_cursor(after)
    )
    return counted_connection(counted, MailboxNode.from_model, lambda m: m.id)


async def mailbox_by_id(info: Info, mailbox_id: int) -> MailboxNode:
    """node(id:): a mailbox of a mail service the caller uses."""
    return MailboxNode.from_model(await mailboxes.visible_mailbox(info.context.scope, mailbox_id))


@strawberry.input
class BlockProductManagementInput:
    product_id: strawberry.ID


@strawberry.input
class UnblockProductManagementInput:
    product_id: strawberry.ID


@strawberry.input
class SetMailMaintenanceInput:
    product_id: strawberry.ID
    enabled: bool


@strawberry.input
class CreateMailboxInput:
    product_id: strawberry.ID
    address: str


@strawberry.input
class DeleteMailboxInput:
    mailbox_id: strawberry.ID


@strawberry.input
class SupportBlockUserInput:
    organisation_id: strawberry.ID
    user_id: strawberry.ID
    requester_support_code: str = strawberry.field(
        description="The support code the requesting administrator or legal representative reads"
        " out (PRO-4)."
    )
    justification: str = strawberry.field(description="Why: mandatory, recorded.")


@strawberry.input
class SupportUnblockUserInput:
    organisation_id: strawberry.ID
    user_id: strawberry.ID
    requester_support_code: str
    justification: str


@strawberry.input
class SendSecurityProcedureInput:
    membership_id: strawberry.ID


@strawberry.type
class BlockProductManagementPayload:
    product: ProductNode | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class UnblockProductManagementPayload:
    product: ProductNode | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class SetMailMaintenancePayload:
    product: ProductNode | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CreateMailboxPayload:
    mailbox: MailboxNode | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class DeleteMailboxPayload:
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class SupportBlockUserPayload:
    blocked_at: datetime | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class SupportUnblockUserPayload:
    unblocked_at: datetime | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class SendSecurityProcedurePayload:
    errors: list[UserError] = strawberry.field(default_factory=list)


def _support_request(
    organisation_id: strawberry.ID,
    user_id: strawberry.ID,
    requester_support_code: str,
    justification: str,
) -> support.SupportRequest:
    return support.SupportRequest(
        organisation_id=decode_id(organisation_id, "Organisation", "organisationId"),
        user_id=decode_id(user_id, "User", "userId"),
        requester_support_code=requester_support_code,
        justification=justification,
    )


@strawberry.type
class BlockingMutations:
    @strawberry.mutation(
        description="Block a product's management for the whole organisation; not a mail service"
        " (BLK-1, BLK-2; managers)."
    )
    async def block_product_management(
        self, info: Info, input: BlockProductManagementInput
    ) -> BlockProductManagementPayload:
        try:
            product = await blocking.block_product_management(
                info.context.services,
                info.context.meta,
                info.context.scope,
                decode_id(input.product_id, "Product", "productId"),
            )
        except DomainError as error:
            return BlockProductManagementPayload(errors=[UserError.from_domain(error)])
        return BlockProductManagementPayload(product=ProductNode.from_model(product))

    @strawberry.mutation(description="Lift a product's management block (BLK-1; managers).")
    async def unblock_product_management(
        self, info: Info, input: UnblockProductManagementInput
    ) -> UnblockProductManagementPayload:
        try:
            product = await blocking.unblock_product_management(
                info.context.services,
                info.context.meta,
                info.context.scope,
                decode_id(input.product_id, "Product", "productId"),
            )
        except DomainError as error:
            return UnblockProductManagementPayload(errors=[UserError.from_domain(error)])
        return UnblockProductManagementPayload(product=ProductNode.from_model(product))

    @strawberry.mutation(
        description="Put a mail service in maintenance or take it out (BLK-2; managers)."
    )
    async def set_mail_maintenance(
        self, info: Info, input: SetMailMaintenanceInput
    ) -> SetMailMaintenancePayload:
        try:
            product = await blocking.set_mail_maintenance(
                info.context.services,
                info.context.meta,
                info.context.scope,
                decode_id(input.product_id, "Product", "productId"),
                input.enabled,
            )
        except DomainError as error:
            return SetMailMaintenancePayload(errors=[UserError.from_domain(error)])
        return SetMailMaintenancePayload(product=ProductNode.from_model(product))

    @strawberry.mutation(
        description="Create a mailbox in a mail service (whoever manages it; BLK-1 applies)."
    )
    async def create_mailbox(self, info: Info, input: CreateMailboxInput) -> CreateMailboxPayload:
        try:
            mailbox = await mailboxes.create_mailbox(
                info.context.services,
                info.context.meta,
                info.context.scope,
                decode_id(input.product_id, "Product", "productId"),
                input.address,
            )
        except DomainError as error:
            return CreateMailboxPayload(errors=[UserError.from_domain(error)])
        return CreateMailboxPayload(mailbox=MailboxNode.from_model(mailbox))

    @strawberry.mutation(description="Delete a mailbox (whoever manages it; BLK-1 applies).")
    async def delete_mailbox(self, info: Info, input: DeleteMailboxInput) -> DeleteMailboxPayload:
        try:
            await mailboxes.delete_mailbox(
                info.context.services,
                info.context.meta,
                info.context.scope,
                decode_id(input.mailbox_id, "Mailbox", "mailboxId"),
            )
        except DomainError as error:
            return DeleteMailboxPayload(errors=[UserError.from_domain(error)])
        return DeleteMailboxPayload()

    @strawberry.mutation(
        description="Support agents: block a member's web access at the request of a manager"
        " proven by their support code, with a justification (BLK-3)."
    )
    async def support_block_user(
        self, info: Info, input: SupportBlockUserInput
    ) -> SupportBlockUserPayload:
        try:
            block = await support.block_user(
                info.context.services,
                info.context.meta,
                info.context.actor,
                _support_request(
                    input.organisation_id,
                    input.user_id,
                    input.requester_support_code,
                    input.justification,
                ),
            )
        except DomainError as error:
            return SupportBlockUserPayload(errors=[UserError.from_domain(error)])
        return SupportBlockUserPayload(blocked_at=block.created_at)

    @strawberry.mutation(description="Support agents: lift a block, with the same proof (BLK-3).")
    async def support_unblock_user(
        self, info: Info, input: SupportUnblockUserInput
    ) -> SupportUnblockUserPayload:
        try:
            block = await support.unblock_user(
                info.context.services,
                info.context.meta,
                info.context.actor,
                _support_request(
                    input.organisation_id,
                    input.user_id,
                    input.requester_support_code,
                    input.justification,
                ),
            )
        except DomainError as error:
            return SupportUnblockUserPayload(errors=[UserError.from_domain(error)])
        return SupportUnblockUserPayload(unblocked_at=block.lifted_at)

    @strawberry.mutation(
        description="E-mail a member the secure-your-account procedure instead of blocking them"
        " (BLK-4; managers)."
    )
    async def send_security_procedure(
        self, info: Info, input: SendSecurityProcedureInput
    ) -> SendSecurityProcedurePayload:
        try:
            await blocking.send_security_procedure(
                info.context.services,
                info.context.meta,
                info.context.scope,
                decode_id(input.membership_id, "Membership", "membershipId"),
            )
        except DomainError as error:
            return SendSecurityProcedurePayload(errors=[UserError.from_domain(error)])
        return SendSecurityProcedurePayload()
