"""Security keys (MFA-2): registration and sign-in with a software authenticator (real WebAuthn
answers, real signatures, verified by fido2) through the resolvers on the real database."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from gardien.clock import ManualClock
from gardien.models.activity import ActivityEvent
from gardien.models.enums import TwoFactorKind
from gardien.models.mfa import BackupCode, SecurityKeyCeremony, TwoFactorMethod
from gardien.models.outbox import OutboxMessage
from gardien.models.sessions import Session, SignInChallenge
from gardien.resolvers import accounts, second_factor, security_keys, sessions, two_factor
from gardien.resolvers.authz import Actor
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.settings import SettingsError, load_settings
from tests import factories
from tests.conftest import GraphQLClient
from tests.webauthn_authenticator import (
    CredentialExcluded,
    NoAllowedCredential,
    SoftAuthenticator,
    b64url,
)

pytestmark = pytest.mark.usefixtures("database")
METHOD = second_factor.SecondFactorMethod
SECRET_KEY = secrets.token_urlsafe(48)


@dataclass
class KeyOwner:
    email: str
    actor: Actor
    key: SoftAuthenticator
    method: TwoFactorMethod
    backup_codes: list[str]


async def _actor(services: Services, token: str) -> Actor:
    actor = await sessions.authenticate(services, token)
    assert actor is not None
    return actor


async def _register(
    services: Services,
    meta: RequestMeta,
    actor: Actor,
    key: SoftAuthenticator,
    nickname: str = "Blue YubiKey",
) -> security_keys.RegisteredKey:
    registration = await security_keys.begin_registration(services, meta, actor)
    return await security_keys.complete_registration(
        services,
        meta,
        actor,
        registration_id=registration.ceremony_id,
        credential=key.create(registration.options),
        nickname=nickname,
    )


async def _key_owner(services: Services, meta: RequestMeta, email: str) -> KeyOwner:
    signed_up = await factories.sign_up(services, email=email)
    actor = await _actor(services, signed_up.session.token)
    key = SoftAuthenticator(services.settings.webauthn_origin)
    registered = await _register(services, meta, actor, key)
    return KeyOwner(email, actor, key, registered.method, registered.backup_codes)


async def _challenge(services: Services, meta: RequestMeta, email: str) -> str:
    result = await accounts.sign_in(services, meta, login=email, password=factories.PASSWORD)
    assert result.second_factor is not None
    return result.second_factor.challenge_id


async def _complete(
    services: Services, meta: RequestMeta, challenge_id: str, credential: object
) -> second_factor.CompletedSignIn:
    return await second_factor.complete(
        services,
        meta,
        challenge_id=challenge_id,
        method=METHOD.SECURITY_KEY,
        code=None,
        credential=credential,
    )


async def _refusal(
    services: Services, meta: RequestMeta, challenge_id: str, credential: object
) -> DomainError:
    with pytest.raises(DomainError) as refused:
        await _complete(services, meta, challenge_id, credential)
    return refused.value


async def _events(type_: str) -> list[dict[str, Any]]:
    return [e.data for e in await ActivityEvent.filter(type=type_).order_by("id")]


async def _attempts(challenge_id: str, services: Services) -> int:
    challenge = await SignInChallenge.get(
        token_hash=services.keyring.token_digest(challenge_id, accounts.CHALLENGE_PURPOSE)
    )
    return challenge.attempts


# --- registration ----------------------------------------------------------------------------


async def test_mfa2_first_key_registers_turns_2fa_on_with_backup_codes(
    services: Services, meta: RequestMeta
) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    actor = await _actor(services, signed_up.session.token)
    key = SoftAuthenticator(services.settings.webauthn_origin)

    registration = await security_keys.begin_registration(services, meta, actor)
    options = registration.options
    pending = await two_factor.has_second_factor(signed_up.user.id)
    registered = await security_keys.complete_registration(
        services,
        meta,
        actor,
        registration_id=registration.ceremony_id,
        credential=key.create(options),
        nickname="  Blue   YubiKey ",
    )

    stored = await TwoFactorMethod.get(id=registered.method.id)
    assert options["rp"] == {"name": "Gardien", "id": services.settings.webauthn_rp_id}
    assert options["attestation"] == "none" and options["excludeCredentials"] == []
    assert options["user"]["name"] == "ada@example.test"
    assert options["user"]["id"] != b64url(str(signed_up.user.id).encode())
    assert options["timeout"] == 120_000
    assert pending is False
    assert (stored.kind, stored.label) == (TwoFactorKind.SECURITY_KEY, "Blue YubiKey")
    assert stored.confirmed_at is not None and stored.sign_count == 0
    assert stored.credential_id == b64url(key.credential_id)
    assert len(registered.backup_codes) == 10
    assert await BackupCode.filter(user_id=signed_up.user.id).count() == 10
    assert await _events("two_factor.enrolled") == [
        {"kind": "SECURITY_KEY", "method_id": stored.id}
    ]
    assert await two_factor.confirmed_kinds(signed_up.user.id) == [TwoFactorKind.SECURITY_KEY]


async def test_mfa2_several_keys_with_nicknames_each_excluded_from_the_next_registration(
    services: Services, meta: RequestMeta
) -> None:
    owner = await _key_owner(services, meta, "ada@example.test")
    second = SoftAuthenticator(services.settings.webauthn_origin)

    registration = await security_keys.begin_registration(services, meta, owner.actor)
    with pytest.raises(CredentialExcluded):
        owner.key.create(registration.options)
    registered = await security_keys.complete_registration(
        services,
        meta,
        owner.actor,
        registration_id=registration.ceremony_id,
        credential=second.create(registration.options),
        nickname="Spare key in the drawer",
    )

    keys = await TwoFactorMethod.filter(user_id=owner.method.user_id).order_by("id")
    assert registration.options["excludeCredentials"] == [
        {"type": "public-key", "id": b64url(owner.key.credential_id)}
    ]
    assert [k.label for k in keys] == ["Blue YubiKey", "Spare key in the drawer"]
    # Only the first second factor of an account comes with backup codes.
    assert registered.backup_codes == []


async def test_mfa2_an_account_holds_a_bounded_number_of_keys(
    services: Services, meta: RequestMeta
) -> None:
    owner = await _key_owner(services, meta, "ada@example.test")
    for n in range(security_keys.MAX_KEYS_PER_USER - 1):
        spare = SoftAuthenticator(services.settings.webauthn_origin)
        await _register(services, meta, owner.actor, spare, f"Spare {n}")

    with pytest.raises(DomainError) as refused:
        await security_keys.begin_registration(services, meta, owner.actor)

    assert refused.value.code == ErrorCode.INVALID_INPUT
    assert (
        await TwoFactorMethod.filter(user_id=owner.method.user_id).count()
        == security_keys.MAX_KEYS_PER_USER
    )
    assert await SecurityKeyCeremony.filter(user_id=owner.method.user_id, used_at=None).count() == 0


async def test_mfa2_the_key_limit_holds_for_a_registration_begun_before_it_was_reached(
    services: Services, meta: RequestMeta
) -> None:
    """Two registrations begun at once can both be in flight: the limit is checked again,
    under the user's row lock, when one completes."""
    owner = await _key_owner(services, meta, "ada@example.test")
    for n in range(security_keys.MAX_KEYS_PER_USER - 2):
        spare = SoftAuthenticator(services.settings.webauthn_origin)
        await _register(services, meta, owner.actor, spare, f"Spare {n}")
    late = SoftAuthenticator(services.settings.webauthn_origin)
    registration = await security_keys.begin_registration(services, meta, owner.actor)
    # The other registration, begun at the same time, completes first.
    await TwoFactorMethod.create(
        user_id=owner.method.user_id,
        kind=TwoFactorKind.SECURITY_KEY,
        label="Completed meanwhile",
        credential_id=b64url(secrets.token_bytes(32)),
        public_key=owner.method.public_key,
        sign_count=0,
        created_at=services.clock.now(),
        confirmed_at=services.clock.now(),
    )

    with pytest.raises(DomainError) as refused:
        await security_keys.complete_registration(
            services,
            meta,
            owner.actor,
            registration_id=registration.ceremony_id,
            credential=late.create(registration.options),
            nickname="One too many",
        )

    assert refused.value.code == ErrorCode.INVALID_INPUT
    assert (
        await TwoFactorMethod.filter(user_id=owner.method.user_id).count()
        == security_keys.MAX_KEYS_PER_USER
    )


