"""The viewer's own security: sessions (ACT-6), activity (ACT-4), security e-mails (ACT-4) and
"secure my account" (ACT-5)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from gardien.models.enums import SessionKind as SessionKindModel
from gardien.models.sessions import Session
from gardien.resolvers import account_security, activity_log, authz, security_notices, sessions
from gardien.resolvers.account_security import SecureAccountStep as SecureAccountStepModel
from gardien.resolvers.errors import DomainError
from gardien.schema.activity import ActivityEventNode
from gardien.schema.context import Info, SessionCookie
from gardien.schema.errors import UserError
from gardien.schema.relay import (
    Connection,
    Node,
    counted_connection,
    decode_cursor,
    decode_id,
    encode_id,
)

SessionKind = strawberry.enum(SessionKindModel, name="SessionKind")
SecureAccountStep = strawberry.enum(
    SecureAccountStepModel, name="SecureAccountStep", description="What is left to do (ACT-5)."
)


@strawberry.type(name="ActiveSession", description="A web or app session of yours (ACT-6).")
class ActiveSessionNode(Node):
    kind: SessionKind  # type: ignore[valid-type]
    device: str | None
    ip: str | None
    country: str | None
    created_at: datetime
    last_seen_at: datetime
    current: bool = strawberry.field(description="True for the session making this request.")

    @classmethod
    def of(cls, info: Info, session: Session) -> ActiveSessionNode:
        current = info.context.actor.session
        return cls(
            id=encode_id("ActiveSession", session.id),
            kind=session.kind,
            device=session.device,
            ip=session.ip,
            country=session.country,
            created_at=session.created_at,
            last_seen_at=session.last_seen_at,
            current=current is not None and current.id == session.id,
        )


@strawberry.type(description="Which security e-mails you receive (ACT-4).")
class SecurityEmailPreferences:
    new_location: bool = strawberry.field(
        description="A sign-in from a new country or device. Always on: it is how you learn"
        " that someone else signed in."
    )
    wrong_password: bool = strawberry.field(
        description="A wrong password entered for your login (at most one per 15 minutes)."
    )

    @classmethod
    def of(cls, prefs: security_notices.SecurityEmailPreferences) -> SecurityEmailPreferences:
        return cls(new_location=prefs.new_location, wrong_password=prefs.wrong_password)


def _is_viewer(info: Info, user_id: int) -> bool:
    # The user's own security record: never another user's, never through an integrator token.
    return authz.can_view_own_activity(info.context.actor, user_id)


async def own_sessions(info: Info, user_id: int) -> list[ActiveSessionNode] | None:
    if not _is_viewer(info, user_id):
        return None
    rows = await sessions.own_sessions(info.context.services, info.context.actor)
    return [ActiveSessionNode.of(info, row) for row in rows]


async def own_activity(
    info: Info,
    user_id: int,
    first: int | None,
    after: str | None,
    types: list[str] | None,
    since: datetime | None,
    until: datetime | None,
) -> Connection[ActivityEventNode] | None:
    if not _is_viewer(info, user_id):
        return None
    filters = activity_log.activity_filter(types, since, until)
    counted = await activity_log.own_activity(
        info.context.actor, filters, first=first, after_id=decode_cursor(after)
    )
    return counted_connection(counted, ActivityEventNode.from_model, lambda e: e.id)


async def own_security_email_preferences(
    info: Info, user_id: int
) -> SecurityEmailPreferences | None:
    if not _is_viewer(info, user_id):
        return None
    return SecurityEmailPreferences.of(await security_notices.preferences(info.context.actor))


async def active_session_by_id(info: Info, session_id: int) -> ActiveSessionNode:
    session = await sessions.own_session(info.context.services, info.context.actor, session_id)
    return ActiveSessionNode.of(info, session)


@strawberry.input
class RevokeSessionInput:
    session_id: strawberry.ID


@strawberry.type
class RevokeSessionPayload:
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class SecureAccountPayload:
    sessions_revoked: int | None = None
    app_passwords_revoked: int | None = None
    tokens_revoked: int | None = strawberry.field(
        default=None, description="Personal access tokens revoked."
    )
    service_accounts_revoked: int | None = strawberry.field(
        default=None, description="Service accounts you created, revoked in every organisation."
    )
    steps: list[SecureAccountStep] | None = None  # type: ignore[valid-type]
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class SetSecurityEmailPreferencesInput:
    new_location: bool | None = None
    wrong_password: bool | None = None


@strawberry.type
class SetSecurityEmailPreferencesPayload:
    preferences: SecurityEmailPreferences | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class SecurityMutations:
    @strawberry.mutation(description="End one of your sessions, web or app (ACT-6).")
    async def revoke_session(self, info: Info, input: RevokeSessionInput) -> RevokeSessionPayload:
        try:
            session = await sessions.revoke_own_session(
                info.context.services,
                info.context.meta,
                info.context.actor,
                decode_id(input.session_id, "ActiveSession", "sessionId"),
            )
        except DomainError as error:
            return RevokeSessionPayload(errors=[UserError.from_domain(error)])
        current = info.context.actor.session
        if current is not None and current.id == session.id:
            info.context.session_cookie = SessionCookie(token=None)
        return RevokeSessionPayload()

    @strawberry.mutation(
        description="Secure my account (ACT-5): end every other session, revoke app passwords"
        " and remembered browsers; answers the steps left to you."
    )
    async def secure_account(self, info: Info) -> SecureAccountPayload:
        try:
            result = await account_security.secure_account(
                info.context.services, info.context.meta, info.context.actor
            )
        except DomainError as error:
            return SecureAccountPayload(errors=[UserError.from_domain(error)])
        return SecureAccountPayload(
            sessions_revoked=result.sessions_revoked,
            app_passwords_revoked=result.app_passwords_revoked,
            tokens_revoked=result.tokens_revoked,
            service_accounts_revoked=result.service_accounts_revoked,
            steps=list(result.steps),
        )

    @strawberry.mutation(description="Choose which security e-mails you receive (ACT-4).")
    async def set_security_email_preferences(
        self, info: Info, input: SetSecurityEmailPreferencesInput
    ) -> SetSecurityEmailPreferencesPayload:
        try:
            prefs = await security_notices.set_preferences(
                info.context.services,
                info.context.meta,
                info.context.actor,
                new_location=input.new_location,
                wrong_password=input.wrong_password,
            )
        except DomainError as error:
            return SetSecurityEmailPreferencesPayload(errors=[UserError.from_domain(error)])
        return SetSecurityEmailPreferencesPayload(preferences=SecurityEmailPreferences.of(prefs))
