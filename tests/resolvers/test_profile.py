"""The profile (PRO-1), recovery contacts (PRO-2, PRO-3) and the support code (PRO-4), through
the operations, a real database and the real outboxes."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gardien.clock import ManualClock
from gardien.mail.templates import Template
from gardien.models.activity import ActivityEvent
from gardien.models.enums import OutboxChannel, PlatformRole, Role
from gardien.models.outbox import OutboxMessage
from gardien.models.users import User
from gardien.resolvers import login_email, profile, profile_details, recovery_contacts, support
from gardien.resolvers.authz import Actor
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.reauthentication import PASSWORD_CONFIRMATIONS_PER_USER
from gardien.resolvers.services import RequestMeta, Services
from gardien.resolvers.support import SupportRequest
from gardien.sms.templates import SmsTemplate
from tests import factories

pytestmark = pytest.mark.usefixtures("database")

SWISS_MOBILE = "+41791234567"
OTHER_MOBILE = "+41781112233"


async def _viewer(services: Services, email: str = "ada@example.test") -> Actor:
    await factories.sign_up(services, email=email)
    return (await factories.signed_in_scope(services, email)).actor


async def _fresh(services: Services, actor: Actor) -> Actor:
    """The same person's next request: the session lookup reads the account anew."""
    assert actor.user is not None and actor.user.email is not None
    return (await factories.signed_in_scope(services, actor.user.email)).actor


async def _refused(awaitable: Any) -> DomainError:
    with pytest.raises(DomainError) as raised:
        await awaitable
    return raised.value


async def _row(actor: Actor) -> User:
    assert actor.user is not None
    return await User.get(id=actor.user.id)


async def _sent(channel: OutboxChannel) -> list[tuple[str, str]]:
    return [
        (m.recipient, m.template)
        for m in await OutboxMessage.filter(channel=channel).order_by("id")
        if m.template not in ("security_new_location", "sign_up_confirmation")
    ]


async def _types(user_id: int) -> list[str]:
    return [e.type for e in await ActivityEvent.filter(subject_id=user_id).order_by("id")]


# --- PRO-1 ---------------------------------------------------------------------------------------


async def test_pro1_update_profile_sets_language_country_and_zone_and_records_it(
    services: Services, meta: RequestMeta
) -> None:
    actor = await _viewer(services)

    user = await profile_details.update_profile(
        services,
        meta,
        actor,
        display_name="  Ada   King ",
        language="de",
        country="ch",
        timezone="America/New_York",
    )

    stored = await _row(actor)
    assert (stored.display_name, stored.language, stored.country, stored.timezone) == (
        "Ada King",
        "de",
        "CH",
        "America/New_York",
    )
    assert user.id == stored.id
    event = await ActivityEvent.filter(type="profile.updated").get()
    assert event.data == {"fields": ["country", "display_name", "language", "timezone"]}


async def test_pro1_country_can_be_removed_and_unchanged_values_record_nothing(
    services: Services, meta: RequestMeta
) -> None:
    actor = await _viewer(services)
    await profile_details.update_profile(services, meta, actor, country="FR")

    await profile_details.update_profile(services, meta, actor, language="fr")
    await profile_details.update_profile(services, meta, actor, clear_country=True)

    assert (await _row(actor)).country is None
    events = await ActivityEvent.filter(type="profile.updated").order_by("id")
    assert [e.data for e in events] == [{"fields": ["country"]}, {"fields": ["country"]}]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"language": "es"}, "language"),
        ({"language": "FR"}, "language"),
        ({"country": "XX"}, "country"),
        ({"country": "EU"}, "country"),
        ({"country": "Switzerland"}, "country"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"timezone": "Europe/Zurich" * 10}, "timezone"),
        # The server's own zone in the system's zone directory: no IANA name.
        ({"timezone": "localtime"}, "timezone"),
        ({"display_name": "   "}, "displayName"),
    ],
)
async def test_pro1_bad_language_country_or_zone_is_refused_and_nothing_changes(
    services: Services, meta: RequestMeta, changes: dict[str, str], field: str
) -> None:
    actor = await _viewer(services)
    before = await _row(actor)

    # A valid change beside the bad one: it must not be applied either.
    values: dict[str, Any] = {"country": "CH", "timezone": "Europe/Rome"} | changes
    error = await _refused(profile_details.update_profile(services, meta, actor, **values))

    assert (error.code, error.field) == (ErrorCode.INVALID_INPUT, field)
    after = await _row(actor)
    assert (after.language, after.country, after.timezone, after.display_name) == (
        before.language,
        before.country,
        before.timezone,
        before.display_name,
    )
    assert await ActivityEvent.filter(type="profile.updated").count() == 0