async def test_mfa2_registering_again_drops_the_previous_registration(
    services: Services, meta: RequestMeta
) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    actor = await _actor(services, signed_up.session.token)
    key = SoftAuthenticator(services.settings.webauthn_origin)

    first = await security_keys.begin_registration(services, meta, actor)
    await security_keys.begin_registration(services, meta, actor)
    with pytest.raises(DomainError) as refused:
        await security_keys.complete_registration(
            services,
            meta,
            actor,
            registration_id=first.ceremony_id,
            credential=key.create(first.options),
            nickname="Key",
        )

    assert (refused.value.code, refused.value.field) == (ErrorCode.NOT_FOUND, "registrationId")
    assert await TwoFactorMethod.filter(user_id=signed_up.user.id).count() == 0


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"origin": "https://evil.example"}, "wrong_origin"),
        ({"challenge": b64url(b"a challenge the server never made")}, "wrong_challenge"),
        ({"rp_id": "evil.example"}, "wrong_rp_id"),
        ({"user_present": False}, "no_user_presence"),
    ],
)
async def test_mfa2_registration_with_a_bad_answer_is_refused_recorded_and_enrols_nothing(
    services: Services, meta: RequestMeta, bad: dict[str, Any], reason: str
) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    actor = await _actor(services, signed_up.session.token)
    key = SoftAuthenticator(services.settings.webauthn_origin)
    registration = await security_keys.begin_registration(services, meta, actor)

    with pytest.raises(DomainError) as refused:
        await security_keys.complete_registration(
            services,
            meta,
            actor,
            registration_id=registration.ceremony_id,
            credential=key.create(registration.options, **bad),
            nickname="Key",
        )
    # The registration is spent: the right answer afterwards does not enrol either.
    with pytest.raises(DomainError) as spent:
        await security_keys.complete_registration(
            services,
            meta,
            actor,
            registration_id=registration.ceremony_id,
            credential=key.create(registration.options),
            nickname="Key",
        )

    assert (refused.value.code, refused.value.field) == (
        ErrorCode.SECURITY_KEY_REJECTED,
        "credential",
    )
    assert spent.value.code == ErrorCode.NOT_FOUND
    assert await TwoFactorMethod.filter(user_id=signed_up.user.id).count() == 0
    assert await BackupCode.filter(user_id=signed_up.user.id).count() == 0
    assert await _events("two_factor.enrolment_failed") == [
        {"kind": "SECURITY_KEY", "reason": reason}
    ]
    assert await _events("two_factor.enrolled") == []


