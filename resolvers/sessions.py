"""Web sessions: opaque bearer tokens, stored as keyed digests, with absolute and idle limits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise.expressions import F
from tortoise.transactions import in_transaction

from gardien.models.enums import SessionKind
from gardien.models.sessions import Session, SignInChallenge
from gardien.models.users import User
from gardien.resolvers import activity, authz, events, sql
from gardien.resolvers.authz import Actor, SignedInSession, SignedInUser
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.security import new_token

# NIST SP 800-63B 4.2.3 (AAL2): re-authenticate every 12 hours, and after 30 idle minutes.
ABSOLUTE_LIFETIME = timedelta(hours=12)
IDLE_TIMEOUT = timedelta(minutes=30)
# last_seen_at is written at most this often, so reads do not each cost a write.
LAST_SEEN_RESOLUTION = timedelta(minutes=1)
TOKEN_PURPOSE = "session"


class CredentialsChanged(DomainError):
    """The account's credentials changed while a sign-in ran (see session_insert): it opens
    nothing. The sign-in answers as for a wrong password, and records why."""

    def __init__(self) -> None:
        super().__init__(
            ErrorCode.INVALID_CREDENTIALS,
            "The account's credentials changed meanwhile; sign in again.",
        )


@dataclass(frozen=True)
class IssuedSession:
    session: Session
    token: str  # shown once, never stored


async def open_session(
    services: Services,
    user: User,
    meta: RequestMeta,
    *,
    persistent: bool,
    kind: SessionKind = SessionKind.WEB,
    app_password_id: int | None = None,
) -> IssuedSession:
    """A new token at every sign-in, so a planted session id is never promoted (ASVS V3.2.1).

    An APP session (MFA-6) is opened by an app password and stays an app session for its life.
    `user` is the account as the caller verified it: if its credentials changed since (see
    session_insert), no session is opened and the sign-in is refused."""
    token, params = new_session(
        services,
        user,
        meta,
        persistent=persistent,
        kind=kind,
        app_password_id=app_password_id,
    )
    statement = _OPEN_SESSION_LOCKING if sql.locks_rows() else _OPEN_SESSION
    rows = await sql.fetch(statement, params)
    if not rows:
        raise CredentialsChanged
    return IssuedSession(session=sql.model_from_row(Session, rows[0]), token=token)


def new_session(
    services: Services,
    user: User,
    meta: RequestMeta,
    *,
    persistent: bool,
    kind: SessionKind = SessionKind.WEB,
    app_password_id: int | None = None,
) -> tuple[str, list[Any]]:
    """A new session's token, and the parameters of session_insert that store it."""
    now = services.clock.now()
    token = new_token()
    params = [
        user.id,
        services.keyring.token_digest(token, TOKEN_PURPOSE),
        kind.value,
        persistent,
        meta.ip,
        meta.country,
        meta.device,
        sql.moment(now),
        sql.moment(now + ABSOLUTE_LIFETIME),
        app_password_id,
        user.credential_generation,
    ]
    return token, params


def session_insert(*, locking: bool, source: str | None = None) -> str:
    """The INSERT of a session for user $1, RETURNING its row, with new_session's parameters;
    no row when the user's credentials are no longer those the sign-in verified.

    Every change of credentials moves the user's credential generation as it revokes the
    sessions it sees (revoke_all_sessions, revoke_other_sessions), under the user's row lock
    held until it commits: a password reset or change (REC-1), "secure my account" (ACT-5), a
    support block (BLK-3). A sign-in verified against
    the old credentials must not add a session it does not see: the INSERT reads the user's row
    as it is now and opens nothing if the generation moved. `locking` (PostgreSQL) takes the row
    in share mode: a change still running makes the INSERT wait for it and then read the row it
    committed, and a change that starts later waits for the INSERT's transaction, then revokes
    its session too. SQLite runs one write at a time.

    Given a `source` (an earlier part of a WITH, on PostgreSQL), once per row it returns: with
    another write of the same statement, and only if that write was made.

    Every sign-in opens one: a fixed statement (see sql.py) instead of the ORM's create, which
    builds, validates and compiles anew each time. What the ORM would check is bounded where it
    is read, as for the events written beside (events.py): the address is a parsed IP address,
    or the peer as the server itself names it (proxies.py), the country two letters (geo.py),
    the device label cut to its column (devices.py)."""
    origin = f", {source}" if source is not None else ""
    lock = " FOR SHARE OF u" if locking else ""
    return (
        "INSERT INTO session (user_id, token_hash, kind, persistent, ip, country, device,"
        " created_at, last_seen_at, expires_at, app_password_id)"
        f" SELECT u.id, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10 FROM user_account u{origin}"
        f" WHERE u.id = $1 AND u.credential_generation = $11{lock}"
        " RETURNING *"
    )


