"""Forgot password (REC-1): the same answer for any login, codes to real options only,
single-use and short-lived codes, counted attempts, and a reset that ends every way in."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from gardien import jobs
from gardien.clock import ManualClock
from gardien.mail.templates import Template, links_in
from gardien.models.activity import ActivityEvent
from gardien.models.enums import OutboxChannel, RecoveryChannel
from gardien.models.mfa import AppPassword
from gardien.models.outbox import OutboxMessage
from gardien.models.recovery import RecoveryRequest
from gardien.models.sessions import ApiToken, Session
from gardien.models.users import EmailChange, User
from gardien.resolvers import (
    account_security,
    accounts,
    app_passwords,
    authz,
    login_email,
    recovery,
    sessions,
    tokens,
)
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.recovery_options import decoy_destinations, mask_email, mask_phone
from gardien.resolvers.services import RequestMeta, Services
from gardien.security import verify_password
from tests import factories, locks
from tests.conftest import BACKEND
from tests.querycount import count_queries

pytestmark = pytest.mark.usefixtures("database")

OWNER = "anna.muster@example.ch"
NEW_PASSWORD = "granite harbour at dawn"
META = RequestMeta(ip="198.51.100.20", country="CH", device="pytest")
MASKED_EMAIL = re.compile(r"^[^@]\*\*\*@[^.]\*\*\*(\.[a-z]+)?$")
MASKED_PHONE = re.compile(r"^\+\d{1,3} (\*+ )+\d{2}$")


async def _owner(services: Services, email: str = OWNER) -> User:
    signed_up = await factories.sign_up(services, email=email, name="Anna Muster")
    user = signed_up.user
    user.recovery_email = "a.m@bluewin.ch"
    user.recovery_phone = "+41791234567"
    await user.save(update_fields=["recovery_email", "recovery_phone"])
    return user


async def _refused(call: Awaitable[Any]) -> DomainError:
    with pytest.raises(DomainError) as caught:
        await call
    return caught.value


def _option(result: recovery.PasswordResetRequest, channel: RecoveryChannel) -> str:
    (chosen,) = [o.id for o in result.options if o.channel is channel]
    return chosen


async def _code_sent_to(recipient: str) -> str:
    message = await OutboxMessage.filter(recipient=recipient).order_by("-id").first()
    assert message is not None, f"nothing sent to {recipient}"
    (code,) = re.findall(r"\b\d{8}\b", message.payload["text"])
    return str(code)


async def _ask_code(
    services: Services, login: str, channel: RecoveryChannel = RecoveryChannel.LOGIN_EMAIL
) -> str:
    asked = await recovery.request_password_reset(services, META, login=login)
    await recovery.send_recovery_code(
        services, META, recovery_id=asked.recovery_id, chosen_option=_option(asked, channel)
    )
    return asked.recovery_id


def _shape(result: recovery.PasswordResetRequest) -> list[Any]:
    """What a client can tell of an answer without knowing the account: types and formats."""
    return [
        (type(result.recovery_id), len(result.recovery_id)),
        [
            (
                len(option.id),
                bool(re.fullmatch(r"[0-9a-f]+", option.id)),
                option.channel,
                bool(
                    (MASKED_PHONE if option.channel is RecoveryChannel.SMS else MASKED_EMAIL).match(
                        option.masked_destination
                    )
                ),
            )
            for option in result.options
        ],
    ]


def _decoy_with_every_option(services: Services) -> str:
    """An unknown login whose decoys (they depend on the secret key) show all three options,
    as the owner's account does, so that the two answers can be compared option by option."""
    for n in range(100):
        login = f"bea{n}@example.ch"
        if len(decoy_destinations(services.keyring, login)) == len(RecoveryChannel):
            return login
    raise AssertionError("no such login among 100: the decoys are not varied as they should be")


def test_rec1_destinations_are_masked_as_the_owner_recognises_them() -> None:
    assert mask_email("anna.muster@example.ch") == "a***@e***.ch"
    assert mask_phone("+41791234567") == "+41 ** *** ** 67"
    assert mask_phone("+33612345678") == "+33 ** *** ** 78"
    assert mask_phone("+4915123456789") == "+49 **** *** ** 89"
    assert mask_phone("+12025550123") == "+1 *** *** ** 23"