@pytest.mark.parametrize(
    "credential",
    [
        "not an object",
        {},
        {"id": "x", "rawId": "x", "type": "public-key", "response": {"clientDataJSON": "!!"}},
    ],
)
async def test_mfa2_malformed_registration_answer_is_a_typed_error(
    services: Services, meta: RequestMeta, credential: object
) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    actor = await _actor(services, signed_up.session.token)
    registration = await security_keys.begin_registration(services, meta, actor)

    with pytest.raises(DomainError) as refused:
        await security_keys.complete_registration(
            services,
            meta,
            actor,
            registration_id=registration.ceremony_id,
            credential=credential,
            nickname="Key",
        )

    assert refused.value.code == ErrorCode.SECURITY_KEY_REJECTED
    assert await TwoFactorMethod.filter(user_id=signed_up.user.id).count() == 0
    assert await _events("two_factor.enrolment_failed") == [
        {"kind": "SECURITY_KEY", "reason": "malformed"}
    ]


async def test_mfa2_a_key_answering_with_an_algorithm_not_offered_is_refused_and_enrols_nothing(
    services: Services, meta: RequestMeta
) -> None:
    """WebAuthn §7.1 step 20: fido2 stores any algorithm; one it cannot verify would make every
    later sign-in with the key fail (a 500 at the signature check), so registration refuses it."""
    signed_up = await factories.sign_up(services, email="ada@example.test")
    actor = await _actor(services, signed_up.session.token)
    key = SoftAuthenticator(services.settings.webauthn_origin)
    registration = await security_keys.begin_registration(services, meta, actor)
    offered = {p["alg"] for p in registration.options["pubKeyCredParams"]}
    unknown_algorithm = -999

    with pytest.raises(DomainError) as refused:
        await security_keys.complete_registration(
            services,
            meta,
            actor,
            registration_id=registration.ceremony_id,
            credential=key.create(registration.options, algorithm=unknown_algorithm),
            nickname="Key",
        )

    assert unknown_algorithm not in offered
    assert (refused.value.code, refused.value.field) == (
        ErrorCode.SECURITY_KEY_REJECTED,
        "credential",
    )
    assert await TwoFactorMethod.filter(user_id=signed_up.user.id).count() == 0
    assert await BackupCode.filter(user_id=signed_up.user.id).count() == 0
    assert await _events("two_factor.enrolment_failed") == [
        {"kind": "SECURITY_KEY", "reason": "unsupported_algorithm"}
    ]


@pytest.mark.parametrize(
    "public_key",
    [
        {1: 2, 3: -7, -1: 1, -2: 5, -3: 6},  # coordinates that are not bytes
        {1: 2, 3: -7},  # no curve, no coordinates
        {1: 2, 3: -7, -1: 1, -2: b"\x01" * 32, -3: b"\x02" * 32},  # not a point of P-256
        {1: 1, 3: -8, -1: 6, -2: 7},  # an Ed25519 key that is not bytes
    ],
)
async def test_mfa2_a_key_whose_public_key_cannot_verify_is_refused_and_enrols_nothing(
    services: Services, meta: RequestMeta, public_key: dict[int, Any]
) -> None:
    """A "none" attestation signs nothing at registration, so a broken public key would only show
    at sign-in, every time (before: a 500 for the first two, a refused signature for the rest)."""
    signed_up = await factories.sign_up(services, email="ada@example.test")
    actor = await _actor(services, signed_up.session.token)
    key = SoftAuthenticator(services.settings.webauthn_origin)
    registration = await security_keys.begin_registration(services, meta, actor)

    with pytest.raises(DomainError) as refused:
        await security_keys.complete_registration(
            services,
            meta,
            actor,
            registration_id=registration.ceremony_id,
            credential=key.create(registration.options, public_key=public_key),
            nickname="Key",
        )

    assert (refused.value.code, refused.value.field) == (
        ErrorCode.SECURITY_KEY_REJECTED,
        "credential",
    )
    assert await TwoFactorMethod.filter(user_id=signed_up.user.id).count() == 0
    assert await _events("two_factor.enrolment_failed") == [
        {"kind": "SECURITY_KEY", "reason": "malformed"}
    ]


