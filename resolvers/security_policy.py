"""The organisation security policy (POL-1) and the security alert e-mail (POL-3)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tortoise.transactions import in_transaction

from gardien.mail.templates import Template
from gardien.models.mfa import AppPassword, BackupCode, TwoFactorMethod
from gardien.models.organisations import Membership, SecurityPolicy
from gardien.resolvers import activity, authz, events, ratelimits
from gardien.resolvers.authz import RequestScope
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services

# POL-3: an alert is a nudge, not a way to flood someone's mailbox.
SECURITY_ALERTS_PER_MEMBER = ratelimits.Rule("security_alert_member", 3, timedelta(hours=24))


async def update_policy(
    services: Services,
    meta: RequestMeta,
    scope: RequestScope,
    *,
    organisation_id: int,
    require_two_factor: bool,
    confirm: bool,
) -> tuple[bool, datetime]:
    """POL-1: managers require 2FA of every member (confirmed explicitly: members without it are
    held to enrol at their next request, POL-4), or lift it. Answers the policy as it now is."""
    membership = await authz.require_visible_organisation(scope, organisation_id)
    authz.require(
        authz.can_update_security_policy(membership),
        authz.forbidden(authz.SECURITY_POLICY_FORBIDDEN),
    )
    authz.require(
        authz.can_update_security_policy_from(scope.actor),
        authz.forbidden(authz.SECURITY_POLICY_FROM_WEB_ONLY),
    )
    if not confirm:
        raise DomainError(
            ErrorCode.CONFIRMATION_REQUIRED,
            "Confirm the change: requiring 2FA stops every member without it until they enrol.",
            "confirm",
        )
    user = authz.require_user(scope.actor)
    now = services.clock.now()
    async with in_transaction():
        policy = (
            await SecurityPolicy.filter(organisation_id=organisation_id).select_for_update().get()
        )
        if policy.require_two_factor != require_two_factor:
            policy.require_two_factor = require_two_factor
            policy.updated_at = now
            policy.updated_by_id = user.id
            await policy.save(update_fields=["require_two_factor", "updated_at", "updated_by_id"])
            await activity.security_policy_changed(
                services, meta, user.id, organisation_id, require_two_factor=require_two_factor
            )
            # POL-4 and EVT-4: members' open WebSockets re-authenticate once this commits, so a
            # member now held by the policy loses the socket's subscriptions and operations too.
            member_ids: list[Any] = await Membership.filter(
                organisation_id=organisation_id
            ).values_list("user_id", flat=True)
            for member_id in member_ids:
                events.access_changed(services, int(member_id))
    return policy.require_two_factor, policy.updated_at


async def send_security_alert(
    services: Services, meta: RequestMeta, scope: RequestScope, *, membership_id: int
) -> None:
    """POL-3: e-mails the member a summary of their security settings, in their language."""
    user = authz.require_user(scope.actor)
    target = await Membership.get_or_none(id=membership_id).select_related("user", "organisation")
    caller = await authz.membership_of(scope, target.organisation_id) if target else None
    authz.require(target is not None and authz.can_view_members(caller), authz.not_found("member"))
    authz.require(
        authz.can_send_security_alert(caller), authz.forbidden(authz.SECURITY_ALERT_FORBIDDEN)
    )
    assert target is not None
    assert caller is not None
    member = target.user
    if not member.email:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "This member has no e-mail address.", "membershipId"
        )
    await ratelimits.require_allowed(
        services, SECURITY_ALERTS_PER_MEMBER, f"membership:{target.id}"
    )
    kinds = sorted(
        {
            m.kind.value
            for m in await TwoFactorMethod.filter(user_id=member.id, confirmed_at__isnull=False)
        }
    )
    context = {
        "organisation": target.organisation.name,
        "sender": user.display_name,
        "two_factor_methods": kinds,
        "backup_codes_remaining": await BackupCode.filter(user_id=member.id, used_at=None).count(),
        "app_passwords": await AppPassword.filter(user_id=member.id, revoked_at=None).count(),
        "required": caller.require_two_factor,
        "link": f"{services.settings.public_url}/console/#/security",
    }
    async with in_transaction():
        await services.mail.enqueue(
            Template.SECURITY_ALERT,
            to=member.email,
            language=member.language,
            context=context,
            timezone=member.timezone,
        )
        await activity.security_alert_sent(
            services, meta, user.id, target.organisation_id, member.id
        )