async def test_rec1_known_and_unknown_login_answers_compare_field_by_field(
    services: Services,
) -> None:
    await _owner(services)
    stranger = _decoy_with_every_option(services)

    known = await recovery.request_password_reset(services, META, login=OWNER)
    unknown = await recovery.request_password_reset(services, META, login=stranger)

    assert [(o.channel, o.masked_destination) for o in known.options] == [
        (RecoveryChannel.LOGIN_EMAIL, "a***@e***.ch"),
        (RecoveryChannel.RECOVERY_EMAIL, "a***@b***.ch"),
        (RecoveryChannel.SMS, "+41 ** *** ** 67"),
    ]
    assert [o.channel for o in unknown.options] == [o.channel for o in known.options]
    assert _shape(unknown) == _shape(known)
    assert unknown.options[0].masked_destination == mask_email(stranger)
    # Both are kept as requests (the unknown one without an account), with the same columns set.
    rows = await RecoveryRequest.all().order_by("id")
    assert [row.user_id is None for row in rows] == [False, True]
    assert [row.channels for row in rows] == ["LOGIN_EMAIL,RECOVERY_EMAIL,SMS"] * 2


async def test_rec1_decoys_are_stable_across_requests(services: Services) -> None:
    await _owner(services)
    logins = [OWNER, "nobody@example.ch", "zz99", "carla@else.example"]

    first = [await recovery.request_password_reset(services, META, login=x) for x in logins]
    again = [await recovery.request_password_reset(services, META, login=x) for x in logins]

    def seen(r: recovery.PasswordResetRequest) -> list[tuple[RecoveryChannel, str]]:
        return [(o.channel, o.masked_destination) for o in r.options]

    assert [seen(r) for r in first] == [seen(r) for r in again]
    # Option IDs and request IDs are new each time, for real and decoy requests alike.
    assert {o.id for r in first for o in r.options}.isdisjoint(
        {o.id for r in again for o in r.options}
    )
    assert {r.recovery_id for r in first}.isdisjoint({r.recovery_id for r in again})
    # A username (REC-4 form) has no login e-mail to show, known or not.
    assert RecoveryChannel.LOGIN_EMAIL not in {o.channel for o in first[2].options}


async def test_rec1_same_work_and_comparable_time_for_known_and_unknown_login(
    services: Services,
) -> None:
    await _owner(services)
    stranger = _decoy_with_every_option(services)
    # Warm up once each path (first-use costs: template compilation, prepared statements).
    await recovery.request_password_reset(services, META, login="warm@example.ch")
    await recovery.request_password_reset(services, META, login=OWNER)

    with count_queries() as known_statements:
        started = time.perf_counter()
        await recovery.request_password_reset(services, META, login=OWNER)
        known_seconds = time.perf_counter() - started
    with count_queries() as unknown_statements:
        started = time.perf_counter()
        await recovery.request_password_reset(services, META, login=stranger)
        unknown_seconds = time.perf_counter() - started

    assert known_statements != []
    assert _kinds(known_statements) == _kinds(unknown_statements)
    # Generous bounds: the work is identical, so neither may take a multiple of the other.
    assert unknown_seconds < 3 * known_seconds + 0.05
    assert known_seconds < 3 * unknown_seconds + 0.05


def _kinds(statements: list[str]) -> list[str]:
    """Each statement's verb and table, without its values."""
    kinds = []
    for statement in statements:
        table = re.search(r'(?:FROM|INTO|UPDATE)\s+"?(\w+)', statement)
        kinds.append(f"{statement.split(' ', 1)[0]} {table.group(1) if table else ''}")
    return kinds