async def test_mfa2_registration_expires_after_two_minutes(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    actor = await _actor(services, signed_up.session.token)
    key = SoftAuthenticator(services.settings.webauthn_origin)
    registration = await security_keys.begin_registration(services, meta, actor)
    answer = key.create(registration.options)

    clock.advance(security_keys.REGISTRATION_LIFETIME)
    with pytest.raises(DomainError) as refused:
        await security_keys.complete_registration(
            services,
            meta,
            actor,
            registration_id=registration.ceremony_id,
            credential=answer,
            nickname="Key",
        )

    assert (refused.value.code, refused.value.field) == (ErrorCode.NOT_FOUND, "registrationId")
    assert await TwoFactorMethod.filter(user_id=signed_up.user.id).count() == 0


async def test_mfa2_registration_is_bound_to_its_user(
    services: Services, meta: RequestMeta
) -> None:
    ada = await factories.sign_up(services, email="ada@example.test")
    eve = await factories.sign_up(services, email="eve@example.test")
    ada_actor = await _actor(services, ada.session.token)
    eve_actor = await _actor(services, eve.session.token)
    key = SoftAuthenticator(services.settings.webauthn_origin)
    registration = await security_keys.begin_registration(services, meta, ada_actor)

    with pytest.raises(DomainError) as refused:
        await security_keys.complete_registration(
            services,
            meta,
            eve_actor,
            registration_id=registration.ceremony_id,
            credential=key.create(registration.options),
            nickname="Key",
        )
    # Ada's registration is untouched by Eve's try.
    registered = await security_keys.complete_registration(
        services,
        meta,
        ada_actor,
        registration_id=registration.ceremony_id,
        credential=key.create(registration.options),
        nickname="Key",
    )

    assert refused.value.code == ErrorCode.NOT_FOUND
    assert await TwoFactorMethod.filter(user_id=eve.user.id).count() == 0
    assert registered.method.user_id == ada.user.id


async def test_mfa2_a_key_registered_already_is_refused_for_anyone(
    services: Services, meta: RequestMeta
) -> None:
    ada = await _key_owner(services, meta, "ada@example.test")
    eve = await factories.sign_up(services, email="eve@example.test")
    eve_actor = await _actor(services, eve.session.token)

    registration = await security_keys.begin_registration(services, meta, eve_actor)
    with pytest.raises(DomainError) as refused:
        await security_keys.complete_registration(
            services,
            meta,
            eve_actor,
            registration_id=registration.ceremony_id,
            credential=ada.key.create(registration.options),
            nickname="Ada's key",
        )

    assert refused.value.code == ErrorCode.SECURITY_KEY_ALREADY_REGISTERED
    assert await TwoFactorMethod.filter(user_id=eve.user.id).count() == 0
    assert await _events("two_factor.enrolment_failed") == [
        {"kind": "SECURITY_KEY", "reason": "already_registered"}
    ]


async def test_mfa2_nickname_is_checked_before_the_registration_is_spent(
    services: Services, meta: RequestMeta
) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    actor = await _actor(services, signed_up.session.token)
    key = SoftAuthenticator(services.settings.webauthn_origin)
    registration = await security_keys.begin_registration(services, meta, actor)
    answer = key.create(registration.options)

    with pytest.raises(DomainError) as refused:
        await security_keys.complete_registration(
            services,
            meta,
            actor,
            registration_id=registration.ceremony_id,
            credential=answer,
            nickname="bad\x00name",
        )
    registered = await security_keys.complete_registration(
        services,
        meta,
        actor,
        registration_id=registration.ceremony_id,
        credential=answer,
        nickname="Key",
    )

    assert (refused.value.code, refused.value.field) == (ErrorCode.INVALID_INPUT, "nickname")
    assert registered.method.label == "Key"


# --- sign-in ---------------------------------------------------------------------------------


async def test_mfa2_mfa7_sign_in_with_password_then_security_key(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    owner = await _key_owner(services, meta, "ada@example.test")
    result = await accounts.sign_in(services, meta, login=owner.email, password=factories.PASSWORD)
    assert result.second_factor is not None
    challenge_id = result.second_factor.challenge_id

    options = await second_factor.begin_security_key_sign_in(
        services, meta, challenge_id=challenge_id
    )
    clock.advance(timedelta(seconds=30))
    completed = await _complete(services, meta, challenge_id, owner.key.get(options))

    stored = await TwoFactorMethod.get(id=owner.method.id)
    assert result.second_factor.methods == [TwoFactorKind.SECURITY_KEY]
    assert options["rpId"] == services.settings.webauthn_rp_id
    assert options["allowCredentials"] == [
        {"type": "public-key", "id": b64url(owner.key.credential_id)}
    ]
    assert options["userVerification"] == "discouraged"
    assert await Session.filter(user_id=owner.method.user_id, revoked_at=None).count() == 2
    assert completed.session.token
    assert stored.sign_count == 1 and stored.last_used_at == clock.now()
    assert await _events("sign_in.second_factor_failed") == []
    succeeded = await ActivityEvent.filter(type="sign_in.succeeded").order_by("-id").first()
    assert succeeded is not None and succeeded.data == {"second_factor": "SECURITY_KEY"}


async def test_mfa2_any_of_several_keys_signs_in_and_each_keeps_its_counter(
    services: Services, meta: RequestMeta
) -> None:
    owner = await _key_owner(services, meta, "ada@example.test")
    spare = SoftAuthenticator(services.settings.webauthn_origin)
    spare_method = (await _register(services, meta, owner.actor, spare, "Spare")).method

    first = await _challenge(services, meta, owner.email)
    first_options = await second_factor.begin_security_key_sign_in(
        services, meta, challenge_id=first
    )
    await _complete(services, meta, first, spare.get(first_options))
    second = await _challenge(services, meta, owner.email)
    second_options = await second_factor.begin_security_key_sign_in(
        services, meta, challenge_id=second
    )
    await _complete(services, meta, second, owner.key.get(second_options))

    assert {d["id"] for d in first_options["allowCredentials"]} == {
        b64url(owner.key.credential_id),
        b64url(spare.credential_id),
    }
    assert (await TwoFactorMethod.get(id=spare_method.id)).sign_count == 1
    assert (await TwoFactorMethod.get(id=owner.method.id)).sign_count == 1


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"origin": "https://evil.example"}, "wrong_origin"),
        ({"origin": "http://127.0.0.1:8000.evil.example"}, "wrong_origin"),
        ({"challenge": b64url(b"a challenge the server never made")}, "wrong_challenge"),
        ({"rp_id": "evil.example"}, "wrong_rp_id"),
        ({"signing_key": ec.generate_private_key(ec.SECP256R1())}, "bad_signature"),
        ({"user_present": False}, "no_user_presence"),
    ],
)
async def test_mfa2_sign_in_with_a_bad_answer_is_refused_counted_and_recorded(
    services: Services, meta: RequestMeta, bad: dict[str, Any], reason: str
) -> None:
    owner = await _key_owner(services, meta, "ada@example.test")
    challenge_id = await _challenge(services, meta, owner.email)
    options = await second_factor.begin_security_key_sign_in(
        services, meta, challenge_id=challenge_id
    )

    refused = await _refusal(services, meta, challenge_id, owner.key.get(options, **bad))

    assert (refused.code, refused.field) == (ErrorCode.SECURITY_KEY_REJECTED, "credential")
    assert await _attempts(challenge_id, services) == 1
    assert await _events("sign_in.second_factor_failed") == [
        {"method": "SECURITY_KEY", "reason": reason}
    ]
    assert await Session.filter(user_id=owner.method.user_id).count() == 1  # the sign-up's
    assert (await TwoFactorMethod.get(id=owner.method.id)).sign_count == 0


