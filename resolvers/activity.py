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


# --- Domain lifecycle (DOM-1…DOM-4) ------------------------------------------------------------
# Events of the job runner have no actor: the platform acted, at the time its clock says.


def _domain_data(domain_id: int, name: str, **more: Any) -> dict[str, Any]:
    return {"domain_id": domain_id, "domain": name, **more}


async def domain_expiry_reminder_sent(
    services: Services,
    *,
    organisation_id: int,
    domain_id: int,
    name: str,
    expires_at: str,
    days_before: int,
    recipients: int,
) -> None:
    await _record(
        services,
        "domain.expiry_reminder_sent",
        RequestMeta(),
        organisation_id=organisation_id,
        data=_domain_data(
            domain_id, name, expires_at=expires_at, days_before=days_before, recipients=recipients
        ),
    )


async def domain_entered_redemption(
    services: Services,
    *,
    organisation_id: int,
    domain_id: int,
    name: str,
    expired_at: str,
    redemption_ends_at: str,
) -> None:
    await _record(
        services,
        "domain.entered_redemption",
        RequestMeta(),
        organisation_id=organisation_id,
        data=_domain_data(
            domain_id, name, expired_at=expired_at, redemption_ends_at=redemption_ends_at
        ),
    )


async def domain_renewed_by_warranty(
    services: Services,
    *,
    organisation_id: int,
    domain_id: int,
    name: str,
    previous_expires_at: str,
    expires_at: str,
) -> None:
    """DOM-4: the renewal warranty kept the domain at its expiry."""
    await _record(
        services,
        "domain.renewed_by_warranty",
        RequestMeta(),
        organisation_id=organisation_id,
        data=_domain_data(
            domain_id, name, previous_expires_at=previous_expires_at, expires_at=expires_at
        ),
    )


async def domain_released(
    services: Services, *, organisation_id: int, domain_id: int, name: str
) -> None:
    await _record(
        services,
        "domain.released",
        RequestMeta(),
        organisation_id=organisation_id,
        data=_domain_data(domain_id, name),
    )


async def domain_renewed(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int,
    organisation_id: int,
    domain_id: int,
    name: str,
    years: int,
    previous_expires_at: str,
    expires_at: str,
) -> None:
    await _record(
        services,
        "domain.renewed",
        meta,
        actor_id=actor_id,
        organisation_id=organisation_id,
        data=_domain_data(
            domain_id,
            name,
            years=years,
            previous_expires_at=previous_expires_at,
            expires_at=expires_at,
        ),
    )


async def domain_restored(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int,
    organisation_id: int,
    domain_id: int,
    name: str,
    amount: str,
    currency: str,
    expires_at: str,
) -> None:
    """DOM-3: restored during redemption; the fee charged is part of the record."""
    await _record(
        services,
        "domain.restored",
        meta,
        actor_id=actor_id,
        organisation_id=organisation_id,
        data=_domain_data(domain_id, name, amount=amount, currency=currency, expires_at=expires_at),
    )


async def domain_renewal_warranty_changed(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int,
    organisation_id: int,
    domain_id: int,
    name: str,
    enabled: bool,
) -> None:
    await _record(
        services,
        "domain.renewal_warranty_changed",
        meta,
        actor_id=actor_id,
        organisation_id=organisation_id,
        data=_domain_data(domain_id, name, enabled=enabled),
    )


# --- Invitations (INV-*) -----------------------------------------------------------------------
# The invitee is named by e-mail: until they accept, they may have no account at all.


async def _invitation_event(
    services: Services,
    type_: str,
    meta: RequestMeta,
    *,
    actor_id: int | None,
    organisation_id: int,
    invitation_id: int,
    email: str,
    role: str,
    subject_id: int | None = None,
    **more: Any,
) -> None:
    await _record(
        services,
        type_,
        meta,
        actor_id=actor_id,
        subject_id=subject_id,
        subject_email=email,
        organisation_id=organisation_id,
        data={"invitation_id": invitation_id, "role": role, **more},
    )


async def invitation_sent(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int,
    organisation_id: int,
    invitation_id: int,
    email: str,
    role: str,
    new_account: bool,
) -> None:
    await _invitation_event(
        services,
        "invitation.sent",
        meta,
        actor_id=actor_id,
        organisation_id=organisation_id,
        invitation_id=invitation_id,
        email=email,
        role=role,
        new_account=new_account,
    )


async def invitation_resent(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int,
    organisation_id: int,
    invitation_id: int,
    email: str,
    role: str,
    send_count: int,
) -> None:
    await _invitation_event(
        services,
        "invitation.resent",
        meta,
        actor_id=actor_id,
        organisation_id=organisation_id,
        invitation_id=invitation_id,
        email=email,
        role=role,
        send_count=send_count,
    )


async def invitation_revoked(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int,
    organisation_id: int,
    invitation_id: int,
    email: str,
    role: str,
) -> None:
    await _invitation_event(
        services,
        "invitation.revoked",
        meta,
        actor_id=actor_id,
        organisation_id=organisation_id,
        invitation_id=invitation_id,
        email=email,
        role=role,
    )


async def invitation_declined(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int | None,
    organisation_id: int,
    invitation_id: int,
    email: str,
    role: str,
) -> None:
    await _invitation_event(
        services,
        "invitation.declined",
        meta,
        actor_id=actor_id,
        organisation_id=organisation_id,
        invitation_id=invitation_id,
        email=email,
        role=role,
    )


async def invitation_accepted(
    services: Services,
    meta: RequestMeta,
    *,
    user_id: int,
    organisation_id: int,
    invitation_id: int,
    email: str,
    role: str,
    new_account: bool,
) -> None:
    await _invitation_event(
        services,
        "invitation.accepted",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        organisation_id=organisation_id,
        invitation_id=invitation_id,
        email=email,
        role=role,
        new_account=new_account,
    )


async def member_joined(
    services: Services,
    meta: RequestMeta,
    *,
    user_id: int,
    organisation_id: int,
    membership_id: int,
    role: str,
    invited_by_id: int | None,
) -> None:
    await _record(
        services,
        "member.joined",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        organisation_id=organisation_id,
        data={"membership_id": membership_id, "role": role, "invited_by_id": invited_by_id},
    )
