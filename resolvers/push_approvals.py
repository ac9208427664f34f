"""Push approval with number matching (MFA-4): approval-app devices, the requests a sign-in makes
to them, and the devices' answers."""

from __future__ import annotations

import hmac
import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import timedelta

from tortoise.transactions import in_transaction

from gardien.models.activity import ActivityEvent
from gardien.models.enums import ApprovalStatus, TwoFactorKind
from gardien.models.mfa import PushApproval, TwoFactorMethod
from gardien.models.sessions import SignInChallenge
from gardien.models.users import User
from gardien.resolvers import activity, authz, events, ratelimits, two_factor
from gardien.resolvers.authz import Actor, SignedInDevice, SignedInUser
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.resolvers.text import cleaned_label, is_plain_text
from gardien.security import new_token

DEVICE_CREDENTIAL_PURPOSE = "push-device"
# A recognisable prefix: secret scanners and support can tell a device credential at a glance,
# and it is never mistaken for a session token.
DEVICE_CREDENTIAL_PREFIX = "gdv_"
APPROVAL_LIFETIME = timedelta(minutes=2)
# Against push fatigue (a password thief sending request after request until the owner taps
# "approve" to make it stop): each request rings every device of the user. Five per ten minutes
# lets the owner retry a missed or expired request a few times, and caps what a thief can send
# at one every two minutes on average, each needing a fresh password check anyway.
REQUESTS_PER_USER = ratelimits.Rule("push_request_user", 5, timedelta(minutes=10))
# Answers need no budget of their own: the approval id is a random UUID only the user's devices
# receive, and the number gets one try (a wrong one denies the request for good).
MAX_DEVICES = 10
MAX_PUSH_TOKEN_LENGTH = 4096
PUSH_TOKEN_CONTEXT = "push-token"
# The event each request is recorded as, and what the devices' subscription follows.
REQUESTED_EVENT = "two_factor.push_requested"
NO_SUCH_APPROVAL = "No such approval request."


# --- Devices -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegisteredDevice:
    method: TwoFactorMethod
    credential: str  # shown once, to the app; only its keyed digest is stored
    backup_codes: list[str]  # shown once; empty unless this device turned 2FA on


def _credential_digest(services: Services, credential: str) -> str:
    return services.keyring.token_digest(credential, DEVICE_CREDENTIAL_PURPOSE)


async def register_device(
    services: Services,
    meta: RequestMeta,
    actor: Actor,
    *,
    label: str,
    push_token: str | None = None,
) -> RegisteredDevice:
    """MFA-4: the signed-in user adds their phone's approval app as a second factor. The app
    receives a device credential, shown once; the push service's token is kept encrypted.

    The first second factor of an account turns 2FA on and comes with the backup codes (MFA-5)."""
    signed_in = authz.require_second_factor_manager(actor)
    name = cleaned_label(label)
    if push_token is not None and (
        not 1 <= len(push_token) <= MAX_PUSH_TOKEN_LENGTH or not is_plain_text(push_token)
    ):
        raise DomainError(
            ErrorCode.INVALID_INPUT, "This is not a push service's token.", "pushToken"
        )
    credential = DEVICE_CREDENTIAL_PREFIX + new_token()
    now = services.clock.now()
    async with in_transaction():
        # The user's row lock serialises concurrent registrations, so the cap holds under a race.
        user = await User.filter(id=signed_in.id).select_for_update().get()
        devices = await TwoFactorMethod.filter(user_id=user.id, kind=TwoFactorKind.PUSH).count()
        if devices >= MAX_DEVICES:
            raise DomainError(
                ErrorCode.INVALID_INPUT,
                f"At most {MAX_DEVICES} approval devices: remove one you no longer use.",
                "label",
            )
        first = not await two_factor.has_second_factor(user.id)
        method = await TwoFactorMethod.create(
            user_id=user.id,
            kind=TwoFactorKind.PUSH,
            label=name,
            push_token_encrypted=services.keyring.encrypt(push_token.encode(), PUSH_TOKEN_CONTEXT)
            if push_token is not None
            else None,
            device_credential_hash=_credential_digest(services, credential),
            created_at=now,
            # The credential reaches the app in the same answer: there is no code to confirm.
            confirmed_at=now,
        )
        codes = await two_factor.method_enrolled(
            services, meta, user.id, kind=TwoFactorKind.PUSH, method_id=method.id, first=first
        )
    return RegisteredDevice(method=method, credential=credential, backup_codes=codes)