_OPEN_SESSION = session_insert(locking=False)
_OPEN_SESSION_LOCKING = session_insert(locking=True)
_CREDENTIALS_UNCHANGED = (
    "SELECT 1 FROM user_account u WHERE u.id = $1 AND u.credential_generation = $2"
)


async def hold_credentials(user: User) -> None:
    """In the caller's transaction, before it writes anything else: the user's credentials are
    still those of `user` as the caller verified it, and stay so until it commits (share lock
    on PostgreSQL, see session_insert); else CredentialsChanged.

    For a sign-in step that writes other rows than the session (a challenge, an app password's
    last use): taken first, the user's row is locked before any row that a credential change
    also locks after it (challenges, app passwords), so the two lock in one order and never
    deadlock."""
    statement = _CREDENTIALS_UNCHANGED + (" FOR SHARE" if sql.locks_rows() else "")
    if not await sql.fetch(statement, [user.id, user.credential_generation]):
        raise CredentialsChanged


# Read on every request: one fixed statement (see sql.py) for the session and its account, which
# also refuses the sessions of a blocked user (BLK-3, the rule is in authz.py) and tells whether
# the user is held to enrol a second factor (POL-4, the rule is in authz.py).
_SESSION_AND_USER = (
    "SELECT s.id AS session_id, s.kind, s.persistent, s.created_at, s.last_seen_at, s.expires_at,"
    " u.id, u.email, u.display_name, u.language, u.country, u.timezone, u.recovery_phone,"
    " u.recovery_email, u.support_code_encrypted, u.current_organisation_id, u.platform_role,"
    " u.must_set_login_email,"
    f" {authz.TWO_FACTOR_ENROLMENT_REQUIRED_SQL} AS two_factor_enrolment_required"
    " FROM session s JOIN user_account u ON u.id = s.user_id"
    " WHERE s.token_hash = $1 AND s.revoked_at IS NULL"
    f" AND {authz.WEB_ACCESS_NOT_BLOCKED_SQL}"
)


async def authenticate(services: Services, token: str) -> Actor | None:
    """The actor of a bearer token, or None when it is unknown, revoked, expired or idle, or when
    its user's web access is blocked."""
    if not token or len(token) > 256:
        return None
    rows = await sql.fetch(_SESSION_AND_USER, [services.keyring.token_digest(token, TOKEN_PURPOSE)])
    if not rows:
        return None
    row = rows[0]
    session = SignedInSession(
        id=row["session_id"],
        persistent=bool(row["persistent"]),
        created_at=sql.as_datetime(row["created_at"]),
        last_seen_at=sql.as_datetime(row["last_seen_at"]),
        expires_at=sql.as_datetime(row["expires_at"]),
        kind=SessionKind(row["kind"]),
    )
    now = services.clock.now()
    if session.expires_at <= now or session.last_seen_at + IDLE_TIMEOUT <= now:
        return None
    if now - session.last_seen_at >= LAST_SEEN_RESOLUTION:
        await Session.filter(id=session.id).update(last_seen_at=now)
    user = SignedInUser.from_row(row)
    return Actor(
        user=user,
        session=session,
        two_factor_enrolment_required=bool(row["two_factor_enrolment_required"]),
    )


async def revoke(services: Services, session_id: int) -> None:
    await Session.filter(id=session_id, revoked_at=None).update(revoked_at=services.clock.now())
    user_ids: list[Any] = await Session.filter(id=session_id).values_list("user_id", flat=True)
    for user_id in user_ids:
        # EVT-4: live subscriptions opened with this session end once the revocation commits.
        events.access_changed(services, int(user_id))