async def test_rec1_send_and_reset_do_the_same_work_for_a_decoy(services: Services) -> None:
    """The decoy's send differs from a real one by the message it does not queue, nothing else;
    a wrong code costs the same statements for a real request and a decoy."""
    await _owner(services)
    stranger = _decoy_with_every_option(services)
    known = await recovery.request_password_reset(services, META, login=OWNER)
    unknown = await recovery.request_password_reset(services, META, login=stranger)

    sent: dict[str, list[str]] = {}
    tried: dict[str, list[str]] = {}
    for name, asked in (("known", known), ("unknown", unknown)):
        with count_queries() as statements:
            await recovery.send_recovery_code(
                services,
                META,
                recovery_id=asked.recovery_id,
                chosen_option=_option(asked, RecoveryChannel.RECOVERY_EMAIL),
            )
        sent[name] = _kinds(statements)
        with count_queries() as statements:
            await _refused(
                recovery.reset_password(
                    services,
                    META,
                    recovery_id=asked.recovery_id,
                    code="00000000",
                    new_password=NEW_PASSWORD,
                )
            )
        tried[name] = _kinds(statements)

    assert sent["known"] != [] and tried["known"] != []
    assert [k for k in sent["known"] if k != "INSERT outbox_message"] == sent["unknown"]
    assert sent["known"].count("INSERT outbox_message") == 1
    assert tried["known"] == tried["unknown"]


async def test_rec1_sending_to_a_decoy_sends_nothing_and_no_code_resets_it(
    services: Services,
) -> None:
    asked = await recovery.request_password_reset(services, META, login="nobody@example.ch")

    for option in asked.options:
        await recovery.send_recovery_code(
            services, META, recovery_id=asked.recovery_id, chosen_option=option.id
        )
    row = await RecoveryRequest.get(user_id=None)
    refused = await _refused(
        recovery.reset_password(
            services,
            META,
            recovery_id=asked.recovery_id,
            code="12345678",
            new_password=NEW_PASSWORD,
        )
    )

    assert await OutboxMessage.all().count() == 0
    # The decoy's code was made and stored (as a digest) like a real one: the same work.
    assert row.code_hash is not None and row.code_expires_at is not None
    assert (refused.code, refused.field) == (ErrorCode.RECOVERY_CODE_INVALID, "code")
    assert await ActivityEvent.filter(type="recovery.code_sent").count() == len(asked.options)


async def test_rec1_code_by_email_resets_password_and_ends_every_way_in(
    services: Services, clock: ManualClock
) -> None:
    owner = await _owner(services)
    await factories.confirm_totp(services, owner)
    actor = await sessions.authenticate(services, await _session_token(services, owner))
    assert actor is not None
    await app_passwords.create(services, META, actor, label="Thunderbird")
    await tokens.create_personal_access_token(
        services, META, authz.RequestScope(actor), label="CI", scopes=[authz.MEMBERS_READ]
    )
    generation = owner.credential_generation
    clock.advance(timedelta(minutes=1))

    recovery_id = await _ask_code(services, OWNER)
    code = await _code_sent_to(OWNER)
    clock.advance(timedelta(minutes=29))
    await recovery.reset_password(
        services, META, recovery_id=recovery_id, code=code, new_password=NEW_PASSWORD
    )

    user = await User.get(id=owner.id)
    assert await verify_password(user.password_hash, NEW_PASSWORD)
    assert not await verify_password(user.password_hash, factories.PASSWORD)
    assert user.credential_generation == generation + 1
    assert user.password_changed_at == clock.now()
    assert await Session.filter(user_id=owner.id, revoked_at=None).count() == 0
    assert await AppPassword.filter(user_id=owner.id, revoked_at=None).count() == 0
    assert await ApiToken.filter(owner_id=owner.id, revoked_at=None).count() == 0
    told = await OutboxMessage.get(template=Template.PASSWORD_RESET_DONE.value)
    assert told.recipient == OWNER
    event = await ActivityEvent.get(type="password.reset")
    assert (event.subject_id, event.data["via"], event.data["app_passwords_revoked"]) == (
        owner.id,
        "code",
        1,
    )
    assert (event.data["sessions_revoked"], event.data["tokens_revoked"]) == (2, 1)
    signed_in = await accounts.sign_in(services, META, login=OWNER, password=NEW_PASSWORD)
    assert signed_in.second_factor is not None


