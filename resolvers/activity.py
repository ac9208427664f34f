"""Security activity (ACT-1): one function per event type, written in the caller's transaction.

One hot path writes its event inside a statement of its own: a returning browser's sign-in
(accounts.py), with sign_in_succeeded_event's values and publish_written after it."""

from __future__ import annotations

from typing import Any

from gardien import db
from gardien.models.activity import ActivityEvent
from gardien.resolvers import events, webhook_fanout
from gardien.resolvers.services import RequestMeta, Services
from gardien.resolvers.text import is_plain_text


def _new_event(
    services: Services,
    type_: str,
    meta: RequestMeta,
    *,
    actor_id: int | None = None,
    subject_id: int | None = None,
    subject_email: str | None = None,
    organisation_id: int | None = None,
    data: dict[str, Any] | None = None,
) -> events.NewEvent:
    return events.NewEvent(
        type=type_,
        occurred_at=services.clock.now(),
        actor_id=actor_id,
        subject_id=subject_id,
        subject_email=subject_email,
        organisation_id=organisation_id,
        ip=meta.ip,
        country=meta.country,
        device=meta.device,
        # API-6: an action through a token is the token's as much as its person's.
        data={**(data or {}), "via_token": meta.via_token.as_dict()}
        if meta.via_token is not None
        else data or {},
    )


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
    new = _new_event(
        services,
        type_,
        meta,
        actor_id=actor_id,
        subject_id=subject_id,
        subject_email=subject_email,
        organisation_id=organisation_id,
        data=data,
    )
    return await _write(services, new)


async def _write(services: Services, new: events.NewEvent) -> ActivityEvent:
    # The event and its audience are one write, also for a caller outside any transaction.
    async with db.atomic():
        event, audience = await events.record(new)
        await webhook_fanout.enqueue_deliveries(services, event)
    events.publish_after_commit(services, event, audience)
    return event


def publish_written(services: Services, event: ActivityEvent, audience: list[int]) -> None:
    """What follows an event written by another module's statement, once its transaction
    commits: its publication (EVT-1). Only a user's own event (no organisation) may be written
    so, since an organisation's needs its webhook deliveries (EVT-5), which _write queues."""
    if event.organisation_id is not None:
        raise ValueError("an organisation's event is written by _write, with its deliveries")
    events.publish_after_commit(services, event, audience)


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


def sign_in_succeeded_event(
    services: Services, meta: RequestMeta, user_id: int, *, second_factor: str | None
) -> events.NewEvent:
    """The event of a completed sign-in, for a statement that writes it with the session."""
    return _new_event(
        services,
        "sign_in.succeeded",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        data={"second_factor": second_factor},
    )


