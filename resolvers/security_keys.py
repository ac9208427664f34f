"""Security keys (MFA-2): WebAuthn registration and sign-in assertions, verified with fido2.

Options and answers travel in WebAuthn's standard JSON forms (PublicKeyCredentialCreationOptions-
JSON, RegistrationResponseJSON and the request counterparts). The challenge a key signs is kept
server side in a SecurityKeyCeremony: bound to its user, short-lived, used once."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidSignature
from fido2.cose import CoseKey
from fido2.server import Fido2Server
from fido2.utils import websafe_decode, websafe_encode
from fido2.webauthn import (
    AttestationConveyancePreference,
    AttestedCredentialData,
    AuthenticationResponse,
    AuthenticatorData,
    CollectedClientData,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    RegistrationResponse,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from gardien.models.enums import SecurityKeyCeremonyPurpose, TwoFactorKind
from gardien.models.mfa import SecurityKeyCeremony, TwoFactorMethod
from gardien.models.sessions import SignInChallenge
from gardien.models.users import User
from gardien.resolvers import activity, authz, two_factor
from gardien.resolvers.authz import Actor
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.resolvers.text import cleaned_label
from gardien.settings import Settings

RP_NAME = "Gardien"
# WebAuthn L2 §5.4: with user verification discouraged, the recommended timeout is 2 minutes.
# The options tell the browser the lifetime the server keeps the challenge for.
REGISTRATION_LIFETIME = timedelta(minutes=2)
SIGN_IN_LIFETIME = timedelta(minutes=2)
# Bounds excludeCredentials/allowCredentials and the rows one account can make.
MAX_KEYS_PER_USER = 10
USER_HANDLE_PURPOSE = "webauthn-user-handle"
# The label of a COSE key's algorithm (RFC 9052 §7.1).
COSE_ALGORITHM = 3
# WebAuthn allows credential IDs up to 1023 bytes; the column holds their base64url up to 1024.
MAX_CREDENTIAL_ID_BYTES = 700
# A second factor: the key's touch proves presence; a PIN is not asked (YubiKeys often have none).
USER_VERIFICATION = UserVerificationRequirement.DISCOURAGED
REGISTRATION_EXPIRED_MESSAGE = "No such security key registration, or it expired: begin again."
SIGN_IN_EXPIRED_MESSAGE = "This security key request has expired: ask for a new one and try again."
REJECTED_MESSAGE = "The security key's answer was not accepted. Try again with your key."
UNKNOWN_MESSAGE = "This security key is not registered on this account."
COUNTER_REGRESSION_MESSAGE = (
    "This security key's counter went backwards, as a copy of a key would: it was refused. Use"
    " another second factor, and check your security settings."
)


class Failure(StrEnum):
    """Why a security key's answer was refused, as recorded on the activity event."""

    MALFORMED = "malformed"
    WRONG_TYPE = "wrong_type"
    WRONG_ORIGIN = "wrong_origin"
    WRONG_CHALLENGE = "wrong_challenge"
    WRONG_RP_ID = "wrong_rp_id"
    NO_USER_PRESENCE = "no_user_presence"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_CREDENTIAL = "unknown_credential"
    FOREIGN_CREDENTIAL = "foreign_credential"
    COUNTER_REGRESSION = "counter_regression"
    ALREADY_REGISTERED = "already_registered"
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"
    EXPIRED = "expired"


class SecurityKeyRefused(DomainError):
    """A refused answer: the typed error for the caller and the reason for the record."""

    def __init__(self, reason: Failure, code: ErrorCode, message: str, field: str) -> None:
        super().__init__(code, message, field)
        self.reason = reason


def _rejected(reason: Failure) -> SecurityKeyRefused:
    return SecurityKeyRefused(
        reason, ErrorCode.SECURITY_KEY_REJECTED, REJECTED_MESSAGE, "credential"
    )


def relying_party(settings: Settings) -> Fido2Server:
    """fido2's verifier for our RP ID, accepting exactly the configured origin (fido2's default
    would accept any https origin under the RP ID)."""
    server = Fido2Server(
        PublicKeyCredentialRpEntity(name=RP_NAME, id=settings.webauthn_rp_id),
        attestation=AttestationConveyancePreference.NONE,
        verify_origin=lambda origin: origin == settings.webauthn_origin,
    )
    # fido2 declares the attribute as None-only, yet copies it into the options as their timeout.
    server.timeout = int(REGISTRATION_LIFETIME.total_seconds() * 1000)  # type: ignore[assignment]
    return server


def _as_json(options: Mapping[str, Any]) -> dict[str, Any]:
    # fido2's option objects are JSON-shaped Mappings (bytes already base64url); plain dicts out.
    result: dict[str, Any] = json.loads(json.dumps(dict(options)))
    return result


