"""Integrator tokens (API-6): personal access tokens, shown once, stored as keyed digests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise.expressions import F
from tortoise.transactions import in_transaction

from gardien.models.enums import Role
from gardien.models.organisations import Organisation
from gardien.models.sessions import ApiToken
from gardien.models.users import User
from gardien.resolvers import activity, authz, events, sessions, sql
from gardien.resolvers.authz import Actor, RequestScope, SignedInToken, SignedInUser
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services, TokenUse
from gardien.resolvers.text import is_plain_text
from gardien.security import new_token

TOKEN_PURPOSE = "api-token"
# The prefix tells a secret scanner (and a person) what leaked and whose it is to revoke.
PERSONAL_ACCESS_TOKEN_PREFIX = "gdn_pat_"
# Shown in lists: the prefix and 4 characters of the secret, 24 bits that name no secret.
DISPLAY_PREFIX_LENGTH = len(PERSONAL_ACCESS_TOKEN_PREFIX) + 4
# Every token expires: 90 days unless the owner says otherwise, a year at most, so a forgotten
# token in a script dies on its own.
DEFAULT_LIFETIME = timedelta(days=90)
MAX_LIFETIME = timedelta(days=366)
# Enough for every script of one person; a cap keeps a stolen session from minting thousands.
MAX_ACTIVE_TOKENS = 50
LABEL_MAX_LENGTH = 100
# A token's use is stamped and counted at most this often from one address (see record_use).
LAST_USE_RESOLUTION = sessions.LAST_SEEN_RESOLUTION
# A presented secret longer than this is not ours: refused before any digest or query.
MAX_SECRET_LENGTH = 128


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # shown once, never stored


def _clean_label(label: str, field: str = "label") -> str:
    label = label.strip()
    if not label or len(label) > LABEL_MAX_LENGTH or not is_plain_text(label):
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"Give the token a name of 1 to {LABEL_MAX_LENGTH} printable characters.",
            field,
        )
    return label


def _clean_scopes(scopes: list[str]) -> list[str]:
    unknown = sorted(set(scopes) - authz.TOKEN_SCOPES)
    if unknown or not scopes:
        known = ", ".join(sorted(authz.TOKEN_SCOPES))
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"Choose one or more scopes among: {known}.", "scopes"
        )
    return sorted(set(scopes))


def _expiry(services: Services, expires_at: datetime | None) -> datetime:
    now = services.clock.now()
    if expires_at is None:
        return now + DEFAULT_LIFETIME
    if expires_at.tzinfo is None or not now < expires_at <= now + MAX_LIFETIME:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "The expiry must be a time with its offset, in the future, at most a year away.",
            "expiresAt",
        )
    return expires_at


def _require_token_manager(actor: Actor) -> SignedInUser:
    user = authz.require_user(actor)
    authz.require(
        authz.can_manage_own_tokens(actor), authz.forbidden(authz.TOKENS_FROM_WEB_SESSION_ONLY)
    )
    return user


async def create_personal_access_token(
    services: Services,
    meta: RequestMeta,
    scope: RequestScope,
    *,
    label: str,
    scopes: list[str],
    expires_at: datetime | None = None,
    organisation_id: int | None = None,
) -> IssuedToken:
    """A token acting as the caller, narrowed to its scopes (and to one organisation if given)."""
    user = _require_token_manager(scope.actor)
    label = _clean_label(label)
    chosen = _clean_scopes(scopes)
    expiry = _expiry(services, expires_at)
    if organisation_id is not None:
        await authz.require_visible_organisation(scope, organisation_id)
    secret = PERSONAL_ACCESS_TOKEN_PREFIX + new_token()
    now = services.clock.now()
    async with in_transaction():
        # The owner's row lock serialises concurrent creations, so the cap holds.
        await User.select_for_update().get(id=user.id)
        active = await ApiToken.filter(owner_id=user.id, revoked_at=None, expires_at__gt=now)
        if len(active) >= MAX_ACTIVE_TOKENS:
            raise DomainError(
                ErrorCode.TOKEN_LIMIT_REACHED,
                f"You have {MAX_ACTIVE_TOKENS} active tokens; revoke one you no longer use.",
            )
        token = await ApiToken.create(
            owner_id=user.id,
            organisation_id=organisation_id,
            name=label,
            token_hash=services.keyring.token_digest(secret, TOKEN_PURPOSE),
            prefix=secret[:DISPLAY_PREFIX_LENGTH],
            scopes=chosen,
            created_at=now,
            expires_at=expiry,
        )
        await activity.token_created(
            services,
            meta,
            user_id=user.id,
            token_id=token.id,
            label=label,
            scopes=chosen,
            organisation_id=organisation_id,
            expires_at=expiry.isoformat(),
        )
    return IssuedToken(token=token, secret=secret)


async def revoke_personal_access_token(
    services: Services, meta: RequestMeta, scope: RequestScope, token_id: int
) -> ApiToken:
    """Ends the token at once; revoking a revoked token changes nothing and records nothing."""
    user = _require_token_manager(scope.actor)
    async with in_transaction():
        token = await ApiToken.filter(id=token_id).select_for_update().first()
        authz.require(
            token is not None and authz.can_view_token(scope.actor, token.owner_id),
            authz.not_found("token"),
        )
        assert token is not None
        if token.revoked_at is None:
            token.revoked_at = services.clock.now()
            await token.save(update_fields=["revoked_at"])
            await activity.token_revoked(
                services,
                meta,
                user_id=user.id,
                token_id=token.id,
                label=token.name,
                organisation_id=token.organisation_id,
            )
            # EVT-4: the event is an access change (events.ACCESS_CHANGING_TYPES): sockets opened
            # with the token authenticate again once this commits.
    return token


async def own_tokens(scope: RequestScope, user_id: int) -> list[ApiToken]:
    """The user's tokens not revoked, newest first (expired ones too, until revoked)."""
    if not authz.can_view_private_profile(scope.actor, user_id):
        return []
    return await ApiToken.filter(owner_id=user_id, revoked_at=None).order_by("-id")


