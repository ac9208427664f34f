"""Security activity of one's own account: new-location and wrong-password e-mails (ACT-2,
ACT-3), the activity view and e-mail preferences (ACT-4), "secure my account" (ACT-5) and the
sessions list (ACT-6), on the real database and the real outbox."""

from __future__ import annotations

import ast
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gardien import jobs
from gardien.clock import ManualClock
from gardien.models.activity import ActivityEvent
from gardien.models.enums import Role, SessionKind, SupportPlan
from gardien.models.mfa import AppPassword
from gardien.models.outbox import OutboxMessage
from gardien.models.sessions import KnownDevice, Session
from gardien.models.users import User
from gardien.resolvers import (
    account_security,
    accounts,
    activity_log,
    authz,
    members,
    second_factor,
    security_notices,
    sessions,
    tokens,
    totp,
    two_factor,
)
from gardien.resolvers.account_security import SecureAccountStep
from gardien.resolvers.authz import Actor, RequestScope, SignedInToken
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.schema.relay import encode_id
from gardien.security import read_device_cookie
from tests import factories
from tests.conftest import BACKEND, GraphQLClient
from tests.querycount import count_queries

pytestmark = pytest.mark.usefixtures("database")

ZURICH = RequestMeta(
    ip="195.176.96.1", country="CH", device="Firefox 125 on Linux", device_family="Firefox/Linux"
)
PARIS = RequestMeta(
    ip="80.12.0.1", country="FR", device="Firefox 125 on Linux", device_family="Firefox/Linux"
)
ACTIVITY_FILE = Path(__file__).resolve().parents[2] / "resolvers" / "activity.py"


async def _sign_in(
    services: Services, meta: RequestMeta, email: str, cookie: str | None = None
) -> accounts.SignInResult:
    result = await accounts.sign_in(
        services, meta, login=email, password=factories.PASSWORD, device_cookie=cookie
    )
    assert result.session is not None
    return result


async def _mails(template: str) -> list[OutboxMessage]:
    return await OutboxMessage.filter(template=template).order_by("id")


async def _actor(services: Services, token: str) -> Actor:
    actor = await sessions.authenticate(services, token)
    assert actor is not None
    return actor


# --- ACT-2: new location -------------------------------------------------------------------------


async def _signed_up_in_zurich(services: Services) -> accounts.SignUpResult:
    return await factories.sign_up(services, email="ada@example.test", meta=ZURICH)


async def test_act2_sign_up_sets_the_baseline_so_a_first_sign_in_elsewhere_is_told(
    services: Services,
) -> None:
    """The confirmed sign-up's browser is the first known device: a thief's very first sign-in
    from another country and browser is a new location, not a silent baseline."""
    await _signed_up_in_zurich(services)

    await _sign_in(services, PARIS, "ada@example.test")

    (mail,) = await _mails("security_new_location")
    assert mail.recipient == "ada@example.test"
    event = await ActivityEvent.get(type="sign_in.new_location")
    assert event.data == {"new_country": True, "new_device": True, "notified": True}
    assert await KnownDevice.filter(country="CH").count() == 1


async def test_act2_same_browser_same_country_sends_nothing(services: Services) -> None:
    signed_up = await _signed_up_in_zurich(services)
    first = await _sign_in(services, ZURICH, "ada@example.test", signed_up.device_cookie)

    await _sign_in(services, ZURICH, "ada@example.test", first.device_cookie)

    assert await _mails("security_new_location") == []
    assert not await ActivityEvent.filter(type="sign_in.new_location").exists()


async def test_act2_new_country_with_the_same_browser_sends_the_email_in_the_users_language(
    services: Services,
) -> None:
    signed_up = await _signed_up_in_zurich(services)
    await User.filter(id=signed_up.user.id).update(language="de", timezone="Europe/Berlin")
    first = await _sign_in(services, ZURICH, "ada@example.test", signed_up.device_cookie)

    await _sign_in(services, PARIS, "ada@example.test", first.device_cookie)

    (mail,) = await _mails("security_new_location")
    assert (mail.recipient, mail.language) == ("ada@example.test", "de")
    assert mail.payload["subject"] == "Neue Anmeldung bei Ihrem Konto"
    assert "FR · 80.12.0.1" in mail.payload["text"]
    assert "Firefox 125 on Linux" in mail.payload["text"]
    assert "10:00 Uhr (CET)" in mail.payload["text"]  # 09:00 UTC, in the user's zone
    assert "/console/#/security/secure-account" in mail.payload["text"]
    event = await ActivityEvent.get(type="sign_in.new_location")
    assert (event.subject_id, event.country, event.ip) == (signed_up.user.id, "FR", "80.12.0.1")
    assert event.data == {"new_country": True, "new_device": False, "notified": True}


