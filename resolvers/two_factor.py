"""Second factors: reading them (MFA-7, POL-2), TOTP enrolment (MFA-1), backup codes (MFA-5),
removal (MFA-9)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import segno
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from gardien.models.enums import SessionKind, TwoFactorKind
from gardien.models.mfa import AppPassword, BackupCode, TwoFactorMethod
from gardien.models.organisations import SecurityPolicy
from gardien.models.sessions import Session
from gardien.models.users import User
from gardien.resolvers import activity, authz, events, ratelimits, sql, totp
from gardien.resolvers.authz import Actor
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.resolvers.text import cleaned_label
from gardien.security import verify_password

ISSUER = "Gardien"
TOTP_SECRET_CONTEXT = "totp"
# Long enough to scan the code and type the first one; a pending enrolment is not a method yet.
ENROLMENT_LIFETIME = timedelta(minutes=15)
# Guessing a first code needs a million tries; ten per quarter hour per user keeps it hopeless.
TOTP_CONFIRM_ATTEMPTS_PER_USER = ratelimits.Rule("totp_confirm_user", 10, timedelta(minutes=15))
# MFA-9: the password asked again before a removal is guessable like any password.
REAUTHENTICATION_ATTEMPTS_PER_USER = ratelimits.Rule("reauth_user", 5, timedelta(minutes=15))
BACKUP_CODE_COUNT = 10
BACKUP_CODE_PURPOSE = "backup-code"
# No 0/o, 1/l/i: codes are read off paper. 10 symbols of 31 carry about 49.5 bits each.
_BACKUP_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
_BACKUP_CODE_LENGTH = 10
DEFAULT_TOTP_LABEL = "Authenticator app"


# The kinds of second factor of user $1. Read by every password sign-in, in a fixed statement
# (see sql.py) with the block check (accounts.py).
CONFIRMED_KINDS_SQL = (
    "SELECT DISTINCT kind FROM two_factor_method WHERE user_id = $1 AND confirmed_at IS NOT NULL"
)


async def confirmed_kinds(user_id: int) -> list[TwoFactorKind]:
    """The kinds of second factor a sign-in challenge may offer (MFA-7)."""
    return kinds_of(await sql.fetch(CONFIRMED_KINDS_SQL, [user_id]))


def kinds_of(rows: Sequence[Mapping[str, Any]], column: str = "kind") -> list[TwoFactorKind]:
    """The kinds of CONFIRMED_KINDS_SQL's rows (a NULL kind, of an outer join, is none), in
    `column` when a statement names it otherwise."""
    return sorted({TwoFactorKind(row[column]) for row in rows if row[column] is not None})


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


async def has_second_factor(user_id: int) -> bool:
    return await TwoFactorMethod.exists(user_id=user_id, confirmed_at__isnull=False)


def _code_field_error(
    message: str, code: ErrorCode = ErrorCode.TWO_FACTOR_CODE_INVALID
) -> DomainError:
    return DomainError(code, message, "code")


# --- TOTP (MFA-1) ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TotpEnrolment:
    method_id: int
    secret: str  # shown once, to be typed or scanned into the app
    otpauth_uri: str
    qr_code_svg: str


def _label(label: str | None) -> str:
    if label is None:
        return DEFAULT_TOTP_LABEL
    return cleaned_label(label)


async def begin_totp_enrolment(
    services: Services, meta: RequestMeta, actor: Actor
) -> TotpEnrolment:
    """MFA-1: a new secret, kept encrypted on a pending method until a first code confirms it.

    Beginning again drops the user's other pending TOTP enrolments: one secret in flight."""
    signed_in = authz.require_second_factor_manager(actor)
    secret = totp.new_secret()
    now = services.clock.now()
    async with in_transaction():
        await TwoFactorMethod.filter(
            user_id=signed_in.id, kind=TwoFactorKind.TOTP, confirmed_at=None
        ).delete()
        method = await TwoFactorMethod.create(
            user_id=signed_in.id,
            kind=TwoFactorKind.TOTP,
            label=DEFAULT_TOTP_LABEL,
            totp_secret_encrypted=services.keyring.encrypt(secret.encode(), TOTP_SECRET_CONTEXT),
            created_at=now,
        )
    uri = totp.provisioning_uri(
        secret, account=signed_in.email or signed_in.display_name, issuer=ISSUER
    )
    qr_code = segno.make(uri, error="m").svg_inline(scale=4, omitsize=False)
    return TotpEnrolment(method_id=method.id, secret=secret, otpauth_uri=uri, qr_code_svg=qr_code)