async def revoke_all_sessions(services: Services, user_id: int) -> int:
    """Every open session of the user in one statement, with _credentials_changed, in the
    caller's transaction, which holds the user's row (BLK-3, REC-1).

    The session lookup reads revoked_at on every request, so the next request of any of these
    sessions is refused; live subscriptions are told once this commits (EVT-4)."""
    revoked = await Session.filter(user_id=user_id, revoked_at=None).update(
        revoked_at=services.clock.now()
    )
    await _credentials_changed(services, user_id)
    events.access_changed(services, user_id)
    return revoked


async def _credentials_changed(services: Services, user_id: int) -> None:
    """What every change of credentials does with its revocation, under the user's row lock the
    caller took first: the credential generation moves, so no sign-in verified before opens a
    session after (session_insert) and every device cookie is void (accounts.py); and the
    sign-ins still owing their second factor end (MFA-7; second_factor.complete finishes only a
    challenge still unexpired)."""
    now = services.clock.now()
    await User.filter(id=user_id).update(credential_generation=F("credential_generation") + 1)
    await SignInChallenge.filter(user_id=user_id, completed_at=None, expires_at__gt=now).update(
        expires_at=now
    )


# --- The user's own sessions (ACT-6) -----------------------------------------------------------


def _is_active(session: Session, now: datetime) -> bool:
    if session.revoked_at is not None or session.expires_at <= now:
        return False
    # A web session also ends after its idle limit; app sessions live to their expiry.
    return session.kind is not SessionKind.WEB or session.last_seen_at + IDLE_TIMEOUT > now


async def own_sessions(services: Services, actor: Actor) -> list[Session]:
    """ACT-6: the caller's web and app sessions that still open something, newest first."""
    user = authz.require_user(actor)
    now = services.clock.now()
    rows = await Session.filter(user_id=user.id, revoked_at=None, expires_at__gt=now).order_by(
        "-id"
    )
    return [session for session in rows if _is_active(session, now)]


async def revoke_own_session(
    services: Services, meta: RequestMeta, actor: Actor, session_id: int
) -> Session:
    """ACT-6: end one of the caller's sessions (the current one too: that signs out here).

    Someone else's session, and one already ended, answer NOT_FOUND like an unknown id.
    """
    authz.require_user(actor)
    now = services.clock.now()
    async with in_transaction():
        session = await Session.select_for_update().get_or_none(id=session_id)
        authz.require(
            session is not None
            and authz.can_manage_session(actor, session.user_id)
            and _is_active(session, now),
            authz.not_found("session"),
        )
        assert session is not None
        authz.require(
            authz.can_revoke_session(actor, session.id),
            authz.forbidden(authz.SESSIONS_REVOKED_FROM_WEB_ONLY),
        )
        session.revoked_at = now
        await session.save(update_fields=["revoked_at"])
        # EVT-4: the live subscriptions opened with this session end once this commits.
        events.access_changed(services, session.user_id)
        await activity.session_revoked(
            services, meta, session.user_id, session_id=session.id, kind=session.kind.value
        )
    return session


async def revoke_other_sessions(services: Services, user_id: int, keep_session_id: int) -> int:
    """Every session of the user but the one kept, with _credentials_changed, in the caller's
    transaction, which holds the user's row (ACT-5)."""
    revoked = await (
        Session.filter(user_id=user_id, revoked_at=None)
        .exclude(id=keep_session_id)
        .update(revoked_at=services.clock.now())
    )
    await _credentials_changed(services, user_id)
    # EVT-4: the live subscriptions opened with those sessions end once this commits.
    events.access_changed(services, user_id)
    return revoked


async def own_session(services: Services, actor: Actor, session_id: int) -> Session:
    """node(id:): one of the caller's active sessions; anything else is NOT_FOUND."""
    authz.require_user(actor)
    session = await Session.get_or_none(id=session_id)
    authz.require(
        session is not None
        and authz.can_manage_session(actor, session.user_id)
        and _is_active(session, services.clock.now()),
        authz.not_found("session"),
    )
    assert session is not None
    return session
