"""Reading a user's second factors (MFA-7, POL-2); enrolment and checks come with MFA-1..6."""

from __future__ import annotations

from typing import Any

from gardien.models.enums import TwoFactorKind
from gardien.models.mfa import TwoFactorMethod
from gardien.resolvers import authz
from gardien.resolvers.authz import Actor


async def confirmed_kinds(user_id: int) -> list[TwoFactorKind]:
    """The kinds of second factor a sign-in challenge may offer (MFA-7)."""
    kinds: list[Any] = await (
        TwoFactorMethod.filter(user_id=user_id, confirmed_at__isnull=False)
        .distinct()
        .values_list("kind", flat=True)
    )
    return sorted({TwoFactorKind(k) for k in kinds})


async def own_methods(actor: Actor, user_id: int) -> list[TwoFactorMethod]:
    """A user's confirmed second factors, private to the user: none for anyone else's profile."""
    if not authz.can_view_private_profile(actor, user_id):
        return []
    return await TwoFactorMethod.filter(user_id=user_id, confirmed_at__isnull=False).order_by("id")


async def own_confirmed_method(actor: Actor, method_id: int) -> TwoFactorMethod:
    """One of the caller's own confirmed second factors; anyone else's is not found."""
    authz.require_user(actor)
    method = await TwoFactorMethod.get_or_none(id=method_id, confirmed_at__isnull=False)
    authz.require(
        method is not None and authz.can_view_private_profile(actor, method.user_id),
        authz.not_found("second factor"),
    )
    assert method is not None
    return method


async def load_two_factor_enabled(user_ids: list[int]) -> list[bool]:
    """For a DataLoader: whether each user has a confirmed second factor, in one query."""
    rows: list[Any] = await (
        TwoFactorMethod.filter(user_id__in=user_ids, confirmed_at__isnull=False)
        .distinct()
        .values_list("user_id", flat=True)
    )
    enabled = {int(user_id) for user_id in rows}
    return [user_id in enabled for user_id in user_ids]