async def visible_token(scope: RequestScope, token_id: int) -> ApiToken:
    token = await ApiToken.get_or_none(id=token_id)
    authz.require(
        token is not None and authz.can_view_token(scope.actor, token.owner_id),
        authz.not_found("token"),
    )
    assert token is not None
    return token


# Read on every token request: one fixed statement (see sql.py) for the token and its owner. A
# blocked owner's tokens die with their web access (BLK-3, the rule is in authz.py); a deleted
# owner's tokens are deleted with the account.
_TOKEN_AND_OWNER = (
    "SELECT t.id AS token_id, t.scopes, t.organisation_id AS token_organisation_id,"
    " t.expires_at, t.last_used_at, t.last_used_ip,"
    " u.id, u.email, u.display_name, u.language, u.country, u.timezone, u.recovery_phone,"
    " u.recovery_email, u.support_code_encrypted, u.current_organisation_id, u.platform_role,"
    " u.must_set_login_email"
    " FROM api_token t JOIN user_account u ON u.id = t.owner_id"
    " WHERE t.token_hash = $1 AND t.revoked_at IS NULL"
    f" AND {authz.WEB_ACCESS_NOT_BLOCKED_SQL}"
)


def is_integrator_token(secret: str) -> bool:
    """A personal access token or a service account's; anything else is a session token."""
    return secret.startswith((PERSONAL_ACCESS_TOKEN_PREFIX, SERVICE_ACCOUNT_PREFIX))