async def authenticate_device(services: Services, credential: str) -> Actor | None:
    """The actor of an approval app's device credential: its user, with the device and no
    session. None when unknown, removed, or when the user's web access is blocked (BLK-3: there
    is no sign-in left to approve)."""
    if not credential.startswith(DEVICE_CREDENTIAL_PREFIX) or len(credential) > 256:
        return None
    method = await TwoFactorMethod.get_or_none(
        device_credential_hash=_credential_digest(services, credential),
        kind=TwoFactorKind.PUSH,
        confirmed_at__isnull=False,
    )
    if method is None or await authz.is_blocked(method.user_id):
        return None
    user = await User.get_or_none(id=method.user_id)
    if user is None:
        return None
    # Not held by REC-4's gate (must_set_login_email is left out): an account whose login
    # e-mail was deleted still signs in with its username, and its phone approves that sign-in.
    signed_in = replace(SignedInUser.from_row(vars(user)), must_set_login_email=False)
    return Actor(user=signed_in, device=SignedInDevice(method_id=method.id))


# --- Requests ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedApproval:
    approval: PushApproval

    @property
    def approval_id(self) -> str:
        return str(self.approval.id)


def _numbers() -> tuple[int, list[int]]:
    """The two-digit number the sign-in screen shows, and the three the app offers: it and two
    distinct decoys, shuffled. Guessing blindly is right one time in three, and wrong denies."""
    picks: list[int] = []
    while len(picks) < 3:
        candidate = 10 + secrets.randbelow(90)
        if candidate not in picks:
            picks.append(candidate)
    number = picks[0]
    secrets.SystemRandom().shuffle(picks)
    return number, picks


def candidates_of(approval: PushApproval) -> list[int]:
    return [int(n) for n in approval.candidate_numbers.split(",") if n]


async def request_approval(
    services: Services, meta: RequestMeta, challenge: SignInChallenge
) -> IssuedApproval:
    """MFA-4: the sign-in asks the user's devices for an approval, once second_factor has found
    its challenge live and its user not blocked (second_factor.request_login_approval).

    The request carries where the sign-in comes from (IP, country, device) and expires after
    two minutes; it reaches the devices live once committed (loginApprovalRequests)."""
    user_id = challenge.user_id
    if not await TwoFactorMethod.exists(
        user_id=user_id, kind=TwoFactorKind.PUSH, confirmed_at__isnull=False
    ):
        raise DomainError(
            ErrorCode.INVALID_INPUT, "No approval app is registered: use another method.", "method"
        )
    attempt = await ratelimits.consume(services, REQUESTS_PER_USER, f"user:{user_id}")
    if not attempt.allowed:
        if attempt.exhausts_budget:
            async with in_transaction():
                await activity.push_approval_request_refused(
                    services, meta, user_id, reason=f"throttled:{REQUESTS_PER_USER.name}"
                )
        raise ratelimits.refusal(services, attempt)
    number, candidates = _numbers()
    now = services.clock.now()
    async with in_transaction():
        approval = await PushApproval.create(
            id=uuid.uuid4(),
            user_id=user_id,
            challenge_id=challenge.id,
            ip=meta.ip,
            country=meta.country,
            device=meta.device,
            number=number,
            candidate_numbers=",".join(str(n) for n in candidates),
            created_at=now,
            expires_at=now + APPROVAL_LIFETIME,
        )
        await activity.push_approval_requested(
            services,
            meta,
            user_id,
            approval_id=str(approval.id),
            expires_at=approval.expires_at.isoformat(),
        )
    return IssuedApproval(approval=approval)


async def device_stream(services: Services, actor: Actor) -> events.Stream:
    """MFA-4: what a device's loginApprovalRequests follows: its user's approval requests.

    A phone usually connects because a request woke it: the requests still pending when it
    subscribes come first (replayed from the oldest one's event, EVT-2), then live ones."""
    user, _ = authz.require_device(actor)
    oldest = (
        await PushApproval.filter(
            user_id=user.id, status=ApprovalStatus.PENDING, expires_at__gt=services.clock.now()
        )
        .order_by("created_at")
        .first()
    )
    after_id = None
    if oldest is not None:
        first_event = (
            await ActivityEvent.filter(
                subject_id=user.id, type=REQUESTED_EVENT, occurred_at__gte=oldest.created_at
            )
            .order_by("id")
            .first()
        )
        after_id = first_event.id - 1 if first_event is not None else None
    return events.Stream(
        organisation_id=None,
        user_id=user.id,
        types=frozenset({REQUESTED_EVENT}),
        after_id=after_id,
        field="loginApprovalRequests",
    )


async def requested_approval(user_id: int, approval_id: str) -> PushApproval | None:
    """The approval a published request event names, for its user's devices."""
    parsed = _parse_id(approval_id)
    if parsed is None:
        return None
    return await PushApproval.get_or_none(id=parsed, user_id=user_id)