async def _sign_in_with_totp(
    services: Services, clock: ManualClock, meta: RequestMeta, secret: str, cookie: str | None
) -> tuple[str, int]:
    """Password step, then the TOTP step: (device cookie, new-location e-mails after the
    password step alone)."""
    result = await accounts.sign_in(
        services, meta, login="ada@example.test", password=factories.PASSWORD, device_cookie=cookie
    )
    assert result.second_factor is not None
    mails_before_second_factor = len(await _mails("security_new_location"))
    clock.advance(timedelta(seconds=90))  # a fresh TOTP step: a code is never accepted twice
    completed = await second_factor.complete(
        services,
        meta,
        challenge_id=result.second_factor.challenge_id,
        method=second_factor.SecondFactorMethod.TOTP,
        code=totp.code_at_step(secret, totp.step_at(clock.now())),
        device_cookie=cookie,
    )
    return completed.device_cookie, mails_before_second_factor


async def test_act2_two_factor_user_gets_the_new_location_email_once_the_second_factor_is_passed(
    services: Services, clock: ManualClock
) -> None:
    signed_up = await _signed_up_in_zurich(services)
    actor = await _actor(services, signed_up.session.token)
    enrolment = await two_factor.begin_totp_enrolment(services, ZURICH, actor)
    await two_factor.confirm_totp_enrolment(
        services,
        ZURICH,
        actor,
        method_id=enrolment.method_id,
        code=totp.code_at_step(enrolment.secret, totp.step_at(clock.now())),
    )
    secret = enrolment.secret
    cookie, _ = await _sign_in_with_totp(services, clock, ZURICH, secret, signed_up.device_cookie)
    baseline = len(await _mails("security_new_location"))

    renewed, before_second_factor = await _sign_in_with_totp(services, clock, PARIS, secret, cookie)

    assert (baseline, before_second_factor) == (0, 0)
    (mail,) = await _mails("security_new_location")
    assert mail.recipient == "ada@example.test"
    assert "FR · 80.12.0.1" in mail.payload["text"]
    event = await ActivityEvent.get(type="sign_in.new_location")
    # The cookie presented was kept (same nonce): a new country, not a new device.
    assert event.data == {"new_country": True, "new_device": False, "notified": True}
    assert (
        read_device_cookie(
            services.keyring,
            renewed,
            signed_up.user.id,
            accounts._credential_version(await User.get(id=signed_up.user.id)),
            clock.now(),
        )
        is not None
    )


async def test_act2_private_window_is_a_new_device_and_only_the_first_time(
    services: Services,
) -> None:
    """No device cookie (a private window, a new computer): a new device, in a known country.
    The browser then keeps its new cookie, and its next sign-in is known."""
    signed_up = await _signed_up_in_zurich(services)
    await _sign_in(services, ZURICH, "ada@example.test", signed_up.device_cookie)

    private = await _sign_in(services, ZURICH, "ada@example.test", cookie=None)
    await _sign_in(services, ZURICH, "ada@example.test", private.device_cookie)

    (mail,) = await _mails("security_new_location")
    event = await ActivityEvent.get(type="sign_in.new_location")
    assert event.data == {"new_country": False, "new_device": True, "notified": True}
    assert mail.language == "fr"


async def test_act2_a_copied_cookie_in_another_kind_of_browser_is_a_new_device(
    services: Services,
) -> None:
    signed_up = await _signed_up_in_zurich(services)
    first = await _sign_in(services, ZURICH, "ada@example.test", signed_up.device_cookie)
    other_browser = RequestMeta(
        ip=ZURICH.ip,
        country="CH",
        device="Chrome 124 on Windows 10",
        device_family="Chrome/Windows",
    )

    await _sign_in(services, other_browser, "ada@example.test", first.device_cookie)

    assert len(await _mails("security_new_location")) == 1