async def test_rec1_a_reset_cancels_a_pending_login_email_change(services: Services) -> None:
    """Someone holding the account asked to move its login e-mail to an address of theirs; the
    owner's reset must leave them no confirmation link to take it back with."""
    owner = await _owner(services)
    intruder = await sessions.authenticate(services, await _session_token(services, owner))
    assert intruder is not None
    await login_email.request_login_email_change(
        services,
        META,
        intruder,
        new_email="intruder@example.org",
        current_password=factories.PASSWORD,
    )
    message = await OutboxMessage.get(recipient="intruder@example.org")
    (link,) = links_in(message.payload["text"])
    (token,) = parse_qs(urlsplit(link).fragment.split("?", 1)[1])["token"]

    recovery_id = await _ask_code(services, OWNER)
    code = await _code_sent_to(OWNER)
    await recovery.reset_password(
        services, META, recovery_id=recovery_id, code=code, new_password=NEW_PASSWORD
    )
    refused = await _refused(login_email.confirm_login_email_change(services, META, token=token))

    assert (refused.code, refused.field) == (ErrorCode.LOGIN_EMAIL_CHANGE_INVALID, "token")
    assert (await User.get(id=owner.id)).email == OWNER
    assert await EmailChange.all().count() == 0


async def _session_token(services: Services, user: User) -> str:
    """A second web session of the owner (the sign-up opened the first)."""
    issued = await sessions.open_session(services, user, META, persistent=False)
    return issued.token


async def test_rec1_code_by_sms_goes_through_the_sms_outbox(services: Services) -> None:
    await _owner(services)

    recovery_id = await _ask_code(services, OWNER, RecoveryChannel.SMS)
    message = await OutboxMessage.get(channel=OutboxChannel.SMS)
    (code,) = re.findall(r"\b\d{8}\b", message.payload["text"])
    await recovery.reset_password(
        services, META, recovery_id=recovery_id, code=code, new_password=NEW_PASSWORD
    )

    assert message.recipient == "+41791234567"
    assert await RecoveryRequest.filter(used_at=None).count() == 0


async def test_rec1_code_expires_after_thirty_minutes(
    services: Services, clock: ManualClock
) -> None:
    owner = await _owner(services)
    recovery_id = await _ask_code(services, OWNER)
    code = await _code_sent_to(OWNER)

    clock.advance(timedelta(minutes=30))
    refused = await _refused(
        recovery.reset_password(
            services, META, recovery_id=recovery_id, code=code, new_password=NEW_PASSWORD
        )
    )

    assert (refused.code, refused.field) == (ErrorCode.RECOVERY_CODE_EXPIRED, "code")
    assert (await User.get(id=owner.id)).password_hash == owner.password_hash


async def test_rec1_code_is_single_use(services: Services) -> None:
    await _owner(services)
    recovery_id = await _ask_code(services, OWNER)
    code = await _code_sent_to(OWNER)
    await recovery.reset_password(
        services, META, recovery_id=recovery_id, code=code, new_password=NEW_PASSWORD
    )
    after_first = (await User.get(email=OWNER)).password_hash

    refused = await _refused(
        recovery.reset_password(
            services,
            META,
            recovery_id=recovery_id,
            code=code,
            new_password="another fine sentence",
        )
    )

    assert refused.code is ErrorCode.RECOVERY_CODE_INVALID
    assert (await User.get(email=OWNER)).password_hash == after_first


async def test_rec1_a_new_code_replaces_the_previous_one(services: Services) -> None:
    await _owner(services)
    asked = await recovery.request_password_reset(services, META, login=OWNER)
    option = _option(asked, RecoveryChannel.LOGIN_EMAIL)
    await recovery.send_recovery_code(
        services, META, recovery_id=asked.recovery_id, chosen_option=option
    )
    first = await _code_sent_to(OWNER)
    await recovery.send_recovery_code(
        services, META, recovery_id=asked.recovery_id, chosen_option=option
    )
    second = await _code_sent_to(OWNER)
    assert first != second

    refused = await _refused(
        recovery.reset_password(
            services, META, recovery_id=asked.recovery_id, code=first, new_password=NEW_PASSWORD
        )
    )
    await recovery.reset_password(
        services, META, recovery_id=asked.recovery_id, code=second, new_password=NEW_PASSWORD
    )

    assert refused.code is ErrorCode.RECOVERY_CODE_INVALID