def test_pro1_countries_are_the_whole_iso_3166_1_list() -> None:
    codes = profile_details.country_codes()

    assert len(codes) == 249
    assert {"CH", "FR", "DE", "IT", "LI", "AQ", "SS"} <= codes
    assert codes.isdisjoint({"EU", "UK", "XK", "ZZ"})


async def test_pro1_emails_go_out_in_the_users_language_with_times_in_their_zone(
    services: Services, meta: RequestMeta
) -> None:
    actor = await _viewer(services)
    await profile_details.update_profile(
        services, meta, actor, language="de", timezone="America/New_York"
    )

    expires_at = await login_email.request_login_email_change(
        services,
        meta,
        await _fresh(services, actor),
        new_email="ada.neu@example.test",
        current_password=factories.PASSWORD,
    )

    message = await OutboxMessage.get(template=Template.LOGIN_EMAIL_CHANGE_CONFIRMATION.value)
    local = expires_at.astimezone(ZoneInfo("America/New_York"))
    assert message.language == "de"
    assert message.payload["subject"] == "Bestätigen Sie Ihre neue Anmelde-E-Mail-Adresse"
    assert f"{local:%d.%m.%Y, %H:%M} Uhr ({local.tzname()})" in message.payload["text"]
    assert local.tzname() in ("EST", "EDT")


async def test_pro1_profile_is_changed_from_a_web_session_only(
    services: Services, meta: RequestMeta
) -> None:
    anonymous = await _refused(
        profile_details.update_profile(services, meta, Actor(), language="de")
    )

    assert anonymous.code == ErrorCode.UNAUTHENTICATED


# --- PRO-2 ---------------------------------------------------------------------------------------


async def test_pro2_setting_a_phone_needs_the_password_and_tells_the_new_and_the_old_number(
    services: Services, meta: RequestMeta
) -> None:
    actor = await _viewer(services)

    await recovery_contacts.set_recovery_phone(
        services, meta, actor, phone="+41 79 123 45 67", current_password=factories.PASSWORD
    )
    first = await _sent(OutboxChannel.SMS)
    await recovery_contacts.set_recovery_phone(
        services,
        meta,
        await _fresh(services, actor),
        phone="+41 78 111 22 33",
        current_password=factories.PASSWORD,
    )

    assert (await _row(actor)).recovery_phone == OTHER_MOBILE
    assert first == [(SWISS_MOBILE, SmsTemplate.RECOVERY_PHONE_SET.value)]
    assert await _sent(OutboxChannel.SMS) == [
        (SWISS_MOBILE, SmsTemplate.RECOVERY_PHONE_SET.value),
        (OTHER_MOBILE, SmsTemplate.RECOVERY_PHONE_SET.value),
        (SWISS_MOBILE, SmsTemplate.RECOVERY_PHONE_REPLACED.value),
    ]
    events = await ActivityEvent.filter(type="recovery_phone.changed").order_by("id")
    assert [e.data["action"] for e in events] == ["set", "replaced"]


