"""Reading the security activity log (ACT-4): the viewer's own, and the filters of every view."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise.queryset import QuerySet

from gardien.models.activity import ActivityEvent
from gardien.resolvers import authz
from gardien.resolvers.authz import Actor
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.pagination import Counted, forward_page

# Every type resolvers/activity.py writes (a test reads that module and keeps this list whole):
# a filter naming anything else is a typo or a probe, and is refused rather than matching nothing.
EVENT_TYPES = frozenset(
    {
        "account.secured",
        "account.sign_up_attempted",
        "account.signed_up",
        "app_password.created",
        "app_password.revoked",
        "app_password.sign_in_failed",
        "app_password.signed_in",
        "domain.entered_redemption",
        "domain.expiry_reminder_sent",
        "domain.released",
        "domain.renewal_warranty_changed",
        "domain.renewed",
        "domain.renewed_by_warranty",
        "domain.restored",
        "invitation.accepted",
        "invitation.declined",
        "invitation.resent",
        "invitation.revoked",
        "invitation.sent",
        "mailbox.created",
        "mailbox.deleted",
        "member.contact_preferences_changed",
        "member.joined",
        "member.left",
        "member.product_access_changed",
        "member.removed",
        "member.role_changed",
        "member.security_alert_sent",
        "member.security_procedure_sent",
        "organisation.switched",
        "product.mail_maintenance_ended",
        "product.mail_maintenance_started",
        "product.management_blocked",
        "product.management_unblocked",
        "security_emails.preferences_changed",
        "security_policy.changed",
        "service_account.created",
        "service_account.revoked",
        "session.revoked",
        "session.signed_out",
        "sign_in.failed",
        "sign_in.new_location",
        "sign_in.password_verified",
        "sign_in.second_factor_failed",
        "sign_in.succeeded",
        "sign_in.throttled",
        "support.agent_granted",
        "support.agent_revoked",
        "support.code_rejected",
        "support_plan.changed",
        "token.created",
        "token.revoked",
        "token.used",
        "two_factor.backup_codes_generated",
        "two_factor.enrolled",
        "two_factor.enrolment_failed",
        "two_factor.removal_refused",
        "two_factor.removed",
        "user.blocked_by_support",
        "user.unblocked_by_support",
        "webhook.endpoint_created",
        "webhook.endpoint_deleted",
        "webhook.endpoint_disabled",
        "webhook.endpoint_updated",
        "webhook.secret_rotated",
        "profile.updated",
        "account.password_check_failed",
        "recovery_phone.changed",
        "recovery_email.changed",
        "support_code.regenerated",
        "login_email.change_requested",
        "login_email.changed",
        "login_email.deleted",
        "recovery.reset_requested",
        "recovery.code_sent",
        "recovery.code_rejected",
        "password.reset",
        "recovery.identity_verification_requested",
        "recovery.identity_verification_reviewed",
        "recovery.identity_verification_review_refused",
        "recovery.login_identifier_sent",
        "recovery.login_identifier_unmatched",
        "two_factor.push_requested",
        "two_factor.push_request_refused",
        "two_factor.push_approved",
        "two_factor.push_denied",
        "two_factor.push_wrong_number",
        "two_factor.push_answer_refused",
        "two_factor.push_expired",
    }
)
MAX_TYPES_IN_FILTER = 50

# ACT-4: a member's account security events (sign-ins and their failures, new locations, second
# factors of every kind, passwords and app passwords, account recovery and the contacts it uses),
# shown to the managers of every organisation the member belongs to when the event is recorded.
# This is the one rule: a new type of one of these families is covered by its name alone; a
# type of another family that is about the safety of a person's account is added here.
ACCOUNT_SECURITY_FAMILIES = (
    "sign_in.",
    "two_factor.",
    "backup_codes.",
    "security_key.",
    "app_password.",
    "password.",
    "recovery.",
    "login_email.",
    "recovery_email.",
    "recovery_phone.",
)
ACCOUNT_SECURITY_TYPES = frozenset(
    {"account.secured", "account.sign_up_attempted", "account.password_check_failed"}
)


def is_account_security_event(type_: str) -> bool:
    """Whether an event of this type about a member is shown to their organisations (ACT-4)."""
    return type_ in ACCOUNT_SECURITY_TYPES or type_.startswith(ACCOUNT_SECURITY_FAMILIES)


@dataclass(frozen=True)
class ActivityFilter:
    """Which events a view shows: some types, a time range (since inclusive, until exclusive)."""

    types: frozenset[str] | None = None
    since: datetime | None = None
    until: datetime | None = None

    def apply(self, query: QuerySet[ActivityEvent]) -> QuerySet[ActivityEvent]:
        if self.types is not None:
            query = query.filter(type__in=sorted(self.types))
        if self.since is not None:
            query = query.filter(occurred_at__gte=self.since)
        if self.until is not None:
            query = query.filter(occurred_at__lt=self.until)
        return query


def activity_filter(
    types: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> ActivityFilter:
    """Validated filters; INVALID_INPUT names the argument at fault."""
    chosen: frozenset[str] | None = None
    if types is not None:
        if len(types) > MAX_TYPES_IN_FILTER:
            raise DomainError(
                ErrorCode.INVALID_INPUT, f"Filter on at most {MAX_TYPES_IN_FILTER} types.", "types"
            )
        if any(t not in EVENT_TYPES for t in types):
            # The input is not echoed: it may hold anything, and the list of types is documented.
            raise DomainError(
                ErrorCode.INVALID_INPUT, "The filter names an unknown event type.", "types"
            )
        chosen = frozenset(types)
    for name, value in (("since", since), ("until", until)):
        # A time without its zone is ambiguous, and could not be compared with stored times.
        if value is not None and value.utcoffset() is None:
            raise DomainError(ErrorCode.INVALID_INPUT, "Give the time with its UTC offset.", name)
    since, until = _in_utc(since, "since"), _in_utc(until, "until")
    if since is not None and until is not None and since >= until:
        raise DomainError(ErrorCode.INVALID_INPUT, "until must come after since.", "until")
    return ActivityFilter(types=chosen, since=since, until=until)


def _in_utc(value: datetime | None, name: str) -> datetime | None:
    """The time in UTC; one whose UTC date falls outside years 1 to 9999 (9999-12-31T23:59-14:00)
    cannot be stored or compared, and is refused rather than failing in the database."""
    if value is None:
        return None
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise DomainError(ErrorCode.INVALID_INPUT, "This time is out of range.", name) from None


async def own_activity(
    actor: Actor, filters: ActivityFilter, *, first: int | None, after_id: int | None
) -> Counted[ActivityEvent]:
    """ACT-4: the events concerning the caller's own account, newest first."""
    authz.require(
        authz.can_view_own_activity(actor, actor.user_id),
        DomainError(ErrorCode.UNAUTHENTICATED, "Sign in first."),
    )
    assert actor.user is not None
    query = filters.apply(ActivityEvent.filter(subject_id=actor.user.id))
    page = await forward_page(query, first, after_id, descending=True)
    return Counted(page, lambda: query.count())
