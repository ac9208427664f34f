"""Security e-mails: a sign-in from a new location (ACT-2), a wrong password (ACT-3), and which
of them a user receives (ACT-4)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from gardien.mail.templates import Template
from gardien.models.users import User
from gardien.resolvers import activity, authz, sql
from gardien.resolvers.authz import Actor
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services

# ACT-3: a guessing run against one account sends one e-mail, not one per guess.
WRONG_PASSWORD_NOTICE_INTERVAL = timedelta(minutes=15)
KNOWN_DEVICE_PURPOSE = "known-device"
# Where the e-mails send someone who did not do it (ACT-5).
SECURE_ACCOUNT_PATH = "/console/#/security/secure-account"
# KnownDevice.country is part of a unique key: an address with no country (private, loopback)
# is stored as the empty string rather than NULL, which would never be equal to itself.
NO_COUNTRY = ""
# A (country, device) pair not seen for 13 months is forgotten: a browser back after that long
# is announced again, which is what its owner would want. Each user's newest pair is kept, so an
# account nobody used for that long still has a baseline and its next sign-in is announced.
KNOWN_DEVICE_RETENTION = timedelta(days=396)

# What a sign-in needs to know, in one fixed statement (see sql.py) on the unique index (user,
# country, device_hash): whether the user has any history, this country, this device. A user's
# rows are never loaded: a traveller's list grows with every hotel.
_SEEN_BEFORE = (
    "SELECT EXISTS (SELECT 1 FROM known_device WHERE user_id = $1) AS any_seen,"
    " EXISTS (SELECT 1 FROM known_device WHERE user_id = $1 AND country = $2) AS country_seen,"
    " EXISTS (SELECT 1 FROM known_device WHERE user_id = $1 AND device_hash = $3) AS device_seen"
)
# Records the pair as seen now, in one statement on the same unique index: a concurrent twin
# sign-in that inserted it first only moves its last_seen_at.
_SEEN_NOW = (
    "INSERT INTO known_device (user_id, country, device_hash, first_seen_at, last_seen_at)"
    " VALUES ($1, $2, $3, $4, $4) ON CONFLICT (user_id, country, device_hash)"
    " DO UPDATE SET last_seen_at = excluded.last_seen_at"
)
# PostgreSQL does both in one statement: every part of a WITH reads the snapshot taken before
# any of them writes, so `seen` answers as _SEEN_BEFORE alone would. (SQLite has no writing
# WITH: it runs the two statements.)
_SEEN_BEFORE_AND_NOW = f"WITH noted AS ({_SEEN_NOW}) {_SEEN_BEFORE}"


def seen_again(condition: str) -> str:
    """A pair already known, seen again, when `condition` holds (SQL on the same parameters):
    the sign-in has nothing to announce (note_sign_in would find all of the pair seen and write
    only this). RETURNING the user, so that the other writes of a statement (PostgreSQL, in its
    WITH) are made only if the pair was known; with known_device_params's parameters."""
    # The condition is a caller's fixed text, never a value: values are all parameters.
    return (
        "UPDATE known_device SET last_seen_at = $4"  # noqa: S608
        f" WHERE user_id = $1 AND country = $2 AND device_hash = $3 AND ({condition})"
        " RETURNING user_id"
    )


# Stale pairs, each user's newest excepted (see KNOWN_DEVICE_RETENTION).
_PURGE_STALE = (
    "DELETE FROM known_device WHERE last_seen_at < $1 AND EXISTS (SELECT 1 FROM known_device"
    " newer WHERE newer.user_id = known_device.user_id"
    " AND newer.last_seen_at > known_device.last_seen_at)"
)


@dataclass(frozen=True)
class SecurityEmailPreferences:
    """ACT-4. The new-location notice is mandatory: it is the one sign that someone else got in
    with the password, and a thief holding a session would otherwise turn it off first. The
    wrong-password notice only reports an attempt that failed, so the user may decline it."""

    new_location: bool
    wrong_password: bool


def _recipient(user: User) -> str | None:
    # A deleted login e-mail (REC-4) leaves the recovery address as the way to reach the user.
    return user.email or user.recovery_email


def _secure_account_link(services: Services) -> str:
    return f"{services.settings.public_url}{SECURE_ACCOUNT_PATH}"


def _where(meta: RequestMeta) -> str:
    return " · ".join(part for part in (meta.country, meta.ip) if part) or "?"


def _device_digest(services: Services, device_nonce: str, meta: RequestMeta) -> str:
    # The browser's device cookie names the browser; the UA families guard against a copied
    # cookie replayed from another kind of browser. Versions are left out: an update is not new.
    return services.keyring.token_digest(
        f"{device_nonce}\x00{meta.device_family or ''}", KNOWN_DEVICE_PURPOSE
    )


