"""Security keys (MFA-2): registering one, and the request a key answers at sign-in."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON

from gardien.resolvers import second_factor, security_keys
from gardien.resolvers.errors import DomainError
from gardien.schema.context import Info
from gardien.schema.errors import UserError
from gardien.schema.relay import decode_id, encode_id
from gardien.schema.users import TwoFactorMethodNode

SECURITY_KEY_REGISTRATION = "SecurityKeyRegistration"


@strawberry.type
class BeginSecurityKeyRegistrationPayload:
    registration_id: strawberry.ID | None = None
    options: JSON | None = strawberry.field(
        default=None,
        description="PublicKeyCredentialCreationOptionsJSON, for navigator.credentials.create().",
    )
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class CompleteSecurityKeyRegistrationInput:
    registration_id: strawberry.ID
    credential: JSON = strawberry.field(
        description="The key's answer: RegistrationResponseJSON (PublicKeyCredential.toJSON())."
    )
    nickname: str


@strawberry.type
class CompleteSecurityKeyRegistrationPayload:
    method: TwoFactorMethodNode | None = None
    backup_codes: list[str] = strawberry.field(
        default_factory=list,
        description="Shown once, when this key turned two-factor authentication on.",
    )
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class BeginSecurityKeySignInInput:
    challenge_id: str


@strawberry.type
class BeginSecurityKeySignInPayload:
    options: JSON | None = strawberry.field(
        default=None,
        description="PublicKeyCredentialRequestOptionsJSON, for navigator.credentials.get().",
    )
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class SecurityKeyMutations:
    @strawberry.mutation(description="Start registering a security key (MFA-2).")
    async def begin_security_key_registration(
        self, info: Info
    ) -> BeginSecurityKeyRegistrationPayload:
        context = info.context
        try:
            registration = await security_keys.begin_registration(
                context.services, context.meta, context.actor
            )
        except DomainError as error:
            return BeginSecurityKeyRegistrationPayload(errors=[UserError.from_domain(error)])
        return BeginSecurityKeyRegistrationPayload(
            registration_id=encode_id(SECURITY_KEY_REGISTRATION, registration.ceremony_id),
            options=JSON(registration.options),
        )

    @strawberry.mutation(description="Finish registering a security key with its answer (MFA-2).")
    async def complete_security_key_registration(
        self, info: Info, input: CompleteSecurityKeyRegistrationInput
    ) -> CompleteSecurityKeyRegistrationPayload:
        context = info.context
        try:
            registered = await security_keys.complete_registration(
                context.services,
                context.meta,
                context.actor,
                registration_id=decode_id(
                    input.registration_id, SECURITY_KEY_REGISTRATION, "registrationId"
                ),
                credential=input.credential,
                nickname=input.nickname,
            )
        except DomainError as error:
            return CompleteSecurityKeyRegistrationPayload(errors=[UserError.from_domain(error)])
        return CompleteSecurityKeyRegistrationPayload(
            method=TwoFactorMethodNode.from_model(registered.method),
            backup_codes=registered.backup_codes,
        )

    @strawberry.mutation(
        description="The request a security key answers to complete a sign-in (MFA-2, MFA-7);"
        " then completeSecondFactor with method SECURITY_KEY and the key's answer."
    )
    async def begin_security_key_sign_in(
        self, info: Info, input: BeginSecurityKeySignInInput
    ) -> BeginSecurityKeySignInPayload:
        context = info.context
        try:
            options = await second_factor.begin_security_key_sign_in(
                context.services, context.meta, challenge_id=input.challenge_id
            )
        except DomainError as error:
            return BeginSecurityKeySignInPayload(errors=[UserError.from_domain(error)])
        return BeginSecurityKeySignInPayload(options=JSON(options))