def _parse_id(approval_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(approval_id[:64])
    except ValueError:
        return None


# --- Answers -----------------------------------------------------------------------------------


async def answer(
    services: Services,
    meta: RequestMeta,
    actor: Actor,
    *,
    approval_id: str,
    approve: bool,
    number: int | None,
) -> PushApproval:
    """MFA-4: a device of the user approves (with the number the sign-in screen shows) or denies.

    Approving with a wrong number denies the request: whoever picked it has not seen the sign-in
    screen, so this is not the owner's sign-in (push fatigue). Another user's request is not
    found, as an unknown one; an expired or answered request changes nothing. Each is recorded."""
    user, device = authz.require_device(actor)
    parsed = _parse_id(approval_id)
    approval = await PushApproval.get_or_none(id=parsed) if parsed is not None else None
    if approval is None or approval.user_id != user.id:
        if approval is not None:
            await _answer_refused(services, meta, user.id, approval, device, "other_user")
        raise DomainError(ErrorCode.NOT_FOUND, NO_SUCH_APPROVAL, "approvalId")
    if await expire_if_due(services, meta, approval) or approval.status is ApprovalStatus.EXPIRED:
        await _answer_refused(services, meta, user.id, approval, device, "expired")
        raise DomainError(
            ErrorCode.LOGIN_APPROVAL_EXPIRED, "This request has expired.", "approvalId"
        )
    if approve and (number is None or not _same_number(number, approval.number)):
        status, outcome, refusal = (
            ApprovalStatus.DENIED,
            "wrong_number",
            DomainError(
                ErrorCode.LOGIN_APPROVAL_WRONG_NUMBER,
                "This is not the number the sign-in screen shows: the sign-in was refused.",
                "number",
            ),
        )
    elif approve:
        status, outcome, refusal = ApprovalStatus.APPROVED, "approved", None
    else:
        status, outcome, refusal = ApprovalStatus.DENIED, "denied", None
    now = services.clock.now()
    async with in_transaction():
        # One answer per request, whichever device is quickest: the update is conditional.
        answered = await PushApproval.filter(
            id=approval.id, status=ApprovalStatus.PENDING, expires_at__gt=now
        ).update(status=status, answered_at=now, answered_by_id=device.method_id)
        if answered == 1:
            await TwoFactorMethod.filter(id=device.method_id).update(last_used_at=now)
            await activity.push_approval_answered(
                services,
                meta,
                user.id,
                outcome=outcome,
                approval_id=str(approval.id),
                method_id=device.method_id,
            )
    if answered != 1:
        await _answer_refused(services, meta, user.id, approval, device, "answered")
        raise DomainError(
            ErrorCode.LOGIN_APPROVAL_ANSWERED, "This request was already answered.", "approvalId"
        )
    if refusal is not None:
        raise refusal
    return await PushApproval.get(id=approval.id)


def _same_number(given: int, expected: int) -> bool:
    return hmac.compare_digest(str(given).encode(), str(expected).encode())


async def _answer_refused(
    services: Services,
    meta: RequestMeta,
    user_id: int,
    approval: PushApproval,
    device: SignedInDevice,
    reason: str,
) -> None:
    async with in_transaction():
        await activity.push_approval_answer_refused(
            services,
            meta,
            user_id,
            approval_id=str(approval.id),
            method_id=device.method_id,
            reason=reason,
        )


async def expire_if_due(services: Services, meta: RequestMeta, approval: PushApproval) -> bool:
    """A pending request past its time becomes EXPIRED, recorded once (by whoever sees it
    first: the waiting sign-in or a late answer). Answers whether this call expired it."""
    now = services.clock.now()
    if approval.status is not ApprovalStatus.PENDING or approval.expires_at > now:
        return False
    async with in_transaction():
        expired = await PushApproval.filter(
            id=approval.id, status=ApprovalStatus.PENDING, expires_at__lte=now
        ).update(status=ApprovalStatus.EXPIRED)
        if expired == 1:
            await activity.push_approval_expired(
                services, meta, approval.user_id, approval_id=str(approval.id)
            )
    if expired == 1:
        approval.status = ApprovalStatus.EXPIRED
    return expired == 1


# --- The waiting sign-in -----------------------------------------------------------------------


async def require_approved(services: Services, meta: RequestMeta, challenge_id: int) -> None:
    """MFA-4, for second_factor.complete: the sign-in's newest request must be approved.

    Raises LOGIN_APPROVAL_PENDING while it waits, LOGIN_APPROVAL_DENIED or _EXPIRED after."""
    approval = await PushApproval.filter(challenge_id=challenge_id).order_by("-created_at").first()
    if approval is None:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "Ask for an approval on your phone first.", "method"
        )
    await expire_if_due(services, meta, approval)
    if approval.status is ApprovalStatus.APPROVED:
        return
    if approval.status is ApprovalStatus.PENDING:
        raise DomainError(ErrorCode.LOGIN_APPROVAL_PENDING, "Waiting for the answer on your phone.")
    if approval.status is ApprovalStatus.DENIED:
        raise DomainError(ErrorCode.LOGIN_APPROVAL_DENIED, "The sign-in was refused on the phone.")
    raise DomainError(ErrorCode.LOGIN_APPROVAL_EXPIRED, "The request expired: ask for a new one.")