def _user_handle(services: Services, user_id: int) -> bytes:
    """WebAuthn §14.6.1: a user handle that is neither the login nor the database id."""
    return bytes.fromhex(services.keyring.token_digest(str(user_id), USER_HANDLE_PURPOSE))


async def _user_keys(user_id: int) -> list[TwoFactorMethod]:
    return await TwoFactorMethod.filter(
        user_id=user_id, kind=TwoFactorKind.SECURITY_KEY, confirmed_at__isnull=False
    ).order_by("id")


def _credential_data(method: TwoFactorMethod) -> AttestedCredentialData:
    assert method.public_key is not None
    return AttestedCredentialData(bytes(method.public_key))


def _too_many_keys() -> DomainError:
    return DomainError(
        ErrorCode.INVALID_INPUT,
        f"An account holds at most {MAX_KEYS_PER_USER} security keys: remove one first.",
    )


def _check_client_data(
    settings: Settings,
    client_data: CollectedClientData,
    expected_type: str,
    challenge: str,
    rp_id_hash: bytes,
) -> None:
    """The checks fido2 makes too, made first so that each refusal is recorded with its reason."""
    if client_data.type != expected_type:
        raise _rejected(Failure.WRONG_TYPE)
    if client_data.origin != settings.webauthn_origin:
        raise _rejected(Failure.WRONG_ORIGIN)
    # Not secrets, but compared like them, as fido2 does.
    if not hmac.compare_digest(websafe_decode(challenge), client_data.challenge):
        raise _rejected(Failure.WRONG_CHALLENGE)
    expected_rp_id_hash = hashlib.sha256(settings.webauthn_rp_id.encode()).digest()
    if not hmac.compare_digest(expected_rp_id_hash, rp_id_hash):
        raise _rejected(Failure.WRONG_RP_ID)


# --- Registration -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    ceremony_id: int
    options: dict[str, Any]  # PublicKeyCredentialCreationOptionsJSON


async def begin_registration(services: Services, meta: RequestMeta, actor: Actor) -> Registration:
    """MFA-2: options for navigator.credentials.create(); the user's keys are excluded, so a
    key is not registered twice. One registration in flight per user: beginning again drops the
    previous one."""
    signed_in = authz.require_second_factor_manager(actor)
    user = await User.get(id=signed_in.id)
    keys = await _user_keys(user.id)
    if len(keys) >= MAX_KEYS_PER_USER:
        raise _too_many_keys()
    options, state = relying_party(services.settings).register_begin(
        PublicKeyCredentialUserEntity(
            name=user.email or user.display_name,
            id=_user_handle(services, user.id),
            display_name=user.display_name,
        ),
        [_credential_data(key) for key in keys],
        resident_key_requirement=ResidentKeyRequirement.DISCOURAGED,
        user_verification=USER_VERIFICATION,
    )
    now = services.clock.now()
    async with in_transaction():
        await SecurityKeyCeremony.filter(
            user_id=user.id, purpose=SecurityKeyCeremonyPurpose.REGISTRATION
        ).delete()
        ceremony = await SecurityKeyCeremony.create(
            user_id=user.id,
            purpose=SecurityKeyCeremonyPurpose.REGISTRATION,
            challenge=state["challenge"],
            user_verification=state["user_verification"],
            created_at=now,
            expires_at=now + REGISTRATION_LIFETIME,
        )
    return Registration(ceremony_id=ceremony.id, options=_as_json(options.public_key))


@dataclass(frozen=True)
class RegisteredKey:
    method: TwoFactorMethod
    backup_codes: list[str]  # shown once; empty unless this key turned 2FA on