async def test_pro2_removing_the_phone_tells_the_old_number(
    services: Services, meta: RequestMeta
) -> None:
    actor = await _viewer(services)
    await recovery_contacts.set_recovery_phone(
        services, meta, actor, phone=SWISS_MOBILE, current_password=factories.PASSWORD
    )

    await recovery_contacts.set_recovery_phone(
        services,
        meta,
        await _fresh(services, actor),
        phone=None,
        current_password=factories.PASSWORD,
    )

    assert (await _row(actor)).recovery_phone is None
    assert (await _sent(OutboxChannel.SMS))[-1] == (
        SWISS_MOBILE,
        SmsTemplate.RECOVERY_PHONE_REPLACED.value,
    )
    events = await ActivityEvent.filter(type="recovery_phone.changed").order_by("id")
    assert [e.data["action"] for e in events] == ["set", "removed"]


async def test_pro2_a_national_number_is_read_in_the_profiles_country(
    services: Services, meta: RequestMeta
) -> None:
    actor = await _viewer(services)
    await profile_details.update_profile(services, meta, actor, country="FR")

    await recovery_contacts.set_recovery_phone(
        services,
        meta,
        await _fresh(services, actor),
        phone="06 12 34 56 78",
        current_password=factories.PASSWORD,
    )

    assert (await _row(actor)).recovery_phone == "+33612345678"


@pytest.mark.parametrize(
    "phone",
    [
        "079 123 45 67",  # national, and the profile has no country to read it in
        "+41 44 668 18 00",  # a Zurich fixed line: it cannot receive the text
        "+41 79 123",
        "not a number",
        "+41 79 123 45 67\n",
        "+" + "1" * 40,
    ],
)
async def test_pro2_malformed_or_unreachable_phone_is_refused_and_nothing_changes(
    services: Services, meta: RequestMeta, phone: str
) -> None:
    actor = await _viewer(services)

    error = await _refused(
        recovery_contacts.set_recovery_phone(
            services, meta, actor, phone=phone, current_password=factories.PASSWORD
        )
    )

    assert (error.code, error.field) == (ErrorCode.INVALID_INPUT, "phone")
    assert (await _row(actor)).recovery_phone is None
    assert await _sent(OutboxChannel.SMS) == []


async def test_pro2_wrong_password_is_refused_recorded_and_changes_nothing(
    services: Services, meta: RequestMeta
) -> None:
    actor = await _viewer(services)

    error = await _refused(
        recovery_contacts.set_recovery_phone(
            services, meta, actor, phone=SWISS_MOBILE, current_password="not my password"
        )
    )

    assert (error.code, error.field) == (ErrorCode.INVALID_CREDENTIALS, "currentPassword")
    assert (await _row(actor)).recovery_phone is None
    assert await _sent(OutboxChannel.SMS) == []
    event = await ActivityEvent.filter(type="account.password_check_failed").get()
    assert event.data == {"operation": "setRecoveryPhone"}