@pytest.mark.parametrize("credential", [None, "x", {}, {"rawId": "@@", "response": {}}])
async def test_mfa2_malformed_sign_in_answer_is_a_typed_error(
    services: Services, meta: RequestMeta, credential: object
) -> None:
    owner = await _key_owner(services, meta, "ada@example.test")
    challenge_id = await _challenge(services, meta, owner.email)
    await second_factor.begin_security_key_sign_in(services, meta, challenge_id=challenge_id)

    refused = await _refusal(services, meta, challenge_id, credential)

    assert refused.code == ErrorCode.SECURITY_KEY_REJECTED
    assert await _events("sign_in.second_factor_failed") == [
        {"method": "SECURITY_KEY", "reason": "malformed"}
    ]


async def test_mfa2_an_unknown_key_is_refused(services: Services, meta: RequestMeta) -> None:
    owner = await _key_owner(services, meta, "ada@example.test")
    stranger = SoftAuthenticator(services.settings.webauthn_origin)
    challenge_id = await _challenge(services, meta, owner.email)
    options = await second_factor.begin_security_key_sign_in(
        services, meta, challenge_id=challenge_id
    )

    with pytest.raises(NoAllowedCredential):
        stranger.get(options)
    refused = await _refusal(
        services, meta, challenge_id, stranger.get(options, ignore_allow_list=True)
    )

    assert (refused.code, refused.field) == (ErrorCode.SECURITY_KEY_UNKNOWN, "credential")
    assert await _attempts(challenge_id, services) == 1
    assert await _events("sign_in.second_factor_failed") == [
        {"method": "SECURITY_KEY", "reason": "unknown_credential"}
    ]


