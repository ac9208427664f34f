"""Web and app sessions, sign-in challenges, known devices and integrator tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

from gardien.models.enums import Role, SessionKind

if TYPE_CHECKING:
    from gardien.models.mfa import AppPassword
    from gardien.models.organisations import Organisation
    from gardien.models.users import User


class Session(Model):
    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="sessions", on_delete=fields.CASCADE
    )
    user_id: int
    # Only a keyed digest of the bearer token is stored; the token itself is shown once.
    token_hash = fields.CharField(max_length=64, unique=True)
    kind = fields.CharEnumField(SessionKind, default=SessionKind.WEB, max_length=8)
    # MFA-8: False means a browser-session cookie that ends when the browser closes.
    persistent = fields.BooleanField(default=False)
    ip = fields.CharField(max_length=45, null=True)
    country = fields.CharField(max_length=2, null=True)
    device = fields.CharField(max_length=200, null=True)
    created_at = fields.DatetimeField()
    last_seen_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)
    # MFA-6: the app password that opened an APP session; revoking it ends exactly its sessions.
    app_password: fields.ForeignKeyNullableRelation[AppPassword] = fields.ForeignKeyField(
        "models.AppPassword", related_name="sessions", null=True, on_delete=fields.CASCADE
    )
    app_password_id: int | None

    class Meta:
        table = "session"
        indexes = (("user_id", "revoked_at"),)


class SignInChallenge(Model):
    """MFA-7: the password step passed, the second factor is still owed."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="sign_in_challenges", on_delete=fields.CASCADE
    )
    user_id: int
    token_hash = fields.CharField(max_length=64, unique=True)
    remember_browser = fields.BooleanField(default=False)
    attempts = fields.IntField(default=0)
    ip = fields.CharField(max_length=45, null=True)
    country = fields.CharField(max_length=2, null=True)
    device = fields.CharField(max_length=200, null=True)
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    completed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "sign_in_challenge"


class KnownDevice(Model):
    """ACT-2: a (country, device) pair already seen for this user."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="known_devices", on_delete=fields.CASCADE
    )
    user_id: int
    country = fields.CharField(max_length=2)
    device_hash = fields.CharField(max_length=64)
    first_seen_at = fields.DatetimeField()
    last_seen_at = fields.DatetimeField()

    class Meta:
        table = "known_device"
        unique_together = (("user", "country", "device_hash"),)


class ApiToken(Model):
    """API-6: an integrator token. With an owner it is a personal access token acting as that user
    (organisation then optionally restricts it to one of the owner's organisations); without one
    it is an organisation's service account, acting for the manager who created it, in that
    organisation only, with at most its own role."""

    id = fields.IntField(primary_key=True)
    owner: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="api_tokens", null=True, on_delete=fields.CASCADE
    )
    owner_id: int | None
    organisation: fields.ForeignKeyNullableRelation[Organisation] = fields.ForeignKeyField(
        "models.Organisation", related_name="service_accounts", null=True, on_delete=fields.CASCADE
    )
    organisation_id: int | None
    # Service accounts: the manager whose rights bound it, and the role it acts with.
    created_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    created_by_id: int | None
    role = fields.CharEnumField(Role, max_length=24, null=True)
    name = fields.CharField(max_length=100)
    # Only a keyed digest of the secret is stored; the secret itself is shown once.
    token_hash = fields.CharField(max_length=64, unique=True)
    # The first characters of the secret, so its owner can tell which token is which.
    prefix = fields.CharField(max_length=24, default="")
    scopes: fields.JSONField[list[str]] = fields.JSONField(default=list)
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    last_used_at = fields.DatetimeField(null=True)
    last_used_ip = fields.CharField(max_length=45, null=True)
    # Every authenticated request counts here (API-6 "every use recorded").
    use_count = fields.BigIntField(default=0)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_token"
        indexes = (("owner_id", "revoked_at"), ("organisation_id", "revoked_at"))
