"""The viewer's profile, recovery contacts, support code and login e-mail (PRO-1…PRO-5)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from gardien.resolvers import login_email, profile, profile_details, recovery_contacts
from gardien.resolvers.errors import DomainError
from gardien.schema.context import Info
from gardien.schema.errors import UserError
from gardien.schema.users import UserNode


@strawberry.input(description="PRO-1: omitted fields keep their value; country null removes it.")
class UpdateProfileInput:
    display_name: str | None = None
    language: str | None = strawberry.field(default=None, description="fr, en, de or it.")
    country: str | None = strawberry.field(
        default=strawberry.UNSET, description="ISO 3166-1 alpha-2 code, such as CH."
    )
    timezone: str | None = strawberry.field(
        default=None, description="IANA time zone name, such as Europe/Zurich."
    )


@strawberry.type
class UpdateProfilePayload:
    user: UserNode | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input(description="PRO-2: phone null removes the recovery phone.")
class SetRecoveryPhoneInput:
    phone: str | None = strawberry.field(
        description="A mobile number with its country code (read as one of your profile's"
        " country without it)."
    )
    current_password: str


@strawberry.input(description="PRO-3: email null removes the recovery e-mail.")
class SetRecoveryEmailInput:
    email: str | None
    current_password: str


@strawberry.type
class SetRecoveryContactPayload:
    user: UserNode | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RegenerateSupportCodePayload:
    support_code: str | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RequestLoginEmailChangeInput:
    new_email: str
    current_password: str


@strawberry.type
class RequestLoginEmailChangePayload:
    expires_at: datetime | None = strawberry.field(
        default=None, description="When the link sent to the new address expires."
    )
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class ConfirmLoginEmailChangeInput:
    token: str = strawberry.field(description="The token of the link, or the code, e-mailed.")


@strawberry.type
class ConfirmLoginEmailChangePayload:
    email: str | None = strawberry.field(default=None, description="The new login e-mail.")
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ProfileMutations:
    @strawberry.mutation(description="Change your name, language, country or time zone (PRO-1).")
    async def update_profile(self, info: Info, input: UpdateProfileInput) -> UpdateProfilePayload:
        try:
            user = await profile_details.update_profile(
                info.context.services,
                info.context.meta,
                info.context.actor,
                display_name=input.display_name,
                language=input.language,
                # UNSET keeps the country and null removes it; any string, "" too, is checked.
                country=input.country if isinstance(input.country, str) else None,
                clear_country=input.country is None,
                timezone=input.timezone,
            )
        except DomainError as error:
            return UpdateProfilePayload(errors=[UserError.from_domain(error)])
        return UpdateProfilePayload(user=await UserNode.load(info, user))

    @strawberry.mutation(
        description="Set, change or remove your recovery phone (PRO-2); needs your password."
    )
    async def set_recovery_phone(
        self, info: Info, input: SetRecoveryPhoneInput
    ) -> SetRecoveryContactPayload:
        try:
            user = await recovery_contacts.set_recovery_phone(
                info.context.services,
                info.context.meta,
                info.context.actor,
                phone=input.phone,
                current_password=input.current_password,
            )
        except DomainError as error:
            return SetRecoveryContactPayload(errors=[UserError.from_domain(error)])
        return SetRecoveryContactPayload(user=await UserNode.load_changed(info, user))

    @strawberry.mutation(
        description="Set, change or remove your recovery e-mail (PRO-3); needs your password."
    )
    async def set_recovery_email(
        self, info: Info, input: SetRecoveryEmailInput
    ) -> SetRecoveryContactPayload:
        try:
            user = await recovery_contacts.set_recovery_email(
                info.context.services,
                info.context.meta,
                info.context.actor,
                email=input.email,
                current_password=input.current_password,
            )
        except DomainError as error:
            return SetRecoveryContactPayload(errors=[UserError.from_domain(error)])
        return SetRecoveryContactPayload(user=await UserNode.load_changed(info, user))

    @strawberry.mutation(description="Replace your support code with a new one (PRO-4).")
    async def regenerate_support_code(self, info: Info) -> RegenerateSupportCodePayload:
        try:
            code = await profile.regenerate_support_code(
                info.context.services, info.context.meta, info.context.actor
            )
        except DomainError as error:
            return RegenerateSupportCodePayload(errors=[UserError.from_domain(error)])
        return RegenerateSupportCodePayload(support_code=code)

    @strawberry.mutation(
        description="Ask to change your login e-mail (PRO-5): a link goes to the new address."
        " The answer is the same whether or not the address is free."
    )
    async def request_login_email_change(
        self, info: Info, input: RequestLoginEmailChangeInput
    ) -> RequestLoginEmailChangePayload:
        try:
            expires_at = await login_email.request_login_email_change(
                info.context.services,
                info.context.meta,
                info.context.actor,
                new_email=input.new_email,
                current_password=input.current_password,
            )
        except DomainError as error:
            return RequestLoginEmailChangePayload(errors=[UserError.from_domain(error)])
        return RequestLoginEmailChangePayload(expires_at=expires_at)

    @strawberry.mutation(
        description="Confirm a login e-mail change with the token e-mailed to the new address"
        " (PRO-5); the former address is told."
    )
    async def confirm_login_email_change(
        self, info: Info, input: ConfirmLoginEmailChangeInput
    ) -> ConfirmLoginEmailChangePayload:
        try:
            user = await login_email.confirm_login_email_change(
                info.context.services, info.context.meta, token=input.token
            )
        except DomainError as error:
            return ConfirmLoginEmailChangePayload(errors=[UserError.from_domain(error)])
        return ConfirmLoginEmailChangePayload(email=user.email)
