"""Push approval with number matching (MFA-4) through the resolvers on the real database: devices,
requests, answers, the waiting sign-in; the device credential's reach over the whole schema."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gardien.clock import ManualClock
from gardien.models.activity import ActivityEvent
from gardien.models.enums import ApprovalStatus, TwoFactorKind
from gardien.models.mfa import BackupCode, PushApproval, TwoFactorMethod
from gardien.models.organisations import UserBlock
from gardien.models.sessions import SignInChallenge
from gardien.resolvers import (
    accounts,
    app_passwords,
    authz,
    events,
    push_approvals,
    second_factor,
    sessions,
    two_factor,
)
from gardien.resolvers.authz import Actor
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from tests import factories
from tests.conftest import GraphQLClient
from tests.resolvers.test_two_factor import _operation_for, _root_fields

pytestmark = pytest.mark.usefixtures("database")
PUSH = second_factor.SecondFactorMethod.PUSH
BROWSER = RequestMeta(ip="198.51.100.23", country="FR", device="Firefox on Linux")
PHONE = RequestMeta(ip="203.0.113.99", country="CH", device="Gardien app on Android")


async def _web_actor(services: Services, token: str) -> Actor:
    actor = await sessions.authenticate(services, token)
    assert actor is not None
    return actor


async def _with_device(
    services: Services, email: str, label: str = "Pixel"
) -> tuple[accounts.SignUpResult, push_approvals.RegisteredDevice, Actor]:
    """A signed-up user whose phone is registered: (sign-up, registration, the phone's actor)."""
    signed_up = await factories.sign_up(services, email=email)
    web = await _web_actor(services, signed_up.session.token)
    registered = await push_approvals.register_device(services, PHONE, web, label=label)
    phone = await push_approvals.authenticate_device(services, registered.credential)
    assert phone is not None
    return signed_up, registered, phone


async def _challenge(services: Services, email: str) -> str:
    result = await accounts.sign_in(services, BROWSER, login=email, password=factories.PASSWORD)
    assert result.second_factor is not None
    return result.second_factor.challenge_id


async def _complete(services: Services, challenge_id: str) -> second_factor.CompletedSignIn:
    return await second_factor.complete(
        services, BROWSER, challenge_id=challenge_id, method=PUSH, code=None
    )


async def _refusal(services: Services, challenge_id: str) -> ErrorCode:
    with pytest.raises(DomainError) as refused:
        await _complete(services, challenge_id)
    return refused.value.code


async def _types(user_id: int) -> list[str]:
    rows = await ActivityEvent.filter(subject_id=user_id, type__startswith="two_factor.push")
    return [row.type for row in sorted(rows, key=lambda r: r.id)]


# --- Devices -------------------------------------------------------------------------------------


async def test_mfa4_registering_a_device_enrols_push_and_shows_its_credential_once(
    services: Services,
) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    web = await _web_actor(services, signed_up.session.token)

    registered = await push_approvals.register_device(
        services, PHONE, web, label="  Ada's   Pixel ", push_token="fcm:abc123"
    )

    method = await TwoFactorMethod.get(id=registered.method.id)
    assert (method.kind, method.label, method.confirmed_at) == (
        TwoFactorKind.PUSH,
        "Ada's Pixel",
        services.clock.now(),
    )
    assert registered.credential.startswith(push_approvals.DEVICE_CREDENTIAL_PREFIX)
    # Stored as a keyed digest and ciphertext: neither secret is in the row.
    assert method.device_credential_hash == services.keyring.token_digest(
        registered.credential, push_approvals.DEVICE_CREDENTIAL_PURPOSE
    )
    assert registered.credential not in str(method.device_credential_hash)
    assert method.push_token_encrypted is not None
    assert b"fcm:abc123" not in method.push_token_encrypted
    # The first second factor turns 2FA on, with backup codes shown once.
    assert len(registered.backup_codes) == two_factor.BACKUP_CODE_COUNT
    assert await BackupCode.filter(user_id=signed_up.user.id).count() == 10
    enrolled = await ActivityEvent.get(type="two_factor.enrolled", subject_id=signed_up.user.id)
    assert enrolled.data == {"kind": "PUSH", "method_id": method.id}
    assert await two_factor.confirmed_kinds(signed_up.user.id) == [TwoFactorKind.PUSH]


async def test_mfa4_device_credential_authenticates_the_device_only_until_removed(
    services: Services,
) -> None:
    signed_up, registered, phone = await _with_device(services, "ada@example.test")
    web = await _web_actor(services, signed_up.session.token)

    await two_factor.remove_method(
        services, BROWSER, web, method_id=registered.method.id, password=factories.PASSWORD
    )

    assert phone.device == authz.SignedInDevice(method_id=registered.method.id)
    assert phone.user_id == signed_up.user.id and phone.session is None
    assert await push_approvals.authenticate_device(services, registered.credential) is None
    assert await push_approvals.authenticate_device(services, "gdv_forged") is None
    # A session token is not a device credential, whatever it opens elsewhere.
    assert await push_approvals.authenticate_device(services, signed_up.session.token) is None
    removed = await ActivityEvent.get(type="two_factor.removed", subject_id=signed_up.user.id)
    assert removed.data["kind"] == "PUSH"


async def test_mfa4_blocked_users_device_opens_nothing_and_asks_nothing(
    services: Services,
) -> None:
    """BLK-3: a block stops web access; there is no sign-in left for a device to approve."""
    signed_up, registered, _ = await _with_device(services, "ada@example.test")
    challenge_id = await _challenge(services, "ada@example.test")
    await UserBlock.create(
        organisation_id=signed_up.organisation.id,
        user_id=signed_up.user.id,
        justification="Phone lost, reported by the administrator",
        created_at=services.clock.now(),
    )

    with pytest.raises(DomainError) as refused:
        await second_factor.request_login_approval(services, BROWSER, challenge_id=challenge_id)

    assert await push_approvals.authenticate_device(services, registered.credential) is None
    assert refused.value.code == ErrorCode.ACCOUNT_BLOCKED
    assert await PushApproval.all().count() == 0


async def test_mfa4_registration_refuses_bad_labels_and_app_sessions(services: Services) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    web = await _web_actor(services, signed_up.session.token)
    bob, _, phone = await _with_device(services, "bob@example.test")
    bob_web = await _web_actor(services, bob.session.token)
    app_password = await app_passwords.create(services, PHONE, bob_web, label="Thunderbird")
    app_session = await app_passwords.authenticate_app(
        services, PHONE, login="bob@example.test", app_password=app_password.secret
    )
    app = await _web_actor(services, app_session.token)

    with pytest.raises(DomainError) as bad_label:
        await push_approvals.register_device(services, PHONE, web, label="\x07")
    with pytest.raises(DomainError) as bad_push_token:
        await push_approvals.register_device(
            services, PHONE, web, label="Pixel", push_token="fcm:\x00"
        )
    with pytest.raises(DomainError) as by_device:
        await push_approvals.register_device(services, PHONE, phone, label="Another")
    with pytest.raises(DomainError) as by_app:
        await push_approvals.register_device(services, PHONE, app, label="Another")

    assert (bad_label.value.code, bad_label.value.field) == (ErrorCode.INVALID_INPUT, "label")
    assert (bad_push_token.value.code, bad_push_token.value.field) == (
        ErrorCode.INVALID_INPUT,
        "pushToken",
    )
    assert by_device.value.code == ErrorCode.FORBIDDEN
    assert by_app.value.code == ErrorCode.FORBIDDEN
    assert await TwoFactorMethod.filter(user_id=signed_up.user.id).count() == 0
    assert await TwoFactorMethod.filter(user_id=bob.user.id, kind=TwoFactorKind.PUSH).count() == 1


async def test_mfa4_an_account_holds_a_bounded_number_of_devices(services: Services) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    web = await _web_actor(services, signed_up.session.token)
    for n in range(push_approvals.MAX_DEVICES):
        await push_approvals.register_device(services, PHONE, web, label=f"Phone {n}")

    with pytest.raises(DomainError) as refused:
        await push_approvals.register_device(services, PHONE, web, label="One too many")

    assert (refused.value.code, refused.value.field) == (ErrorCode.INVALID_INPUT, "label")
    assert (
        await TwoFactorMethod.filter(user_id=signed_up.user.id, kind=TwoFactorKind.PUSH).count()
        == push_approvals.MAX_DEVICES
    )


# --- Requests and answers ---------------------------------------------------------------------


async def test_mfa4_request_carries_where_the_sign_in_comes_from_and_three_numbers(
    services: Services,
) -> None:
    signed_up, _, _ = await _with_device(services, "ada@example.test")
    challenge_id = await _challenge(services, "ada@example.test")

    issued = await second_factor.request_login_approval(
        services, BROWSER, challenge_id=challenge_id
    )

    approval = await PushApproval.get(id=issued.approval.id)
    numbers = push_approvals.candidates_of(approval)
    assert (approval.status, approval.ip, approval.country, approval.device) == (
        ApprovalStatus.PENDING,
        "198.51.100.23",
        "FR",
        "Firefox on Linux",
    )
    assert approval.expires_at == services.clock.now() + timedelta(minutes=2)
    assert approval.number in numbers
    assert len(set(numbers)) == 3 and all(10 <= n <= 99 for n in numbers)
    requested = await ActivityEvent.get(type="two_factor.push_requested")
    assert (requested.subject_id, requested.actor_id, requested.country) == (
        signed_up.user.id,
        None,
        "FR",
    )
    # The numbers are in no event: the log is no oracle for the right one.
    assert requested.data == {
        "approval_id": issued.approval_id,
        "expires_at": approval.expires_at.isoformat(),
    }


async def test_mfa4_right_number_approves_and_the_waiting_sign_in_completes(
    services: Services,
) -> None:
    signed_up, registered, phone = await _with_device(services, "ada@example.test")
    challenge_id = await _challenge(services, "ada@example.test")
    issued = await second_factor.request_login_approval(
        services, BROWSER, challenge_id=challenge_id
    )
    waiting = await _refusal(services, challenge_id)

    answered = await push_approvals.answer(
        services,
        PHONE,
        phone,
        approval_id=issued.approval_id,
        approve=True,
        number=issued.approval.number,
    )
    completed = await _complete(services, challenge_id)

    assert waiting == ErrorCode.LOGIN_APPROVAL_PENDING
    assert (answered.status, answered.answered_by_id) == (
        ApprovalStatus.APPROVED,
        registered.method.id,
    )
    assert completed.session.session.user_id == signed_up.user.id
    succeeded = await ActivityEvent.filter(type="sign_in.succeeded").order_by("-id").first()
    assert succeeded is not None and succeeded.data == {"second_factor": "PUSH"}
    assert await _types(signed_up.user.id) == [
        "two_factor.push_requested",
        "two_factor.push_approved",
    ]
    # One approval, one session: the finished challenge opens nothing more.
    assert await _refusal(services, challenge_id) == ErrorCode.CHALLENGE_EXPIRED


async def test_mfa4_polling_while_pending_spends_no_attempt(services: Services) -> None:
    """The browser polls every couple of seconds for the two minutes: waiting is not a guess."""
    _, _, phone = await _with_device(services, "ada@example.test")
    challenge_id = await _challenge(services, "ada@example.test")
    issued = await second_factor.request_login_approval(
        services, BROWSER, challenge_id=challenge_id
    )

    polled = [await _refusal(services, challenge_id) for _ in range(3 * 12)]
    await push_approvals.answer(
        services,
        PHONE,
        phone,
        approval_id=issued.approval_id,
        approve=True,
        number=issued.approval.number,
    )
    completed = await _complete(services, challenge_id)

    assert set(polled) == {ErrorCode.LOGIN_APPROVAL_PENDING}
    assert completed.session.token
    # The challenge's own count too: only the completing call is an attempt.
    challenge = await SignInChallenge.get(
        token_hash=services.keyring.token_digest(challenge_id, accounts.CHALLENGE_PURPOSE)
    )
    assert challenge.attempts == 1


async def test_mfa4_wrong_number_denies_the_sign_in_and_is_recorded(services: Services) -> None:
    signed_up, _, phone = await _with_device(services, "ada@example.test")
    challenge_id = await _challenge(services, "ada@example.test")
    issued = await second_factor.request_login_approval(
        services, BROWSER, challenge_id=challenge_id
    )
    (decoy, *_) = [
        n for n in push_approvals.candidates_of(issued.approval) if n != issued.approval.number
    ]

    with pytest.raises(DomainError) as wrong:
        await push_approvals.answer(
            services, PHONE, phone, approval_id=issued.approval_id, approve=True, number=decoy
        )
    with pytest.raises(DomainError) as again:
        await push_approvals.answer(
            services,
            PHONE,
            phone,
            approval_id=issued.approval_id,
            approve=True,
            number=issued.approval.number,
        )

    assert (wrong.value.code, wrong.value.field) == (
        ErrorCode.LOGIN_APPROVAL_WRONG_NUMBER,
        "number",
    )
    assert again.value.code == ErrorCode.LOGIN_APPROVAL_ANSWERED
    assert (await PushApproval.get(id=issued.approval.id)).status == ApprovalStatus.DENIED
    assert await _refusal(services, challenge_id) == ErrorCode.LOGIN_APPROVAL_DENIED
    assert await _types(signed_up.user.id) == [
        "two_factor.push_requested",
        "two_factor.push_wrong_number",
        "two_factor.push_answer_refused",
    ]
    failed = await ActivityEvent.get(type="sign_in.second_factor_failed")
    assert failed.data == {"method": "PUSH", "reason": "login_approval_denied"}


async def test_mfa4_approving_without_a_number_denies(services: Services) -> None:
    _, _, phone = await _with_device(services, "ada@example.test")
    challenge_id = await _challenge(services, "ada@example.test")
    issued = await second_factor.request_login_approval(
        services, BROWSER, challenge_id=challenge_id
    )

    with pytest.raises(DomainError) as refused:
        await push_approvals.answer(
            services, PHONE, phone, approval_id=issued.approval_id, approve=True, number=None
        )

    assert refused.value.code == ErrorCode.LOGIN_APPROVAL_WRONG_NUMBER
    assert await _refusal(services, challenge_id) == ErrorCode.LOGIN_APPROVAL_DENIED


async def test_mfa4_no_denies_the_sign_in(services: Services) -> None:
    signed_up, _, phone = await _with_device(services, "ada@example.test")
    challenge_id = await _challenge(services, "ada@example.test")
    issued = await second_factor.request_login_approval(
        services, BROWSER, challenge_id=challenge_id
    )

    answered = await push_approvals.answer(
        services, PHONE, phone, approval_id=issued.approval_id, approve=False, number=None
    )

    assert answered.status == ApprovalStatus.DENIED
    assert await _refusal(services, challenge_id) == ErrorCode.LOGIN_APPROVAL_DENIED
    assert await _types(signed_up.user.id) == [
        "two_factor.push_requested",
        "two_factor.push_denied",
    ]


async def test_mfa4_requests_expire_after_two_minutes(
    services: Services, clock: ManualClock
) -> None:
    signed_up, _, phone = await _with_device(services, "ada@example.test")
    challenge_id = await _challenge(services, "ada@example.test")
    issued = await second_factor.request_login_approval(
        services, BROWSER, challenge_id=challenge_id
    )
    clock.advance(timedelta(minutes=2) - timedelta(seconds=1))
    still_waiting = await _refusal(services, challenge_id)
    clock.advance(timedelta(seconds=1))

    expired = await _refusal(services, challenge_id)
    with pytest.raises(DomainError) as late:
        await push_approvals.answer(
            services,
            PHONE,
            phone,
            approval_id=issued.approval_id,
            approve=True,
            number=issued.approval.number,
        )

    assert (still_waiting, expired) == (
        ErrorCode.LOGIN_APPROVAL_PENDING,
        ErrorCode.LOGIN_APPROVAL_EXPIRED,
    )
    assert late.value.code == ErrorCode.LOGIN_APPROVAL_EXPIRED
    assert (await PushApproval.get(id=issued.approval.id)).status == ApprovalStatus.EXPIRED
    # Recorded once, by whoever saw it first.
    assert await _types(signed_up.user.id) == [
        "two_factor.push_requested",
        "two_factor.push_expired",
        "two_factor.push_answer_refused",
    ]


async def test_mfa4_another_users_device_cannot_answer(services: Services) -> None:
    """Bad input: a request answered by another user's device. Not found (as an unknown one,
    nothing about it leaks), nothing changed, recorded on the answering device's account."""
    ada, _, _ = await _with_device(services, "ada@example.test")
    mallory, _, mallory_phone = await _with_device(services, "mallory@example.test")
    challenge_id = await _challenge(services, "ada@example.test")
    issued = await second_factor.request_login_approval(
        services, BROWSER, challenge_id=challenge_id
    )

    with pytest.raises(DomainError) as refused:
        await push_approvals.answer(
            services,
            PHONE,
            mallory_phone,
            approval_id=issued.approval_id,
            approve=True,
            number=issued.approval.number,
        )
    with pytest.raises(DomainError) as unknown:
        await push_approvals.answer(
            services,
            PHONE,
            mallory_phone,
            approval_id="00000000-0000-4000-8000-000000000000",
            approve=True,
            number=10,
        )

    assert (refused.value.code, refused.value.message) == (
        unknown.value.code,
        unknown.value.message,
    )
    assert refused.value.code == ErrorCode.NOT_FOUND
    assert (await PushApproval.get(id=issued.approval.id)).status == ApprovalStatus.PENDING
    assert await _refusal(services, challenge_id) == ErrorCode.LOGIN_APPROVAL_PENDING
    assert await _types(ada.user.id) == ["two_factor.push_requested"]
    assert await _types(mallory.user.id) == ["two_factor.push_answer_refused"]
    event = await ActivityEvent.get(type="two_factor.push_answer_refused")
    assert event.data["reason"] == "other_user"


async def test_mfa4_push_requests_are_rate_limited_per_account(services: Services) -> None:
    signed_up, _, _ = await _with_device(services, "ada@example.test")
    challenge_id = await _challenge(services, "ada@example.test")
    for _ in range(push_approvals.REQUESTS_PER_USER.limit):
        await second_factor.request_login_approval(services, BROWSER, challenge_id=challenge_id)
    # A new sign-in (a new password check) does not renew the account's budget.
    second_challenge = await _challenge(services, "ada@example.test")

    refusals = []
    for _ in range(2):
        with pytest.raises(DomainError) as refused:
            await second_factor.request_login_approval(
                services, BROWSER, challenge_id=second_challenge
            )
        refusals.append(refused.value)

    assert [r.code for r in refusals] == [ErrorCode.TOO_MANY_ATTEMPTS] * 2
    assert all(r.retry_after_seconds and r.retry_after_seconds <= 600 for r in refusals)
    assert await PushApproval.filter(user_id=signed_up.user.id).count() == 5
    # The exhausting attempt is recorded once, not each one after it.
    refused_events = await ActivityEvent.filter(type="two_factor.push_request_refused")
    assert [e.data for e in refused_events] == [{"reason": "throttled:push_request_user"}]


async def test_mfa4_request_needs_a_live_challenge_and_a_device(
    services: Services, clock: ManualClock
) -> None:
    await factories.confirm_totp(
        services, (await factories.sign_up(services, email="totp@example.test")).user
    )
    _, _, _ = await _with_device(services, "ada@example.test")
    totp_challenge = await _challenge(services, "totp@example.test")
    old_challenge = await _challenge(services, "ada@example.test")
    clock.advance(accounts.CHALLENGE_LIFETIME)

    codes = []
    for challenge_id in ("forged", old_challenge, totp_challenge):
        with pytest.raises(DomainError) as refused:
            await second_factor.request_login_approval(services, BROWSER, challenge_id=challenge_id)
        codes.append(refused.value.code)

    assert codes == [
        ErrorCode.CHALLENGE_EXPIRED,
        ErrorCode.CHALLENGE_EXPIRED,
        ErrorCode.CHALLENGE_EXPIRED,
    ]
    clock.advance(-accounts.CHALLENGE_LIFETIME)
    with pytest.raises(DomainError) as no_device:
        await second_factor.request_login_approval(services, BROWSER, challenge_id=totp_challenge)
    assert (no_device.value.code, no_device.value.field) == (ErrorCode.INVALID_INPUT, "method")
    assert await PushApproval.all().count() == 0


async def test_mfa4_device_stream_starts_at_the_oldest_pending_request(
    services: Services, clock: ManualClock
) -> None:
    """A phone subscribing gets the requests still pending replayed (EVT-2), none before."""
    signed_up, _, phone = await _with_device(services, "ada@example.test")
    quiet = await push_approvals.device_stream(services, phone)
    challenge_id = await _challenge(services, "ada@example.test")
    await second_factor.request_login_approval(services, BROWSER, challenge_id=challenge_id)
    clock.advance(push_approvals.APPROVAL_LIFETIME)
    pending = await second_factor.request_login_approval(
        services, BROWSER, challenge_id=challenge_id
    )

    stream = await push_approvals.device_stream(services, phone)

    replayed = await events.replay(stream, stream.after_id)
    assert quiet.after_id is None
    assert (stream.user_id, stream.types, stream.root_field) == (
        signed_up.user.id,
        frozenset({"two_factor.push_requested"}),
        "loginApprovalRequests",
    )
    assert [e.data["approval_id"] for e in replayed] == [pending.approval_id]


# --- What a device credential opens -------------------------------------------------------------

DEVICE_FIELDS = {("mutation", "answerLoginApproval"), ("subscription", "loginApprovalRequests")}


async def test_mfa4_device_credential_opens_only_the_approval_fields_over_every_root_field(
    services: Services,
) -> None:
    """The operation gate, asked for every root field of the schema: a device credential runs
    the approval app's two fields and nothing else; a web session never runs those two."""
    signed_up, _, phone = await _with_device(services, "ada@example.test")
    web = await _web_actor(services, signed_up.session.token)
    fields = _root_fields()

    def gate(actor: Actor) -> dict[tuple[str, str], str]:
        observed = {}
        for operation_type, name in fields:
            try:
                authz.check_operation(actor, operation_type, frozenset({name}))
                observed[(operation_type, name)] = "allowed"
            except DomainError as error:
                observed[(operation_type, name)] = error.code.value
        return observed

    by_device, by_web = gate(phone), gate(web)

    assert len(fields) > 50
    assert by_device == {
        field: "allowed" if field in DEVICE_FIELDS else ErrorCode.FORBIDDEN.value
        for field in fields
    }
    assert {field: by_web[field] for field in DEVICE_FIELDS} == dict.fromkeys(
        DEVICE_FIELDS, ErrorCode.UNAUTHENTICATED.value
    )
    assert {f for f, outcome in by_web.items() if outcome != "allowed"} == DEVICE_FIELDS
    # A device field with another in one operation is refused as a whole.
    with pytest.raises(DomainError):
        authz.check_operation(phone, "mutation", frozenset({"answerLoginApproval", "signOut"}))


async def test_mfa4_served_device_credential_over_http_for_every_query_and_mutation(
    services: Services, gql: GraphQLClient
) -> None:
    """The same through the HTTP transport: `Authorization: Device <credential>` reaches the
    engine's gate, which refuses every query and mutation but the answer."""
    _, registered, _ = await _with_device(services, "ada@example.test")

    observed = {}
    for operation_type, name in _root_fields():
        if operation_type == "subscription":
            continue
        document, variables = _operation_for(operation_type, name)
        response = await gql.post(
            document, variables, authorization=f"Device {registered.credential}"
        )
        assert response.status_code == 200, (name, response.text)
        body = response.json()
        codes = [e["extensions"]["code"] for e in body.get("errors", [])]
        observed[name] = "refused" if codes == ["FORBIDDEN"] and body["data"] is None else "ran"
    forged = await gql.post("{ viewer { id } }", authorization="Device gdv_forged")

    assert observed == {
        name: "ran" if name == "answerLoginApproval" else "refused"
        for operation_type, name in _root_fields()
        if operation_type != "subscription"
    }
    assert forged.status_code == 401
    assert forged.headers["www-authenticate"] == 'Device error="invalid_token"'
    assert forged.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