async def sign_in_succeeded(
    services: Services, meta: RequestMeta, user_id: int, *, second_factor: str | None
) -> None:
    await _write(
        services, sign_in_succeeded_event(services, meta, user_id, second_factor=second_factor)
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
) -> None:
    """Says nothing of whether the address has an account: managers and their webhooks read
    this event, and any signed-up user can make an organisation to invite any address (ORG-1)."""
    await _invitation_event(
        services,
        "invitation.sent",
        meta,
        actor_id=actor_id,
        organisation_id=organisation_id,
        invitation_id=invitation_id,
        email=email,
        role=role,
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


# --- Blocking (BLK-1…BLK-4) and mailboxes ------------------------------------------------------


def _product_data(product_id: int, name: str, kind: str, **more: Any) -> dict[str, Any]:
    return {"product_id": product_id, "name": name, "kind": kind, **more}


async def product_management_blocked(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int,
    organisation_id: int,
    product_id: int,
    name: str,
    kind: str,
    notified: int,
) -> None:
    """BLK-1: `notified` is how many members were e-mailed."""
    await _record(
        services,
        "product.management_blocked",
        meta,
        actor_id=actor_id,
        organisation_id=organisation_id,
        data=_product_data(product_id, name, kind, notified=notified),
    )


async def product_management_unblocked(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int,
    organisation_id: int,
    product_id: int,
    name: str,
    kind: str,
    notified: int,
) -> None:
    await _record(
        services,
        "product.management_unblocked",
        meta,
        actor_id=actor_id,
        organisation_id=organisation_id,
        data=_product_data(product_id, name, kind, notified=notified),
    )


async def mail_maintenance_changed(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int,
    organisation_id: int,
    product_id: int,
    name: str,
    enabled: bool,
) -> None:
    """BLK-2: a mail service entered or left maintenance."""
    await _record(
        services,
        "product.mail_maintenance_started" if enabled else "product.mail_maintenance_ended",
        meta,
        actor_id=actor_id,
        organisation_id=organisation_id,
        data=_product_data(product_id, name, "MAIL_SERVICE"),
    )


async def mailbox_created(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int,
    organisation_id: int,
    product_id: int,
    mailbox_id: int,
    address: str,
) -> None:
    await _record(
        services,
        "mailbox.created",
        meta,
        actor_id=actor_id,
        organisation_id=organisation_id,
        data={"product_id": product_id, "mailbox_id": mailbox_id, "address": address},
    )


async def mailbox_deleted(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int,
    organisation_id: int,
    product_id: int,
    mailbox_id: int,
    address: str,
) -> None:
    await _record(
        services,
        "mailbox.deleted",
        meta,
        actor_id=actor_id,
        organisation_id=organisation_id,
        data={"product_id": product_id, "mailbox_id": mailbox_id, "address": address},
    )


async def user_blocked_by_support(
    services: Services,
    meta: RequestMeta,
    *,
    agent_id: int,
    subject_id: int,
    organisation_id: int,
    requested_by_id: int,
    justification: str,
    sessions_revoked: int,
) -> None:
    """BLK-3: the agent acted, at the verified request of a manager, for the reason given."""
    await _record(
        services,
        "user.blocked_by_support",
        meta,
        actor_id=agent_id,
        subject_id=subject_id,
        organisation_id=organisation_id,
        data={
            "requested_by": requested_by_id,
            "justification": justification,
            "sessions_revoked": sessions_revoked,
        },
    )


async def user_unblocked_by_support(
    services: Services,
    meta: RequestMeta,
    *,
    agent_id: int,
    subject_id: int,
    organisation_id: int,
    requested_by_id: int,
    justification: str,
) -> None:
    await _record(
        services,
        "user.unblocked_by_support",
        meta,
        actor_id=agent_id,
        subject_id=subject_id,
        organisation_id=organisation_id,
        data={"requested_by": requested_by_id, "justification": justification},
    )


async def support_code_rejected(
    services: Services, meta: RequestMeta, *, agent_id: int, organisation_id: int
) -> None:
    """BLK-3: a support code that matched no manager of the organisation (someone may guess)."""
    await _record(
        services,
        "support.code_rejected",
        meta,
        actor_id=agent_id,
        organisation_id=organisation_id,
    )


async def support_agent_changed(
    services: Services, meta: RequestMeta, *, subject_id: int, granted: bool
) -> None:
    """Granted or withdrawn from the command line: no actor of the API."""
    await _record(
        services,
        "support.agent_granted" if granted else "support.agent_revoked",
        meta,
        subject_id=subject_id,
    )


async def security_procedure_sent(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int,
    subject_id: int,
    organisation_id: int,
    membership_id: int,
) -> None:
    """BLK-4: a manager sent a member the secure-your-account procedure."""
    await _record(
        services,
        "member.security_procedure_sent",
        meta,
        actor_id=actor_id,
        subject_id=subject_id,
        organisation_id=organisation_id,
        data={"membership_id": membership_id},
    )


# --- Own security (ACT-2, ACT-4…ACT-6) ---------------------------------------------------------


async def sign_in_new_location(
    services: Services,
    meta: RequestMeta,
    user_id: int,
    *,
    new_country: bool,
    new_device: bool,
    notified: bool,
) -> None:
    """ACT-2: a sign-in from a country or a device never seen for this user."""
    await _record(
        services,
        "sign_in.new_location",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        data={"new_country": new_country, "new_device": new_device, "notified": notified},
    )


async def security_email_preferences_changed(
    services: Services, meta: RequestMeta, user_id: int, *, wrong_password: bool
) -> None:
    await _record(
        services,
        "security_emails.preferences_changed",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        data={"wrong_password": wrong_password},
    )


async def session_revoked(
    services: Services, meta: RequestMeta, user_id: int, *, session_id: int, kind: str
) -> None:
    await _record(
        services,
        "session.revoked",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        data={"session_id": session_id, "kind": kind},
    )


async def account_secured(
    services: Services,
    meta: RequestMeta,
    user_id: int,
    *,
    sessions_revoked: int,
    app_passwords_revoked: int,
    tokens_revoked: int,
    service_accounts_revoked: int,
) -> None:
    """ACT-5: every other session, app password, personal access token and service account the
    user created revoked, device cookies void."""
    await _record(
        services,
        "account.secured",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        data={
            "sessions_revoked": sessions_revoked,
            "app_passwords_revoked": app_passwords_revoked,
            "tokens_revoked": tokens_revoked,
            "service_accounts_revoked": service_accounts_revoked,
        },
    )


# --- Integrator tokens (API-6) -----------------------------------------------------------------


async def token_created(
    services: Services,
    meta: RequestMeta,
    *,
    user_id: int,
    token_id: int,
    label: str,
    scopes: list[str],
    organisation_id: int | None,
    expires_at: str,
) -> None:
    await _record(
        services,
        "token.created",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        organisation_id=organisation_id,
        data={"token_id": token_id, "label": label, "scopes": scopes, "expires_at": expires_at},
    )


async def token_revoked(
    services: Services,
    meta: RequestMeta,
    *,
    user_id: int,
    token_id: int,
    label: str,
    organisation_id: int | None,
) -> None:
    await _record(
        services,
        "token.revoked",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        organisation_id=organisation_id,
        data={"token_id": token_id, "label": label},
    )


async def token_used(
    services: Services,
    meta: RequestMeta,
    *,
    user_id: int,
    token_id: int,
    organisation_id: int | None,
    first_use: bool,
) -> None:
    """A token's first use, and each use from an address it was not last used from."""
    await _record(
        services,
        "token.used",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        organisation_id=organisation_id,
        data={"token_id": token_id, "first_use": first_use},
    )


async def service_account_created(
    services: Services,
    meta: RequestMeta,
    *,
    user_id: int,
    organisation_id: int,
    token_id: int,
    name: str,
    role: str,
    scopes: list[str],
    expires_at: str,
) -> None:
    await _record(
        services,
        "service_account.created",
        meta,
        actor_id=user_id,
        organisation_id=organisation_id,
        data={
            "token_id": token_id,
            "name": name,
            "role": role,
            "scopes": scopes,
            "expires_at": expires_at,
        },
    )


async def service_account_revoked(
    services: Services,
    meta: RequestMeta,
    *,
    user_id: int,
    organisation_id: int | None,
    token_id: int,
    name: str,
) -> None:
    await _record(
        services,
        "service_account.revoked",
        meta,
        actor_id=user_id,
        organisation_id=organisation_id,
        data={"token_id": token_id, "name": name},
    )


# --- Webhooks (EVT-5) --------------------------------------------------------------------------


def _webhook_data(endpoint_id: int, url: str, **more: Any) -> dict[str, Any]:
    return {"endpoint_id": endpoint_id, "url": url, **more}


async def webhook_endpoint_created(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int,
    organisation_id: int,
    endpoint_id: int,
    url: str,
    event_types: list[str],
) -> None:
    await _record(
        services,
        "webhook.endpoint_created",
        meta,
        actor_id=actor_id,
        organisation_id=organisation_id,
        data=_webhook_data(endpoint_id, url, event_types=event_types),
    )


async def webhook_endpoint_updated(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int,
    organisation_id: int,
    endpoint_id: int,
    url: str,
    event_types: list[str],
    enabled: bool,
) -> None:
    await _record(
        services,
        "webhook.endpoint_updated",
        meta,
        actor_id=actor_id,
        organisation_id=organisation_id,
        data=_webhook_data(endpoint_id, url, event_types=event_types, enabled=enabled),
    )


async def webhook_secret_rotated(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int,
    organisation_id: int,
    endpoint_id: int,
    url: str,
) -> None:
    await _record(
        services,
        "webhook.secret_rotated",
        meta,
        actor_id=actor_id,
        organisation_id=organisation_id,
        data=_webhook_data(endpoint_id, url),
    )


async def webhook_endpoint_deleted(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int,
    organisation_id: int,
    endpoint_id: int,
    url: str,
) -> None:
    await _record(
        services,
        "webhook.endpoint_deleted",
        meta,
        actor_id=actor_id,
        organisation_id=organisation_id,
        data=_webhook_data(endpoint_id, url),
    )


async def webhook_endpoint_disabled(
    services: Services,
    *,
    organisation_id: int,
    endpoint_id: int,
    url: str,
    consecutive_failures: int,
    failing_since: str | None,
    recipients: int,
) -> None:
    """The delivery worker gave up on an endpoint that kept failing; no actor: the platform."""
    await _record(
        services,
        "webhook.endpoint_disabled",
        RequestMeta(),
        organisation_id=organisation_id,
        data=_webhook_data(
            endpoint_id,
            url,
            consecutive_failures=consecutive_failures,
            failing_since=failing_since,
            recipients=recipients,
        ),
    )


async def sign_up_attempted_for_taken_address(
    services: Services, meta: RequestMeta, user_id: int
) -> None:
    """ORG-1: someone asked to sign up with this account's login e-mail; its owner was told."""
    await _record(services, "account.sign_up_attempted", meta, subject_id=user_id)


# --- Two-factor authentication (MFA-*) and the security policy (POL-*) -------------------------


async def two_factor_enrolled(
    services: Services, meta: RequestMeta, user_id: int, *, kind: str, method_id: int
) -> None:
    await _record(
        services,
        "two_factor.enrolled",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        data={"kind": kind, "method_id": method_id},
    )


async def two_factor_enrolment_failed(
    services: Services, meta: RequestMeta, user_id: int, *, kind: str, reason: str
) -> None:
    await _record(
        services,
        "two_factor.enrolment_failed",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        data={"kind": kind, "reason": reason},
    )


async def two_factor_removed(
    services: Services,
    meta: RequestMeta,
    user_id: int,
    *,
    kind: str,
    method_id: int,
    last: bool,
) -> None:
    """MFA-9: `last` says 2FA is now off for the user (backup codes and app passwords gone)."""
    await _record(
        services,
        "two_factor.removed",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        data={"kind": kind, "method_id": method_id, "last": last},
    )


async def two_factor_removal_refused(
    services: Services, meta: RequestMeta, user_id: int, *, method_id: int, reason: str
) -> None:
    await _record(
        services,
        "two_factor.removal_refused",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        data={"method_id": method_id, "reason": reason},
    )


async def backup_codes_generated(
    services: Services, meta: RequestMeta, user_id: int, *, count: int
) -> None:
    await _record(
        services,
        "two_factor.backup_codes_generated",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        data={"count": count},
    )


async def second_factor_failed(
    services: Services, meta: RequestMeta, user_id: int, *, method: str, reason: str
) -> None:
    """MFA-7: a wrong, reused, malformed or throttled second factor at sign-in.

    A reused code (ASVS 2.8.5) is recorded with reason "replayed": someone else may hold it."""
    await _record(
        services,
        "sign_in.second_factor_failed",
        meta,
        subject_id=user_id,
        data={"method": method, "reason": reason},
    )


async def app_password_created(
    services: Services, meta: RequestMeta, user_id: int, *, app_password_id: int, label: str
) -> None:
    await _record(
        services,
        "app_password.created",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        data={"app_password_id": app_password_id, "label": label},
    )


async def app_password_revoked(
    services: Services, meta: RequestMeta, user_id: int, *, app_password_id: int
) -> None:
    await _record(
        services,
        "app_password.revoked",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        data={"app_password_id": app_password_id},
    )


async def app_signed_in(
    services: Services, meta: RequestMeta, user_id: int, *, app_password_id: int
) -> None:
    await _record(
        services,
        "app_password.signed_in",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        data={"app_password_id": app_password_id},
    )


async def app_sign_in_failed(
    services: Services, meta: RequestMeta, *, user_id: int | None, login: str
) -> None:
    await _record(
        services,
        "app_password.sign_in_failed",
        meta,
        subject_id=user_id,
        subject_email=_unknown_login(user_id, login),
    )


async def security_policy_changed(
    services: Services,
    meta: RequestMeta,
    actor_id: int,
    organisation_id: int,
    *,
    require_two_factor: bool,
) -> None:
    await _record(
        services,
        "security_policy.changed",
        meta,
        actor_id=actor_id,
        organisation_id=organisation_id,
        data={"require_two_factor": require_two_factor},
    )


async def security_alert_sent(
    services: Services, meta: RequestMeta, actor_id: int, organisation_id: int, subject_id: int
) -> None:
    await _record(
        services,
        "member.security_alert_sent",
        meta,
        actor_id=actor_id,
        subject_id=subject_id,
        organisation_id=organisation_id,
    )


# --- Revoked because their maker lost the powers behind them (API-6, INV-1) -------------------
# The same event types as a manager's own revocation, so webhooks and activity views need nothing
# new; `reason` names the membership change that caused it, `actor_id` whoever made that change.


async def service_account_revoked_with_creator(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int,
    creator_id: int,
    organisation_id: int,
    token_id: int,
    name: str,
    reason: str,
) -> None:
    await _record(
        services,
        "service_account.revoked",
        meta,
        actor_id=actor_id,
        subject_id=creator_id,
        organisation_id=organisation_id,
        data={"token_id": token_id, "name": name, "reason": reason},
    )


async def token_revoked_with_membership(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int,
    owner_id: int,
    organisation_id: int,
    token_id: int,
    label: str,
    reason: str,
) -> None:
    await _record(
        services,
        "token.revoked",
        meta,
        actor_id=actor_id,
        subject_id=owner_id,
        organisation_id=organisation_id,
        data={"token_id": token_id, "label": label, "reason": reason},
    )


async def invitation_revoked_with_inviter(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int,
    organisation_id: int,
    invitation_id: int,
    email: str,
    role: str,
    reason: str,
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
        reason=reason,
    )


# --- The user's profile, contacts and login e-mail (PRO-1…PRO-5, REC-4) ----------------------


async def profile_updated(
    services: Services, meta: RequestMeta, user_id: int, *, fields: list[str]
) -> None:
    await _record(
        services,
        "profile.updated",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        data={"fields": fields},
    )


async def password_check_failed(
    services: Services, meta: RequestMeta, user_id: int, *, operation: str
) -> None:
    """A wrong current password given to confirm a change of contacts or login (PRO-2, PRO-5)."""
    await _record(
        services,
        "account.password_check_failed",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        data={"operation": operation},
    )


async def recovery_phone_changed(
    services: Services, meta: RequestMeta, user_id: int, *, action: str
) -> None:
    """action: set (there was none), replaced or removed. The numbers stay out of the log."""
    await _record(
        services,
        "recovery_phone.changed",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        data={"action": action},
    )


async def recovery_email_changed(
    services: Services, meta: RequestMeta, user_id: int, *, action: str
) -> None:
    await _record(
        services,
        "recovery_email.changed",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        data={"action": action},
    )


async def support_code_regenerated(services: Services, meta: RequestMeta, user_id: int) -> None:
    await _record(services, "support_code.regenerated", meta, actor_id=user_id, subject_id=user_id)


async def login_email_change_requested(services: Services, meta: RequestMeta, user_id: int) -> None:
    """Recorded alike whether or not the address asked for is free: the log is no oracle."""
    await _record(
        services, "login_email.change_requested", meta, actor_id=user_id, subject_id=user_id
    )


async def login_email_changed(
    services: Services,
    meta: RequestMeta,
    user_id: int,
    *,
    previous: str | None,
    new: str,
    left_recovery: bool,
) -> None:
    await _record(
        services,
        "login_email.changed",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        subject_email=new,
        data={"previous": previous, "new": new, "left_recovery": left_recovery},
    )


async def login_email_deleted(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int,
    user_id: int,
    address: str,
    told_by_sms: bool,
    told_by_email: bool,
) -> None:
    """REC-4: the mailbox holding a user's login e-mail was deleted; the account is in recovery."""
    await _record(
        services,
        "login_email.deleted",
        meta,
        actor_id=actor_id,
        subject_id=user_id,
        subject_email=address,
        data={"told_by_sms": told_by_sms, "told_by_email": told_by_email},
    )


# --- Account recovery (REC-1…REC-3) -------------------------------------------------------------


async def password_reset_requested(
    services: Services, meta: RequestMeta, *, user_id: int | None, login: str
) -> None:
    """REC-1: recorded for an unknown login too, so both answers cost the same statements."""
    await _record(
        services,
        "recovery.reset_requested",
        meta,
        subject_id=user_id,
        subject_email=_unknown_login(user_id, login),
    )


async def recovery_code_sent(
    services: Services, meta: RequestMeta, *, user_id: int | None, channel: str
) -> None:
    await _record(
        services, "recovery.code_sent", meta, subject_id=user_id, data={"channel": channel}
    )


async def recovery_code_rejected(
    services: Services, meta: RequestMeta, *, user_id: int | None
) -> None:
    await _record(services, "recovery.code_rejected", meta, subject_id=user_id)


async def password_reset(
    services: Services,
    meta: RequestMeta,
    user_id: int,
    *,
    via: str,
    sessions_revoked: int,
    app_passwords_revoked: int,
    tokens_revoked: int,
) -> None:
    """REC-1, REC-2: a "password." event, so the user's organisations see it (ACT-4)."""
    await _record(
        services,
        "password.reset",
        meta,
        subject_id=user_id,
        data={
            "via": via,
            "sessions_revoked": sessions_revoked,
            "app_passwords_revoked": app_passwords_revoked,
            "tokens_revoked": tokens_revoked,
        },
    )


async def identity_verification_requested(
    services: Services, meta: RequestMeta, *, user_id: int | None, case_id: int
) -> None:
    await _record(
        services,
        "recovery.identity_verification_requested",
        meta,
        subject_id=user_id,
        data={"case_id": case_id},
    )


async def identity_verification_reviewed(
    services: Services,
    meta: RequestMeta,
    *,
    agent_id: int,
    user_id: int | None,
    case_id: int,
    approved: bool,
) -> None:
    await _record(
        services,
        "recovery.identity_verification_reviewed",
        meta,
        actor_id=agent_id,
        subject_id=user_id,
        data={"case_id": case_id, "approved": approved},
    )


async def identity_verification_review_refused(
    services: Services, meta: RequestMeta, *, actor_id: int | None
) -> None:
    """REC-2: someone who is no support agent tried to list or review cases."""
    await _record(
        services, "recovery.identity_verification_review_refused", meta, actor_id=actor_id
    )


async def login_identifier_sent(
    services: Services, meta: RequestMeta, *, user_id: int, channel: str
) -> None:
    await _record(
        services,
        "recovery.login_identifier_sent",
        meta,
        subject_id=user_id,
        data={"channel": channel},
    )


async def login_identifier_unmatched(services: Services, meta: RequestMeta) -> None:
    """REC-3: no single account had both contacts; identity verification was offered."""
    await _record(services, "recovery.login_identifier_unmatched", meta)


# --- Push approval (MFA-4) -----------------------------------------------------------------------
# The request's own event is what the user's devices follow (loginApprovalRequests): recorded
# from the sign-in's browser (its IP, country and device), with no actor (the password step
# passed, the person is not known yet).


async def push_approval_requested(
    services: Services, meta: RequestMeta, user_id: int, *, approval_id: str, expires_at: str
) -> None:
    await _record(
        services,
        "two_factor.push_requested",
        meta,
        subject_id=user_id,
        data={"approval_id": approval_id, "expires_at": expires_at},
    )


async def push_approval_request_refused(
    services: Services, meta: RequestMeta, user_id: int, *, reason: str
) -> None:
    await _record(
        services,
        "two_factor.push_request_refused",
        meta,
        subject_id=user_id,
        data={"reason": reason},
    )


# What a device's answer made of the request: the wrong number denies, and says so.
_PUSH_ANSWER_TYPES = {
    "approved": "two_factor.push_approved",
    "denied": "two_factor.push_denied",
    "wrong_number": "two_factor.push_wrong_number",
}


async def push_approval_answered(
    services: Services,
    meta: RequestMeta,
    user_id: int,
    *,
    outcome: str,
    approval_id: str,
    method_id: int,
) -> None:
    """An answer of the user's device: approved, denied, or a wrong number (which denies)."""
    await _record(
        services,
        _PUSH_ANSWER_TYPES[outcome],
        meta,
        actor_id=user_id,
        subject_id=user_id,
        data={"approval_id": approval_id, "method_id": method_id},
    )


async def push_approval_answer_refused(
    services: Services,
    meta: RequestMeta,
    user_id: int,
    *,
    approval_id: str,
    method_id: int,
    reason: str,
) -> None:
    """A device's answer that changed nothing: another user's request, expired, answered."""
    await _record(
        services,
        "two_factor.push_answer_refused",
        meta,
        actor_id=user_id,
        subject_id=user_id,
        data={"approval_id": approval_id, "method_id": method_id, "reason": reason},
    )


async def push_approval_expired(
    services: Services, meta: RequestMeta, user_id: int, *, approval_id: str
) -> None:
    await _record(
        services,
        "two_factor.push_expired",
        meta,
        subject_id=user_id,
        data={"approval_id": approval_id},
    )