@dataclass(frozen=True)
class ConfirmedTotp:
    method: TwoFactorMethod
    backup_codes: list[str]  # shown once; empty unless this enrolment turned 2FA on


async def confirm_totp_enrolment(
    services: Services,
    meta: RequestMeta,
    actor: Actor,
    *,
    method_id: int,
    code: str,
    label: str | None = None,
) -> ConfirmedTotp:
    """MFA-1: the first code proves the app holds the secret; ±1 time step is accepted.

    The first second factor of an account turns 2FA on and comes with the backup codes (MFA-5)."""
    signed_in = authz.require_second_factor_manager(actor)
    name = _label(label)
    now = services.clock.now()
    method = await TwoFactorMethod.get_or_none(
        id=method_id, user_id=signed_in.id, kind=TwoFactorKind.TOTP, confirmed_at=None
    )
    if method is None or method.created_at + ENROLMENT_LIFETIME <= now:
        raise DomainError(
            ErrorCode.NOT_FOUND, "No such enrolment, or it expired: begin again.", "enrolmentId"
        )
    attempt = await ratelimits.consume(
        services, TOTP_CONFIRM_ATTEMPTS_PER_USER, f"user:{signed_in.id}"
    )
    if not attempt.allowed:
        if attempt.exhausts_budget:
            await _enrolment_failed(services, meta, signed_in.id, "throttled")
        raise ratelimits.refusal(services, attempt)
    assert method.totp_secret_encrypted is not None
    secret = services.keyring.decrypt(method.totp_secret_encrypted, TOTP_SECRET_CONTEXT).decode()
    step = totp.matching_step(secret, code, now)
    if step is None:
        await _enrolment_failed(
            services, meta, signed_in.id, "malformed" if not totp.is_well_formed(code) else "wrong"
        )
        raise _code_field_error("This code is not right: type the code the app shows now.")
    async with in_transaction():
        user = await User.filter(id=signed_in.id).select_for_update().get()
        first = not await has_second_factor(user.id)
        updated = await TwoFactorMethod.filter(id=method.id, confirmed_at=None).update(
            confirmed_at=now, totp_last_step=step, last_used_at=now, label=name
        )
        if updated != 1:
            raise DomainError(
                ErrorCode.NOT_FOUND, "No such enrolment, or it expired: begin again.", "enrolmentId"
            )
        codes = await method_enrolled(
            services, meta, user.id, kind=TwoFactorKind.TOTP, method_id=method.id, first=first
        )
    await ratelimits.give_back(services, TOTP_CONFIRM_ATTEMPTS_PER_USER, f"user:{signed_in.id}")
    confirmed = await TwoFactorMethod.get(id=method.id)
    return ConfirmedTotp(method=confirmed, backup_codes=codes)


async def _enrolment_failed(
    services: Services, meta: RequestMeta, user_id: int, reason: str
) -> None:
    async with in_transaction():
        await activity.two_factor_enrolment_failed(
            services, meta, user_id, kind=TwoFactorKind.TOTP.value, reason=reason
        )


@dataclass(frozen=True)
class TotpCheck:
    """The outcome of a TOTP code at sign-in: the method it opened, or why it did not."""

    method_id: int | None
    replayed: bool = False