# --- ACT-3: wrong password -----------------------------------------------------------------------


async def _wrong_password(services: Services, login: str) -> DomainError:
    with pytest.raises(DomainError) as raised:
        await accounts.sign_in(services, ZURICH, login=login, password="not the password")
    return raised.value


async def test_act3_wrong_password_email_at_most_once_per_15_minutes(
    services: Services, clock: ManualClock
) -> None:
    await factories.sign_up(services, email="ada@example.test")

    await _wrong_password(services, "ada@example.test")
    await _wrong_password(services, "ada@example.test")
    clock.advance(timedelta(minutes=14, seconds=59))
    await _wrong_password(services, "ada@example.test")
    within_window = len(await _mails("security_wrong_password"))
    clock.advance(timedelta(seconds=1))
    await _wrong_password(services, "ada@example.test")

    mails = await _mails("security_wrong_password")
    assert within_window == 1
    assert len(mails) == 2
    assert {m.recipient for m in mails} == {"ada@example.test"}
    assert "CH · 195.176.96.1" in mails[0].payload["text"]


async def test_act3_unknown_login_gets_no_email_and_the_same_answer(services: Services) -> None:
    await factories.sign_up(services, email="ada@example.test")

    known = await _wrong_password(services, "ada@example.test")
    unknown = await _wrong_password(services, "nobody@example.test")

    assert (known.code, known.message, known.field) == (
        unknown.code,
        unknown.message,
        unknown.field,
    )
    assert known.code is ErrorCode.INVALID_CREDENTIALS
    assert [m.recipient for m in await OutboxMessage.all()] == ["ada@example.test"]


async def test_act3_act4_declined_wrong_password_email_is_not_sent(services: Services) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    actor = await _actor(services, signed_up.session.token)

    prefs = await security_notices.set_preferences(services, ZURICH, actor, wrong_password=False)
    await _wrong_password(services, "ada@example.test")

    assert prefs == security_notices.SecurityEmailPreferences(
        new_location=True, wrong_password=False
    )
    assert await _mails("security_wrong_password") == []
    event = await ActivityEvent.get(type="security_emails.preferences_changed")
    assert (event.subject_id, event.data) == (signed_up.user.id, {"wrong_password": False})


async def test_act4_new_location_email_is_mandatory(services: Services) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    actor = await _actor(services, signed_up.session.token)

    with pytest.raises(DomainError) as raised:
        await security_notices.set_preferences(
            services, ZURICH, actor, new_location=False, wrong_password=False
        )

    assert (raised.value.code, raised.value.field) == (
        ErrorCode.SECURITY_EMAIL_MANDATORY,
        "newLocation",
    )
    # Nothing changed: the wrong-password choice in the same request was not applied either.
    assert (await security_notices.preferences(actor)).wrong_password is True
    assert not await ActivityEvent.filter(type="security_emails.preferences_changed").exists()


# --- ACT-4: the viewer's activity and its filters ------------------------------------------------


def test_act4_every_event_type_written_is_a_known_filter_value() -> None:
    """A type recorded by resolvers/activity.py but missing from EVENT_TYPES could not be
    filtered on; one listed but never written is a stale entry."""
    tree = ast.parse(ACTIVITY_FILE.read_text(encoding="utf-8"))
    written = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.count(".") == 1
        and node.value.replace(".", "").replace("_", "").isalpha()
        and node.value.islower()
    }

    assert written == activity_log.EVENT_TYPES


