"""Sign-up and sign-in operations, called without GraphQL."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import argon2
import asyncpg
import pytest
from tortoise.connection import get_connection
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from gardien import security
from gardien.clock import ManualClock
from gardien.models.activity import ActivityEvent
from gardien.models.enums import Role, SessionKind, TwoFactorKind
from gardien.models.organisations import Membership, SecurityPolicy, UserBlock
from gardien.models.outbox import OutboxMessage
from gardien.models.sessions import KnownDevice, Session
from gardien.models.users import PendingSignUp, User
from gardien.resolvers import (
    accounts,
    events,
    profile,
    ratelimits,
    sessions,
    sign_ups,
)
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.security import DEVICE_COOKIE_LIFETIME, DeviceCookie, hash_password
from tests import factories, locks
from tests.conftest import BACKEND
from tests.querycount import count_queries

pytestmark = pytest.mark.usefixtures("database")


async def test_org1_sign_up_creates_own_organisation_with_user_as_legal_representative(
    services: Services,
) -> None:
    result = await factories.sign_up(
        services, email="  Alice@Example.TEST ", name="Alice  Martin", language="en"
    )

    user = await User.get(id=result.user.id)
    membership = await Membership.get(user_id=user.id)
    assert (user.email, user.display_name, user.language) == (
        "alice@example.test",
        "Alice Martin",
        "en",
    )
    assert membership.role == Role.LEGAL_REPRESENTATIVE
    assert membership.organisation_id == result.organisation.id == user.current_organisation_id
    assert await SecurityPolicy.exists(
        organisation_id=result.organisation.id, require_two_factor=False
    )


async def test_org1_password_stored_as_argon2id_never_in_clear(services: Services) -> None:
    result = await factories.sign_up(services)

    user = await User.get(id=result.user.id)
    assert user.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert factories.PASSWORD not in user.password_hash


@pytest.mark.parametrize(
    ("password", "code"),
    [
        ("short7!", ErrorCode.PASSWORD_TOO_SHORT),
        ("x" * 257, ErrorCode.PASSWORD_TOO_LONG),
        ("password1", ErrorCode.PASSWORD_TOO_COMMON),
        ("Baseball", ErrorCode.PASSWORD_TOO_COMMON),
        ("alice@example.test", ErrorCode.PASSWORD_TOO_COMMON),
    ],
)
async def test_org1_password_policy_nist_800_63b(
    services: Services, meta: RequestMeta, password: str, code: ErrorCode
) -> None:
    with pytest.raises(DomainError) as raised:
        await sign_ups.request_sign_up(
            services, meta, email="alice@example.test", password=password, display_name="Alice"
        )

    assert (raised.value.code, raised.value.field) == (code, "password")
    assert not await User.exists(email="alice@example.test")
    assert await PendingSignUp.all().count() == 0
    assert await OutboxMessage.all().count() == 0


async def test_org1_long_passphrase_of_128_characters_accepted(
    services: Services, meta: RequestMeta
) -> None:
    passphrase = "correct horse battery staple " * 4 + "x" * 12
    assert len(passphrase) == 128

    result = await factories.sign_up(services, email="long@example.test", password=passphrase)
    signed_in = await accounts.sign_in(
        services, meta, login="long@example.test", password=passphrase
    )

    assert signed_in.session is not None
    assert signed_in.session.session.user_id == result.user.id


async def test_mfa7_sign_in_issues_new_random_token_stored_only_as_digest(
    services: Services, meta: RequestMeta
) -> None:
    await factories.sign_up(services, email="bob@example.test")

    first = await accounts.sign_in(
        services, meta, login="bob@example.test", password=factories.PASSWORD
    )
    second = await accounts.sign_in(
        services, meta, login="Bob@Example.test", password=factories.PASSWORD
    )

    assert first.session and second.session
    assert first.session.token != second.session.token
    assert len(first.session.token) >= 43  # 256 bits, base64url
    stored = [s.token_hash for s in await Session.all()]
    assert first.session.token not in stored and second.session.token not in stored
    assert services.keyring.token_digest(first.session.token, "session") in stored


async def test_act1_sign_in_failure_is_generic_and_recorded(
    services: Services, meta: RequestMeta
) -> None:
    signed_up = await factories.sign_up(services, email="carol@example.test")

    with pytest.raises(DomainError) as wrong_password:
        await accounts.sign_in(
            services, meta, login="carol@example.test", password="not her password"
        )
    with pytest.raises(DomainError) as unknown_login:
        await accounts.sign_in(
            services, meta, login="nobody@example.test", password="not her password"
        )

    assert wrong_password.value.code == unknown_login.value.code == ErrorCode.INVALID_CREDENTIALS
    assert wrong_password.value.message == unknown_login.value.message
    failures = await ActivityEvent.filter(type="sign_in.failed").order_by("id")
    assert [(e.subject_id, e.subject_email, e.data["reason"], e.ip) for e in failures] == [
        (signed_up.user.id, None, "wrong_password", meta.ip),
        (None, "nobody@example.test", "unknown_login", meta.ip),
    ]


async def test_act1_sign_in_success_recorded_in_same_transaction(
    services: Services, meta: RequestMeta
) -> None:
    """ACT-1: the session and its sign_in.succeeded event commit together or not at all.

    The database itself refuses the event (a trigger), after the session row was written in the
    same transaction: neither may remain. Without the trigger, both are written."""
    signed_up = await factories.sign_up(services, email="dan@example.test")
    sessions_before = await Session.all().count()
    async with _refusing_sign_in_events():
        with pytest.raises(IntegrityError, match="activity store refused the event"):
            await accounts.sign_in(
                services, meta, login="dan@example.test", password=factories.PASSWORD
            )
        assert await Session.all().count() == sessions_before
        assert not await ActivityEvent.exists(type="sign_in.succeeded", ip=meta.ip)

    result = await accounts.sign_in(
        services, meta, login="dan@example.test", password=factories.PASSWORD
    )

    assert result.session is not None
    assert await Session.all().count() == sessions_before + 1
    events = await ActivityEvent.filter(type="sign_in.succeeded", ip=meta.ip)
    assert [(e.actor_id, e.subject_id, e.country, e.device) for e in events] == [
        (signed_up.user.id, signed_up.user.id, "CH", "pytest")
    ]


@contextlib.asynccontextmanager
async def _refusing_sign_in_events() -> AsyncIterator[None]:
    """A real database trigger that aborts the insert of every sign_in.succeeded event."""
    connection = get_connection("default")
    if connection.capabilities.dialect == "sqlite":
        create = [
            "CREATE TRIGGER refuse_sign_in_event BEFORE INSERT ON activity_event"
            " WHEN NEW.type = 'sign_in.succeeded'"
            " BEGIN SELECT RAISE(ABORT, 'activity store refused the event'); END"
        ]
        drop = ["DROP TRIGGER refuse_sign_in_event"]
    else:
        create = [
            "CREATE FUNCTION refuse_sign_in_event() RETURNS trigger AS $$ BEGIN"
            " RAISE EXCEPTION 'activity store refused the event' USING ERRCODE = 'check_violation';"
            " END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_sign_in_event BEFORE INSERT ON activity_event FOR EACH ROW"
            " WHEN (NEW.type = 'sign_in.succeeded') EXECUTE FUNCTION refuse_sign_in_event()",
        ]
        drop = [
            "DROP TRIGGER refuse_sign_in_event ON activity_event",
            "DROP FUNCTION refuse_sign_in_event()",
        ]
    for statement in create:
        await connection.execute_script(statement)
    try:
        yield
    finally:
        for statement in drop:
            await connection.execute_script(statement)


async def test_mfa7_user_with_second_factor_gets_challenge_not_session(
    services: Services, meta: RequestMeta
) -> None:
    signed_up = await factories.sign_up(services, email="eve@example.test")
    await factories.confirm_totp(services, signed_up.user)
    sessions_before = await Session.all().count()

    result = await accounts.sign_in(
        services, meta, login="eve@example.test", password=factories.PASSWORD
    )

    assert result.session is None
    assert result.second_factor is not None
    assert result.second_factor.methods == [TwoFactorKind.TOTP]
    assert result.second_factor.expires_at == services.clock.now() + accounts.CHALLENGE_LIFETIME
    assert await Session.all().count() == sessions_before
    assert await ActivityEvent.exists(
        type="sign_in.password_verified", subject_id=signed_up.user.id
    )


async def test_api4_sign_in_locked_after_ten_failures_per_login_then_window_ends(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    await factories.sign_up(services, email="frank@example.test")
    for _ in range(10):
        with pytest.raises(DomainError):
            await accounts.sign_in(
                services, meta, login="frank@example.test", password="wrong guess!"
            )

    with pytest.raises(DomainError) as locked:
        await accounts.sign_in(
            services, meta, login="frank@example.test", password=factories.PASSWORD
        )
    clock.advance(timedelta(minutes=16))
    after_window = await accounts.sign_in(
        services, meta, login="frank@example.test", password=factories.PASSWORD
    )

    assert locked.value.code == ErrorCode.TOO_MANY_ATTEMPTS
    assert after_window.session is not None


async def test_mfa7_session_expires_when_idle_and_after_absolute_lifetime(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    await factories.sign_up(services, email="gina@example.test")
    result = await accounts.sign_in(
        services, meta, login="gina@example.test", password=factories.PASSWORD
    )
    assert result.session is not None
    token = result.session.token

    clock.advance(sessions.IDLE_TIMEOUT - timedelta(seconds=1))
    still_active = await sessions.authenticate(services, token)
    for _ in range(int(sessions.ABSOLUTE_LIFETIME / timedelta(minutes=20))):
        clock.advance(timedelta(minutes=20))
        await sessions.authenticate(services, token)
    past_absolute = await sessions.authenticate(services, token)

    other = await accounts.sign_in(
        services, meta, login="gina@example.test", password=factories.PASSWORD
    )
    assert other.session is not None
    clock.advance(sessions.IDLE_TIMEOUT)
    idle = await sessions.authenticate(services, other.session.token)

    assert still_active is not None and still_active.user_id == result.session.session.user_id
    assert past_absolute is None
    assert idle is None


async def test_mfa7_sign_out_revokes_the_session(services: Services, meta: RequestMeta) -> None:
    await factories.sign_up(services, email="hugo@example.test")
    result = await accounts.sign_in(
        services, meta, login="hugo@example.test", password=factories.PASSWORD
    )
    assert result.session is not None
    actor = await sessions.authenticate(services, result.session.token)
    assert actor is not None

    await accounts.sign_out(services, meta, actor)

    assert await sessions.authenticate(services, result.session.token) is None
    assert await ActivityEvent.exists(type="session.signed_out", subject_id=actor.user_id)


async def test_pro4_sign_up_gives_a_six_digit_support_code_kept_encrypted(
    services: Services,
) -> None:
    first = await factories.sign_up(services)
    second = await factories.sign_up(services)

    stored = [(await User.get(id=r.user.id)).support_code_encrypted for r in (first, second)]
    assert None not in stored
    codes = [profile.read_support_code(services, s) for s in stored if s is not None]
    assert all(len(code) == 6 and code.isdigit() for code in codes)
    assert all(code.encode() not in s for code, s in zip(codes, stored, strict=True) if s)


async def test_org1_password_hashing_runs_off_the_event_loop() -> None:
    """argon2id takes tens of milliseconds of CPU; the event loop must keep serving meanwhile."""
    ticks = 0
    hashing = asyncio.ensure_future(hash_password("a sufficiently long passphrase"))

    while not hashing.done():
        ticks += 1
        await asyncio.sleep(0)

    assert (await hashing).startswith("$argon2id$")
    assert ticks > 10  # a hash computed on the loop would leave no room for a single tick


# --- Sign-in throttling that holds (API-4, ASVS V2.2.1, NIST SP 800-63B 5.2.2) ---------------


async def _sign_in_outcome(
    services: Services,
    meta: RequestMeta,
    login: str,
    password: str,
    device_cookie: str | None = None,
) -> ErrorCode | accounts.SignInResult:
    try:
        return await accounts.sign_in(
            services, meta, login=login, password=password, device_cookie=device_cookie
        )
    except DomainError as error:
        return error.code


async def _wrong_password_verifications(user_id: int) -> int:
    """Each argon2 verification of a wrong password leaves exactly one such event (ACT-1)."""
    failures = await ActivityEvent.filter(type="sign_in.failed", subject_id=user_id)
    return sum(1 for e in failures if e.data["reason"] == "wrong_password")


async def test_api4_sixty_concurrent_wrong_guesses_verify_at_most_the_budget(
    services: Services, meta: RequestMeta
) -> None:
    """The attempt is counted before argon2 runs, so a burst cannot outrun the count
    (on PostgreSQL the 60 sign-ins run on separate pooled connections)."""
    signed_up = await factories.sign_up(services, email="ida@example.test")

    outcomes = await asyncio.gather(
        *(
            _sign_in_outcome(services, meta, "ida@example.test", f"wrong guess {n}")
            for n in range(60)
        )
    )

    assert sorted(str(outcome) for outcome in outcomes) == sorted(
        [ErrorCode.INVALID_CREDENTIALS] * 10 + [ErrorCode.TOO_MANY_ATTEMPTS] * 50
    )
    assert await _wrong_password_verifications(signed_up.user.id) == 10


async def test_api4_unknown_login_is_counted_and_refused_exactly_like_a_known_one(
    services: Services, meta: RequestMeta
) -> None:
    await factories.sign_up(services, email="jade@example.test")
    refusals: list[tuple[object, ...]] = []
    for login in ("jade@example.test", "nobody@example.test"):
        answers = [await _sign_in_outcome(services, meta, login, "wrong guess!") for _ in range(10)]
        assert answers == [ErrorCode.INVALID_CREDENTIALS] * 10
        with pytest.raises(DomainError) as refused:
            await accounts.sign_in(services, meta, login=login, password="wrong guess!")
        error = refused.value
        refusals.append((error.code, error.message, error.field, error.retry_after_seconds))

    assert refusals[0] == refusals[1]
    assert refusals[0] == (
        ErrorCode.TOO_MANY_ATTEMPTS,
        "Too many attempts. Wait 15 minutes before trying again.",
        None,
        15 * 60,
    )


async def test_api4_success_gives_back_its_own_attempt_only_and_failures_stay_counted(
    services: Services, meta: RequestMeta
) -> None:
    """ASVS V2.2.1: the owner signing in from a new browser must not hand whoever is guessing a
    fresh budget; the nine failures of the window stay counted, the success does not."""
    await factories.sign_up(services, email="kim@example.test")
    for _ in range(9):
        await _sign_in_outcome(services, meta, "kim@example.test", "wrong guess!")

    success = await _sign_in_outcome(services, meta, "kim@example.test", factories.PASSWORD)
    again = [await _sign_in_outcome(services, meta, "kim@example.test", "x!") for _ in range(3)]

    assert isinstance(success, accounts.SignInResult) and success.session is not None
    assert again == [ErrorCode.INVALID_CREDENTIALS] + [ErrorCode.TOO_MANY_ATTEMPTS] * 2


async def test_api4_owner_with_device_cookie_signs_in_while_the_login_budget_is_spent(
    services: Services, meta: RequestMeta
) -> None:
    """OWASP "Slow down online guessing attacks with device cookies": the attacker spends the
    untrusted budget; the owner's browser, known from an earlier sign-in, has its own."""
    await factories.sign_up(services, email="lou@example.test")
    earlier = await accounts.sign_in(
        services, meta, login="lou@example.test", password=factories.PASSWORD
    )
    assert earlier.device_cookie is not None
    attacker = RequestMeta(ip="198.51.100.66")
    await asyncio.gather(
        *(_sign_in_outcome(services, attacker, "lou@example.test", "guess!") for _ in range(30))
    )

    without_cookie = await _sign_in_outcome(services, meta, "LOU@example.test", factories.PASSWORD)
    with_cookie = await _sign_in_outcome(
        services, meta, "LOU@example.test", factories.PASSWORD, earlier.device_cookie
    )

    assert without_cookie == ErrorCode.TOO_MANY_ATTEMPTS
    assert isinstance(with_cookie, accounts.SignInResult) and with_cookie.session is not None
    # The known browser's cookie is renewed, not replaced: the same nonce, so no fresh budget.
    assert with_cookie.device_cookie is not None
    assert with_cookie.device_cookie.split(".")[0] == earlier.device_cookie.split(".")[0]