async def authenticate(services: Services, meta: RequestMeta, secret: str) -> Actor | None:
    """The actor of an integrator token, or None when it is unknown, revoked or expired, or when
    its owner (a service account's creator) is blocked or, for a service account, no longer
    manages its organisation. Each use is counted; see record_use."""
    if len(secret) > MAX_SECRET_LENGTH:
        return None
    if secret.startswith(PERSONAL_ACCESS_TOKEN_PREFIX):
        statement = _TOKEN_AND_OWNER
    elif secret.startswith(SERVICE_ACCOUNT_PREFIX):
        statement = _SERVICE_ACCOUNT_AND_CREATOR
    else:
        return None
    # The secret is found by its keyed digest: an equality on a unique index, so no comparison
    # of secret bytes ever runs where its timing could tell anything (as for sessions).
    digest = services.keyring.token_digest(secret, TOKEN_PURPOSE)
    rows = await sql.fetch(statement, [digest])
    if not rows:
        return None
    row = rows[0]
    if sql.as_datetime(row["expires_at"]) <= services.clock.now():
        return None
    scopes = row["scopes"]
    if isinstance(scopes, str):  # SQLite returns the JSON text, PostgreSQL may too
        scopes = json.loads(scopes)
    user = SignedInUser.from_row(row)
    role = row.get("token_role")
    token = SignedInToken(
        id=row["token_id"],
        scopes=frozenset(scopes),
        organisation_id=row["token_organisation_id"],
        role_cap=Role(role) if role else None,
    )
    last_used_at = row["last_used_at"]
    await record_use(
        services,
        meta,
        token,
        user.id,
        last_used_at=None if last_used_at is None else sql.as_datetime(last_used_at),
        previous_ip=row["last_used_ip"],
    )
    return Actor(user=user, token=token)


async def record_use(
    services: Services,
    meta: RequestMeta,
    token: SignedInToken,
    user_id: int,
    *,
    last_used_at: datetime | None,
    previous_ip: str | None,
) -> None:
    """API-6 "every use recorded", at the resolution of a session's last_seen_at: a use is
    stamped (time, address) and counted when the token was not stamped for a minute, or comes
    from another address; uses within the minute from the same address are already told by that
    stamp. So use_count counts a script's active minutes and address changes, and a token's
    request costs one UPDATE at most once a minute instead of a write on every request (a busy
    script would otherwise queue its requests on the token's row lock).

    The first use and each use from a new address also write a `token.used` activity event (an
    event per request would bury the owner's activity under a script's polling); only then is
    there a transaction, the stamp and the event being one change."""
    now = services.clock.now()
    first_use = last_used_at is None
    new_address = previous_ip != meta.ip
    if last_used_at is not None and not new_address and now - last_used_at < LAST_USE_RESOLUTION:
        return
    stamp = ApiToken.filter(id=token.id)
    if first_use:
        # Of concurrent first requests, the one that stamps records the first use.
        stamp = stamp.filter(last_used_at=None)
    changes = {"use_count": F("use_count") + 1, "last_used_at": now, "last_used_ip": meta.ip}
    if not (first_use or new_address):
        await stamp.update(**changes)
        return
    async with in_transaction():
        if await stamp.update(**changes) == 1:
            await activity.token_used(
                services,
                meta,
                user_id=user_id,
                token_id=token.id,
                organisation_id=token.organisation_id,
                first_use=first_use,
            )


# --- Service accounts ----------------------------------------------------------------------------
# A service account is an organisation's token (no owner): made by one of its managers, it acts
# for that manager in that organisation only, with at most its own role (authz.py says why).

SERVICE_ACCOUNT_PREFIX = "gdn_sa_"
MAX_SERVICE_ACCOUNTS = 50


