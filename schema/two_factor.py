"""Two-factor mutations: TOTP, backup codes, second-factor sign-in, app passwords (MFA-*), and
the organisation security policy (POL-1, POL-3)."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from gardien.models.mfa import AppPassword
from gardien.resolvers import (
    app_passwords,
    second_factor,
    security_policy,
    sms_factor,
    two_factor,
)
from gardien.resolvers.errors import DomainError
from gardien.schema.accounts import Session
from gardien.schema.context import Info
from gardien.schema.errors import UserError
from gardien.schema.organisations import SecurityPolicyType
from gardien.schema.relay import Node, decode_id, encode_id
from gardien.schema.users import TwoFactorMethodNode

SecondFactorMethod = strawberry.enum(
    second_factor.SecondFactorMethod,
    name="SecondFactorMethod",
    description="What completes a sign-in challenge: a kind of second factor, or a backup code.",
)
TOTP_ENROLMENT = "TotpEnrolment"
SMS_ENROLMENT = "SmsEnrolment"


@strawberry.type(name="AppPassword", description="A sync tool's own password (MFA-6).")
class AppPasswordNode(Node):
    label: str
    created_at: datetime
    last_used_at: datetime | None

    @classmethod
    def from_model(cls, app_password: AppPassword) -> AppPasswordNode:
        return cls(
            id=encode_id("AppPassword", app_password.id),
            label=app_password.label,
            created_at=app_password.created_at,
            last_used_at=app_password.last_used_at,
        )


async def app_password_by_id(info: Info, app_password_id: int) -> AppPasswordNode:
    """node(id:): one of the caller's own active app passwords."""
    found = await app_passwords.own_app_password(info.context.actor, app_password_id)
    return AppPasswordNode.from_model(found)


@strawberry.input
class CompleteSecondFactorInput:
    challenge_id: str
    method: SecondFactorMethod  # type: ignore[valid-type]
    code: str | None = None
    credential: JSON | None = strawberry.field(
        default=None,
        description="With SECURITY_KEY: the key's answer, AuthenticationResponseJSON (MFA-2).",
    )


@strawberry.type
class CompleteSecondFactorPayload:
    session: Session | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class BeginTotpEnrolmentPayload:
    enrolment_id: strawberry.ID | None = None
    secret: str | None = strawberry.field(default=None, description="Shown once.")
    otpauth_uri: str | None = None
    qr_code_svg: str | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class ConfirmTotpEnrolmentInput:
    enrolment_id: strawberry.ID
    code: str
    label: str | None = None


@strawberry.type
class ConfirmTotpEnrolmentPayload:
    method: TwoFactorMethodNode | None = None
    backup_codes: list[str] = strawberry.field(
        default_factory=list,
        description="Shown once, when this enrolment turned two-factor authentication on.",
    )
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class BeginSmsEnrolmentInput:
    phone: str = strawberry.field(
        description="A mobile number of CH, FR, BE or DE, e.g. +41 79 123 45 67."
    )


@strawberry.type
class BeginSmsEnrolmentPayload:
    enrolment_id: strawberry.ID | None = None
    sent_to: str | None = strawberry.field(default=None, description="The number, masked.")
    expires_at: datetime | None = strawberry.field(
        default=None, description="When the code sent expires."
    )
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class ConfirmSmsEnrolmentInput:
    enrolment_id: strawberry.ID
    code: str
    label: str | None = None


@strawberry.type
class ConfirmSmsEnrolmentPayload:
    method: TwoFactorMethodNode | None = None
    backup_codes: list[str] = strawberry.field(
        default_factory=list,
        description="Shown once, when this enrolment turned two-factor authentication on.",
    )
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class SendSignInCodeInput:
    challenge_id: str


@strawberry.type
class SendSignInCodePayload:
    sent_to: str | None = strawberry.field(default=None, description="The number, masked.")
    expires_at: datetime | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RegenerateBackupCodesPayload:
    backup_codes: list[str] = strawberry.field(default_factory=list, description="Shown once.")
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RemoveTwoFactorMethodInput:
    method_id: strawberry.ID
    password: str


@strawberry.type
class RemoveTwoFactorMethodPayload:
    two_factor_enabled: bool | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class CreateAppPasswordInput:
    label: str


@strawberry.type
class CreateAppPasswordPayload:
    app_password: AppPasswordNode | None = None
    secret: str | None = strawberry.field(default=None, description="Shown once.")
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RevokeAppPasswordInput:
    app_password_id: strawberry.ID


@strawberry.type
class RevokeAppPasswordPayload:
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class AuthenticateAppInput:
    login: str
    app_password: str


@strawberry.type(description="An app session: the token is shown once; no cookie is set.")
class AppSession:
    token: str
    expires_at: datetime