async def test_act4_own_activity_filters_by_type_and_time(
    services: Services, clock: ManualClock
) -> None:
    signed_up = await _signed_up_in_zurich(services)
    other = await factories.sign_up(services, email="grace@example.test")
    start = clock.now()
    clock.advance(timedelta(hours=1))
    await _wrong_password(services, "ada@example.test")
    clock.advance(timedelta(hours=1))
    latest = await _sign_in(services, ZURICH, "ada@example.test", signed_up.device_cookie)
    await _sign_in(services, ZURICH, "grace@example.test")
    assert latest.session is not None
    actor = await _actor(services, latest.session.token)

    everything = await activity_log.own_activity(
        actor, activity_log.activity_filter(), first=20, after_id=None
    )
    failures = await activity_log.own_activity(
        actor, activity_log.activity_filter(types=["sign_in.failed"]), first=20, after_id=None
    )
    first_hour = await activity_log.own_activity(
        actor,
        activity_log.activity_filter(since=start, until=start + timedelta(hours=1)),
        first=20,
        after_id=None,
    )

    assert [e.type for e in everything.page.items] == [
        "sign_in.succeeded",
        "sign_in.failed",
        "sign_in.succeeded",
        "account.signed_up",
    ]
    assert {e.subject_id for e in everything.page.items} == {signed_up.user.id}
    assert await everything.count() == 4
    assert [e.type for e in failures.page.items] == ["sign_in.failed"]
    assert [e.type for e in first_hour.page.items] == ["sign_in.succeeded", "account.signed_up"]
    assert other.user.id not in {e.subject_id for e in everything.page.items}


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"types": ["sign_in.failed", "no.such_type"]}, "types"),
        ({"types": ["DROP TABLE"]}, "types"),
        ({"types": ["sign_in.failed"] * 51}, "types"),
        ({"since": ManualClock().now(), "until": ManualClock().now()}, "until"),
        ({"since": ManualClock().now(), "until": ManualClock().now() - timedelta(days=1)}, "until"),
        ({"since": ManualClock().now().replace(tzinfo=None)}, "since"),
        # Valid ISO times whose UTC date leaves years 1-9999: refused, not a database error.
        ({"since": datetime(9999, 12, 31, 23, 59, tzinfo=timezone(-timedelta(hours=14)))}, "since"),
        ({"until": datetime(1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=14)))}, "until"),
    ],
)
def test_act4_bad_filters_are_typed_errors(arguments: dict[str, object], field: str) -> None:
    with pytest.raises(DomainError) as raised:
        activity_log.activity_filter(**arguments)  # type: ignore[arg-type]

    assert (raised.value.code, raised.value.field) == (ErrorCode.INVALID_INPUT, field)


async def test_act1_every_event_carries_country_and_device(services: Services) -> None:
    await factories.sign_up(services, email="ada@example.test")

    await _sign_in(services, ZURICH, "ada@example.test")

    event = await ActivityEvent.filter(type="sign_in.succeeded").order_by("-id").first()
    assert event is not None
    assert (event.ip, event.country, event.device) == (
        "195.176.96.1",
        "CH",
        "Firefox 125 on Linux",
    )


async def test_act1_events_stay_append_only(services: Services) -> None:
    await factories.sign_up(services, email="ada@example.test")
    event = await ActivityEvent.get(type="account.signed_up")

    event.type = "changed"
    with pytest.raises(RuntimeError):
        await event.save()
    with pytest.raises(RuntimeError):
        await event.delete()

    assert (await ActivityEvent.get(id=event.id)).type == "account.signed_up"


# --- ACT-6: sessions -----------------------------------------------------------------------------


async def test_act6_lists_web_and_app_sessions_and_skips_ended_ones(
    services: Services, clock: ManualClock
) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    other = await factories.sign_up(services, email="grace@example.test")
    zurich = await _sign_in(services, ZURICH, "ada@example.test")
    now = clock.now()
    app = await Session.create(
        user_id=signed_up.user.id,
        token_hash="app-session",
        kind=SessionKind.APP,
        device="Thunderbird",
        created_at=now,
        last_seen_at=now - timedelta(hours=3),  # an app session has no idle limit
        expires_at=now + timedelta(days=30),
    )
    ended = await _sign_in(services, PARIS, "ada@example.test")
    assert ended.session is not None
    await sessions.revoke(services, ended.session.session.id)

    listed = await sessions.own_sessions(services, await _actor(services, signed_up.session.token))

    assert zurich.session is not None
    assert [s.id for s in listed] == [
        app.id,
        zurich.session.session.id,
        signed_up.session.session.id,
    ]
    assert other.session.session.id not in {s.id for s in listed}


async def test_act6_revoked_session_stops_working_and_is_recorded(services: Services) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    second = await _sign_in(services, PARIS, "ada@example.test")
    assert second.session is not None
    actor = await _actor(services, signed_up.session.token)

    await sessions.revoke_own_session(services, ZURICH, actor, second.session.session.id)

    assert await sessions.authenticate(services, second.session.token) is None
    assert await sessions.authenticate(services, signed_up.session.token) is not None
    event = await ActivityEvent.get(type="session.revoked")
    assert event.data == {"session_id": second.session.session.id, "kind": "WEB"}
    assert (event.subject_id, event.country) == (signed_up.user.id, "CH")