async def complete_registration(
    services: Services,
    meta: RequestMeta,
    actor: Actor,
    *,
    registration_id: int,
    credential: object,
    nickname: str,
) -> RegisteredKey:
    """MFA-2: the key's answer, checked against the kept challenge, our origin and RP ID; the
    credential is stored with its sign counter. The registration is spent whatever the outcome.

    A first key turns 2FA on and comes with the backup codes (MFA-5), as a first TOTP app does."""
    signed_in = authz.require_second_factor_manager(actor)
    name = cleaned_label(nickname, "nickname", "nickname")
    now = services.clock.now()
    ceremony = await SecurityKeyCeremony.get_or_none(
        id=registration_id, user_id=signed_in.id, purpose=SecurityKeyCeremonyPurpose.REGISTRATION
    )
    if ceremony is None or ceremony.used_at is not None or ceremony.expires_at <= now:
        raise DomainError(ErrorCode.NOT_FOUND, REGISTRATION_EXPIRED_MESSAGE, "registrationId")
    spent = await SecurityKeyCeremony.filter(id=ceremony.id, used_at=None).update(used_at=now)
    if spent != 1:
        # A concurrent completion took it: one challenge, one key.
        raise DomainError(ErrorCode.NOT_FOUND, REGISTRATION_EXPIRED_MESSAGE, "registrationId")
    try:
        auth_data = _verify_registration(services.settings, ceremony, credential)
        credential_data = auth_data.credential_data
        assert credential_data is not None
        credential_id = websafe_encode(credential_data.credential_id)
        if await TwoFactorMethod.exists(credential_id=credential_id):
            raise SecurityKeyRefused(
                Failure.ALREADY_REGISTERED,
                ErrorCode.SECURITY_KEY_ALREADY_REGISTERED,
                "This security key is registered already.",
                "credential",
            )
        async with in_transaction():
            # The user's row lock serialises concurrent completions, so the cap holds under a
            # race (two registrations begun at once may both be in flight).
            await User.filter(id=signed_in.id).select_for_update().get()
            if len(await _user_keys(signed_in.id)) >= MAX_KEYS_PER_USER:
                raise _too_many_keys()
            first = not await two_factor.has_second_factor(signed_in.id)
            try:
                method = await TwoFactorMethod.create(
                    user_id=signed_in.id,
                    kind=TwoFactorKind.SECURITY_KEY,
                    label=name,
                    credential_id=credential_id,
                    public_key=bytes(credential_data),
                    sign_count=auth_data.counter,
                    created_at=now,
                    confirmed_at=now,
                )
            except IntegrityError:
                # The same key registered concurrently (credential_id is unique).
                raise SecurityKeyRefused(
                    Failure.ALREADY_REGISTERED,
                    ErrorCode.SECURITY_KEY_ALREADY_REGISTERED,
                    "This security key is registered already.",
                    "credential",
                ) from None
            codes = await two_factor.method_enrolled(
                services,
                meta,
                signed_in.id,
                kind=TwoFactorKind.SECURITY_KEY,
                method_id=method.id,
                first=first,
            )
    except SecurityKeyRefused as refused:
        async with in_transaction():
            await activity.two_factor_enrolment_failed(
                services,
                meta,
                signed_in.id,
                kind=TwoFactorKind.SECURITY_KEY.value,
                reason=refused.reason.value,
            )
        raise
    return RegisteredKey(method=method, backup_codes=codes)


def _verify_registration(
    settings: Settings, ceremony: SecurityKeyCeremony, credential: object
) -> AuthenticatorData:
    if not isinstance(credential, Mapping):
        raise _rejected(Failure.MALFORMED)
    try:
        response = RegistrationResponse.from_dict(credential)
        client_data = response.response.client_data
        auth_data = response.response.attestation_object.auth_data
    except Exception:
        raise _rejected(Failure.MALFORMED) from None
    _check_client_data(
        settings,
        client_data,
        CollectedClientData.TYPE.CREATE,
        ceremony.challenge,
        auth_data.rp_id_hash,
    )
    if not auth_data.is_user_present():
        raise _rejected(Failure.NO_USER_PRESENCE)
    credential_data = auth_data.credential_data
    if credential_data is None or len(credential_data.credential_id) > MAX_CREDENTIAL_ID_BYTES:
        raise _rejected(Failure.MALFORMED)
    server = relying_party(settings)
    # WebAuthn §7.1 step 20, which fido2's register_complete leaves out: a key of an algorithm
    # the options did not offer would be stored, then fail every sign-in at its signature check.
    if credential_data.public_key.get(COSE_ALGORITHM) not in {
        parameters.alg for parameters in server.allowed_algorithms
    }:
        raise _rejected(Failure.UNSUPPORTED_ALGORITHM)
    if not _verifies_signatures(credential_data.public_key):
        raise _rejected(Failure.MALFORMED)
    try:
        return server.register_complete(_state(ceremony), response)
    except ValueError:
        raise _rejected(Failure.MALFORMED) from None


def _verifies_signatures(public_key: CoseKey) -> bool:
    """Whether fido2 can check this key's signatures at all. A "none" attestation signs nothing
    to try it on, and fido2 parses COSE keys without checking their parameters: a key whose
    coordinates are missing, not bytes or off its curve would fail every sign-in instead. Checked
    on an empty signature, which a sound key refuses as a wrong signature, and only so."""
    try:
        public_key.verify(b"", b"")
    except InvalidSignature:
        return True
    except Exception:
        return False
    return False


def _state(ceremony: SecurityKeyCeremony) -> dict[str, Any]:
    return {"challenge": ceremony.challenge, "user_verification": ceremony.user_verification}