async def test_rec1_a_code_of_another_account_is_refused(services: Services) -> None:
    owner = await _owner(services)
    await _owner(services, "someone.else@example.ch")
    own_request = await _ask_code(services, OWNER)
    await _ask_code(services, "someone.else@example.ch")
    other_code = await _code_sent_to("someone.else@example.ch")

    refused = await _refused(
        recovery.reset_password(
            services, META, recovery_id=own_request, code=other_code, new_password=NEW_PASSWORD
        )
    )

    assert refused.code is ErrorCode.RECOVERY_CODE_INVALID
    assert (await User.get(id=owner.id)).password_hash == owner.password_hash
    rejected = await ActivityEvent.get(type="recovery.code_rejected")
    assert rejected.subject_id == owner.id


async def test_rec1_attempts_limited_per_recovery(services: Services) -> None:
    owner = await _owner(services)
    recovery_id = await _ask_code(services, OWNER)
    code = await _code_sent_to(OWNER)
    limit = recovery.CODE_ATTEMPTS_PER_RECOVERY.limit

    wrong = [
        (
            await _refused(
                recovery.reset_password(
                    services,
                    META,
                    recovery_id=recovery_id,
                    code=f"{n:08d}",
                    new_password=NEW_PASSWORD,
                )
            )
        ).code
        for n in range(limit)
    ]
    # Even the right code is refused once the request's budget is spent.
    throttled = await _refused(
        recovery.reset_password(
            services, META, recovery_id=recovery_id, code=code, new_password=NEW_PASSWORD
        )
    )

    assert wrong == [ErrorCode.RECOVERY_CODE_INVALID] * limit
    assert throttled.code is ErrorCode.TOO_MANY_ATTEMPTS and throttled.retry_after_seconds
    assert (await User.get(id=owner.id)).password_hash == owner.password_hash


async def test_rec1_attempts_limited_per_account_across_requests(services: Services) -> None:
    owner = await _owner(services)
    limit = recovery.CODE_ATTEMPTS_PER_ACCOUNT.limit
    per_request = recovery.CODE_ATTEMPTS_PER_RECOVERY.limit
    codes: list[ErrorCode] = []
    while len(codes) < limit:
        asked = await recovery.request_password_reset(
            services, RequestMeta(ip=f"198.51.100.{len(codes) + 50}"), login=OWNER
        )
        for _ in range(min(per_request, limit - len(codes))):
            error = await _refused(
                recovery.reset_password(
                    services,
                    RequestMeta(ip=f"198.51.100.{len(codes) + 50}"),
                    recovery_id=asked.recovery_id,
                    code="00000000",
                    new_password=NEW_PASSWORD,
                )
            )
            codes.append(error.code)
    fresh = await recovery.request_password_reset(
        services, RequestMeta(ip="192.0.2.1"), login=OWNER
    )

    throttled = await _refused(
        recovery.reset_password(
            services,
            RequestMeta(ip="192.0.2.1"),
            recovery_id=fresh.recovery_id,
            code="00000000",
            new_password=NEW_PASSWORD,
        )
    )

    assert codes == [ErrorCode.RECOVERY_CODE_INVALID] * limit
    assert throttled.code is ErrorCode.TOO_MANY_ATTEMPTS
    assert (await User.get(id=owner.id)).password_hash == owner.password_hash


async def test_rec1_requests_limited_per_ip_and_per_login(services: Services) -> None:
    per_login = recovery.RESET_REQUESTS_PER_LOGIN.limit
    for _ in range(per_login):
        await recovery.request_password_reset(services, META, login="same@example.ch")
    by_login = await _refused(
        recovery.request_password_reset(services, META, login="same@example.ch")
    )
    per_ip = recovery.RESET_REQUESTS_PER_IP.limit
    for n in range(per_ip - per_login - 1):
        await recovery.request_password_reset(services, META, login=f"user{n}@example.ch")
    by_ip = await _refused(
        recovery.request_password_reset(services, META, login="fresh@example.ch")
    )

    assert by_login.code is ErrorCode.TOO_MANY_ATTEMPTS
    assert by_ip.code is ErrorCode.TOO_MANY_ATTEMPTS