async def test_act6_another_users_or_an_ended_session_is_not_found(services: Services) -> None:
    ada = await factories.sign_up(services, email="ada@example.test")
    grace = await factories.sign_up(services, email="grace@example.test")
    actor = await _actor(services, ada.session.token)
    ended = await _sign_in(services, ZURICH, "ada@example.test")
    assert ended.session is not None
    await sessions.revoke(services, ended.session.session.id)
    refusals = []

    for session_id in (grace.session.session.id, ended.session.session.id, 999_999):
        with pytest.raises(DomainError) as raised:
            await sessions.revoke_own_session(services, ZURICH, actor, session_id)
        refusals.append((raised.value.code, raised.value.message))

    assert refusals == [(ErrorCode.NOT_FOUND, "No such session.")] * 3
    assert await sessions.authenticate(services, grace.session.token) is not None
    assert not await ActivityEvent.filter(type="session.revoked").exists()


async def test_act6_last_seen_written_at_most_once_a_minute(
    services: Services, clock: ManualClock
) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    session_id = signed_up.session.session.id
    opened = clock.now()

    clock.advance(timedelta(seconds=59))
    await sessions.authenticate(services, signed_up.session.token)
    unchanged = (await Session.get(id=session_id)).last_seen_at
    clock.advance(timedelta(seconds=1))
    await sessions.authenticate(services, signed_up.session.token)

    assert unchanged == opened
    assert (await Session.get(id=session_id)).last_seen_at == opened + timedelta(minutes=1)


async def test_act4_act6_own_security_record_is_refused_to_an_integrator_token(
    services: Services,
) -> None:
    """A token acts as its owner but no scope covers sessions or the activity record: the rules
    themselves refuse a token actor, not only the GraphQL fields in front of them."""
    ada = await factories.sign_up(services, email="ada@example.test")
    web = await _actor(services, ada.session.token)
    token = replace(
        web,
        session=None,
        token=SignedInToken(
            id=1, scopes=frozenset(authz.TOKEN_SCOPES), organisation_id=None, role_cap=None
        ),
    )
    session_id = ada.session.session.id

    with pytest.raises(DomainError) as activity_refused:
        await activity_log.own_activity(
            token, activity_log.activity_filter(None, None, None), first=10, after_id=None
        )
    with pytest.raises(DomainError) as lookup_refused:
        await sessions.own_session(services, token, session_id)
    with pytest.raises(DomainError) as revoke_refused:
        await sessions.revoke_own_session(services, ZURICH, token, session_id)

    assert authz.can_view_own_activity(web, ada.user.id)
    assert authz.can_manage_session(web, ada.user.id)
    assert not authz.can_view_own_activity(token, ada.user.id)
    assert not authz.can_manage_session(token, ada.user.id)
    assert activity_refused.value.code is ErrorCode.UNAUTHENTICATED
    assert lookup_refused.value.code is revoke_refused.value.code is ErrorCode.NOT_FOUND
    assert await sessions.authenticate(services, ada.session.token) is not None
    assert not await ActivityEvent.filter(type="session.revoked").exists()


async def test_act2_a_sign_in_asks_whether_seen_without_loading_the_known_devices(
    services: Services,
) -> None:
    ada = await factories.sign_up(services, email="ada@example.test")
    user = await User.get(id=ada.user.id)
    now = services.clock.now()
    for n in range(30):  # a traveller's history
        await KnownDevice.create(
            user=user, country="DE", device_hash=f"d{n}", first_seen_at=now, last_seen_at=now
        )

    with count_queries() as statements:
        new_location = await security_notices.note_sign_in(services, PARIS, user, "nonce")

    assert new_location
    devices = [q.upper() for q in statements if "known_device" in q.lower()]
    # Asked (one fixed statement, no row of the history) and noted as seen now (one upsert, no
    # savepoint to retry): in one statement on PostgreSQL, a writing WITH; in two on SQLite.
    assert len(devices) == (1 if BACKEND == "postgres" else 2), devices
    assert all("ON CONFLICT" not in q for q in devices if q.startswith("SELECT"))
    assert sum("EXISTS" in q for q in devices) == sum("ON CONFLICT" in q for q in devices) == 1
    (mail,) = await _mails("security_new_location")
    assert mail.recipient == "ada@example.test"


