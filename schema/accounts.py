"""Sign-up and its confirmation, sign-in and sign-out mutations (ORG-1, MFA-7, MFA-8)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from gardien.resolvers import accounts, sign_ups
from gardien.resolvers.errors import DomainError
from gardien.resolvers.sessions import IssuedSession
from gardien.schema.context import Info, SessionCookie
from gardien.schema.errors import UserError
from gardien.schema.users import TwoFactorKind, UserNode


@strawberry.type(description="A web session; the token is shown once, here.")
class Session:
    token: str
    expires_at: datetime

    @classmethod
    def issued(cls, info: Info, issued: IssuedSession) -> Session:
        info.context.session_cookie = SessionCookie(
            token=issued.token, persistent=issued.session.persistent
        )
        return cls(token=issued.token, expires_at=issued.session.expires_at)


@strawberry.type(description="The password was right; finish with one of these methods (MFA-7).")
class SecondFactorChallenge:
    challenge_id: str
    methods: list[TwoFactorKind]  # type: ignore[valid-type]
    expires_at: datetime


@strawberry.input
class SignUpInput:
    email: str
    password: str
    display_name: str
    language: str | None = None


@strawberry.type(
    description="Accepted: a message is on its way to the address (ORG-1). The same answer "
    "whether or not the address already has an account; the account exists only once "
    "confirmSignUp is called with the token from that message."
)
class SignUpPayload:
    # Kept for clients written when sign-up opened the account at once; always null now.
    user: UserNode | None = strawberry.field(
        default=None, deprecation_reason="Always null: the account opens with confirmSignUp."
    )
    session: Session | None = strawberry.field(
        default=None, deprecation_reason="Always null: confirmSignUp opens the session."
    )
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class ConfirmSignUpInput:
    token: str = strawberry.field(description="The token of the confirmation e-mail.")


@strawberry.type
class ConfirmSignUpPayload:
    user: UserNode | None = None
    session: Session | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class SignInInput:
    login: str = strawberry.field(description="Login e-mail, or the generated username (REC-4).")
    password: str
    remember_browser: bool = strawberry.field(
        default=False,
        description="False: the session cookie ends when the browser closes (MFA-8).",
    )


@strawberry.type
class SignInPayload:
    session: Session | None = None
    second_factor: SecondFactorChallenge | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class SignOutPayload:
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class AccountMutations:
    @strawberry.mutation(
        description="Ask for an account: a confirmation e-mail goes to the address (ORG-1)."
    )
    async def sign_up(self, info: Info, input: SignUpInput) -> SignUpPayload:
        try:
            await sign_ups.request_sign_up(
                info.context.services,
                info.context.meta,
                email=input.email,
                password=input.password,
                display_name=input.display_name,
                language=input.language,
            )
        except DomainError as error:
            return SignUpPayload(errors=[UserError.from_domain(error)])
        return SignUpPayload()

    @strawberry.mutation(
        description="Confirm a sign-up: opens the account, its own organisation and a session "
        "(ORG-1)."
    )
    async def confirm_sign_up(self, info: Info, input: ConfirmSignUpInput) -> ConfirmSignUpPayload:
        try:
            result = await sign_ups.confirm_sign_up(
                info.context.services, info.context.meta, token=input.token
            )
        except DomainError as error:
            return ConfirmSignUpPayload(errors=[UserError.from_domain(error)])
        info.context.new_device_cookie = result.device_cookie
        return ConfirmSignUpPayload(
            user=UserNode.from_model(result.user, two_factor_enabled=False),
            session=Session.issued(info, result.session),
        )

    @strawberry.mutation(description="Password step of signing in (MFA-7).")
    async def sign_in(self, info: Info, input: SignInInput) -> SignInPayload:
        try:
            result = await accounts.sign_in(
                info.context.services,
                info.context.meta,
                login=input.login,
                password=input.password,
                remember_browser=input.remember_browser,
                device_cookie=info.context.device_cookie,
            )
        except DomainError as error:
            return SignInPayload(errors=[UserError.from_domain(error)])
        info.context.new_device_cookie = result.device_cookie
        if result.second_factor is not None:
            challenge = result.second_factor
            return SignInPayload(
                second_factor=SecondFactorChallenge(
                    challenge_id=challenge.challenge_id,
                    methods=challenge.methods,
                    expires_at=challenge.expires_at,
                )
            )
        assert result.session is not None
        return SignInPayload(session=Session.issued(info, result.session))

    @strawberry.mutation(description="End the current session.")
    async def sign_out(self, info: Info) -> SignOutPayload:
        try:
            await accounts.sign_out(info.context.services, info.context.meta, info.context.actor)
        except DomainError as error:
            return SignOutPayload(errors=[UserError.from_domain(error)])
        info.context.session_cookie = SessionCookie(token=None)
        return SignOutPayload()