async def test_rec1_sends_limited_per_recovery(services: Services) -> None:
    await _owner(services)
    asked = await recovery.request_password_reset(services, META, login=OWNER)
    option = _option(asked, RecoveryChannel.RECOVERY_EMAIL)
    for _ in range(recovery.CODES_SENT_PER_RECOVERY.limit):
        await recovery.send_recovery_code(
            services, META, recovery_id=asked.recovery_id, chosen_option=option
        )

    refused = await _refused(
        recovery.send_recovery_code(
            services, META, recovery_id=asked.recovery_id, chosen_option=option
        )
    )

    assert refused.code is ErrorCode.TOO_MANY_ATTEMPTS
    assert await OutboxMessage.filter(recipient="a.m@bluewin.ch").count() == (
        recovery.CODES_SENT_PER_RECOVERY.limit
    )


async def test_rec1_bad_input_is_typed_and_changes_nothing(services: Services) -> None:
    owner = await _owner(services)
    asked = await recovery.request_password_reset(services, META, login=OWNER)
    await recovery.send_recovery_code(
        services,
        META,
        recovery_id=asked.recovery_id,
        chosen_option=_option(asked, RecoveryChannel.LOGIN_EMAIL),
    )
    code = await _code_sent_to(OWNER)
    sent_before = await OutboxMessage.all().count()

    refusals = [
        await _refused(recovery.request_password_reset(services, META, login="   ")),
        await _refused(recovery.request_password_reset(services, META, login="a" * 300)),
        await _refused(
            recovery.send_recovery_code(
                services, META, recovery_id="forged", chosen_option=asked.options[0].id
            )
        ),
        await _refused(
            recovery.send_recovery_code(
                services, META, recovery_id=asked.recovery_id, chosen_option="LOGIN_EMAIL"
            )
        ),
        await _refused(
            recovery.reset_password(
                services, META, recovery_id=asked.recovery_id, code=code, new_password="short"
            )
        ),
        await _refused(
            recovery.reset_password(
                services,
                META,
                recovery_id=asked.recovery_id,
                code=code,
                new_password="Anna Muster",
            )
        ),
    ]

    assert [(r.code, r.field) for r in refusals] == [
        (ErrorCode.INVALID_INPUT, "login"),
        (ErrorCode.INVALID_INPUT, "login"),
        (ErrorCode.RECOVERY_REQUEST_INVALID, "recoveryId"),
        (ErrorCode.INVALID_INPUT, "optionId"),
        (ErrorCode.PASSWORD_TOO_SHORT, "newPassword"),
        (ErrorCode.PASSWORD_TOO_COMMON, "newPassword"),
    ]
    assert await OutboxMessage.all().count() == sent_before
    assert (await User.get(id=owner.id)).password_hash == owner.password_hash
    # A weak password does not spend the code: the owner tries again with a better one.
    await recovery.reset_password(
        services, META, recovery_id=asked.recovery_id, code=code, new_password=NEW_PASSWORD
    )


async def test_rec1_generated_username_recovers_too(services: Services) -> None:
    owner = await _owner(services)
    await User.filter(id=owner.id).update(email=None, generated_username="am4821")

    recovery_id = await _ask_code(services, "AM4821", RecoveryChannel.RECOVERY_EMAIL)
    code = await _code_sent_to("a.m@bluewin.ch")
    await recovery.reset_password(
        services, META, recovery_id=recovery_id, code=code, new_password=NEW_PASSWORD
    )

    assert await verify_password((await User.get(id=owner.id)).password_hash, NEW_PASSWORD)
    told = await OutboxMessage.get(template=Template.PASSWORD_RESET_DONE.value)
    assert told.recipient == "a.m@bluewin.ch"