async def test_api4_device_cookie_that_fails_too_often_is_locked_for_a_day_and_recorded(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    """OWASP device cookies ("lockout the device cookie"), ASVS V2.2.1: a cookie that spends its
    budget stays locked for 24 hours, not until its 15-minute window ends, and while locked is
    refused without verifying the password (no wrong_password record, the right one refused)."""
    signed_up = await factories.sign_up(services, email="max@example.test")
    earlier = await accounts.sign_in(
        services, meta, login="max@example.test", password=factories.PASSWORD
    )
    cookie = earlier.device_cookie

    guesses = [
        await _sign_in_outcome(services, meta, "max@example.test", "guess!", cookie)
        for _ in range(12)
    ]
    right_password = await _sign_in_outcome(
        services, meta, "max@example.test", factories.PASSWORD, cookie
    )
    clock.advance(timedelta(minutes=15))
    after_window = [
        await _sign_in_outcome(services, meta, "max@example.test", password, cookie)
        for password in ("guess!", factories.PASSWORD)
    ]
    clock.advance(timedelta(hours=23, minutes=45))
    after_a_day = await _sign_in_outcome(
        services, meta, "max@example.test", factories.PASSWORD, cookie
    )

    assert guesses == [ErrorCode.INVALID_CREDENTIALS] * 10 + [ErrorCode.TOO_MANY_ATTEMPTS] * 2
    assert right_password == ErrorCode.TOO_MANY_ATTEMPTS
    assert after_window == [ErrorCode.TOO_MANY_ATTEMPTS] * 2
    assert await _wrong_password_verifications(signed_up.user.id) == 10
    assert isinstance(after_a_day, accounts.SignInResult) and after_a_day.session is not None
    throttled = await ActivityEvent.filter(type="sign_in.throttled")
    assert [(e.subject_id, e.ip, e.data) for e in throttled] == [
        (signed_up.user.id, meta.ip, {"budget": "device"})  # once
    ]
    # The cookie's guesses did not touch the login's own budget.
    assert (
        await _sign_in_outcome(services, RequestMeta(ip="192.0.2.1"), "max@example.test", "guess!")
        == ErrorCode.INVALID_CREDENTIALS
    )


async def test_api4_locked_device_cookie_answers_when_its_lock_ends(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    await factories.sign_up(services, email="mia@example.test")
    earlier = await accounts.sign_in(
        services, meta, login="mia@example.test", password=factories.PASSWORD
    )
    for _ in range(11):
        await _sign_in_outcome(services, meta, "mia@example.test", "guess!", earlier.device_cookie)
    clock.advance(timedelta(hours=1))

    with pytest.raises(DomainError) as locked:
        await accounts.sign_in(
            services,
            meta,
            login="mia@example.test",
            password=factories.PASSWORD,
            device_cookie=earlier.device_cookie,
        )

    assert (locked.value.code, locked.value.retry_after_seconds) == (
        ErrorCode.TOO_MANY_ATTEMPTS,
        23 * 3600,
    )
    assert locked.value.message == "Too many attempts. Wait 23 hours before trying again."


async def test_api4_device_cookie_counts_only_for_its_own_login_and_when_genuine(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    await factories.sign_up(services, email="ned@example.test")
    await factories.sign_up(services, email="ola@example.test")
    neds = await accounts.sign_in(
        services, meta, login="ned@example.test", password=factories.PASSWORD
    )
    assert neds.device_cookie is not None
    nonce, issued, signature = neds.device_cookie.split(".")
    for _ in range(10):
        await _sign_in_outcome(services, meta, "ola@example.test", "guess!")
        await _sign_in_outcome(services, meta, "ned@example.test", "guess!")
    forged = ".".join((nonce, str(int(issued) + 1), signature))
    # The same number in Arabic-Indic digits: int() would read it, the cookie must not pass.
    other_digits = ".".join(
        (nonce, issued.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")), signature)
    )

    presented = {
        "other login": await _sign_in_outcome(
            services, meta, "ola@example.test", factories.PASSWORD, neds.device_cookie
        ),
        "forged": await _sign_in_outcome(
            services, meta, "ned@example.test", factories.PASSWORD, forged
        ),
        "other digits": await _sign_in_outcome(
            services, meta, "ned@example.test", factories.PASSWORD, other_digits
        ),
        "garbage": await _sign_in_outcome(
            services, meta, "ned@example.test", factories.PASSWORD, "a.b.c"
        ),
    }
    clock.advance(DEVICE_COOKIE_LIFETIME + timedelta(seconds=1))
    for _ in range(10):
        await _sign_in_outcome(services, meta, "ned@example.test", "guess!")
    presented["expired"] = await _sign_in_outcome(
        services, meta, "ned@example.test", factories.PASSWORD, neds.device_cookie
    )

    assert presented == dict.fromkeys(presented, ErrorCode.TOO_MANY_ATTEMPTS)


async def _spend_login_budget(services: Services, login: str) -> None:
    attacker = RequestMeta(ip="198.51.100.66")
    for _ in range(10):
        assert await _sign_in_outcome(services, attacker, login, "guess!") == (
            ErrorCode.INVALID_CREDENTIALS
        )


async def test_api4_password_change_revokes_every_device_cookie(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    """OWASP device cookies, NIST SP 800-63B 5.2.2: a cookie is bound to the credentials it was
    earned with. After a password change, a cookie copied earlier buys no budget of its own: it
    meets the login's spent budget like any unknown browser."""
    signed_up = await factories.sign_up(services, email="noa@example.test")
    earlier = await accounts.sign_in(
        services, meta, login="noa@example.test", password=factories.PASSWORD
    )
    await _spend_login_budget(services, "noa@example.test")
    before_change = await _sign_in_outcome(
        services, meta, "noa@example.test", factories.PASSWORD, earlier.device_cookie
    )
    clock.advance(timedelta(minutes=1))
    user = await User.get(id=signed_up.user.id)
    user.password_hash = await hash_password("a new river of stones")
    user.password_changed_at = clock.now()
    await user.save(update_fields=["password_hash", "password_changed_at"])

    after_change = await _sign_in_outcome(
        services, meta, "noa@example.test", "a new river of stones", earlier.device_cookie
    )

    assert isinstance(before_change, accounts.SignInResult) and before_change.session is not None
    assert after_change == ErrorCode.TOO_MANY_ATTEMPTS


async def test_api4_blocked_user_device_cookie_is_no_longer_trusted(
    services: Services, meta: RequestMeta
) -> None:
    """BLK-3 withdraws the trust of every browser: while the user is blocked, the cookie spends
    the login's budget like any other browser (and gives no password oracle beyond it)."""
    signed_up = await factories.sign_up(services, email="oto@example.test")
    earlier = await accounts.sign_in(
        services, meta, login="oto@example.test", password=factories.PASSWORD
    )
    await UserBlock.create(
        organisation_id=signed_up.organisation.id,
        user_id=signed_up.user.id,
        justification="Laptop stolen, reported by the administrator",
        created_at=services.clock.now(),
    )
    await _spend_login_budget(services, "oto@example.test")

    with_cookie = await _sign_in_outcome(
        services, meta, "oto@example.test", factories.PASSWORD, earlier.device_cookie
    )

    assert with_cookie == ErrorCode.TOO_MANY_ATTEMPTS


async def test_api4_device_cookie_issued_only_once_the_second_factor_is_owed_no_more(
    services: Services, meta: RequestMeta
) -> None:
    """OWASP device cookies: "issue a device cookie after a successful authentication"; a
    password alone is not one when a second factor is owed (MFA-7)."""
    signed_up = await factories.sign_up(services, email="pam@example.test")
    await factories.confirm_totp(services, signed_up.user)

    result = await accounts.sign_in(
        services, meta, login="pam@example.test", password=factories.PASSWORD
    )

    assert result.second_factor is not None
    assert (result.session, result.device_cookie) == (None, None)


async def test_api4_trusted_budget_is_capped_per_user_over_all_device_cookies(
    services: Services, meta: RequestMeta
) -> None:
    """ASVS V2.2.1: each sign-in from a new browser mints a cookie with a budget of its own, so
    the trusted path is capped per user as well: 30 failures a day over all of them."""
    signed_up = await factories.sign_up(services, email="quy@example.test")
    cookies = []
    for n in range(4):
        browser = RequestMeta(ip=f"192.0.2.{n + 10}")
        result = await accounts.sign_in(
            services, browser, login="quy@example.test", password=factories.PASSWORD
        )
        cookies.append(result.device_cookie)
    assert len({cookie.split(".")[0] for cookie in cookies if cookie}) == 4

    outcomes = [
        await _sign_in_outcome(services, meta, "quy@example.test", "guess!", cookie)
        for cookie in cookies
        for _ in range(8)
    ]
    right_password = await _sign_in_outcome(
        services, meta, "quy@example.test", factories.PASSWORD, cookies[3]
    )

    assert outcomes == [ErrorCode.INVALID_CREDENTIALS] * 30 + [ErrorCode.TOO_MANY_ATTEMPTS] * 2
    assert right_password == ErrorCode.TOO_MANY_ATTEMPTS
    assert await _wrong_password_verifications(signed_up.user.id) == 30
    throttled = await ActivityEvent.filter(type="sign_in.throttled")
    assert [(e.subject_id, e.data) for e in throttled] == [
        (signed_up.user.id, {"budget": "trusted_user"})
    ]


async def test_api4_device_cookie_attempts_count_against_the_ip_budget(
    services: Services, meta: RequestMeta
) -> None:
    """NIST SP 800-63B 5.2.2: the per-address budget (100 failures) holds for every attempt,
    whether it carries a device cookie or not."""
    await factories.sign_up(services, email="rae@example.test")
    earlier = await accounts.sign_in(
        services, meta, login="rae@example.test", password=factories.PASSWORD
    )
    failures = await asyncio.gather(
        *(_sign_in_outcome(services, meta, f"u{n}@example.test", "guess!") for n in range(95))
    )
    assert failures == [ErrorCode.INVALID_CREDENTIALS] * 95

    with_cookie = [
        await _sign_in_outcome(services, meta, "rae@example.test", "guess!", earlier.device_cookie)
        for _ in range(6)
    ]

    assert with_cookie == [ErrorCode.INVALID_CREDENTIALS] * 5 + [ErrorCode.TOO_MANY_ATTEMPTS]


async def test_api4_throttled_untrusted_sign_in_recorded_once_per_window_answer_unchanged(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    """ACT-1, ASVS V2.2.1: the untrusted path records a spent budget as the device path does, once
    per window, with the user as subject when the login is known; the answer stays the same."""
    signed_up = await factories.sign_up(services, email="sam@example.test")
    answers: dict[str, list[object]] = {}
    for login in ("sam@example.test", "nobody@example.test"):
        answers[login] = [
            await _sign_in_outcome(services, meta, login, "guess!") for _ in range(13)
        ]
    clock.advance(timedelta(minutes=15))
    for _ in range(11):
        await _sign_in_outcome(services, meta, "sam@example.test", "guess!")

    expected = [ErrorCode.INVALID_CREDENTIALS] * 10 + [ErrorCode.TOO_MANY_ATTEMPTS] * 3
    assert answers == {"sam@example.test": expected, "nobody@example.test": expected}
    throttled = await ActivityEvent.filter(type="sign_in.throttled").order_by("id")
    assert [(e.subject_id, e.subject_email, e.ip, e.data) for e in throttled] == [
        (signed_up.user.id, None, meta.ip, {"budget": "login"}),
        (None, "nobody@example.test", meta.ip, {"budget": "login"}),
        (signed_up.user.id, None, meta.ip, {"budget": "login"}),
    ]


async def test_api4_per_ip_budget_is_100_failures_and_successes_are_given_back(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    """One address guessing across many logins: 100 failures per 15 minutes. Successes from the
    same address (colleagues behind one NAT) do not use the budget up."""
    await factories.sign_up(services, email="pia@example.test")
    failures = await asyncio.gather(
        *(_sign_in_outcome(services, meta, f"u{n}@example.test", "guess!") for n in range(99))
    )
    assert failures == [ErrorCode.INVALID_CREDENTIALS] * 99
    successes = [
        await _sign_in_outcome(services, meta, "pia@example.test", factories.PASSWORD)
        for _ in range(3)
    ]
    hundredth = await _sign_in_outcome(services, meta, "u99@example.test", "guess!")
    refused = await _sign_in_outcome(services, meta, "pia@example.test", factories.PASSWORD)
    elsewhere = await _sign_in_outcome(
        services, RequestMeta(ip="198.51.100.2"), "u0@example.test", "guess!"
    )
    clock.advance(timedelta(minutes=15))
    next_window = await _sign_in_outcome(services, meta, "pia@example.test", factories.PASSWORD)

    assert all(isinstance(s, accounts.SignInResult) for s in successes)
    assert hundredth == ErrorCode.INVALID_CREDENTIALS
    assert refused == ErrorCode.TOO_MANY_ATTEMPTS
    assert elsewhere == ErrorCode.INVALID_CREDENTIALS
    assert isinstance(next_window, accounts.SignInResult)


async def test_api4_attempts_refused_by_the_address_budget_leave_the_login_budget_untouched(
    services: Services, meta: RequestMeta
) -> None:
    """The budgets are counted together but checked in order: an attempt the address's budget
    refuses gives the login's back, so a spent address cannot also spend its victims' budgets."""
    await factories.sign_up(services, email="vic@example.test")
    await asyncio.gather(
        *(_sign_in_outcome(services, meta, f"u{n}@example.test", "guess!") for n in range(100))
    )
    from_spent_address = [
        await _sign_in_outcome(services, meta, "vic@example.test", "guess!") for _ in range(5)
    ]
    elsewhere = RequestMeta(ip="198.51.100.2")
    from_elsewhere = [
        await _sign_in_outcome(services, elsewhere, "vic@example.test", "guess!") for _ in range(11)
    ]

    assert from_spent_address == [ErrorCode.TOO_MANY_ATTEMPTS] * 5
    assert from_elsewhere == [ErrorCode.INVALID_CREDENTIALS] * 10 + [ErrorCode.TOO_MANY_ATTEMPTS]
    throttled = await ActivityEvent.filter(type="sign_in.throttled").order_by("id")
    assert [(e.ip, e.data["budget"]) for e in throttled] == [
        (meta.ip, "ip"),
        (elsewhere.ip, "login"),
    ]


# --- Passwords: NFKC and guessable shapes (NIST SP 800-63B 5.1.1.2) --------------------------


async def test_org1_password_is_nfkc_normalised_before_hashing_and_checking(
    services: Services, meta: RequestMeta
) -> None:
    """NIST SP 800-63B 5.1.1.2: full-width "ｐｌｕｍ" and ASCII "plum" are one password."""
    full_width = "ｐｌｕｍ　ｔｒｅｅ　ｕｎｄｅｒ　ｓｎｏｗ"
    await factories.sign_up(services, email="quinn@example.test", password=full_width)

    ascii_form = await accounts.sign_in(
        services, meta, login="quinn@example.test", password=factories.PASSWORD
    )
    composed = await accounts.sign_in(
        services, meta, login="quinn@example.test", password=full_width
    )

    assert factories.PASSWORD == "plum tree under snow"
    assert ascii_form.session is not None and composed.session is not None


@pytest.mark.parametrize(
    "password",
    [
        "ｐａｓｓｗｏｒｄ１",  # full width: "password1" once normalised
        "aaaaaaaaaaaa",
        "ZZZZZZZZ",
        "abababababab",
        "abcdabcd",
        "abcdefgh",
        "12345678",
        "87654321",
        "3456789012"[:8],
        "qwertyuiop",
        "QWERTZUI",
        "azertyuiop",
        "poiuytreza",
        "zyxwvutsrq",
    ],
)
def test_org1_password_policy_refuses_repetitions_and_plain_sequences(password: str) -> None:
    with pytest.raises(DomainError) as raised:
        accounts.check_password_policy(password)

    assert (raised.value.code, raised.value.field) == (ErrorCode.PASSWORD_TOO_COMMON, "password")


@pytest.mark.parametrize(
    "password", ["plum tree under snow", "abcdefgx", "1234 5678", "qwerty cat", "aab aab x"]
)
def test_org1_password_policy_accepts_what_is_not_a_plain_run(password: str) -> None:
    accounts.check_password_policy(password)


async def test_mfa7_a_returning_browsers_password_sign_in_is_three_statements_on_postgresql(
    services: Services,
) -> None:
    """The password step is on every sign-in's path: each statement is a round trip and its
    share of a core (bench/sign_in.py). On PostgreSQL: the account with its block rule; the
    budgets counted unless the cookie is locked; after the verify, the block rule and the second
    factors read as the attempt is given back and, the browser's place being known, the
    session, the event with its audience and the place seen again written: no transaction.
    SQLite, which has no writing WITH, takes two statements for each of the three merged reads,
    one more for the lock, and writes the sign-in in a transaction."""
    await factories.sign_up(services, email="ada@example.test")
    meta = RequestMeta(ip="198.51.100.1")

    with count_queries() as statements:
        result = await accounts.sign_in(
            services,
            meta,
            login="ada@example.test",
            password=factories.PASSWORD,
            device_cookie=factories.device_cookie("ada@example.test"),
        )

    assert result.session is not None
    assert len(statements) == (3 if BACKEND == "postgres" else 10), statements
    assert "user_block" in statements[0] and "user_account" in statements[0], statements
    after_verify = [s for s in statements if "two_factor_method" in s]
    assert len(after_verify) == 1 and "user_block" in after_verify[0], statements
    if BACKEND == "postgres":
        assert "held" in statements[1] and "INSERT INTO rate_limit_counter" in statements[1]
        assert "UPDATE rate_limit_counter" in after_verify[0], statements
        assert "UPDATE known_device" in after_verify[0], statements
        assert "INSERT INTO session" in after_verify[0], statements


async def _known_browser_state(user_id: int) -> tuple[int, int, list[object]]:
    """What a returning browser's sign-in writes: sessions, sign_in.succeeded, when the
    browser's places were last seen."""
    return (
        await Session.filter(user_id=user_id).count(),
        await ActivityEvent.filter(type="sign_in.succeeded", subject_id=user_id).count(),
        [pair.last_seen_at for pair in await KnownDevice.filter(user_id=user_id).order_by("id")],
    )


async def _device_budget_spent(services: Services, cookie: str | None) -> int:
    assert cookie is not None
    nonce = cookie.split(".")[0]
    attempt = await ratelimits.current(services, ratelimits.SIGN_IN_ATTEMPTS_PER_DEVICE, nonce)
    return attempt.count if attempt else 0


async def test_mfa7_act2_a_known_browser_owing_a_second_factor_gets_the_challenge_and_no_write(
    services: Services, clock: ManualClock
) -> None:
    """A returning browser whose place is known, for a user with a second factor: the password
    step writes no session and does not touch the browser's place (that is for the completed
    sign-in); it gives its attempt back and asks for the second factor (MFA-7)."""
    zurich = RequestMeta(ip="195.176.96.1", country="CH", device_family="Firefox/Linux")
    signed_up = await factories.sign_up(services, email="ada@example.test", meta=zurich)
    await factories.confirm_totp(services, signed_up.user)
    clock.advance(timedelta(minutes=3))
    before = await _known_browser_state(signed_up.user.id)

    result = await accounts.sign_in(
        services,
        zurich,
        login="ada@example.test",
        password=factories.PASSWORD,
        device_cookie=signed_up.device_cookie,
    )

    assert result.second_factor is not None and result.session is None
    assert result.second_factor.methods == [TwoFactorKind.TOTP]
    assert await _known_browser_state(signed_up.user.id) == before
    assert await _device_budget_spent(services, signed_up.device_cookie) == 0


async def test_blk3_a_block_landing_during_the_verify_refuses_a_known_browser_and_writes_nothing(
    services: Services, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The block rule is read again after the password verify, with the writes of a returning
    browser's sign-in: a block that lands while the password is being verified refuses the
    sign-in, and nothing of it is written, nor its attempt given back."""
    zurich = RequestMeta(ip="195.176.96.1", country="CH", device_family="Firefox/Linux")
    signed_up = await factories.sign_up(services, email="ada@example.test", meta=zurich)
    clock.advance(timedelta(minutes=3))
    before = await _known_browser_state(signed_up.user.id)
    real_verify = security.verify_password

    async def verify_while_blocked(stored: str | None, password: str) -> bool:
        await UserBlock.create(
            organisation_id=signed_up.organisation.id,
            user_id=signed_up.user.id,
            justification="Blocked by the administrator during the sign-in",
            created_at=services.clock.now(),
        )
        return await real_verify(stored, password)

    monkeypatch.setattr(accounts, "verify_password", verify_while_blocked)

    outcome = await _sign_in_outcome(
        services, zurich, "ada@example.test", factories.PASSWORD, signed_up.device_cookie
    )

    assert outcome == ErrorCode.ACCOUNT_BLOCKED
    assert await _known_browser_state(signed_up.user.id) == before
    assert await _device_budget_spent(services, signed_up.device_cookie) == 1
    refused = await ActivityEvent.get(type="sign_in.failed", subject_id=signed_up.user.id)
    assert refused.data == {"reason": "blocked"}


@pytest.mark.parametrize("returning", [True, False])
async def test_rec1_act1_a_reset_landing_during_the_verify_opens_no_session(
    services: Services, clock: ManualClock, monkeypatch: pytest.MonkeyPatch, returning: bool
) -> None:
    """A sign-in verifies the password it was given against the account as it read it; a reset
    that commits meanwhile ends every way in. The session is written only if the credentials
    are still those verified: otherwise the old password opens nothing, returning browser
    (one statement on PostgreSQL) or new."""
    zurich = RequestMeta(ip="195.176.96.1", country="CH", device_family="Firefox/Linux")
    signed_up = await factories.sign_up(services, email="ada@example.test", meta=zurich)
    clock.advance(timedelta(minutes=3))
    real_verify = security.verify_password

    async def verify_while_reset(stored: str | None, password: str) -> bool:
        await factories.reset_password(services, signed_up.user.id)
        return await real_verify(stored, password)

    monkeypatch.setattr(accounts, "verify_password", verify_while_reset)

    outcome = await _sign_in_outcome(
        services,
        zurich,
        "ada@example.test",
        factories.PASSWORD,
        signed_up.device_cookie if returning else None,
    )

    assert outcome == ErrorCode.INVALID_CREDENTIALS
    assert not await Session.filter(user_id=signed_up.user.id, revoked_at=None).exists()
    (failed,) = await ActivityEvent.filter(type="sign_in.failed", subject_id=signed_up.user.id)
    assert failed.data == {"reason": "credentials_changed"}
    monkeypatch.setattr(accounts, "verify_password", real_verify)
    with_new = await _sign_in_outcome(services, zurich, "ada@example.test", factories.NEW_PASSWORD)
    assert isinstance(with_new, accounts.SignInResult) and with_new.session is not None


@pytest.mark.skipif(BACKEND != "postgres", reason="SQLite runs one write at a time: no row lock")
async def test_rec1_a_sign_in_waiting_on_a_resets_row_lock_opens_no_session(
    services: Services, clock: ManualClock
) -> None:
    """The reset holds the account's row while it revokes what it sees; a returning browser's
    sign-in whose statement arrives meanwhile waits for it, then finds the credentials changed
    and opens nothing (before, its session committed after the revocation and stayed open).
    While it waits it holds no counter shared with other users: sign-ins from the same address
    go on (API-4's counters are given back last, once the account's row was had)."""
    signed_up = await factories.sign_up(services, email="ada@example.test")
    clock.advance(timedelta(minutes=3))
    user_id = signed_up.user.id
    office = RequestMeta(ip="192.0.2.5")
    address_free: list[bool] = []

    async def check_the_address() -> None:
        address_free.append(await _counter_free(services, office))

    outcome = await locks.change_while_waited_on(
        user_id,
        lambda: factories.reset_password(services, user_id),
        lambda: _sign_in_outcome(
            services, office, "ada@example.test", factories.PASSWORD, signed_up.device_cookie
        ),
        while_waiting=check_the_address,
    )

    assert outcome == ErrorCode.INVALID_CREDENTIALS
    assert not await Session.filter(user_id=user_id, revoked_at=None).exists()
    assert address_free == [True]


async def _counter_free(services: Services, meta: RequestMeta) -> bool:
    """Whether the address's sign-in counter can be locked now (another user's sign-in would)."""
    key = ratelimits._key(
        services, ratelimits.SIGN_IN_ATTEMPTS_PER_IP, ratelimits.ip_subject(meta.ip) or ""
    )
    try:
        async with in_transaction() as connection:
            await connection.execute_query(
                "SELECT 1 FROM rate_limit_counter WHERE key = $1 FOR UPDATE NOWAIT", [key]
            )
    except asyncpg.exceptions.LockNotAvailableError:
        return False
    return True


async def test_rec1_a_reset_landing_during_the_rehash_stays(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hash made with older parameters is replaced at the next sign-in, but only the hash that
    was verified: a reset that lands while the new hash is computed keeps its password."""
    signed_up = await factories.sign_up(services, email="ada@example.test")
    outdated = argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
    await User.filter(id=signed_up.user.id).update(password_hash=outdated.hash(factories.PASSWORD))
    real_hash = security.hash_password

    async def hash_while_reset(password: str) -> str:
        await factories.reset_password(services, signed_up.user.id)
        return await real_hash(password)

    monkeypatch.setattr(accounts, "hash_password", hash_while_reset)
    outcome = await _sign_in_outcome(
        services, RequestMeta(ip=None), "ada@example.test", factories.PASSWORD
    )
    monkeypatch.setattr(accounts, "hash_password", real_hash)

    assert outcome == ErrorCode.INVALID_CREDENTIALS
    assert not await Session.filter(user_id=signed_up.user.id, revoked_at=None).exists()
    stored = (await User.get(id=signed_up.user.id)).password_hash
    assert await security.verify_password(stored, factories.NEW_PASSWORD)
    assert not await security.verify_password(stored, factories.PASSWORD)


async def test_org1_a_hash_with_older_parameters_is_replaced_at_sign_in(
    services: Services,
) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    outdated = argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
    await User.filter(id=signed_up.user.id).update(password_hash=outdated.hash(factories.PASSWORD))

    result = await accounts.sign_in(
        services, RequestMeta(ip=None), login="ada@example.test", password=factories.PASSWORD
    )

    stored = (await User.get(id=signed_up.user.id)).password_hash
    assert result.session is not None
    assert not security.password_needs_rehash(stored)
    assert await security.verify_password(stored, factories.PASSWORD)


async def test_blk3_api4_blocked_users_right_password_gives_no_attempt_back(
    services: Services, meta: RequestMeta
) -> None:
    """A success gives its attempt back to every budget it spent; a right password refused for a
    block (BLK-3) is no success and stays counted, as a wrong one does."""
    blocked = await factories.sign_up(services, email="bea@example.test")
    await factories.sign_up(services, email="cid@example.test")
    await UserBlock.create(
        organisation_id=blocked.organisation.id,
        user_id=blocked.user.id,
        justification="Account shared outside the company",
        created_at=services.clock.now(),
    )

    refused = await _sign_in_outcome(services, meta, "bea@example.test", factories.PASSWORD)
    signed_in = await _sign_in_outcome(services, meta, "cid@example.test", factories.PASSWORD)

    assert refused == ErrorCode.ACCOUNT_BLOCKED
    assert isinstance(signed_in, accounts.SignInResult)
    spent = {
        login: await ratelimits.current(services, ratelimits.SIGN_IN_ATTEMPTS_PER_LOGIN, login)
        for login in ("bea@example.test", "cid@example.test")
    }
    assert {login: a.count if a else None for login, a in spent.items()} == {
        "bea@example.test": 1,
        "cid@example.test": 0,
    }
    by_address = await ratelimits.current(
        services, ratelimits.SIGN_IN_ATTEMPTS_PER_IP, ratelimits.ip_subject(meta.ip) or ""
    )
    assert by_address is not None and by_address.count == 1


KNOWN_BROWSER_ZURICH = RequestMeta(
    ip="195.176.96.1", country="CH", device="Firefox 125 on Linux", device_family="Firefox/Linux"
)


@pytest.mark.parametrize("remember_browser", [False, True])
async def test_act1_act2_a_known_browsers_sign_in_writes_what_any_sign_in_writes(
    services: Services, clock: ManualClock, remember_browser: bool
) -> None:
    """A returning browser whose country and device are known signs in by one statement on
    PostgreSQL (accounts.py); what it writes is what the transaction of any other sign-in writes:
    the session the ORM loads, sign_in.succeeded with its audience, published once written, and
    the pair seen now; no new-location notice. SQLite runs the transaction."""
    ada = await factories.sign_up(services, email="ada@example.test", meta=KNOWN_BROWSER_ZURICH)
    pairs_before = await KnownDevice.filter(user_id=ada.user.id).count()
    heard: list[dict[str, Any]] = []
    services.events.listen(heard.append)
    clock.advance(timedelta(minutes=7))

    with count_queries() as statements:
        result = await accounts.sign_in(
            services,
            KNOWN_BROWSER_ZURICH,
            login="ada@example.test",
            password=factories.PASSWORD,
            remember_browser=remember_browser,
            device_cookie=ada.device_cookie,
        )
    await asyncio.sleep(0)  # the bus delivers on the loop's next turn

    assert result.session is not None and result.device_cookie is not None
    issued = result.session.session
    loaded = await Session.get(id=issued.id)
    assert not issued._partial and issued._saved_in_db
    assert factories.columns(issued) == factories.columns(loaded)
    assert (loaded.user_id, loaded.kind, loaded.persistent) == (
        ada.user.id,
        SessionKind.WEB,
        remember_browser,
    )
    assert (loaded.ip, loaded.country, loaded.device) == (
        KNOWN_BROWSER_ZURICH.ip,
        KNOWN_BROWSER_ZURICH.country,
        KNOWN_BROWSER_ZURICH.device,
    )
    assert loaded.created_at == loaded.last_seen_at == clock.now()
    assert await sessions.authenticate(services, result.session.token) is not None

    (event,) = await ActivityEvent.filter(type="sign_in.succeeded", occurred_at=clock.now())
    assert (event.actor_id, event.subject_id, event.organisation_id) == (ada.user.id,) * 2 + (None,)
    assert (event.ip, event.country, event.device) == (
        KNOWN_BROWSER_ZURICH.ip,
        KNOWN_BROWSER_ZURICH.country,
        KNOWN_BROWSER_ZURICH.device,
    )
    assert event.data == {"second_factor": None}
    assert await events.audience_of(event.id) == [ada.organisation.id]
    activity = [message for message in heard if message["kind"] == events.ACTIVITY]
    assert activity == [
        {"kind": events.ACTIVITY, "audience": [ada.organisation.id], **events.event_fields(event)}
    ]

    pairs = await KnownDevice.filter(user_id=ada.user.id)
    assert len(pairs) == pairs_before == 1
    assert pairs[0].last_seen_at == clock.now()
    assert not await ActivityEvent.filter(type="sign_in.new_location").exists()
    if BACKEND == "postgres":
        (written,) = [s for s in statements if "INSERT INTO session" in s]
        assert all(table in written for table in ("known_device", "activity_event")), statements
        assert "UPDATE rate_limit_counter" in written, statements  # the attempt given back


async def test_act2_a_known_cookie_from_another_country_writes_once_and_is_announced(
    services: Services, clock: ManualClock
) -> None:
    """A cookie known in Zürich, coming from Paris: the one-statement sign-in finds no known
    pair and writes nothing, and the transaction writes the sign-in and the new location once."""
    ada = await factories.sign_up(services, email="ada@example.test", meta=KNOWN_BROWSER_ZURICH)
    paris = RequestMeta(
        ip="80.12.0.1",
        country="FR",
        device=KNOWN_BROWSER_ZURICH.device,
        device_family=KNOWN_BROWSER_ZURICH.device_family,
    )
    clock.advance(timedelta(minutes=7))

    result = await accounts.sign_in(
        services,
        paris,
        login="ada@example.test",
        password=factories.PASSWORD,
        device_cookie=ada.device_cookie,
    )

    assert result.session is not None
    assert await Session.filter(user_id=ada.user.id, created_at=clock.now()).count() == 1
    signed_in = await ActivityEvent.filter(type="sign_in.succeeded", occurred_at=clock.now())
    assert [event.country for event in signed_in] == ["FR"]
    (announced,) = await ActivityEvent.filter(type="sign_in.new_location")
    assert announced.data == {"new_country": True, "new_device": False, "notified": True}
    pairs = await KnownDevice.filter(user_id=ada.user.id).order_by("id")
    assert [(pair.country, pair.last_seen_at == clock.now()) for pair in pairs] == [
        ("CH", False),
        ("FR", True),
    ]


async def test_act4_a_known_browsers_sign_in_shows_in_each_of_the_users_organisations(
    services: Services,
) -> None:
    """The one-statement sign-in answers one row per audience organisation: a member of three
    organisations has the event in each, once, and one session."""
    ada = await factories.sign_up(services, email="ada@example.test", meta=KNOWN_BROWSER_ZURICH)
    others = [await factories.sign_up(services, email=f"owner{n}@example.test") for n in (1, 2)]
    for other in others:
        await Membership.create(
            organisation=other.organisation,
            user=ada.user,
            role=Role.COLLABORATOR,
            created_at=services.clock.now(),
        )
    heard: list[dict[str, Any]] = []
    services.events.listen(heard.append)

    result = await accounts.sign_in(
        services,
        KNOWN_BROWSER_ZURICH,
        login="ada@example.test",
        password=factories.PASSWORD,
        device_cookie=ada.device_cookie,
    )
    await asyncio.sleep(0)  # the bus delivers on the loop's next turn

    assert result.session is not None
    organisations = sorted([ada.organisation.id, *(other.organisation.id for other in others)])
    event = await ActivityEvent.filter(type="sign_in.succeeded").order_by("-id").first()
    assert event is not None and event.subject_id == ada.user.id
    assert await events.audience_of(event.id) == organisations
    assert [m["audience"] for m in heard if m["kind"] == events.ACTIVITY] == [organisations]
    assert await Session.filter(user_id=ada.user.id).count() == 2  # the sign-up's and this one


@pytest.mark.parametrize("budgets", [2, 3])
def test_mfa7_the_known_browser_statement_numbers_its_parameters_one_after_another(
    services: Services, budgets: int
) -> None:
    """Its parts each number their parameters from $1 and are put one after another: every
    parameter passed has its placeholder, and none is left without one."""
    user = User(
        id=7, password_changed_at=services.clock.now(), credential_generation=3, email="a@b.test"
    )
    device = DeviceCookie(nonce="nonce", value="nonce.1.signature")
    spent = [
        (ratelimits.SIGN_IN_ATTEMPTS_PER_IP, "ip"),
        (ratelimits.SIGN_IN_ATTEMPTS_PER_DEVICE, "nonce"),
        (ratelimits.SIGN_IN_TRUSTED_ATTEMPTS_PER_USER, "user:7"),
    ][3 - budgets :]

    query = accounts._known_browser_query(
        services, RequestMeta(ip="192.0.2.1"), user, device, spent, False
    )

    numbers = {int(n) for n in re.findall(r"\$(\d+)", query.statement)}
    assert numbers == set(range(1, len(query.params) + 1))
