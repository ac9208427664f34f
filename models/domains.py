"""Domains, their lifecycle, and the per-TLD redemption rules (DOM-*)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

from gardien.models.enums import DomainStatus

if TYPE_CHECKING:
    from gardien.models.organisations import Organisation
    from gardien.models.users import User


class TldPolicy(Model):
    """DOM-3: redemption length and restore fee depend on the TLD."""

    tld = fields.CharField(max_length=63, primary_key=True)
    redemption_days = fields.IntField()
    restore_fee = fields.DecimalField(max_digits=10, decimal_places=2)
    currency = fields.CharField(max_length=3, default="CHF")
    # Where these values come from: the registry rule for the redemption period, the provider's
    # price list for the restore fee (not a registry fact), or "unconfirmed" when unverified.
    source = fields.TextField(db_default="unconfirmed")

    class Meta:
        table = "tld_policy"


class Domain(Model):
    id = fields.IntField(primary_key=True)
    organisation: fields.ForeignKeyRelation[Organisation] = fields.ForeignKeyField(
        "models.Organisation", related_name="domains", on_delete=fields.CASCADE
    )
    organisation_id: int
    name = fields.CharField(max_length=253, db_index=True)
    # Equal to name until the domain is released, then null: the unique constraint allows one
    # live registration of a name while keeping the history of released ones.
    live_name = fields.CharField(max_length=253, null=True, unique=True)
    tld: fields.ForeignKeyRelation[TldPolicy] = fields.ForeignKeyField(
        "models.TldPolicy", related_name="domains", on_delete=fields.RESTRICT
    )
    tld_id: str
    status = fields.CharEnumField(DomainStatus, default=DomainStatus.ACTIVE, max_length=16)
    registered_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    redemption_ends_at = fields.DatetimeField(null=True)
    renewal_warranty = fields.BooleanField(default=False)
    restored_at = fields.DatetimeField(null=True)
    restore_fee_paid = fields.DecimalField(max_digits=10, decimal_places=2, null=True)
    released_at = fields.DatetimeField(null=True)

    class Meta:
        table = "domain"
        indexes = (("organisation_id", "status"), ("status", "expires_at"))


class DomainReminder(Model):
    """DOM-1: one row per reminder sent, so a reminder never goes out twice."""

    id = fields.IntField(primary_key=True)
    domain: fields.ForeignKeyRelation[Domain] = fields.ForeignKeyField(
        "models.Domain", related_name="reminders", on_delete=fields.CASCADE
    )
    domain_id: int
    expires_at = fields.DatetimeField()
    days_before = fields.IntField()
    sent_at = fields.DatetimeField()

    class Meta:
        table = "domain_reminder"
        unique_together = (("domain", "expires_at", "days_before"),)


class DomainCharge(Model):
    """DOM-3: what a domain operation cost the organisation (a restore fee), as charged."""

    id = fields.IntField(primary_key=True)
    domain: fields.ForeignKeyRelation[Domain] = fields.ForeignKeyField(
        "models.Domain", related_name="charges", on_delete=fields.CASCADE
    )
    domain_id: int
    kind = fields.CharField(max_length=16)
    amount = fields.DecimalField(max_digits=10, decimal_places=2)
    currency = fields.CharField(max_length=3)
    charged_at = fields.DatetimeField()
    charged_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    charged_by_id: int | None

    class Meta:
        table = "domain_charge"