async def create_service_account(
    services: Services,
    meta: RequestMeta,
    scope: RequestScope,
    organisation_id: int,
    *,
    name: str,
    role: Role,
    scopes: list[str],
    expires_at: datetime | None = None,
) -> IssuedToken:
    user = _require_token_manager(scope.actor)
    membership = await authz.require_visible_organisation(scope, organisation_id)
    authz.require(
        authz.can_manage_service_accounts(membership),
        authz.forbidden(authz.SERVICE_ACCOUNTS_FORBIDDEN),
    )
    if not authz.can_give_service_account_role(membership, role):
        raise DomainError(ErrorCode.FORBIDDEN, authz.SERVICE_ACCOUNT_ROLE_FORBIDDEN, "role")
    name = _clean_label(name, "name")
    chosen = _clean_scopes(scopes)
    expiry = _expiry(services, expires_at)
    secret = SERVICE_ACCOUNT_PREFIX + new_token()
    now = services.clock.now()
    async with in_transaction():
        # The organisation's row lock serialises concurrent creations, so the cap holds.
        await Organisation.select_for_update().get(id=organisation_id)
        active = await ApiToken.filter(
            organisation_id=organisation_id, owner_id=None, revoked_at=None, expires_at__gt=now
        ).count()
        if active >= MAX_SERVICE_ACCOUNTS:
            raise DomainError(
                ErrorCode.TOKEN_LIMIT_REACHED,
                f"The organisation has {MAX_SERVICE_ACCOUNTS} active service accounts; revoke"
                " one it no longer uses.",
            )
        token = await ApiToken.create(
            owner_id=None,
            organisation_id=organisation_id,
            created_by_id=user.id,
            role=role,
            name=name,
            token_hash=services.keyring.token_digest(secret, TOKEN_PURPOSE),
            prefix=secret[: len(SERVICE_ACCOUNT_PREFIX) + 4],
            scopes=chosen,
            created_at=now,
            expires_at=expiry,
        )
        await activity.service_account_created(
            services,
            meta,
            user_id=user.id,
            organisation_id=organisation_id,
            token_id=token.id,
            name=name,
            role=role.value,
            scopes=chosen,
            expires_at=expiry.isoformat(),
        )
    return IssuedToken(token=token, secret=secret)


async def _managed_service_account(
    scope: RequestScope, token_id: int, members_refusal: DomainError
) -> ApiToken:
    """A service account of an organisation the caller manages; NOT_FOUND for non-members,
    members_refusal for other members."""
    token = await ApiToken.get_or_none(id=token_id, owner_id=None)
    if token is None or token.organisation_id is None:
        raise authz.not_found("service account")
    membership = await authz.membership_of(scope, token.organisation_id)
    authz.require(authz.can_view_organisation(membership), authz.not_found("service account"))
    authz.require(authz.can_manage_service_accounts(membership), members_refusal)
    return token


async def revoke_service_account(
    services: Services, meta: RequestMeta, scope: RequestScope, token_id: int
) -> ApiToken:
    """Any manager of the organisation ends it at once; a second revocation changes nothing."""
    user = _require_token_manager(scope.actor)
    await _managed_service_account(
        scope, token_id, authz.forbidden(authz.SERVICE_ACCOUNTS_FORBIDDEN)
    )
    async with in_transaction():
        token = await ApiToken.filter(id=token_id).select_for_update().get()
        if token.revoked_at is None:
            token.revoked_at = services.clock.now()
            await token.save(update_fields=["revoked_at"])
            await activity.service_account_revoked(
                services,
                meta,
                user_id=user.id,
                organisation_id=token.organisation_id,
                token_id=token.id,
                name=token.name,
            )
            if token.created_by_id is not None:
                # EVT-4: a socket opened with it is its creator's, authorised again at once.
                events.access_changed(services, token.created_by_id)
    return token


async def organisation_service_accounts(
    scope: RequestScope, organisation_id: int
) -> list[ApiToken]:
    """The organisation's service accounts not revoked, newest first: its managers only."""
    authz.refuse_held_to_enrolment(scope.actor)
    membership = await authz.require_visible_organisation(scope, organisation_id)
    authz.refuse_tokens(scope.actor, "Service accounts")
    authz.require(
        authz.can_manage_service_accounts(membership),
        authz.forbidden(authz.SERVICE_ACCOUNTS_FORBIDDEN),
    )
    return await ApiToken.filter(
        organisation_id=organisation_id, owner_id=None, revoked_at=None
    ).order_by("-id")