async def check_totp(services: Services, user_id: int, code: str) -> TotpCheck:
    """MFA-1: a code of one of the user's TOTP apps, ±1 step, never a step already used.

    The step is claimed with one conditional UPDATE, so two concurrent requests carrying the same
    code cannot both pass (ASVS 2.8.4): the second sees a replay."""
    if not totp.is_well_formed(code):
        return TotpCheck(method_id=None)
    now = services.clock.now()
    methods = await TwoFactorMethod.filter(
        user_id=user_id, kind=TwoFactorKind.TOTP, confirmed_at__isnull=False
    ).order_by("id")
    replayed = False
    for method in methods:
        assert method.totp_secret_encrypted is not None
        secret = services.keyring.decrypt(
            method.totp_secret_encrypted, TOTP_SECRET_CONTEXT
        ).decode()
        step = totp.matching_step(secret, code, now)
        if step is None:
            continue
        claimed = await (
            TwoFactorMethod.filter(id=method.id)
            .filter(Q(totp_last_step__isnull=True) | Q(totp_last_step__lt=step))
            .update(totp_last_step=step, last_used_at=now)
        )
        if claimed == 1:
            return TotpCheck(method_id=method.id)
        replayed = True
    return TotpCheck(method_id=None, replayed=replayed)


# --- Backup codes (MFA-5) ----------------------------------------------------------------------