async def note_sign_in(
    services: Services, meta: RequestMeta, user: User, device_nonce: str
) -> bool:
    """ACT-2, in the caller's transaction, once a sign-in has opened a session.

    A country or a device never seen for this user records sign_in.new_location and queues the
    security e-mail; the very first sign-in only sets what is known. The device is the browser's
    device-cookie nonce: a private window or a new computer has no cookie, so it is new.
    Answers whether the sign-in was from a new location.
    """
    now = services.clock.now()
    params = known_device_params(services, meta, user.id, device_nonce, now)
    if sql.writes_in_with():
        (seen,) = await sql.fetch(_SEEN_BEFORE_AND_NOW, params)
    else:
        (seen,) = await sql.fetch(_SEEN_BEFORE, params[:3])
        await sql.execute(_SEEN_NOW, params)
    new_country = meta.country is not None and not seen["country_seen"]
    new_device = not seen["device_seen"]
    # The first sign-in with no history at all (a new account, or one older than this record)
    # only sets the baseline: with nothing to compare to, an alert would say nothing, and every
    # existing user would get one at once when the record starts.
    if not seen["any_seen"] or not (new_country or new_device):
        return False
    recipient = _recipient(user)
    await activity.sign_in_new_location(
        services,
        meta,
        user.id,
        new_country=new_country,
        new_device=new_device,
        notified=recipient is not None,
    )
    if recipient is not None:
        await services.mail.enqueue(
            Template.SECURITY_NEW_LOCATION,
            to=recipient,
            language=user.language,
            timezone=user.timezone,
            context={
                "signed_in_at": now,
                "where": _where(meta),
                "device": meta.device or "?",
                "secure_link": _secure_account_link(services),
            },
        )
    return True


def known_device_params(
    services: Services, meta: RequestMeta, user_id: int, device_nonce: str, now: datetime
) -> list[Any]:
    """The parameters of seen_again (and of _SEEN_BEFORE, _SEEN_NOW): the user's pair of the
    country and the browser, seen now."""
    country = meta.country or NO_COUNTRY
    digest = _device_digest(services, device_nonce, meta)
    return [user_id, country, digest, sql.moment(now)]


async def purge_stale_known_devices(services: Services) -> int:
    """The job: forget the pairs not seen for KNOWN_DEVICE_RETENTION; answers how many."""
    return await sql.execute(_PURGE_STALE, [services.clock.now() - KNOWN_DEVICE_RETENTION])


async def wrong_password(services: Services, meta: RequestMeta, user: User) -> bool:
    """ACT-3, in the caller's transaction: the wrong-password e-mail, at most once per account
    per WRONG_PASSWORD_NOTICE_INTERVAL, unless the user declined it. Answers whether one was sent.

    The window is claimed with one conditional UPDATE, so concurrent guesses send one e-mail.
    """
    now = services.clock.now()
    claimed = (
        await User.filter(id=user.id, notify_wrong_password=True)
        .filter(
            Q(last_wrong_password_notice_at__isnull=True)
            | Q(last_wrong_password_notice_at__lte=now - WRONG_PASSWORD_NOTICE_INTERVAL)
        )
        .update(last_wrong_password_notice_at=now)
    )
    recipient = _recipient(user)
    if not claimed or recipient is None:
        return False
    await services.mail.enqueue(
        Template.SECURITY_WRONG_PASSWORD,
        to=recipient,
        language=user.language,
        timezone=user.timezone,
        context={
            "attempted_at": now,
            "where": _where(meta),
            "device": meta.device or "?",
            "secure_link": _secure_account_link(services),
        },
    )
    return True


async def preferences(actor: Actor) -> SecurityEmailPreferences:
    user = authz.require_user(actor)
    notify = await User.filter(id=user.id).values_list("notify_wrong_password", flat=True)
    return SecurityEmailPreferences(new_location=True, wrong_password=bool(notify[0]))


async def set_preferences(
    services: Services,
    meta: RequestMeta,
    actor: Actor,
    *,
    new_location: bool | None = None,
    wrong_password: bool | None = None,
) -> SecurityEmailPreferences:
    """ACT-4: choose the optional security e-mails; the mandatory one cannot be turned off."""
    user = authz.require_user(actor)
    if new_location is False:
        raise DomainError(
            ErrorCode.SECURITY_EMAIL_MANDATORY,
            "The new sign-in e-mail cannot be turned off: it is how you learn that someone else"
            " signed in to your account.",
            "newLocation",
        )
    async with in_transaction():
        row = await User.select_for_update().get(id=user.id)
        if wrong_password is not None and wrong_password != row.notify_wrong_password:
            row.notify_wrong_password = wrong_password
            await row.save(update_fields=["notify_wrong_password"])
            await activity.security_email_preferences_changed(
                services, meta, user.id, wrong_password=wrong_password
            )
    return SecurityEmailPreferences(new_location=True, wrong_password=row.notify_wrong_password)