async def visible_service_account(scope: RequestScope, token_id: int) -> ApiToken:
    """node(id:) answers what organisation.serviceAccounts answers: for managers only."""
    authz.require_user(scope.actor)
    authz.refuse_tokens(scope.actor, "Service accounts")
    return await _managed_service_account(scope, token_id, authz.not_found("service account"))


# The service account with its creator, who must still manage its organisation and not be
# blocked: their rights bound it at every use.
_SERVICE_ACCOUNT_AND_CREATOR = (
    "SELECT t.id AS token_id, t.scopes, t.organisation_id AS token_organisation_id,"
    " t.expires_at, t.last_used_at, t.last_used_ip, t.role AS token_role,"
    " u.id, u.email, u.display_name, u.language, u.country, u.timezone, u.recovery_phone,"
    " u.recovery_email, u.support_code_encrypted, u.current_organisation_id, u.platform_role,"
    " u.must_set_login_email"
    " FROM api_token t JOIN user_account u ON u.id = t.created_by_id"
    " JOIN membership m ON m.user_id = u.id AND m.organisation_id = t.organisation_id"
    " WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND t.owner_id IS NULL"
    f" AND {authz.SERVICE_ACCOUNT_CREATOR_IS_MANAGER_SQL}"
    f" AND {authz.WEB_ACCESS_NOT_BLOCKED_SQL}"
)


# --- Attribution ---------------------------------------------------------------------------------


def token_use(token: SignedInToken) -> TokenUse:
    """How events name the token a request came through (API-6 "every use recorded"). A service
    account always has a role, its cap; a personal access token never has one."""
    return TokenUse(
        id=token.id, kind="service_account" if token.role_cap is not None else "personal"
    )


# --- Revocation when a member loses their role ---------------------------------------------------


async def revoke_beyond_role(
    services: Services,
    meta: RequestMeta,
    *,
    actor_id: int,
    user_id: int,
    organisation_id: int,
    role: Role | None,
    reason: str,
) -> list[int]:
    """In the caller's transaction, once the user's role in the organisation is `role` (None: no
    longer a member): revokes the service accounts they made there when they no longer manage it,
    and their personal tokens restricted to it when they left it. The lookup at each use hides
    such tokens already; revoking them for good keeps a later re-admission from reviving them.
    Returns the ids revoked."""
    candidates: list[ApiToken] = []
    if not authz.may_keep_service_accounts(role):
        candidates += await ApiToken.filter(
            organisation_id=organisation_id, owner_id=None, created_by_id=user_id, revoked_at=None
        ).order_by("id")
    if not authz.may_keep_organisation_tokens(role):
        candidates += await ApiToken.filter(
            organisation_id=organisation_id, owner_id=user_id, revoked_at=None
        ).order_by("id")
    now = services.clock.now()
    revoked = []
    for token in candidates:
        # Conditional: a revocation by its manager at the same moment is recorded once.
        if await ApiToken.filter(id=token.id, revoked_at=None).update(revoked_at=now) != 1:
            continue
        revoked.append(token.id)
        if token.owner_id is None:
            await activity.service_account_revoked_with_creator(
                services,
                meta,
                actor_id=actor_id,
                creator_id=user_id,
                organisation_id=organisation_id,
                token_id=token.id,
                name=token.name,
                reason=reason,
            )
        else:
            await activity.token_revoked_with_membership(
                services,
                meta,
                actor_id=actor_id,
                owner_id=user_id,
                organisation_id=organisation_id,
                token_id=token.id,
                label=token.name,
                reason=reason,
            )
    return revoked