async def test_mfa2_another_users_key_does_not_open_this_account(
    services: Services, meta: RequestMeta
) -> None:
    ada = await _key_owner(services, meta, "ada@example.test")
    eve = await _key_owner(services, meta, "eve@example.test")
    challenge_id = await _challenge(services, meta, ada.email)
    options = await second_factor.begin_security_key_sign_in(
        services, meta, challenge_id=challenge_id
    )

    refused = await _refusal(
        services, meta, challenge_id, eve.key.get(options, ignore_allow_list=True)
    )

    assert refused.code == ErrorCode.SECURITY_KEY_UNKNOWN
    assert await _events("sign_in.second_factor_failed") == [
        {"method": "SECURITY_KEY", "reason": "foreign_credential"}
    ]
    assert await Session.filter(user_id=ada.method.user_id).count() == 1
    assert (await TwoFactorMethod.get(id=eve.method.id)).sign_count == 0


async def test_mfa2_a_sign_counter_that_goes_back_is_refused_recorded_and_told(
    services: Services, meta: RequestMeta
) -> None:
    owner = await _key_owner(services, meta, "ada@example.test")
    copy = owner.key.clone()
    first = await _challenge(services, meta, owner.email)
    first_options = await second_factor.begin_security_key_sign_in(
        services, meta, challenge_id=first
    )
    await _complete(services, meta, first, owner.key.get(first_options))
    await OutboxMessage.all().delete()  # the new-sign-in notices are not what is tested

    second = await _challenge(services, meta, owner.email)
    second_options = await second_factor.begin_security_key_sign_in(
        services, meta, challenge_id=second
    )
    refused = await _refusal(services, meta, second, copy.get(second_options))

    assert (refused.code, refused.field) == (
        ErrorCode.SECURITY_KEY_COUNTER_REGRESSION,
        "credential",
    )
    assert await _events("sign_in.second_factor_failed") == [
        {"method": "SECURITY_KEY", "reason": "counter_regression"}
    ]
    notice = await OutboxMessage.get(recipient="ada@example.test")
    assert notice.template == "security_key_counter_regression"
    assert (await TwoFactorMethod.get(id=owner.method.id)).sign_count == 1
    assert await Session.filter(user_id=owner.method.user_id).count() == 2


async def test_mfa2_a_key_without_a_counter_signs_in_again_and_again(
    services: Services, meta: RequestMeta
) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    actor = await _actor(services, signed_up.session.token)
    key = SoftAuthenticator(services.settings.webauthn_origin, counter_step=0)
    method = (await _register(services, meta, actor, key)).method

    for _ in range(2):
        challenge_id = await _challenge(services, meta, "ada@example.test")
        options = await second_factor.begin_security_key_sign_in(
            services, meta, challenge_id=challenge_id
        )
        await _complete(services, meta, challenge_id, key.get(options))

    assert (await TwoFactorMethod.get(id=method.id)).sign_count == 0
    assert await Session.filter(user_id=signed_up.user.id).count() == 3
    assert await _events("sign_in.second_factor_failed") == []


async def test_mfa2_a_replayed_assertion_is_refused(services: Services, meta: RequestMeta) -> None:
    owner = await _key_owner(services, meta, "ada@example.test")
    first = await _challenge(services, meta, owner.email)
    options = await second_factor.begin_security_key_sign_in(services, meta, challenge_id=first)
    answer = owner.key.get(options)
    await _complete(services, meta, first, answer)

    # The same answer again: on its finished sign-in, then on a new sign-in's fresh request.
    finished = await _refusal(services, meta, first, answer)
    second = await _challenge(services, meta, owner.email)
    await second_factor.begin_security_key_sign_in(services, meta, challenge_id=second)
    replayed = await _refusal(services, meta, second, answer)

    assert (finished.code, finished.field) == (ErrorCode.CHALLENGE_EXPIRED, "challengeId")
    assert replayed.code == ErrorCode.SECURITY_KEY_REJECTED
    assert await _events("sign_in.second_factor_failed") == [
        {"method": "SECURITY_KEY", "reason": "wrong_challenge"}
    ]
    assert await Session.filter(user_id=owner.method.user_id).count() == 2