def new_backup_code() -> str:
    raw = "".join(secrets.choice(_BACKUP_ALPHABET) for _ in range(_BACKUP_CODE_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


def normalise_backup_code(code: str) -> str | None:
    """As typed: case, spaces and the dash do not matter. None when it cannot be a code."""
    cleaned = "".join(c for c in code.lower() if c not in " -")
    if len(cleaned) != _BACKUP_CODE_LENGTH or any(c not in _BACKUP_ALPHABET for c in cleaned):
        return None
    return cleaned


def _backup_digest(services: Services, normalised: str) -> str:
    # A keyed digest: ~50 random bits, tried online only under the attempt limits.
    return services.keyring.token_digest(normalised, BACKUP_CODE_PURPOSE)


async def method_enrolled(
    services: Services,
    meta: RequestMeta,
    user_id: int,
    *,
    kind: TwoFactorKind,
    method_id: int,
    first: bool,
) -> list[str]:
    """Every kind of second factor ends its enrolment here, in the caller's transaction (under the
    user's row lock, where `first` was decided): the enrolment is recorded (ACT-1), and the
    account's first method comes with its backup codes (MFA-5), returned to be shown once."""
    await activity.two_factor_enrolled(
        services, meta, user_id, kind=kind.value, method_id=method_id
    )
    return await _replace_backup_codes(services, meta, user_id) if first else []


async def _replace_backup_codes(services: Services, meta: RequestMeta, user_id: int) -> list[str]:
    """A new set of codes, in the caller's transaction; the old set stops working with it."""
    now = services.clock.now()
    codes = [new_backup_code() for _ in range(BACKUP_CODE_COUNT)]
    await BackupCode.filter(user_id=user_id).delete()
    await BackupCode.bulk_create(
        [
            BackupCode(
                user_id=user_id,
                code_hash=_backup_digest(services, normalise_backup_code(code) or ""),
                created_at=now,
            )
            for code in codes
        ]
    )
    await activity.backup_codes_generated(services, meta, user_id, count=len(codes))
    return codes


async def regenerate_backup_codes(services: Services, meta: RequestMeta, actor: Actor) -> list[str]:
    """MFA-5: a new set, shown once; every code of the old set stops working."""
    signed_in = authz.require_second_factor_manager(actor)
    async with in_transaction():
        await User.filter(id=signed_in.id).select_for_update().get()
        if not await has_second_factor(signed_in.id):
            raise DomainError(
                ErrorCode.TWO_FACTOR_NOT_ENABLED, "Turn on two-factor authentication first."
            )
        return await _replace_backup_codes(services, meta, signed_in.id)


async def use_backup_code(services: Services, user_id: int, code: str) -> bool:
    """Spends one unused code of the user, atomically: a code opens one sign-in only."""
    normalised = normalise_backup_code(code)
    if normalised is None:
        return False
    used = await BackupCode.filter(
        user_id=user_id, code_hash=_backup_digest(services, normalised), used_at=None
    ).update(used_at=services.clock.now())
    return used == 1


async def backup_codes_remaining(actor: Actor, user_id: int) -> int | None:
    """MFA-5: how many unused codes the user has left; the user's own business alone."""
    if not authz.can_view_private_profile(actor, user_id):
        return None
    return await BackupCode.filter(user_id=user_id, used_at=None).count()


# --- Removal (MFA-9) ---------------------------------------------------------------------------


async def requires_two_factor(user_id: int) -> bool:
    """Whether an organisation of the user requires 2FA (POL-1)."""
    return await SecurityPolicy.exists(
        organisation__memberships__user_id=user_id, require_two_factor=True
    )


async def remove_method(
    services: Services, meta: RequestMeta, actor: Actor, *, method_id: int, password: str
) -> bool:
    """MFA-9: the password again, then the method goes. The last one goes only when no
    organisation of the user requires 2FA, and takes the backup codes and app passwords with it
    (they exist only while 2FA is on). Answers whether 2FA is still on."""
    signed_in = authz.require_second_factor_manager(actor)
    method = await own_confirmed_method(actor, method_id)
    subject = f"user:{signed_in.id}"
    attempt = await ratelimits.consume(services, REAUTHENTICATION_ATTEMPTS_PER_USER, subject)
    if not attempt.allowed:
        raise ratelimits.refusal(services, attempt)
    user = await User.get(id=signed_in.id)
    if not await verify_password(user.password_hash, password[:1024]):
        async with in_transaction():
            await activity.two_factor_removal_refused(
                services, meta, user.id, method_id=method.id, reason="wrong_password"
            )
        raise DomainError(ErrorCode.INVALID_CREDENTIALS, "The password is incorrect.", "password")
    await ratelimits.give_back(services, REAUTHENTICATION_ATTEMPTS_PER_USER, subject)
    refused = False
    async with in_transaction():
        # The user's row lock orders concurrent removals: two cannot both remove "one of two".
        await User.filter(id=user.id).select_for_update().get()
        remaining = await TwoFactorMethod.filter(
            user_id=user.id, confirmed_at__isnull=False
        ).count()
        last = remaining <= 1
        if last and await requires_two_factor(user.id):
            await activity.two_factor_removal_refused(
                services, meta, user.id, method_id=method.id, reason="required_by_organisation"
            )
            refused = True
        else:
            deleted = await TwoFactorMethod.filter(id=method.id).delete()
            if deleted != 1:
                raise authz.not_found("second factor")
            if last:
                now = services.clock.now()
                await BackupCode.filter(user_id=user.id).delete()
                await AppPassword.filter(user_id=user.id, revoked_at=None).update(revoked_at=now)
                await Session.filter(user_id=user.id, kind=SessionKind.APP, revoked_at=None).update(
                    revoked_at=now
                )
            await activity.two_factor_removed(
                services, meta, user.id, kind=method.kind.value, method_id=method.id, last=last
            )
            if last or method.kind is TwoFactorKind.PUSH:
                # EVT-4: the removed device's live subscription, and the revoked app sessions'
                # sockets, end once this commits (their connections authenticate again, and
                # their credentials no longer open anything).
                events.access_changed(services, user.id)
    if refused:
        raise DomainError(
            ErrorCode.TWO_FACTOR_REQUIRED_BY_ORGANISATION,
            "An organisation you belong to requires two-factor authentication: add another"
            " second factor before removing this one.",
            "methodId",
        )
    return not last