# --- Sign-in (MFA-7) ----------------------------------------------------------------------------


async def begin_sign_in(services: Services, challenge: SignInChallenge) -> dict[str, Any]:
    """MFA-2, MFA-7: options for navigator.credentials.get(), allowing the user's keys only.

    A new request replaces the challenge's previous one; it lives until the sign-in challenge
    itself expires, five minutes at most."""
    keys = await _user_keys(challenge.user_id)
    if not keys:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "This account has no security key.", "challengeId"
        )
    options, state = relying_party(services.settings).authenticate_begin(
        [_credential_data(key) for key in keys], user_verification=USER_VERIFICATION
    )
    now = services.clock.now()
    async with in_transaction():
        await SecurityKeyCeremony.filter(sign_in_challenge_id=challenge.id).delete()
        await SecurityKeyCeremony.create(
            user_id=challenge.user_id,
            purpose=SecurityKeyCeremonyPurpose.SIGN_IN,
            sign_in_challenge_id=challenge.id,
            challenge=state["challenge"],
            user_verification=state["user_verification"],
            created_at=now,
            expires_at=min(now + SIGN_IN_LIFETIME, challenge.expires_at),
        )
    return _as_json(options.public_key)


async def check_assertion(
    services: Services, challenge: SignInChallenge, credential: object
) -> TwoFactorMethod:
    """MFA-2: the key signed the kept challenge for our origin and RP ID, is one of the
    challenge user's, and its sign counter moved forward. The request is spent whatever the
    outcome, so an answer counts once; the counter is claimed with one conditional UPDATE, so two
    concurrent answers cannot both pass."""
    now = services.clock.now()
    # The latest request: two concurrent begins may both have left one.
    ceremony = (
        await SecurityKeyCeremony.filter(
            sign_in_challenge_id=challenge.id,
            user_id=challenge.user_id,
            purpose=SecurityKeyCeremonyPurpose.SIGN_IN,
            used_at=None,
        )
        .order_by("-id")
        .first()
    )
    if ceremony is None or ceremony.expires_at <= now:
        raise SecurityKeyRefused(
            Failure.EXPIRED, ErrorCode.CHALLENGE_EXPIRED, SIGN_IN_EXPIRED_MESSAGE, "credential"
        )
    spent = await SecurityKeyCeremony.filter(id=ceremony.id, used_at=None).update(used_at=now)
    if spent != 1:
        raise SecurityKeyRefused(
            Failure.EXPIRED, ErrorCode.CHALLENGE_EXPIRED, SIGN_IN_EXPIRED_MESSAGE, "credential"
        )
    if not isinstance(credential, Mapping):
        raise _rejected(Failure.MALFORMED)
    try:
        response = AuthenticationResponse.from_dict(credential)
        client_data = response.response.client_data
        auth_data = response.response.authenticator_data
        credential_id = websafe_encode(response.raw_id)
    except Exception:
        raise _rejected(Failure.MALFORMED) from None
    settings = services.settings
    _check_client_data(
        settings,
        client_data,
        CollectedClientData.TYPE.GET,
        ceremony.challenge,
        auth_data.rp_id_hash,
    )
    if not auth_data.is_user_present():
        raise _rejected(Failure.NO_USER_PRESENCE)
    key = next(
        (k for k in await _user_keys(challenge.user_id) if k.credential_id == credential_id), None
    )
    if key is None:
        foreign = await TwoFactorMethod.exists(credential_id=credential_id)
        raise SecurityKeyRefused(
            Failure.FOREIGN_CREDENTIAL if foreign else Failure.UNKNOWN_CREDENTIAL,
            ErrorCode.SECURITY_KEY_UNKNOWN,
            UNKNOWN_MESSAGE,
            "credential",
        )
    try:
        relying_party(settings).authenticate_complete(
            _state(ceremony), [_credential_data(key)], response
        )
    except ValueError:
        raise _rejected(Failure.BAD_SIGNATURE) from None
    # WebAuthn §7.2 step 21: a counter that does not grow (unless the key keeps none: 0 and 0)
    # means two keys share the credential: a clone.
    counter = auth_data.counter
    claim = TwoFactorMethod.filter(id=key.id)
    claim = claim.filter(sign_count=0) if counter == 0 else claim.filter(sign_count__lt=counter)
    if await claim.update(sign_count=counter, last_used_at=now) != 1:
        raise SecurityKeyRefused(
            Failure.COUNTER_REGRESSION,
            ErrorCode.SECURITY_KEY_COUNTER_REGRESSION,
            COUNTER_REGRESSION_MESSAGE,
            "credential",
        )
    return key
