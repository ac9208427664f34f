"""Mailboxes of an organisation's mail service, and the messages they hold (BLK-2, REC-4)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from gardien.models.products import Product


class Mailbox(Model):
    id = fields.IntField(primary_key=True)
    product: fields.ForeignKeyRelation[Product] = fields.ForeignKeyField(
        "models.Product", related_name="mailboxes", on_delete=fields.CASCADE
    )
    product_id: int
    # Always stored lower-cased: one mailbox per address on the whole platform.
    address = fields.CharField(max_length=254, unique=True)
    created_at = fields.DatetimeField()

    messages: fields.ReverseRelation[MailMessage]

    class Meta:
        table = "mailbox"

    def __str__(self) -> str:
        return f"Mailbox {self.id}"


# A message delivered to a mailbox, kept during maintenance too (BLK-2). A comment, not a
# docstring: Tortoise would make a docstring the table's comment in the migration's SQL.
class MailMessage(Model):
    id = fields.BigIntField(primary_key=True)
    mailbox: fields.ForeignKeyRelation[Mailbox] = fields.ForeignKeyField(
        "models.Mailbox", related_name="messages", on_delete=fields.CASCADE
    )
    mailbox_id: int
    sender = fields.CharField(max_length=254)
    subject = fields.CharField(max_length=998)
    body = fields.TextField()
    received_at = fields.DatetimeField()

    class Meta:
        table = "mail_message"
        indexes = (("mailbox_id", "id"),)
