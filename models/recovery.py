"""Account recovery: reset and reminder requests, identity-verification cases (REC-*)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

from gardien.models.enums import CaseStatus, RecoveryChannel, RecoveryKind

if TYPE_CHECKING:
    from gardien.models.users import User


class RecoveryRequest(Model):
    """REC-1: one forgot-password request, from the login typed in to the new password.

    A login that matches no account gets a row too, without a user (a decoy): the request, the
    code sent to a decoy option and the reset attempts then do the same work as for a real
    account, and only the owner of a real destination ever receives a code.
    """

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="recovery_requests", null=True, on_delete=fields.CASCADE
    )
    user_id: int | None
    kind = fields.CharEnumField(RecoveryKind, max_length=24)
    # The option the latest code went to; null until one is sent.
    channel = fields.CharEnumField(RecoveryChannel, max_length=16, null=True)
    # Keyed digest of the recoveryId handed to the client.
    token_hash = fields.CharField(max_length=64, unique=True)
    # Keyed digest of the login typed in: the per-account budget of a decoy is kept on it.
    login_digest = fields.CharField(max_length=64, default="")
    # The channels offered, comma-separated: a code may go only to one of them.
    channels = fields.CharField(max_length=64, default="")
    # Keyed digest of the code, bound to this request: a code never serves another request.
    code_hash = fields.CharField(max_length=64, null=True)
    code_expires_at = fields.DatetimeField(null=True)
    ip = fields.CharField(max_length=45, null=True)
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "recovery_request"


class IdentityVerificationCase(Model):
    """REC-2 and REC-3: no recovery option matched, so support reviews the evidence."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="verification_cases", null=True, on_delete=fields.SET_NULL
    )
    user_id: int | None
    contact_email = fields.CharField(max_length=254)
    details = fields.TextField()
    status = fields.CharEnumField(CaseStatus, default=CaseStatus.OPEN, max_length=16)
    # The login the requester gave, as typed (it may match no account).
    login = fields.CharField(max_length=254, null=True)
    # REC-2 approval: the contact the agent recorded, and the one-time reset link sent there.
    reset_contact_email = fields.CharField(max_length=254, null=True)
    reset_token_hash = fields.CharField(max_length=64, unique=True, null=True)
    reset_expires_at = fields.DatetimeField(null=True)
    reset_used_at = fields.DatetimeField(null=True)
    reviewed_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    reviewed_by_id: int | None
    created_at = fields.DatetimeField()
    reviewed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "identity_verification_case"