async def test_act2_known_devices_unseen_for_13_months_are_purged_but_each_users_newest_kept(
    services: Services, clock: ManualClock
) -> None:
    ada = await _signed_up_in_zurich(services)
    grace = await factories.sign_up(services, email="grace@example.test", meta=ZURICH)
    first = await _sign_in(services, ZURICH, "ada@example.test", ada.device_cookie)
    await _sign_in(services, ZURICH, "grace@example.test", grace.device_cookie)
    clock.advance(timedelta(days=200))
    await _sign_in(services, PARIS, "ada@example.test", first.device_cookie)
    clock.advance(security_notices.KNOWN_DEVICE_RETENTION - timedelta(days=200, seconds=1))
    not_yet = await jobs.run_due(services)
    clock.advance(timedelta(seconds=2))

    purged = await jobs.run_due(services)
    again = await jobs.run_due(services)

    assert not_yet.known_devices_purged == 0
    assert (purged.known_devices_purged, again.known_devices_purged) == (1, 0)
    ada_rows = await KnownDevice.filter(user__email="ada@example.test").values("country")
    assert ada_rows == [{"country": "FR"}]
    # Grace's only pair is 13 months old too, but it is her baseline: her next sign-in is told.
    assert await KnownDevice.filter(user_id=grace.user.id).count() == 1
    await _sign_in(services, PARIS, "grace@example.test")
    assert [m.recipient for m in await _mails("security_new_location")] == [
        "ada@example.test",
        "grace@example.test",
    ]


# --- ACT-5: secure my account --------------------------------------------------------------------


async def test_act5_secure_account_revokes_everything_but_this_session(
    services: Services,
) -> None:
    ada = await factories.sign_up(services, email="ada@example.test")
    grace = await factories.sign_up(services, email="grace@example.test")
    elsewhere = await _sign_in(services, PARIS, "ada@example.test")
    assert elsewhere.session is not None and elsewhere.device_cookie is not None
    now = services.clock.now()
    for user_id in (ada.user.id, grace.user.id):
        await AppPassword.create(user_id=user_id, label="Mail", password_hash="x", created_at=now)
    actor = await _actor(services, ada.session.token)

    result = await account_security.secure_account(services, ZURICH, actor)

    assert result == account_security.SecureAccountResult(
        sessions_revoked=1,
        app_passwords_revoked=1,
        tokens_revoked=0,
        service_accounts_revoked=0,
        steps=[
            SecureAccountStep.CHANGE_PASSWORD,
            SecureAccountStep.ENABLE_TWO_FACTOR,
            SecureAccountStep.CHANGE_MAIL_PASSWORDS,
        ],
    )
    assert await sessions.authenticate(services, elsewhere.session.token) is None
    assert await sessions.authenticate(services, ada.session.token) is not None
    assert await sessions.authenticate(services, grace.session.token) is not None
    assert await AppPassword.filter(user_id=ada.user.id, revoked_at=None).count() == 0
    assert await AppPassword.filter(user_id=grace.user.id, revoked_at=None).count() == 1
    event = await ActivityEvent.get(type="account.secured")
    assert event.data == {
        "sessions_revoked": 1,
        "app_passwords_revoked": 1,
        "tokens_revoked": 0,
        "service_accounts_revoked": 0,
    }


