"""Web sessions: opaque bearer tokens, stored as keyed digests, with absolute and idle limits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from gardien.models.enums import SessionKind
from gardien.models.sessions import Session
from gardien.models.users import User
from gardien.resolvers.authz import Actor
from gardien.resolvers.services import RequestMeta, Services

from gardien.security import new_token

# NIST SP 800-63B 4.2.3 (AAL2): re-authenticate every 12 hours, and after 30 idle minutes.
ABSOLUTE_LIFETIME = timedelta(hours=12)
IDLE_TIMEOUT = timedelta(minutes=30)
# last_seen_at is written at most this often, so reads do not each cost a write.
LAST_SEEN_RESOLUTION = timedelta(minutes=1)
TOKEN_PURPOSE = "session"


@dataclass(frozen=True)
class IssuedSession:
    session: Session
    token: str  # shown once, never stored


async def open_session(
    services: Services, user: User, meta: RequestMeta, *, persistent: bool
) -> IssuedSession:
    """A new token at every sign-in, so a planted session id is never promoted (ASVS V3.2.1)."""
    now = services.clock.now()
    token = new_token()
    session = await Session.create(
        user=user,
        token_hash=services.keyring.token_digest(token, TOKEN_PURPOSE),
        kind=SessionKind.WEB,
        persistent=persistent,
        ip=meta.ip,
        country=meta.country,
        device=meta.device,
        created_at=now,
        last_seen_at=now,
        expires_at=now + ABSOLUTE_LIFETIME,
    )
    return IssuedSession(session=session, token=token)


async def authenticate(services: Services, token: str) -> Actor | None:
    """The actor of a bearer token, or None when it is unknown, revoked, expired or idle."""
    if not token or len(token) > 256:
        return None
    session = await Session.get_or_none(
        token_hash=services.keyring.token_digest(token, TOKEN_PURPOSE), revoked_at=None
    ).select_related("user")
    now = services.clock.now()
    if session is None or session.expires_at <= now or session.last_seen_at + IDLE_TIMEOUT <= now:
        return None
    if now - session.last_seen_at >= LAST_SEEN_RESOLUTION:
        session.last_seen_at = now
        await Session.filter(id=session.id).update(last_seen_at=now)
    return Actor(user=session.user, session=session)


async def revoke(services: Services, session: Session) -> None:
    await Session.filter(id=session.id, revoked_at=None).update(revoked_at=services.clock.now())