async def test_mfa2_a_sign_in_request_is_answered_once(
    services: Services, meta: RequestMeta
) -> None:
    owner = await _key_owner(services, meta, "ada@example.test")
    challenge_id = await _challenge(services, meta, owner.email)
    options = await second_factor.begin_security_key_sign_in(
        services, meta, challenge_id=challenge_id
    )
    await _refusal(services, meta, challenge_id, owner.key.get(options, origin="https://x.test"))

    # After a refused answer the request is spent; a good answer to it needs a new request.
    spent = await _refusal(services, meta, challenge_id, owner.key.get(options))
    fresh = await second_factor.begin_security_key_sign_in(
        services, meta, challenge_id=challenge_id
    )
    completed = await _complete(services, meta, challenge_id, owner.key.get(fresh))

    assert (spent.code, spent.field) == (ErrorCode.CHALLENGE_EXPIRED, "credential")
    assert completed.session.token
    assert await _attempts(challenge_id, services) == 3


async def test_mfa2_completing_without_a_request_is_refused(
    services: Services, meta: RequestMeta
) -> None:
    owner = await _key_owner(services, meta, "ada@example.test")
    challenge_id = await _challenge(services, meta, owner.email)
    # An answer to options the server never gave for this sign-in.
    forged = owner.key.get(
        {
            "challenge": b64url(b"0123456789abcdef0123456789abcdef"),
            "rpId": services.settings.webauthn_rp_id,
            "allowCredentials": [{"type": "public-key", "id": b64url(owner.key.credential_id)}],
        }
    )

    refused = await _refusal(services, meta, challenge_id, forged)

    assert (refused.code, refused.field) == (ErrorCode.CHALLENGE_EXPIRED, "credential")
    assert await _events("sign_in.second_factor_failed") == [
        {"method": "SECURITY_KEY", "reason": "expired"}
    ]


