"""Second factors: TOTP apps, security keys, SMS, push devices; backup codes, app passwords."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

from gardien.models.enums import ApprovalStatus, SecurityKeyCeremonyPurpose, TwoFactorKind

if TYPE_CHECKING:
    from gardien.models.sessions import SignInChallenge
    from gardien.models.users import User


class TwoFactorMethod(Model):
    """One registered second factor. Kind-specific columns stay null for the other kinds.

    A method counts only once confirmed (MFA-1: the first code proves the enrolment).
    """

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="two_factor_methods", on_delete=fields.CASCADE
    )
    user_id: int
    kind = fields.CharEnumField(TwoFactorKind, max_length=16)
    label = fields.CharField(max_length=100)
    # TOTP (MFA-1): encrypted secret and the last accepted time step, so no code counts twice.
    totp_secret_encrypted = fields.BinaryField(null=True)
    totp_last_step = fields.BigIntField(null=True)
    # Security key (MFA-2).
    credential_id = fields.CharField(max_length=1024, null=True, unique=True)
    public_key = fields.BinaryField(null=True)
    sign_count = fields.BigIntField(null=True)
    # SMS (MFA-3): E.164 number.
    phone = fields.CharField(max_length=16, null=True)
    # Push (MFA-4): the app device's push token, encrypted, and the keyed digest of the device
    # credential the app authenticates with (shown once at registration, never stored).
    push_token_encrypted = fields.BinaryField(null=True)
    device_credential_hash = fields.CharField(max_length=64, null=True, unique=True)
    created_at = fields.DatetimeField()
    confirmed_at = fields.DatetimeField(null=True)
    last_used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "two_factor_method"
        indexes = (("user_id", "confirmed_at"),)


class OneTimeCode(Model):
    """MFA-3 SMS codes: hashed, short-lived, limited attempts, resend throttled."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="one_time_codes", on_delete=fields.CASCADE
    )
    user_id: int
    purpose = fields.CharField(max_length=32)
    destination = fields.CharField(max_length=254)
    code_hash = fields.CharField(max_length=64)
    attempts = fields.IntField(default=0)
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    consumed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "one_time_code"
        indexes = (("user_id", "purpose"),)


class PushApproval(Model):
    """MFA-4: an approval request pushed to the app devices of the user."""

    id = fields.UUIDField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="push_approvals", on_delete=fields.CASCADE
    )
    user_id: int
    challenge: fields.ForeignKeyNullableRelation[SignInChallenge] = fields.ForeignKeyField(
        "models.SignInChallenge",
        related_name="push_approvals",
        null=True,
        on_delete=fields.CASCADE,
    )
    challenge_id: int | None
    status = fields.CharEnumField(ApprovalStatus, default=ApprovalStatus.PENDING, max_length=16)
    ip = fields.CharField(max_length=45, null=True)
    country = fields.CharField(max_length=2, null=True)
    device = fields.CharField(max_length=200, null=True)
    # Against push fatigue: the sign-in screen shows `number`; the app offers it among decoys,
    # in the stored order (every device of the user shows the same three). Two digits are no
    # secret worth hashing: whoever sees the sign-in screen knows it anyway.
    number = fields.SmallIntField(default=0)
    candidate_numbers = fields.CharField(max_length=16, default="")
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    answered_at = fields.DatetimeField(null=True)
    # The device that answered (kept when the device is removed later: the answer happened).
    answered_by: fields.ForeignKeyNullableRelation[TwoFactorMethod] = fields.ForeignKeyField(
        "models.TwoFactorMethod",
        related_name="push_answers",
        null=True,
        on_delete=fields.SET_NULL,
    )
    answered_by_id: int | None

    class Meta:
        table = "push_approval"
        indexes = (("user_id", "created_at"),)


class BackupCode(Model):
    """MFA-5: single-use codes, stored hashed. A new set replaces the old one."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="backup_codes", on_delete=fields.CASCADE
    )
    user_id: int
    code_hash = fields.CharField(max_length=64)
    created_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "backup_code"
        unique_together = (("user", "code_hash"),)


class AppPassword(Model):
    """MFA-6: per-application passwords for sync tools, which never open a web session."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="app_passwords", on_delete=fields.CASCADE
    )
    user_id: int
    label = fields.CharField(max_length=100)
    password_hash = fields.CharField(max_length=255)
    created_at = fields.DatetimeField()
    last_used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "app_password"


class SecurityKeyCeremony(Model):
    """MFA-2: a security-key registration or sign-in under way, kept server side.

    The challenge the key must sign is never taken back from the client; a ceremony is bound to
    its user (and, for a sign-in, to its sign-in challenge), short-lived and used once.
    """

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="security_key_ceremonies", on_delete=fields.CASCADE
    )
    user_id: int
    purpose = fields.CharEnumField(SecurityKeyCeremonyPurpose, max_length=16)
    sign_in_challenge: fields.ForeignKeyNullableRelation[SignInChallenge] = fields.ForeignKeyField(
        "models.SignInChallenge",
        related_name="security_key_ceremonies",
        null=True,
        on_delete=fields.CASCADE,
    )
    sign_in_challenge_id: int | None
    # fido2's state: the challenge (base64url) and the user-verification requirement asked for.
    challenge = fields.CharField(max_length=128)
    user_verification = fields.CharField(max_length=16, null=True)
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "security_key_ceremony"
        indexes = (("user_id", "purpose"),)