async def test_pro2_password_guesses_are_throttled_even_with_the_right_password(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    actor = await _viewer(services)
    for _ in range(PASSWORD_CONFIRMATIONS_PER_USER.limit):
        await _refused(
            recovery_contacts.set_recovery_phone(
                services, meta, actor, phone=SWISS_MOBILE, current_password="guess"
            )
        )

    throttled = await _refused(
        recovery_contacts.set_recovery_phone(
            services, meta, actor, phone=SWISS_MOBILE, current_password=factories.PASSWORD
        )
    )
    clock.advance(PASSWORD_CONFIRMATIONS_PER_USER.window)
    await recovery_contacts.set_recovery_phone(
        services, meta, actor, phone=SWISS_MOBILE, current_password=factories.PASSWORD
    )

    assert throttled.code == ErrorCode.TOO_MANY_ATTEMPTS
    assert throttled.retry_after_seconds is not None and throttled.retry_after_seconds > 0
    assert (await _row(actor)).recovery_phone == SWISS_MOBILE
    assert await ActivityEvent.filter(type="account.password_check_failed").count() == 5


# --- PRO-3 ---------------------------------------------------------------------------------------


async def test_pro3_recovery_email_change_tells_the_new_and_the_former_address(
    services: Services, meta: RequestMeta
) -> None:
    actor = await _viewer(services)

    await recovery_contacts.set_recovery_email(
        services, meta, actor, email=" Backup@Example.test ", current_password=factories.PASSWORD
    )
    await recovery_contacts.set_recovery_email(
        services,
        meta,
        await _fresh(services, actor),
        email="second@example.test",
        current_password=factories.PASSWORD,
    )

    assert (await _row(actor)).recovery_email == "second@example.test"
    assert await _sent(OutboxChannel.EMAIL) == [
        ("backup@example.test", Template.RECOVERY_EMAIL_SET.value),
        ("second@example.test", Template.RECOVERY_EMAIL_SET.value),
        ("backup@example.test", Template.ACCOUNT_CONTACT_CHANGED.value),
    ]
    notice = await OutboxMessage.get(template=Template.ACCOUNT_CONTACT_CHANGED.value)
    assert "L’adresse e-mail de récupération de votre compte" in notice.payload["text"]
    assert "/console/#/security/secure-account" in notice.payload["text"]
    events = await ActivityEvent.filter(type="recovery_email.changed").order_by("id")
    assert [e.data["action"] for e in events] == ["set", "replaced"]


@pytest.mark.parametrize(
    ("email", "password", "code", "field"),
    [
        ("not-an-address", factories.PASSWORD, ErrorCode.INVALID_INPUT, "email"),
        ("ada@example.test", factories.PASSWORD, ErrorCode.INVALID_INPUT, "email"),
        ("backup@example.test", "wrong", ErrorCode.INVALID_CREDENTIALS, "currentPassword"),
    ],
)
async def test_pro3_bad_address_or_password_is_refused_and_nothing_changes(
    services: Services,
    meta: RequestMeta,
    email: str,
    password: str,
    code: ErrorCode,
    field: str,
) -> None:
    actor = await _viewer(services)

    error = await _refused(
        recovery_contacts.set_recovery_email(
            services, meta, actor, email=email, current_password=password
        )
    )

    assert (error.code, error.field) == (code, field)
    assert (await _row(actor)).recovery_email is None
    assert await _sent(OutboxChannel.EMAIL) == []


# --- PRO-4 ---------------------------------------------------------------------------------------


async def test_pro4_regenerated_support_code_replaces_the_old_one_for_support(
    services: Services, meta: RequestMeta
) -> None:
    legal = await factories.sign_up(services, email="legal@example.test")
    target = await factories.add_member(
        services, legal.organisation, Role.COLLABORATOR, "t@example.test"
    )
    await factories.sign_up(services, email="agent@provider.example")
    await support.set_support_agent(services, "agent@provider.example", agent=True)
    agent = (await factories.signed_in_scope(services, "agent@provider.example")).actor
    assert agent.user is not None and agent.user.platform_role == PlatformRole.SUPPORT_AGENT
    actor = (await factories.signed_in_scope(services, "legal@example.test")).actor
    old = profile.own_support_code(services, actor, legal.user.id)

    new = await profile.regenerate_support_code(services, meta, actor)

    assert new != old and len(new) == profile.SUPPORT_CODE_DIGITS and new.isdigit()
    viewer = await _fresh(services, actor)
    assert profile.own_support_code(services, viewer, legal.user.id) == new
    request = SupportRequest(
        organisation_id=legal.organisation.id,
        user_id=target.user.id,
        requester_support_code=str(old),
        justification="The legal representative called.",
    )
    refused = await _refused(support.block_user(services, meta, agent, request))
    assert refused.code == ErrorCode.INVALID_SUPPORT_CODE
    block = await support.block_user(
        services,
        meta,
        agent,
        SupportRequest(
            organisation_id=legal.organisation.id,
            user_id=target.user.id,
            requester_support_code=new,
            justification="The legal representative called.",
        ),
    )
    assert block.user_id == target.user.id
    assert "support_code.regenerated" in await _types(legal.user.id)