async def test_act5_secure_account_revokes_personal_tokens_and_service_accounts_made_by_the_user(
    services: Services,
) -> None:
    """A thief with a session could have minted a token or a service account; both must die with
    the sessions, and only the user's own (another manager's service account stays)."""
    ada = await factories.sign_up(services, email="ada@example.test")
    await factories.add_member(services, ada.organisation, Role.ADMINISTRATOR, "grace@example.test")
    ada_scope = RequestScope(await _actor(services, ada.session.token))
    grace_scope = await factories.signed_in_scope(services, "grace@example.test")
    ada_token = await tokens.create_personal_access_token(
        services, ZURICH, ada_scope, label="CI", scopes=["members:read"]
    )
    ada_account = await tokens.create_service_account(
        services,
        ZURICH,
        ada_scope,
        ada.organisation.id,
        name="Backup",
        role=Role.ADMINISTRATOR,
        scopes=["members:read"],
    )
    grace_token = await tokens.create_personal_access_token(
        services, ZURICH, grace_scope, label="CI", scopes=["members:read"]
    )
    grace_account = await tokens.create_service_account(
        services,
        ZURICH,
        grace_scope,
        ada.organisation.id,
        name="Sync",
        role=Role.COLLABORATOR,
        scopes=["members:read"],
    )
    for issued in (ada_token, ada_account, grace_token, grace_account):
        assert await tokens.authenticate(services, ZURICH, issued.secret) is not None

    result = await account_security.secure_account(services, ZURICH, ada_scope.actor)

    assert (result.tokens_revoked, result.service_accounts_revoked) == (1, 1)
    assert await tokens.authenticate(services, ZURICH, ada_token.secret) is None
    assert await tokens.authenticate(services, ZURICH, ada_account.secret) is None
    assert await tokens.authenticate(services, ZURICH, grace_token.secret) is not None
    assert await tokens.authenticate(services, ZURICH, grace_account.secret) is not None
    secured = await ActivityEvent.get(type="account.secured")
    assert secured.data["tokens_revoked"] == 1
    assert secured.data["service_accounts_revoked"] == 1
    revoked = await ActivityEvent.get(type="service_account.revoked")
    assert (revoked.organisation_id, revoked.actor_id) == (ada.organisation.id, ada.user.id)
    assert revoked.data == {"token_id": ada_account.token.id, "name": "Backup"}


async def test_act5_remembered_device_cookies_die(services: Services) -> None:
    """The credential generation moves: a cookie issued before is no longer believed, so the
    browser spends the login's budget again and its next sign-in is a new device."""
    ada = await _signed_up_in_zurich(services)
    first = await _sign_in(services, ZURICH, "ada@example.test", ada.device_cookie)
    assert first.device_cookie is not None
    user = await User.get(id=ada.user.id)
    version_before = accounts._credential_version(user)
    still_valid = read_device_cookie(
        services.keyring, first.device_cookie, user.id, version_before, services.clock.now()
    )

    await account_security.secure_account(
        services, ZURICH, await _actor(services, ada.session.token)
    )

    user = await User.get(id=ada.user.id)
    assert still_valid is not None
    assert user.credential_generation == 1
    assert (
        read_device_cookie(
            services.keyring,
            first.device_cookie,
            user.id,
            accounts._credential_version(user),
            services.clock.now(),
        )
        is None
    )
    await _sign_in(services, ZURICH, "ada@example.test", first.device_cookie)
    assert len(await _mails("security_new_location")) == 1


async def test_act5_with_two_factor_the_step_is_not_asked(services: Services) -> None:
    ada = await factories.sign_up(services, email="ada@example.test")
    await factories.confirm_totp(services, ada.user)

    result = await account_security.secure_account(
        services, ZURICH, await _actor(services, ada.session.token)
    )

    assert result.steps == [
        SecureAccountStep.CHANGE_PASSWORD,
        SecureAccountStep.CHANGE_MAIL_PASSWORDS,
    ]


async def test_act5_needs_a_session(services: Services) -> None:
    with pytest.raises(DomainError) as raised:
        await account_security.secure_account(services, ZURICH, Actor())

    assert raised.value.code is ErrorCode.UNAUTHENTICATED
    assert not await ActivityEvent.filter(type="account.secured").exists()


# --- Through the GraphQL surface -----------------------------------------------------------------

VIEWER_SESSIONS = "{ viewer { sessions { id kind device ip country current } } }"
REVOKE = "mutation($input: RevokeSessionInput!) { revokeSession(input: $input) { errors { code message field } } }"
VIEWER_ACTIVITY = (
    "query($types: [String!], $since: DateTime, $until: DateTime) { viewer {"
    " activity(first: 10, types: $types, since: $since, until: $until) {"
    " edges { node { type country device } } } } }"
)


async def test_act6_viewer_sessions_marks_the_current_one(
    services: Services, gql: GraphQLClient
) -> None:
    await factories.sign_up(services, email="ada@example.test")
    other = await _sign_in(services, PARIS, "ada@example.test")
    assert other.session is not None
    gql.token = other.session.token

    body = await gql(VIEWER_SESSIONS)

    listed = body["data"]["viewer"]["sessions"]
    assert [(s["kind"], s["country"], s["current"]) for s in listed] == [
        ("WEB", "FR", True),
        ("WEB", None, False),
    ]


