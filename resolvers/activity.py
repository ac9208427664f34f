"""Security activity (ACT-1): one function per event type, written in the caller's transaction."""

from __future__ import annotations

from typing import Any

from gardien.models.activity import ActivityEvent
from gardien.resolvers import events
from gardien.resolvers.services import RequestMeta, Services
from gardien.resolvers.text import is_plain_text


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
    event = await ActivityEvent.create(
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
    await events.publish_after_commit(services, event)
    return event


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
    await _record(
        services,
        "sign_in.failed",
        meta,
        subject_id=user_id,
        subject_email=_unknown_login(user_id, login),
        data={"reason": reason},
    )


def _unknown_login(user_id: int | None, login: str) -> str | None:
    # An unknown login is kept only when it looks like an e-mail address: people sometimes type
    # their password into the login field, and that must not land in the log.
    # Control characters never reach storage (PostgreSQL refuses U+0000).
    keep = user_id is None and "@" in login and len(login) <= 254 and is_plain_text(login)
    return login if keep else None


async def sign_in_throttled(
    services: Services,
    meta: RequestMeta,
    *,
    user_id: int | None,
    login: str,
    budget: str,
) -> None:
    """A sign-in budget was just spent (once per window): someone is guessing (API-4)."""
    await _record(
        services,
        "sign_in.throttled",
        meta,
        subject_id=user_id,
        subject_email=_unknown_login(user_id, login),
        data={"budget": budget},
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


# --- Membership management (ORG-2…ORG-7) -------------------------------------------------------
# The actor is the member who acted; the subject the member concerned; always in the caller's
# transaction, so a change and its record commit or roll back together (ACT-1).


async def member_role_changed(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int,
    subject_id: int,
    organisation_id: int,
    membership_id: int,
    previous_role: str,
    role: str,
) -> None:
    await _record(
        services,
        "member.role_changed",
        meta,
        actor_id=actor_id,
        subject_id=subject_id,
        organisation_id=organisation_id,
        data={"membership_id": membership_id, "previous_role": previous_role, "role": role},
    )


async def member_removed(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int,
    subject_id: int,
    organisation_id: int,
    membership_id: int,
    role: str,
    product_ids: list[int],
) -> None:
    await _record(
        services,
        "member.removed",
        meta,
        actor_id=actor_id,
        subject_id=subject_id,
        organisation_id=organisation_id,
        data={"membership_id": membership_id, "role": role, "ended_product_ids": product_ids},
    )


async def member_left(
    services: Services,
    meta: RequestMeta,
    *,
    user_id: int,
    organisation_id: int,
    membership_id: int,
    product_ids: list[int],
) -> None:
    await _record(
        services,
        "member.left",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        organisation_id=organisation_id,
        data={"membership_id": membership_id, "ended_product_ids": product_ids},
    )


async def member_product_access_changed(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int,
    subject_id: int,
    organisation_id: int,
    membership_id: int,
    granted: list[int],
    revoked: list[int],
) -> None:
    await _record(
        services,
        "member.product_access_changed",
        meta,
        actor_id=actor_id,
        subject_id=subject_id,
        organisation_id=organisation_id,
        data={"membership_id": membership_id, "granted": granted, "revoked": revoked},
    )


async def member_contact_preferences_changed(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int,
    subject_id: int,
    organisation_id: int,
    membership_id: int,
    preferences: dict[str, bool],
) -> None:
    await _record(
        services,
        "member.contact_preferences_changed",
        meta,
        actor_id=actor_id,
        subject_id=subject_id,
        organisation_id=organisation_id,
        data={"membership_id": membership_id, **preferences},
    )


async def organisation_switched(
    services: Services,
    meta: RequestMeta,
    *,
    user_id: int,
    organisation_id: int,
    previous_organisation_id: int | None,
) -> None:
    """An account event: which organisation a user works in is theirs, not the organisation's
    activity, so the event names it in its data only."""
    await _record(
        services,
        "organisation.switched",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        data={
            "organisation_id": organisation_id,
            "previous_organisation_id": previous_organisation_id,
        },
    )


async def support_plan_changed(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int,
    organisation_id: int,
    previous_plan: str,
    plan: str,
) -> None:
    """ORG-7: who subscribed, changed or cancelled premium support, and when."""
    await _record(
        services,
        "support_plan.changed",
        meta,
        actor_id=actor_id,
        organisation_id=organisation_id,
        data={"previous_plan": previous_plan, "plan": plan},
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