async def test_rec1_sends_limited_per_ip_across_logins(services: Services) -> None:
    limit = recovery.CODES_SENT_PER_IP.limit
    per_request = recovery.CODES_SENT_PER_RECOVERY.limit
    sent = 0
    n = 0
    while sent < limit:
        asked = await recovery.request_password_reset(services, META, login=f"s{n}@example.ch")
        n += 1
        for _ in range(min(per_request, limit - sent)):
            await recovery.send_recovery_code(
                services, META, recovery_id=asked.recovery_id, chosen_option=asked.options[0].id
            )
            sent += 1
    fresh = await recovery.request_password_reset(services, META, login="last@example.ch")

    refused = await _refused(
        recovery.send_recovery_code(
            services, META, recovery_id=fresh.recovery_id, chosen_option=fresh.options[0].id
        )
    )
    elsewhere = RequestMeta(ip="192.0.2.9")
    await recovery.send_recovery_code(
        services, elsewhere, recovery_id=fresh.recovery_id, chosen_option=fresh.options[0].id
    )

    assert refused.code is ErrorCode.TOO_MANY_ATTEMPTS


async def test_rec1_code_attempts_limited_per_ip_across_logins(services: Services) -> None:
    owner = await _owner(services)
    limit = recovery.CODE_ATTEMPTS_PER_IP.limit
    per_request = recovery.CODE_ATTEMPTS_PER_RECOVERY.limit
    tried = 0
    n = 0
    while tried < limit:
        asked = await recovery.request_password_reset(services, META, login=f"t{n}@example.ch")
        n += 1
        for _ in range(min(per_request, limit - tried)):
            await _refused(
                recovery.reset_password(
                    services,
                    META,
                    recovery_id=asked.recovery_id,
                    code="00000000",
                    new_password=NEW_PASSWORD,
                )
            )
            tried += 1
    # The owner's genuine code, from the same address, is refused: the address is spent.
    recovery_id = await _ask_code(services, OWNER)
    code = await _code_sent_to(OWNER)

    refused = await _refused(
        recovery.reset_password(
            services, META, recovery_id=recovery_id, code=code, new_password=NEW_PASSWORD
        )
    )

    assert refused.code is ErrorCode.TOO_MANY_ATTEMPTS
    assert (await User.get(id=owner.id)).password_hash == owner.password_hash


async def test_rec1_the_job_runner_forgets_expired_requests(
    services: Services, clock: ManualClock
) -> None:
    await recovery.request_password_reset(services, META, login="gone@example.ch")
    clock.advance(recovery.REQUEST_LIFETIME - timedelta(seconds=1))
    await recovery.request_password_reset(services, META, login="kept@example.ch")
    clock.advance(timedelta(seconds=1))

    await jobs.run_due(services)

    assert await RecoveryRequest.all().count() == 1


@pytest.mark.skipif(BACKEND != "postgres", reason="SQLite runs one write at a time: no row locks")
async def test_rec1_act5_a_reset_and_securing_the_account_at_once_never_deadlock(
    services: Services,
) -> None:
    """A reset takes the user's row before the recovery request it claims, as "secure my
    account" does before the requests it ends: while securing holds the row, the reset waits,
    holding nothing, then finds its request ended (before, each waited for the other until
    PostgreSQL cancelled one: an internal error, sometimes the owner's)."""
    owner = await _owner(services)
    recovery_id = await _ask_code(services, OWNER)
    code = await _code_sent_to(OWNER)
    actor = await sessions.authenticate(services, await _session_token(services, owner))
    assert actor is not None

    async def secure() -> None:
        await account_security.secure_account(services, META, actor)

    async def reset() -> DomainError | None:
        try:
            await recovery.reset_password(
                services, META, recovery_id=recovery_id, code=code, new_password=NEW_PASSWORD
            )
        except DomainError as refused:
            return refused
        return None

    refused = await locks.change_while_waited_on(owner.id, secure, reset)

    assert refused is not None and refused.code == ErrorCode.RECOVERY_CODE_INVALID
    assert await ActivityEvent.filter(type="account.secured", subject_id=owner.id).exists()
    user = await User.get(id=owner.id)
    assert await verify_password(user.password_hash, factories.PASSWORD)
