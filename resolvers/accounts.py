"""Accounts: opening one (ORG-1), sign-in (password step) and sign-out (MFA-7, MFA-8, ACT-1)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from tortoise.transactions import in_transaction

from gardien.models.enums import Role, TwoFactorKind
from gardien.models.organisations import Membership, Organisation, SecurityPolicy
from gardien.models.sessions import Session, SignInChallenge
from gardien.models.users import User
from gardien.resolvers import (
    activity,
    authz,
    events,
    profile,
    ratelimits,
    security_notices,
    sessions,
    sql,
    two_factor,
)
from gardien.resolvers.authz import Actor, require_user
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.resolvers.text import is_plain_text
from gardien.security import (
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
    DeviceCookie,
    common_passwords,
    hash_password,
    issue_device_cookie,
    new_token,
    normalise_password,
    password_needs_rehash,
    read_device_cookie,
    verify_password,
)

LANGUAGES = ("fr", "en", "de", "it")
CHALLENGE_LIFETIME = timedelta(minutes=5)
CHALLENGE_PURPOSE = "sign-in-challenge"
# The local part is deliberately loose: the address is proved by mail, not by a pattern (RFC
# 5321 length limits). The domain is not: it must be a host name we can resolve and deliver to,
# dot-separated LDH labels of 1 to 63 characters with no hyphen at either end, ending in a TLD of
# letters (or an IDN TLD in punycode). IP literals (`a@[127.0.0.1]`) are refused: they would
# point our mail at internal hosts.
_DOMAIN_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_TOP_LEVEL_DOMAIN = r"(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59}(?<!-))"
EMAIL_PATTERN = re.compile(rf"^[^@\s]{{1,64}}@(?:{_DOMAIN_LABEL}\.)+{_TOP_LEVEL_DOMAIN}$")
INVALID_CREDENTIALS_MESSAGE = "The login or password is incorrect."
# Runs that make a password guessable however long it is: read forwards or backwards, any slice of
# at least PASSWORD_MIN_LENGTH characters is refused. Keyboard rows of the layouts our users type
# on (QWERTY, Swiss/German QWERTZ, French AZERTY).
_SEQUENCES = (
    "01234567890",
    "abcdefghijklmnopqrstuvwxyz",
    "qwertyuiop",
    "qwertzuiop",
    "azertyuiop",
    "asdfghjkl",
    "qsdfghjklm",
    "yxcvbnm",
    "zxcvbnm",
    "wxcvbn",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm",
)


@dataclass(frozen=True)
class SecondFactorChallenge:
    challenge_id: str
    methods: list[TwoFactorKind]
    expires_at: datetime


@dataclass(frozen=True)
class SignInResult:
    """Exactly one of the two is set: a session, or the second factor still owed."""

    session: sessions.IssuedSession | None = None
    second_factor: SecondFactorChallenge | None = None
    # The browser's new device cookie (OWASP device cookies), to be set by the transport.
    device_cookie: str | None = None


@dataclass(frozen=True)
class SignUpResult:
    user: User
    organisation: Organisation
    session: sessions.IssuedSession
    device_cookie: str


def normalise_email(email: str, field: str = "email") -> str:
    cleaned = email.strip().lower()
    if len(cleaned) > 254 or not EMAIL_PATTERN.match(cleaned) or not is_plain_text(cleaned):
        raise DomainError(ErrorCode.INVALID_INPUT, "Enter a valid e-mail address.", field)
    return cleaned


def check_password_policy(password: str, *, context: tuple[str, ...] = ()) -> None:
    """NIST SP 800-63B 5.1.1.2: length, and not a password an attacker tries first.

    Refused: the shipped common passwords, the account's own words, one short unit repeated
    ("aaaaaaaa", "abcabcabc") and plain sequences ("12345678", "87654321", "qwertzuiop"). Judged on
    the NFKC form, the one that is hashed, so full-width look-alikes are caught too.
    """
    password = normalise_password(password)
    if len(password) < PASSWORD_MIN_LENGTH:
        raise DomainError(
            ErrorCode.PASSWORD_TOO_SHORT,
            f"Use at least {PASSWORD_MIN_LENGTH} characters.",
            "password",
        )
    if len(password) > PASSWORD_MAX_LENGTH:
        raise DomainError(
            ErrorCode.PASSWORD_TOO_LONG,
            f"Use at most {PASSWORD_MAX_LENGTH} characters.",
            "password",
        )
    lowered = password.lower()
    if (
        lowered in common_passwords()
        or any(word and lowered == word.lower() for word in context)
        or _is_repetition_or_sequence(lowered)
    ):
        raise DomainError(
            ErrorCode.PASSWORD_TOO_COMMON,
            "This password is too common or too easy to guess; choose another.",
            "password",
        )


def _is_repetition_or_sequence(lowered: str) -> bool:
    length = len(lowered)
    # One unit repeated: "zzzzzzzz", "abababab", "abcdabcd"; a doubled word adds about one bit.
    for unit in range(1, length // 2 + 1):
        if length % unit == 0 and lowered == lowered[:unit] * (length // unit):
            return True
    return any(lowered in run or lowered in run[::-1] for run in _SEQUENCES)


def validate_display_name(display_name: str) -> str:
    cleaned = " ".join(display_name.split())
    if not 1 <= len(cleaned) <= 120 or not is_plain_text(cleaned):
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "Give a name of 1 to 120 characters, without control characters.",
            "displayName",
        )
    return cleaned


def validate_language(language: str | None) -> str:
    if language is None:
        return "fr"
    if language not in LANGUAGES:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"Choose one of: {', '.join(LANGUAGES)}.", "language"
        )
    return language


async def open_account(
    services: Services,
    meta: RequestMeta,
    *,
    email: str,
    password_hash: str,
    display_name: str,
    language: str,
) -> SignUpResult:
    """ORG-1: the user, their own organisation (they its legal representative) and a session.

    For an address already proved (a confirmed sign-up) or a loader of known data; it runs in
    the caller's transaction when there is one. Raises IntegrityError for a taken address: the
    caller decides what that means to the person asking.
    """
    now = services.clock.now()
    async with in_transaction():
        user = await User.create(
            email=email,
            password_hash=password_hash,
            password_changed_at=now,
            display_name=display_name,
            language=language,
            support_code_encrypted=profile.new_support_code(services),
            created_at=now,
        )
        organisation = await create_organisation(services, user, display_name)
        user.current_organisation_id = organisation.id
        await user.save(update_fields=["current_organisation_id"])
        await activity.signed_up(services, meta, user.id, organisation.id)
        issued = await sessions.open_session(services, user, meta, persistent=False)
        await activity.sign_in_succeeded(services, meta, user.id, second_factor=None)
        # ACT-2: this browser is the account's first known device, so that a later sign-in from
        # elsewhere is told apart from it.
        cookie = await session_opened(services, meta, user, None)
    return SignUpResult(user=user, organisation=organisation, session=issued, device_cookie=cookie)


async def create_organisation(services: Services, owner: User, name: str) -> Organisation:
    """An organisation always starts with its legal representative and a security policy."""
    now = services.clock.now()
    organisation = await Organisation.create(name=name, created_at=now)
    await Membership.create(
        organisation=organisation, user=owner, role=Role.LEGAL_REPRESENTATIVE, created_at=now
    )
    await SecurityPolicy.create(organisation=organisation, updated_at=now)
    return organisation


def _user_by(column: str) -> str:
    """Read by every sign-in and recovery: a fixed statement (see sql.py) for the account, with
    whether it may sign in on the web (BLK-3, authz's rule), which decides before any budget is
    chosen whether a device cookie still vouches for the browser."""
    return (
        f"SELECT u.*, {authz.WEB_ACCESS_NOT_BLOCKED_SQL} AS may_sign_in"
        f" FROM user_account u WHERE u.{column} = $1"
    )


_USER_BY_EMAIL = _user_by("email")
_USER_BY_USERNAME = _user_by("generated_username")
# After the password verify, one fixed statement: whether the user may still sign in (a block
# may have landed meanwhile; BLK-3, the rule is authz's) and which second factors the challenge
# may offer (MFA-7): one row per kind, or one row with no kind.
_AFTER_VERIFY = (
    f"SELECT {authz.MAY_SIGN_IN_WEB_SQL} AS may_sign_in, t.kind FROM (SELECT 1 AS one) AS o"
    f" LEFT JOIN ({two_factor.CONFIRMED_KINDS_SQL}) AS t ON o.one = 1"
)


async def find_by_login(login: str) -> User | None:
    """A login is the login e-mail, or the generated username that replaced it (REC-4)."""
    user, _ = await _find_signer(login)
    return user


async def _find_signer(login: str) -> tuple[User | None, bool]:
    """The login's account (None: no such login) and whether it may sign in on the web."""
    cleaned = login.strip().lower()
    if not cleaned or len(cleaned) > 254 or not is_plain_text(cleaned):
        return None, False
    query = _USER_BY_EMAIL if "@" in cleaned else _USER_BY_USERNAME
    rows = await sql.fetch(query, [cleaned])
    if not rows:
        return None, False
    row = rows[0]
    may_sign_in = bool(row.pop("may_sign_in"))
    return sql.model_from_row(User, row), may_sign_in


async def _after_verify(
    services: Services,
    meta: RequestMeta,
    user: User,
    device: DeviceCookie | None,
    budgets: list[ratelimits.Budget],
    remember_browser: bool,
) -> tuple[bool, list[TwoFactorKind], sessions.IssuedSession | None]:
    """(may sign in on the web, the user's second factor kinds, the session if already opened),
    read in one statement. A user who may sign in gets the attempt back from each budget
    (PostgreSQL: in that statement; and for a browser known here, see _known_browser_statement,
    the sign-in is written in it too).

    A success gives back its own attempt only; the failures of the window stay counted. Clearing
    a budget on success would hand whoever is guessing a fresh one each time the owner signs in
    (from a new browser for the login's budget, or with a cookie a thief holds a copy of). A
    blocked user's right password gives nothing back."""
    if not sql.writes_in_with():
        rows = await sql.fetch(_AFTER_VERIFY, [user.id])
        may_sign_in = bool(rows[0]["may_sign_in"])
        if may_sign_in:
            await ratelimits.give_back_each(services, budgets)
        return may_sign_in, two_factor.kinds_of(rows), None
    if device is None:
        give_back, params = ratelimits.give_back_if(
            services, budgets, authz.MAY_SIGN_IN_WEB_SQL, first=2
        )
        rows = await sql.fetch(f"WITH given AS ({give_back}) {_AFTER_VERIFY}", [user.id, *params])
        return bool(rows[0]["may_sign_in"]), two_factor.kinds_of(rows), None
    query = _known_browser_query(services, meta, user, device, budgets, remember_browser)
    return _known_browser_answer(services, query, await sql.fetch(query.statement, query.params))


# Whether the password alone signs user $1 in now: web access not blocked (BLK-3, authz's rule)
# and no second factor to ask for (MFA-7).
_PASSWORD_SUFFICES = (
    f"{authz.MAY_SIGN_IN_WEB_SQL} AND NOT EXISTS ({two_factor.CONFIRMED_KINDS_SQL})"
)
_KNOWN_BROWSER_ANSWER = (
    "SELECT a.may_sign_in, a.kind AS second_factor_kind, opened.*, event.id AS event_id,"
    f" audience.organisation_id AS {events.AUDIENCE_COLUMN} FROM ({_AFTER_VERIFY}) AS a"
    " LEFT JOIN opened ON TRUE LEFT JOIN event ON TRUE LEFT JOIN audience ON TRUE"
)


@lru_cache(maxsize=16)
def _known_browser_statement(give_back: str, seen_count: int, session_count: int) -> str:
    """A returning browser's after-verify on PostgreSQL. When the password suffices and the
    browser's (country, device) pair is known, which is when ACT-2 has nothing to announce, the
    statement also writes what the transaction in sign_in would: the session, sign_in.succeeded
    with its audience, the pair seen again. One statement is atomic by itself, and every part of
    it reads one snapshot, so the block rule the writes obey is the one answered. Otherwise it
    writes none of them (the session columns come back NULL) and sign_in carries on as for any
    browser; a session refused because the credentials changed meanwhile (session_insert) still
    has its pair seen: a pair the right password was just given from.

    Each part numbers its own parameters from $1, the user in every one; they follow one another
    here: the pair's, the session's, the event's, then the give-back's (already numbered).

    `given` must stay unread by the rest: PostgreSQL runs a writing part that nothing reads
    after the main query, so the rate-limit counters, which other users' sign-ins share, are
    locked only once the session's share lock on the user's row is had (a sign-in waiting on a
    credential change holds none of them; tested)."""
    session = sessions.session_insert(locking=True, source="seen")
    event = events.event_and_audience("opened")
    return (
        f"WITH given AS ({give_back}),"
        f" seen AS ({security_notices.seen_again(_PASSWORD_SUFFICES)}),"
        f" opened AS ({sql.shift_placeholders(session, seen_count)}),"
        f" {sql.shift_placeholders(event, seen_count + session_count)}"
        f" {_KNOWN_BROWSER_ANSWER}"
    )


@dataclass(frozen=True)
class _KnownBrowserQuery:
    statement: str
    params: list[Any]
    token: str
    event: events.NewEvent


def _known_browser_query(
    services: Services,
    meta: RequestMeta,
    user: User,
    device: DeviceCookie,
    budgets: list[ratelimits.Budget],
    remember_browser: bool,
) -> _KnownBrowserQuery:
    now = services.clock.now()
    seen_params = security_notices.known_device_params(services, meta, user.id, device.nonce, now)
    token, session_params = sessions.new_session(services, user, meta, persistent=remember_browser)
    new_event = activity.sign_in_succeeded_event(services, meta, user.id, second_factor=None)
    written = [*seen_params, *session_params, *new_event.params()]
    give_back, give_back_params = ratelimits.give_back_if(
        services, budgets, authz.MAY_SIGN_IN_WEB_SQL, first=len(written) + 1
    )
    statement = _known_browser_statement(give_back, len(seen_params), len(session_params))
    return _KnownBrowserQuery(statement, [*written, *give_back_params], token, new_event)


def _known_browser_answer(
    services: Services, query: _KnownBrowserQuery, rows: list[dict[str, Any]]
) -> tuple[bool, list[TwoFactorKind], sessions.IssuedSession | None]:
    """_after_verify's answer from the statement's rows; the event published if it was written."""
    may_sign_in = bool(rows[0]["may_sign_in"])
    methods = two_factor.kinds_of(rows, "second_factor_kind")
    row = rows[0]
    if row["id"] is None:
        return may_sign_in, methods, None
    audience = events.audience_in(rows)
    event = query.event.as_written(row["event_id"])
    for column in ("may_sign_in", "second_factor_kind", "event_id", events.AUDIENCE_COLUMN):
        del row[column]
    activity.publish_written(services, event, audience)
    issued = sessions.IssuedSession(session=sql.model_from_row(Session, row), token=query.token)
    return may_sign_in, methods, issued


async def sign_in(
    services: Services,
    meta: RequestMeta,
    *,
    login: str,
    password: str,
    remember_browser: bool = False,
    device_cookie: str | None = None,
) -> SignInResult:
    """MFA-7: the password step. The same answer for an unknown login and a wrong password.

    API-4 (ASVS V2.2.1, NIST SP 800-63B 5.2.2): every attempt is counted, in one atomic statement,
    before the password is verified, so N concurrent guesses verify at most the budget. A browser
    that presents a valid device cookie for this user spends the cookie's own budget (and the
    user's trusted cap) instead of the login's: an attacker who spends the login's budget cannot
    lock the owner out. Every attempt, trusted or not, counts against the address's budget.
    """
    login_key = login.strip().lower()
    ip_key = ratelimits.ip_subject(meta.ip)
    user, may_sign_in = await _find_signer(login)
    device = await trusted_device(services, user, device_cookie, may_sign_in=may_sign_in)
    budgets = _sign_in_budgets(device, user, login_key, ip_key)
    await _count_attempt(services, meta, device, user, login_key, budgets)

    valid = await verify_password(user.password_hash if user else None, password[:1024])
    if user is None or not valid:
        reason = "unknown_login" if user is None else "wrong_password"
        await _sign_in_failed(services, meta, user, login_key, reason)
        raise DomainError(ErrorCode.INVALID_CREDENTIALS, INVALID_CREDENTIALS_MESSAGE)

    if password_needs_rehash(user.password_hash):
        # Before anything of the sign-in is written, and over the hash just verified only: a
        # password reset that landed meanwhile stays.
        rehashed = await hash_password(password)
        await User.filter(id=user.id, password_hash=user.password_hash).update(
            password_hash=rehashed
        )

    # The block rule is read again, though it came with the account: a block that landed during
    # the verify must refuse the sign-in, not only the sessions it would open.
    may_sign_in, methods, issued = await _after_verify(
        services, meta, user, device, budgets, remember_browser
    )
    if not may_sign_in:
        await _sign_in_failed(services, meta, user, login_key, "blocked")
        raise DomainError(
            ErrorCode.ACCOUNT_BLOCKED,
            "Web access to this account is blocked. Contact your organisation's administrator.",
        )

    if issued is not None:
        # Written with the after-verify read: a returning browser, its place known (ACT-2).
        assert device is not None
        return SignInResult(
            session=issued, device_cookie=_issue_device_cookie(services, user, device).value
        )
    try:
        async with in_transaction():
            if methods:
                # No device cookie yet, and no new-location notice: the browser is known only
                # once the second factor is passed (second_factor.complete calls session_opened).
                challenge = await _open_challenge(services, user, meta, methods, remember_browser)
                await activity.sign_in_password_verified(services, meta, user.id)
                return SignInResult(second_factor=challenge)
            issued = await sessions.open_session(services, user, meta, persistent=remember_browser)
            await activity.sign_in_succeeded(services, meta, user.id, second_factor=None)
            cookie = await session_opened(services, meta, user, device)
    except sessions.CredentialsChanged:
        # The old password, given as the credentials changed: the owner should see it (ACT-1).
        await _sign_in_failed(services, meta, user, login_key, "credentials_changed")
        raise DomainError(ErrorCode.INVALID_CREDENTIALS, INVALID_CREDENTIALS_MESSAGE) from None
    return SignInResult(session=issued, device_cookie=cookie)


async def session_opened(
    services: Services, meta: RequestMeta, user: User, known: DeviceCookie | None
) -> str:
    """What every completed sign-in does once its session is open, in its transaction: renew
    or issue the device cookie, and tell the user of a new location (ACT-2). Answers the cookie.

    A browser that came with a valid cookie keeps its nonce (so its budget and any lock), only
    renewed; a new browser gets a new nonce. Every cookie is bound to the user's credentials.
    """
    cookie = _issue_device_cookie(services, user, known)
    await security_notices.note_sign_in(services, meta, user, cookie.nonce)
    return cookie.value


def _issue_device_cookie(
    services: Services, user: User, known: DeviceCookie | None
) -> DeviceCookie:
    return issue_device_cookie(
        services.keyring,
        user.id,
        _credential_version(user),
        services.clock.now(),
        nonce=known.nonce if known is not None else None,
    )


def _credential_version(user: User) -> str:
    """What a device cookie is bound to: a password change, or "secure my account" (ACT-5,
    which moves the generation), revokes every cookie of the user."""
    changed = round(user.password_changed_at.timestamp() * 1_000_000)
    return f"{changed}.{user.credential_generation}"


def _user_subject(user: User) -> str:
    return f"user:{user.id}"


async def trusted_device(
    services: Services,
    user: User | None,
    value: str | None,
    *,
    may_sign_in: bool | None = None,
) -> DeviceCookie | None:
    """The presented device cookie when it still vouches for this browser, else None.

    Genuine, unexpired, issued to this user under the current password, and the user not blocked:
    a block (BLK-3) withdraws the trust of every browser along with the sessions. `may_sign_in`
    is the block rule as read with the user, if it was; otherwise it is read here.
    """
    if user is None or not value:
        return None
    device = read_device_cookie(
        services.keyring, value, user.id, _credential_version(user), services.clock.now()
    )
    if device is None:
        return None
    if may_sign_in is None:
        may_sign_in = await authz.may_sign_in_web(user.id)
    return device if may_sign_in else None


async def _sign_in_failed(
    services: Services, meta: RequestMeta, user: User | None, login_key: str, reason: str
) -> None:
    async with in_transaction():
        await activity.sign_in_failed(
            services, meta, user_id=user.id if user else None, login=login_key, reason=reason
        )
        if user is not None and reason == "wrong_password":
            # ACT-3. The API answer stays the one an unknown login gets (sign_in raises it).
            await security_notices.wrong_password(services, meta, user)


async def _refuse(
    services: Services,
    meta: RequestMeta,
    attempt: ratelimits.Attempt,
    user: User | None,
    login_key: str,
    budget: str,
) -> DomainError:
    """The throttled answer, identical whether the login exists; recorded once per window."""
    if attempt.exhausts_budget:
        async with in_transaction():
            await activity.sign_in_throttled(
                services, meta, user_id=user.id if user else None, login=login_key, budget=budget
            )
    return ratelimits.refusal(services, attempt)


def _sign_in_budgets(
    device: DeviceCookie | None, user: User | None, login_key: str, ip_key: str | None
) -> list[ratelimits.Budget]:
    """The budgets a sign-in attempt spends, in the order they are checked.

    Per address, attempts are counted before verifying and a success is given back. Counting
    failures afterwards would let a burst of concurrent guesses all pass the check before the
    first failure is written; counting first bounds the guesses in flight as well. An unknown
    login is counted exactly like a known one.
    """
    budgets: list[ratelimits.Budget] = []
    if ip_key is not None:
        budgets.append((ratelimits.SIGN_IN_ATTEMPTS_PER_IP, ip_key))
    if device is not None and user is not None:
        budgets.append((ratelimits.SIGN_IN_ATTEMPTS_PER_DEVICE, device.nonce))
        budgets.append((ratelimits.SIGN_IN_TRUSTED_ATTEMPTS_PER_USER, _user_subject(user)))
    else:
        budgets.append((ratelimits.SIGN_IN_ATTEMPTS_PER_LOGIN, login_key))
    return budgets


# What a refusal by each budget is recorded as (sign_in.throttled's `budget`).
_BUDGET_NAMES = {
    ratelimits.SIGN_IN_ATTEMPTS_PER_IP: "ip",
    ratelimits.SIGN_IN_ATTEMPTS_PER_LOGIN: "login",
    ratelimits.SIGN_IN_TRUSTED_ATTEMPTS_PER_USER: "trusted_user",
}


async def _count_attempt(
    services: Services,
    meta: RequestMeta,
    device: DeviceCookie | None,
    user: User | None,
    login_key: str,
    budgets: list[ratelimits.Budget],
) -> None:
    """Count the attempt against every budget it spends (_sign_in_budgets), in one statement,
    then check them in order. The budgets after the first refused one are given back: they end
    as they would if each were counted only once the ones before it had allowed the attempt."""
    # A locked cookie is refused without counting or verifying anything until the lock ends.
    lock_of_cookie = (ratelimits.SIGN_IN_DEVICE_LOCK, device.nonce) if device else None
    lock, attempts = await ratelimits.consume_each_unless_held(services, budgets, lock_of_cookie)
    if lock is not None:
        raise ratelimits.refusal(services, lock)
    for index, attempt in enumerate(attempts):
        if attempt.allowed:
            continue
        await ratelimits.give_back_each(services, budgets[index + 1 :])
        if device is not None and attempt.rule == ratelimits.SIGN_IN_ATTEMPTS_PER_DEVICE:
            # The cookie itself is being used to guess (stolen, or shared): lock it for a day.
            lock = await ratelimits.consume(services, ratelimits.SIGN_IN_DEVICE_LOCK, device.nonce)
            if lock.exhausts_budget:
                raise await _refuse(services, meta, lock, user, login_key, "device")
            raise ratelimits.refusal(services, lock)
        raise await _refuse(services, meta, attempt, user, login_key, _BUDGET_NAMES[attempt.rule])


async def _open_challenge(
    services: Services,
    user: User,
    meta: RequestMeta,
    methods: list[TwoFactorKind],
    remember_browser: bool,
) -> SecondFactorChallenge:
    now = services.clock.now()
    token = new_token()
    # A reset, "secure my account" or a block that commits meanwhile ends the challenges it
    # sees: this one is written before it (and ended by it) or not at all.
    await sessions.hold_credentials(user)
    await SignInChallenge.create(
        user=user,
        token_hash=services.keyring.token_digest(token, CHALLENGE_PURPOSE),
        remember_browser=remember_browser,
        ip=meta.ip,
        country=meta.country,
        device=meta.device,
        created_at=now,
        expires_at=now + CHALLENGE_LIFETIME,
    )
    return SecondFactorChallenge(
        challenge_id=token, methods=methods, expires_at=now + CHALLENGE_LIFETIME
    )


async def sign_out(services: Services, meta: RequestMeta, actor: Actor) -> None:
    user = require_user(actor)
    assert actor.session is not None
    async with in_transaction():
        await sessions.revoke(services, actor.session.id)
        await activity.signed_out(services, meta, user.id)