async def test_mfa2_the_sign_in_request_expires_with_the_clock(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    owner = await _key_owner(services, meta, "ada@example.test")
    challenge_id = await _challenge(services, meta, owner.email)
    options = await second_factor.begin_security_key_sign_in(
        services, meta, challenge_id=challenge_id
    )

    clock.advance(security_keys.SIGN_IN_LIFETIME)
    late = await _refusal(services, meta, challenge_id, owner.key.get(options))
    clock.advance(accounts.CHALLENGE_LIFETIME)
    with pytest.raises(DomainError) as gone:
        await second_factor.begin_security_key_sign_in(services, meta, challenge_id=challenge_id)

    assert (late.code, late.field) == (ErrorCode.CHALLENGE_EXPIRED, "credential")
    assert (gone.value.code, gone.value.field) == (ErrorCode.CHALLENGE_EXPIRED, "challengeId")
    assert await Session.filter(user_id=owner.method.user_id).count() == 1
    assert (await TwoFactorMethod.get(id=owner.method.id)).sign_count == 0


async def test_mfa2_attempts_are_limited_per_challenge(
    services: Services, meta: RequestMeta
) -> None:
    owner = await _key_owner(services, meta, "ada@example.test")
    challenge_id = await _challenge(services, meta, owner.email)
    codes = []
    for _ in range(second_factor.ATTEMPTS_PER_CHALLENGE.limit + 1):
        options = await second_factor.begin_security_key_sign_in(
            services, meta, challenge_id=challenge_id
        )
        refused = await _refusal(
            services, meta, challenge_id, owner.key.get(options, origin="https://x.test")
        )
        codes.append(refused.code)

    assert codes == [
        ErrorCode.SECURITY_KEY_REJECTED
    ] * second_factor.ATTEMPTS_PER_CHALLENGE.limit + [ErrorCode.TOO_MANY_ATTEMPTS]


async def test_mfa2_sign_in_request_needs_a_key_on_the_account(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    await factories.confirm_totp(services, signed_up.user)
    challenge_id = await _challenge(services, meta, "ada@example.test")

    with pytest.raises(DomainError) as refused:
        await second_factor.begin_security_key_sign_in(services, meta, challenge_id=challenge_id)
    with pytest.raises(DomainError) as unknown:
        await second_factor.begin_security_key_sign_in(services, meta, challenge_id="nope")

    assert refused.value.code == ErrorCode.INVALID_INPUT
    assert unknown.value.code == ErrorCode.CHALLENGE_EXPIRED
    assert await SecurityKeyCeremony.all().count() == 0


# --- removal (MFA-9) -------------------------------------------------------------------------


async def test_mfa2_mfa9_keys_are_removed_like_any_second_factor(
    services: Services, meta: RequestMeta
) -> None:
    owner = await _key_owner(services, meta, "ada@example.test")
    spare = SoftAuthenticator(services.settings.webauthn_origin)
    spare_method = (await _register(services, meta, owner.actor, spare, "Spare")).method

    still_on = await two_factor.remove_method(
        services, meta, owner.actor, method_id=spare_method.id, password=factories.PASSWORD
    )
    now_off = await two_factor.remove_method(
        services, meta, owner.actor, method_id=owner.method.id, password=factories.PASSWORD
    )

    assert (still_on, now_off) == (True, False)
    assert await _events("two_factor.removed") == [
        {"kind": "SECURITY_KEY", "method_id": spare_method.id, "last": False},
        {"kind": "SECURITY_KEY", "method_id": owner.method.id, "last": True},
    ]
    assert await TwoFactorMethod.filter(user_id=owner.method.user_id).count() == 0
    assert await BackupCode.filter(user_id=owner.method.user_id).count() == 0
    # A removed key no longer signs in: the password alone opens the session now.
    result = await accounts.sign_in(services, meta, login=owner.email, password=factories.PASSWORD)
    assert result.session is not None


# --- settings --------------------------------------------------------------------------------


def test_mfa2_relying_party_defaults_to_the_public_url() -> None:
    settings = load_settings(
        {"GARDIEN_PUBLIC_URL": "https://id.example.ch/", "GARDIEN_SECRET_KEY": SECRET_KEY}
    )

    assert (settings.webauthn_rp_id, settings.webauthn_origin) == (
        "id.example.ch",
        "https://id.example.ch",
    )


@pytest.mark.parametrize(
    ("rp_id", "origin", "accepted"),
    [
        ("example.ch", "https://id.example.ch", True),
        ("other.ch", "https://id.example.ch", False),
        ("ample.ch", "https://id.example.ch", False),
        ("example.ch", "https://id.example.ch/path", False),
    ],
)
def test_mfa2_relying_party_id_must_cover_the_origin(
    rp_id: str, origin: str, accepted: bool
) -> None:
    environ = {
        "GARDIEN_SECRET_KEY": SECRET_KEY,
        "GARDIEN_WEBAUTHN_RP_ID": rp_id,
        "GARDIEN_WEBAUTHN_ORIGIN": origin,
    }

    if accepted:
        assert load_settings(environ).webauthn_rp_id == rp_id
    else:
        with pytest.raises(SettingsError):
            load_settings(environ)


# --- through GraphQL -------------------------------------------------------------------------

BEGIN_REGISTRATION = """
mutation { beginSecurityKeyRegistration { registrationId options errors { code field } } }
"""
COMPLETE_REGISTRATION = """
mutation($input: CompleteSecurityKeyRegistrationInput!) {
  completeSecurityKeyRegistration(input: $input) {
    method { id kind label } backupCodes errors { code field }
  }
}
"""
BEGIN_SIGN_IN = """
mutation($input: BeginSecurityKeySignInInput!) {
  beginSecurityKeySignIn(input: $input) { options errors { code field } }
}
"""
COMPLETE_SECOND_FACTOR = """
mutation($input: CompleteSecondFactorInput!) {
  completeSecondFactor(input: $input) { session { token } errors { code field } }
}
"""


async def test_mfa2_graphql_payloads_carry_json_options_and_typed_errors(
    services: Services, meta: RequestMeta, gql: GraphQLClient
) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    gql.token = signed_up.session.token
    key = SoftAuthenticator(services.settings.webauthn_origin)

    begun = (await gql(BEGIN_REGISTRATION))["data"]["beginSecurityKeyRegistration"]
    refused = (
        await gql(
            COMPLETE_REGISTRATION,
            {
                "input": {
                    "registrationId": begun["registrationId"],
                    "credential": key.create(begun["options"], origin="https://evil.example"),
                    "nickname": "Key",
                }
            },
        )
    )["data"]["completeSecurityKeyRegistration"]
    again = (await gql(BEGIN_REGISTRATION))["data"]["beginSecurityKeyRegistration"]
    registered = (
        await gql(
            COMPLETE_REGISTRATION,
            {
                "input": {
                    "registrationId": again["registrationId"],
                    "credential": key.create(again["options"]),
                    "nickname": "Key",
                }
            },
        )
    )["data"]["completeSecurityKeyRegistration"]
    gql.token = None
    challenge_id = await _challenge(services, meta, "ada@example.test")
    request = (await gql(BEGIN_SIGN_IN, {"input": {"challengeId": challenge_id}}))["data"][
        "beginSecurityKeySignIn"
    ]
    completed = (
        await gql(
            COMPLETE_SECOND_FACTOR,
            {
                "input": {
                    "challengeId": challenge_id,
                    "method": "SECURITY_KEY",
                    "credential": key.get(request["options"]),
                }
            },
        )
    )["data"]["completeSecondFactor"]

    assert begun["errors"] == [] and begun["options"]["challenge"]
    assert refused == {
        "method": None,
        "backupCodes": [],
        "errors": [{"code": "SECURITY_KEY_REJECTED", "field": "credential"}],
    }
    assert registered["errors"] == [] and len(registered["backupCodes"]) == 10
    assert registered["method"]["kind"] == "SECURITY_KEY"
    assert request["errors"] == []
    assert completed["errors"] == [] and completed["session"]["token"]