@pytest.mark.parametrize(
    ("session_id", "expected"),
    [
        (
            "not an id",
            {"code": "INVALID_ID", "message": "This is not a valid ID.", "field": "sessionId"},
        ),
        (
            "VXNlcjox",
            {"code": "NOT_FOUND", "message": "No such activesession.", "field": "sessionId"},
        ),
    ],
)
async def test_act6_revoke_session_malformed_or_wrong_type_id(
    services: Services, gql: GraphQLClient, session_id: str, expected: dict[str, str]
) -> None:
    ada = await factories.sign_up(services, email="ada@example.test")
    gql.token = ada.session.token

    body = await gql(REVOKE, {"input": {"sessionId": session_id}})

    assert body["data"]["revokeSession"]["errors"] == [expected]


async def test_act4_viewer_activity_refuses_unknown_types_and_inverted_ranges(
    services: Services, gql: GraphQLClient
) -> None:
    ada = await factories.sign_up(services, email="ada@example.test")
    gql.token = ada.session.token

    unknown = await gql(VIEWER_ACTIVITY, {"types": ["sign_in.nope"]})
    inverted = await gql(
        VIEWER_ACTIVITY,
        {"since": "2026-01-15T10:00:00+00:00", "until": "2026-01-15T09:00:00+00:00"},
    )
    filtered = await gql(VIEWER_ACTIVITY, {"types": ["account.signed_up"]})

    assert unknown["data"] == {"viewer": {"activity": None}}
    assert [e["extensions"]["code"] for e in unknown["errors"]] == ["INVALID_INPUT"]
    assert [e["extensions"]["code"] for e in inverted["errors"]] == ["INVALID_INPUT"]
    assert filtered == {
        "data": {
            "viewer": {
                "activity": {
                    "edges": [
                        {"node": {"type": "account.signed_up", "country": None, "device": None}}
                    ]
                }
            }
        }
    }


ORGANISATION_ACTIVITY = (
    "query($id: ID!, $types: [String!], $since: DateTime, $until: DateTime) {"
    " organisation(id: $id) { activity(first: 10, types: $types, since: $since, until: $until)"
    " { edges { node { type } } } } }"
)


async def test_act4_organisation_activity_filters_by_type_and_time(
    services: Services, gql: GraphQLClient, clock: ManualClock
) -> None:
    legal = await factories.sign_up(services, email="legal@example.test")
    start = clock.now()
    clock.advance(timedelta(minutes=5))
    await factories.add_member(services, legal.organisation, Role.COLLABORATOR)
    scope = await factories.signed_in_scope(services, "legal@example.test")
    await members.set_support_plan(
        services, RequestMeta(), scope, legal.organisation.id, SupportPlan.PREMIUM
    )
    gql.token = (await _sign_in(services, ZURICH, "legal@example.test")).session.token  # type: ignore[union-attr]
    organisation_id = encode_id("Organisation", legal.organisation.id)

    by_type = await gql(
        ORGANISATION_ACTIVITY, {"id": organisation_id, "types": ["support_plan.changed"]}
    )
    at_sign_up = await gql(
        ORGANISATION_ACTIVITY,
        {
            "id": organisation_id,
            "since": start.isoformat(),
            "until": (start + timedelta(minutes=1)).isoformat(),
        },
    )
    unknown = await gql(ORGANISATION_ACTIVITY, {"id": organisation_id, "types": ["nope.nope"]})

    assert by_type == {
        "data": {
            "organisation": {"activity": {"edges": [{"node": {"type": "support_plan.changed"}}]}}
        }
    }
    # The sign-up's first sign-in is a member's account event, so it is the organisation's too.
    assert at_sign_up == {
        "data": {
            "organisation": {
                "activity": {
                    "edges": [
                        {"node": {"type": "sign_in.succeeded"}},
                        {"node": {"type": "account.signed_up"}},
                    ]
                }
            }
        }
    }
    assert unknown["data"] == {"organisation": None}
    assert [(e["extensions"]["code"], e["message"]) for e in unknown["errors"]] == [
        ("INVALID_INPUT", "The filter names an unknown event type.")
    ]
