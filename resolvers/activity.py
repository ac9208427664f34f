"""Security activity (ACT-1): one function per event type, written in the caller's transaction."""

from __future__ import annotations

from typing import Any

from gardien.models.activity import ActivityEvent
from gardien.resolvers.services import RequestMeta, Services


async def _record(
    services: Services,
    type_: str,
    meta: RequestMeta,
    *,
    actor_id: int | None = None,
    subject_id: int | None = None,
    subject_email: str | None = None,
    organisation_id: int | None = None,
    data: dict[str, Any] | None = None,
) -> ActivityEvent:
    return await ActivityEvent.create(
        type=type_,
        occurred_at=services.clock.now(),
        actor_id=actor_id,
        subject_id=subject_id,
        subject_email=subject_email,
        organisation_id=organisation_id,
        ip=meta.ip,
        country=meta.country,
        device=meta.device,
        data=data or {},
    )


async def signed_up(
    services: Services, meta: RequestMeta, user_id: int, organisation_id: int
) -> None:
    await _record(
        services,
        "account.signed_up",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        organisation_id=organisation_id,
    )


async def sign_in_succeeded(
    services: Services, meta: RequestMeta, user_id: int, *, second_factor: str | None
) -> None:
    await _record(
        services,
        "sign_in.succeeded",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        data={"second_factor": second_factor},
    )


async def sign_in_password_verified(services: Services, meta: RequestMeta, user_id: int) -> None:
    """The password step passed; a second factor is now owed (MFA-7)."""
    await _record(services, "sign_in.password_verified", meta, actor_id=user_id, subject_id=user_id)


async def sign_in_failed(
    services: Services,
    meta: RequestMeta,
    *,
    user_id: int | None,
    login: str,
    reason: str,
) -> None:
    # An unknown login is kept only when it looks like an e-mail address: people sometimes type
    # their password into the login field, and that must not land in the log.
    subject_email = login if user_id is None and "@" in login and len(login) <= 254 else None
    await _record(
        services,
        "sign_in.failed",
        meta,
        subject_id=user_id,
        subject_email=subject_email,
        data={"reason": reason},
    )


async def signed_out(services: Services, meta: RequestMeta, user_id: int) -> None:
    await _record(services, "session.signed_out", meta, actor_id=user_id, subject_id=user_id)
