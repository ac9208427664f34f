"""Account recovery in GraphQL: forgot password, identity verification, forgot login (REC-1…3)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from gardien.models.enums import CaseStatus as CaseStatusModel
from gardien.models.enums import RecoveryChannel as RecoveryChannelModel
from gardien.models.recovery import IdentityVerificationCase
from gardien.resolvers import identity_verification, login_reminder, recovery
from gardien.resolvers.errors import DomainError
from gardien.schema.context import Info
from gardien.schema.errors import UserError
from gardien.schema.relay import Connection, counted_connection, decode_cursor, decode_id, encode_id

RecoveryChannel = strawberry.enum(RecoveryChannelModel, name="RecoveryChannel")
CaseStatus = strawberry.enum(CaseStatusModel, name="IdentityVerificationStatus")
LoginReminderChannel = strawberry.enum(
    login_reminder.ReminderChannel,
    name="LoginReminderChannel",
    description="Where the login is sent (REC-3).",
)
CASE_TYPE = "IdentityVerificationCase"


@strawberry.type(description="Where a recovery code can go, shown masked (REC-1).")
class RecoveryOption:
    id: str
    channel: RecoveryChannel  # type: ignore[valid-type]
    masked_destination: str


@strawberry.input
class RequestPasswordResetInput:
    login: str = strawberry.field(description="Login e-mail, or the generated username (REC-4).")


@strawberry.type(
    description="The same shape whether or not the login has an account: an unknown login gets "
    "options too, and a code sent to one of them goes nowhere. No option: ask for identity "
    "verification (requestIdentityVerification)."
)
class RequestPasswordResetPayload:
    recovery_id: str | None = None
    options: list[RecoveryOption] = strawberry.field(default_factory=list)
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class SendRecoveryCodeInput:
    recovery_id: str
    option_id: str


@strawberry.type
class SendRecoveryCodePayload:
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class ResetPasswordInput:
    recovery_id: str
    code: str
    new_password: str


@strawberry.type
class ResetPasswordPayload:
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RequestIdentityVerificationInput:
    contact_email: str = strawberry.field(description="Where support answers.")
    details: str = strawberry.field(description="What proves who you are, for support to check.")
    login: str | None = None


@strawberry.type(description="The same answer whatever the login (REC-2).")
class RequestIdentityVerificationPayload:
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type(name="IdentityVerificationCase", description="A case support reviews (REC-2).")
class IdentityVerificationCaseType:
    id: strawberry.ID
    status: CaseStatus  # type: ignore[valid-type]
    login: str | None
    contact_email: str
    details: str
    has_account: bool = strawberry.field(description="Whether the login names an account.")
    created_at: datetime
    reviewed_at: datetime | None

    @classmethod
    def from_model(cls, case: IdentityVerificationCase) -> IdentityVerificationCaseType:
        return cls(
            id=encode_id(CASE_TYPE, case.id),
            status=case.status,
            login=case.login,
            contact_email=case.contact_email,
            details=case.details,
            has_account=case.user_id is not None,
            created_at=case.created_at,
            reviewed_at=case.reviewed_at,
        )


@strawberry.input
class ReviewIdentityVerificationInput:
    case_id: strawberry.ID
    approve: bool
    contact_email: str | None = strawberry.field(
        default=None, description="With approve: where the one-time reset link goes."
    )


@strawberry.type
class ReviewIdentityVerificationPayload:
    case: IdentityVerificationCaseType | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class CompleteIdentityVerificationResetInput:
    token: str = strawberry.field(description="The token of the link support's approval sent.")
    new_password: str


@strawberry.type
class CompleteIdentityVerificationResetPayload:
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RecoverLoginIdentifierInput:
    phone: str
    recovery_email: str
    channel: LoginReminderChannel  # type: ignore[valid-type]


@strawberry.type(
    description="The login is never in the answer: it is sent to the chosen contact. When no "
    "single account matches, identity verification is offered instead (REC-3)."
)
class RecoverLoginIdentifierPayload:
    identity_verification_offered: bool = False
    errors: list[UserError] = strawberry.field(default_factory=list)


async def identity_verification_cases(
    info: Info, status: CaseStatusModel | None, first: int | None, after: str | None
) -> Connection[IdentityVerificationCaseType]:
    counted = await identity_verification.cases(
        info.context.services,
        info.context.meta,
        info.context.actor,
        status=status,
        first=first,
        after_id=decode_cursor(after),
    )
    return counted_connection(counted, IdentityVerificationCaseType.from_model, lambda c: c.id)


@strawberry.type
class RecoveryMutations:
    @strawberry.mutation(description="Forgot password: the account's recovery options (REC-1).")
    async def request_password_reset(
        self, info: Info, input: RequestPasswordResetInput
    ) -> RequestPasswordResetPayload:
        try:
            result = await recovery.request_password_reset(
                info.context.services, info.context.meta, login=input.login
            )
        except DomainError as error:
            return RequestPasswordResetPayload(errors=[UserError.from_domain(error)])
        return RequestPasswordResetPayload(
            recovery_id=result.recovery_id,
            options=[
                RecoveryOption(
                    id=option.id,
                    channel=option.channel,
                    masked_destination=option.masked_destination,
                )
                for option in result.options
            ],
        )

    @strawberry.mutation(description="Send a code, valid 30 minutes, to the chosen option.")
    async def send_recovery_code(
        self, info: Info, input: SendRecoveryCodeInput
    ) -> SendRecoveryCodePayload:
        try:
            await recovery.send_recovery_code(
                info.context.services,
                info.context.meta,
                recovery_id=input.recovery_id,
                chosen_option=input.option_id,
            )
        except DomainError as error:
            return SendRecoveryCodePayload(errors=[UserError.from_domain(error)])
        return SendRecoveryCodePayload()

    @strawberry.mutation(
        description="Set a new password with the code; every session, app password and "
        "token of the account ends (REC-1)."
    )
    async def reset_password(self, info: Info, input: ResetPasswordInput) -> ResetPasswordPayload:
        try:
            await recovery.reset_password(
                info.context.services,
                info.context.meta,
                recovery_id=input.recovery_id,
                code=input.code,
                new_password=input.new_password,
            )
        except DomainError as error:
            return ResetPasswordPayload(errors=[UserError.from_domain(error)])
        return ResetPasswordPayload()

    @strawberry.mutation(description="No recovery option left: ask support to check (REC-2).")
    async def request_identity_verification(
        self, info: Info, input: RequestIdentityVerificationInput
    ) -> RequestIdentityVerificationPayload:
        try:
            await identity_verification.request_identity_verification(
                info.context.services,
                info.context.meta,
                login=input.login,
                contact_email=input.contact_email,
                details=input.details,
            )
        except DomainError as error:
            return RequestIdentityVerificationPayload(errors=[UserError.from_domain(error)])
        return RequestIdentityVerificationPayload()

    @strawberry.mutation(description="Support agents: approve or reject a case (REC-2).")
    async def review_identity_verification(
        self, info: Info, input: ReviewIdentityVerificationInput
    ) -> ReviewIdentityVerificationPayload:
        try:
            case = await identity_verification.review(
                info.context.services,
                info.context.meta,
                info.context.actor,
                case_id=decode_id(input.case_id, CASE_TYPE, "caseId"),
                approve=input.approve,
                contact_email=input.contact_email,
            )
        except DomainError as error:
            return ReviewIdentityVerificationPayload(errors=[UserError.from_domain(error)])
        return ReviewIdentityVerificationPayload(case=IdentityVerificationCaseType.from_model(case))

    @strawberry.mutation(description="Set a new password from support's one-time link (REC-2).")
    async def complete_identity_verification_reset(
        self, info: Info, input: CompleteIdentityVerificationResetInput
    ) -> CompleteIdentityVerificationResetPayload:
        try:
            await identity_verification.complete_reset(
                info.context.services,
                info.context.meta,
                token=input.token,
                new_password=input.new_password,
            )
        except DomainError as error:
            return CompleteIdentityVerificationResetPayload(errors=[UserError.from_domain(error)])
        return CompleteIdentityVerificationResetPayload()

    @strawberry.mutation(description="Forgot login: sent to the chosen contact (REC-3).")
    async def recover_login_identifier(
        self, info: Info, input: RecoverLoginIdentifierInput
    ) -> RecoverLoginIdentifierPayload:
        try:
            answer = await login_reminder.recover_login_identifier(
                info.context.services,
                info.context.meta,
                phone=input.phone,
                recovery_email=input.recovery_email,
                channel=input.channel,
            )
        except DomainError as error:
            return RecoverLoginIdentifierPayload(errors=[UserError.from_domain(error)])
        return RecoverLoginIdentifierPayload(
            identity_verification_offered=answer.identity_verification_offered
        )