@strawberry.type
class AuthenticateAppPayload:
    session: AppSession | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class UpdateSecurityPolicyInput:
    organisation_id: strawberry.ID
    require_two_factor: bool
    confirm: bool = strawberry.field(description="Must be true: the change applies at once.")


@strawberry.type
class UpdateSecurityPolicyPayload:
    security_policy: SecurityPolicyType | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class SendSecurityAlertInput:
    membership_id: strawberry.ID


@strawberry.type
class SendSecurityAlertPayload:
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class TwoFactorMutations:
    @strawberry.mutation(description="Second step of signing in (MFA-7, MFA-8).")
    async def complete_second_factor(
        self, info: Info, input: CompleteSecondFactorInput
    ) -> CompleteSecondFactorPayload:
        context = info.context
        try:
            result = await second_factor.complete(
                context.services,
                context.meta,
                challenge_id=input.challenge_id,
                method=second_factor.SecondFactorMethod(input.method),
                code=input.code,
                device_cookie=context.device_cookie,
                credential=input.credential,
            )
        except DomainError as error:
            return CompleteSecondFactorPayload(errors=[UserError.from_domain(error)])
        context.new_device_cookie = result.device_cookie
        return CompleteSecondFactorPayload(session=Session.issued(info, result.session))

    @strawberry.mutation(description="Start adding an authenticator app (MFA-1).")
    async def begin_totp_enrolment(self, info: Info) -> BeginTotpEnrolmentPayload:
        context = info.context
        try:
            enrolment = await two_factor.begin_totp_enrolment(
                context.services, context.meta, context.actor
            )
        except DomainError as error:
            return BeginTotpEnrolmentPayload(errors=[UserError.from_domain(error)])
        return BeginTotpEnrolmentPayload(
            enrolment_id=encode_id(TOTP_ENROLMENT, enrolment.method_id),
            secret=enrolment.secret,
            otpauth_uri=enrolment.otpauth_uri,
            qr_code_svg=enrolment.qr_code_svg,
        )

    @strawberry.mutation(description="Finish adding an authenticator app with a first code.")
    async def confirm_totp_enrolment(
        self, info: Info, input: ConfirmTotpEnrolmentInput
    ) -> ConfirmTotpEnrolmentPayload:
        context = info.context
        try:
            confirmed = await two_factor.confirm_totp_enrolment(
                context.services,
                context.meta,
                context.actor,
                method_id=decode_id(input.enrolment_id, TOTP_ENROLMENT, "enrolmentId"),
                code=input.code,
                label=input.label,
            )
        except DomainError as error:
            return ConfirmTotpEnrolmentPayload(errors=[UserError.from_domain(error)])
        return ConfirmTotpEnrolmentPayload(
            method=TwoFactorMethodNode.from_model(confirmed.method),
            backup_codes=confirmed.backup_codes,
        )

    @strawberry.mutation(description="Start receiving codes by SMS: a first code is sent (MFA-3).")
    async def begin_sms_enrolment(
        self, info: Info, input: BeginSmsEnrolmentInput
    ) -> BeginSmsEnrolmentPayload:
        context = info.context
        try:
            enrolment = await sms_factor.begin_sms_enrolment(
                context.services, context.meta, context.actor, phone=input.phone
            )
        except DomainError as error:
            return BeginSmsEnrolmentPayload(errors=[UserError.from_domain(error)])
        return BeginSmsEnrolmentPayload(
            enrolment_id=encode_id(SMS_ENROLMENT, enrolment.method_id),
            sent_to=enrolment.sent.sent_to,
            expires_at=enrolment.sent.expires_at,
        )

    @strawberry.mutation(description="Finish adding a phone with the code it received (MFA-3).")
    async def confirm_sms_enrolment(
        self, info: Info, input: ConfirmSmsEnrolmentInput
    ) -> ConfirmSmsEnrolmentPayload:
        context = info.context
        try:
            confirmed = await sms_factor.confirm_sms_enrolment(
                context.services,
                context.meta,
                context.actor,
                method_id=decode_id(input.enrolment_id, SMS_ENROLMENT, "enrolmentId"),
                code=input.code,
                label=input.label,
            )
        except DomainError as error:
            return ConfirmSmsEnrolmentPayload(errors=[UserError.from_domain(error)])
        return ConfirmSmsEnrolmentPayload(
            method=TwoFactorMethodNode.from_model(confirmed.method),
            backup_codes=confirmed.backup_codes,
        )

    @strawberry.mutation(description="Send a sign-in code to the user's phone (MFA-3, MFA-7).")
    async def send_sign_in_code(
        self, info: Info, input: SendSignInCodeInput
    ) -> SendSignInCodePayload:
        context = info.context
        try:
            sent = await second_factor.send_sign_in_code(
                context.services, context.meta, challenge_id=input.challenge_id
            )
        except DomainError as error:
            return SendSignInCodePayload(errors=[UserError.from_domain(error)])
        return SendSignInCodePayload(sent_to=sent.sent_to, expires_at=sent.expires_at)

    @strawberry.mutation(description="A new set of backup codes; the old set stops (MFA-5).")
    async def regenerate_backup_codes(self, info: Info) -> RegenerateBackupCodesPayload:
        context = info.context
        try:
            codes = await two_factor.regenerate_backup_codes(
                context.services, context.meta, context.actor
            )
        except DomainError as error:
            return RegenerateBackupCodesPayload(errors=[UserError.from_domain(error)])
        return RegenerateBackupCodesPayload(backup_codes=codes)

    @strawberry.mutation(description="Remove a second factor; the password again (MFA-9).")
    async def remove_two_factor_method(
        self, info: Info, input: RemoveTwoFactorMethodInput
    ) -> RemoveTwoFactorMethodPayload:
        context = info.context
        try:
            still_on = await two_factor.remove_method(
                context.services,
                context.meta,
                context.actor,
                method_id=decode_id(input.method_id, "TwoFactorMethod", "methodId"),
                password=input.password,
            )
        except DomainError as error:
            return RemoveTwoFactorMethodPayload(errors=[UserError.from_domain(error)])
        return RemoveTwoFactorMethodPayload(two_factor_enabled=still_on)

    @strawberry.mutation(description="A password for a sync tool, shown once (MFA-6).")
    async def create_app_password(
        self, info: Info, input: CreateAppPasswordInput
    ) -> CreateAppPasswordPayload:
        context = info.context
        try:
            created = await app_passwords.create(
                context.services, context.meta, context.actor, label=input.label
            )
        except DomainError as error:
            return CreateAppPasswordPayload(errors=[UserError.from_domain(error)])
        return CreateAppPasswordPayload(
            app_password=AppPasswordNode.from_model(created.app_password), secret=created.secret
        )

    @strawberry.mutation(description="Revoke an app password and end app sessions (MFA-6).")
    async def revoke_app_password(
        self, info: Info, input: RevokeAppPasswordInput
    ) -> RevokeAppPasswordPayload:
        context = info.context
        try:
            await app_passwords.revoke(
                context.services,
                context.meta,
                context.actor,
                app_password_id=decode_id(input.app_password_id, "AppPassword", "appPasswordId"),
            )
        except DomainError as error:
            return RevokeAppPasswordPayload(errors=[UserError.from_domain(error)])
        return RevokeAppPasswordPayload()

    @strawberry.mutation(description="Sign a sync tool in with an app password (MFA-6).")
    async def authenticate_app(
        self, info: Info, input: AuthenticateAppInput
    ) -> AuthenticateAppPayload:
        context = info.context
        try:
            issued = await app_passwords.authenticate_app(
                context.services, context.meta, login=input.login, app_password=input.app_password
            )
        except DomainError as error:
            return AuthenticateAppPayload(errors=[UserError.from_domain(error)])
        return AuthenticateAppPayload(
            session=AppSession(token=issued.token, expires_at=issued.session.expires_at)
        )

    @strawberry.mutation(description="Require 2FA of every member, or lift it (POL-1).")
    async def update_security_policy(
        self, info: Info, input: UpdateSecurityPolicyInput
    ) -> UpdateSecurityPolicyPayload:
        context = info.context
        try:
            required, updated_at = await security_policy.update_policy(
                context.services,
                context.meta,
                context.scope,
                organisation_id=decode_id(input.organisation_id, "Organisation", "organisationId"),
                require_two_factor=input.require_two_factor,
                confirm=input.confirm,
            )
        except DomainError as error:
            return UpdateSecurityPolicyPayload(errors=[UserError.from_domain(error)])
        return UpdateSecurityPolicyPayload(
            security_policy=SecurityPolicyType(require_two_factor=required, updated_at=updated_at)
        )

    @strawberry.mutation(description="E-mail a member a summary of their security (POL-3).")
    async def send_security_alert(
        self, info: Info, input: SendSecurityAlertInput
    ) -> SendSecurityAlertPayload:
        context = info.context
        try:
            await security_policy.send_security_alert(
                context.services,
                context.meta,
                context.scope,
                membership_id=decode_id(input.membership_id, "Membership", "membershipId"),
            )
        except DomainError as error:
            return SendSecurityAlertPayload(errors=[UserError.from_domain(error)])
        return SendSecurityAlertPayload()
