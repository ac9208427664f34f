"""The User aggregate: identity, profile, credentials and security preferences."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

from gardien.models.enums import PlatformRole

if TYPE_CHECKING:
    from gardien.models.organisations import Membership, Organisation


class User(Model):
    id = fields.IntField(primary_key=True)
    # Always stored lower-cased, so the unique constraint is case-insensitive in effect.
    email = fields.CharField(max_length=254, unique=True, null=True)
    # REC-4: a generated login (initials + digits) replaces a deleted login email.
    generated_username = fields.CharField(max_length=32, unique=True, null=True)
    must_set_login_email = fields.BooleanField(default=False)
    password_hash = fields.CharField(max_length=255)
    password_changed_at = fields.DatetimeField()
    display_name = fields.CharField(max_length=120)
    language = fields.CharField(max_length=2, default="fr")
    country = fields.CharField(max_length=2, null=True)
    timezone = fields.CharField(max_length=64, default="Europe/Zurich")
    recovery_phone = fields.CharField(max_length=16, null=True)  # E.164
    recovery_email = fields.CharField(max_length=254, null=True)
    # PRO-4: the user reads it out to support, so it is kept encrypted rather than hashed.
    support_code_encrypted = fields.BinaryField(null=True)
    platform_role = fields.CharEnumField(PlatformRole, default=PlatformRole.CUSTOMER, max_length=16)
    current_organisation: fields.ForeignKeyNullableRelation[Organisation] = fields.ForeignKeyField(
        "models.Organisation", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    current_organisation_id: int | None
    # ACT-4: which security e-mails the user receives.
    notify_new_location = fields.BooleanField(default=True)
    notify_wrong_password = fields.BooleanField(default=True)
    last_wrong_password_notice_at = fields.DatetimeField(null=True)
    # ACT-5: moved by "secure my account"; device cookies are bound to it, so they all die.
    credential_generation = fields.IntField(default=0)
    created_at = fields.DatetimeField()

    memberships: fields.ReverseRelation[Membership]

    class Meta:
        table = "user_account"

    def __str__(self) -> str:
        return f"User {self.id}"


class EmailChange(Model):
    """PRO-5: a login e-mail change waiting for confirmation from the new address."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="email_changes", on_delete=fields.CASCADE
    )
    user_id: int
    new_email = fields.CharField(max_length=254)
    token_hash = fields.CharField(max_length=64, unique=True)
    expires_at = fields.DatetimeField()
    confirmed_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "email_change"


class PendingSignUp(Model):
    """ORG-1: a sign-up waiting for its address to be confirmed, before any account exists.

    Only for an address that had no account when it was asked for: a taken address gets a note,
    never a row, so nothing here can turn into a second account for it. Confirming deletes the
    row (single use, and no second copy of the password hash). No semicolon in the first line:
    it becomes the table's comment, and the migration tool splits SQL on them.
    """

    id = fields.IntField(primary_key=True)
    # Not unique: anyone may ask for any free address; the first confirmation wins, the unique
    # login e-mail of User refuses the others.
    email = fields.CharField(max_length=254, db_index=True)
    # argon2id, made when the sign-up was asked for: the plaintext is never kept.
    password_hash = fields.CharField(max_length=255)
    display_name = fields.CharField(max_length=120)
    language = fields.CharField(max_length=2, default="fr")
    token_hash = fields.CharField(max_length=64, unique=True)
    expires_at = fields.DatetimeField(db_index=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "pending_sign_up"
