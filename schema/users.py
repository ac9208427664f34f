"""The User type; its private fields answer only to the user themself."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from gardien.models.enums import TwoFactorKind as TwoFactorKindModel
from gardien.models.mfa import TwoFactorMethod
from gardien.models.users import User
from gardien.resolvers import app_passwords, organisations, profile, two_factor
from gardien.resolvers.authz import SignedInUser
from gardien.resolvers.organisations import UserSummary
from gardien.schema.context import Info
from gardien.schema.relay import Connection, Node, connection, decode_cursor, encode_id

if TYPE_CHECKING:
    from gardien.schema.activity import ActivityEventNode
    from gardien.schema.members import MembershipNode
    from gardien.schema.organisations import OrganisationNode
    from gardien.schema.security import ActiveSessionNode, SecurityEmailPreferences
    from gardien.schema.tokens import PersonalAccessTokenNode
    from gardien.schema.two_factor import AppPasswordNode

TwoFactorKind = strawberry.enum(TwoFactorKindModel, name="TwoFactorKind")


@strawberry.type(name="TwoFactorMethod", description="A registered second factor (MFA-*).")
class TwoFactorMethodNode(Node):
    kind: TwoFactorKind  # type: ignore[valid-type]
    label: str
    created_at: datetime
    last_used_at: datetime | None

    @classmethod
    def from_model(cls, method: TwoFactorMethod) -> TwoFactorMethodNode:
        return cls(
            id=encode_id("TwoFactorMethod", method.id),
            kind=method.kind,
            label=method.label,
            created_at=method.created_at,
            last_used_at=method.last_used_at,
        )


@strawberry.type(name="User")
class UserNode(Node):
    email: str | None
    display_name: str
    language: str
    country: str | None
    timezone: str
    two_factor_enabled: bool | None = strawberry.field(
        description="True once a second factor is confirmed (POL-2); null to fellow members"
        " other than administrators and legal representatives."
    )
    _user_id: strawberry.Private[int]
    # The row an operation just changed, for its payload: the session's snapshot of the user
    # was read before the change (PRO-2, PRO-3).
    _changed: strawberry.Private[User | None] = None

    @classmethod
    def from_model(
        cls, user: User | SignedInUser | UserSummary, *, two_factor_enabled: bool | None
    ) -> UserNode:
        # Plain values, not resolvers: a page of members then executes without one task per field.
        return cls(
            id=encode_id("User", user.id),
            email=user.email,
            display_name=user.display_name,
            language=user.language,
            country=user.country,
            timezone=user.timezone,
            two_factor_enabled=two_factor_enabled,
            _user_id=user.id,
        )

    @classmethod
    def from_summary(cls, user: UserSummary) -> UserNode:
        return cls.from_model(user, two_factor_enabled=user.two_factor_enabled)

    @classmethod
    async def load(cls, info: Info, user: User | SignedInUser) -> UserNode:
        enabled = await info.context.loaders.two_factor_enabled.load(user.id)
        return cls.from_model(user, two_factor_enabled=enabled)

    @classmethod
    async def load_changed(cls, info: Info, user: User) -> UserNode:
        node = await cls.load(info, user)
        node._changed = user
        return node

    def _own(self, info: Info) -> User | SignedInUser | None:
        own = profile.own_profile(info.context.actor, self._user_id)
        return (self._changed or own) if own else None

    @strawberry.field(description="E.164 recovery phone; only for the user themself.")
    def recovery_phone(self, info: Info) -> str | None:
        own = self._own(info)
        return own.recovery_phone if own else None

    @strawberry.field(description="Recovery e-mail; only for the user themself.")
    def recovery_email(self, info: Info) -> str | None:
        own = self._own(info)
        return own.recovery_email if own else None

    @strawberry.field(
        description="True while the login e-mail was deleted and a new one must be set before"
        " anything else (REC-4); only for the user themself, else null."
    )
    def must_set_login_email(self, info: Info) -> bool | None:
        own = self._own(info)
        return own.must_set_login_email if own else None

    @strawberry.field(
        description="Code the user reads to support (PRO-4); only for the user themself."
    )
    def support_code(self, info: Info) -> str | None:
        return profile.own_support_code(info.context.services, info.context.actor, self._user_id)

    @strawberry.field(description="Second factors; only for the user themself.")
    async def two_factor_methods(self, info: Info) -> list[TwoFactorMethodNode]:
        methods = await two_factor.own_methods(info.context.actor, self._user_id)
        return [TwoFactorMethodNode.from_model(m) for m in methods]

    @strawberry.field(
        description="Unused backup codes left (MFA-5); only for the user themself, else null."
    )
    async def backup_codes_remaining(self, info: Info) -> int | None:
        return await two_factor.backup_codes_remaining(info.context.actor, self._user_id)

    @strawberry.field(description="Active app passwords (MFA-6); only for the user themself.")
    async def app_passwords(
        self, info: Info
    ) -> list[Annotated[AppPasswordNode, strawberry.lazy("gardien.schema.two_factor")]]:
        from gardien.schema.two_factor import AppPasswordNode

        found = await app_passwords.own_app_passwords(info.context.actor, self._user_id)
        return [AppPasswordNode.from_model(a) for a in found]

    @strawberry.field(description="The organisation the user works in now (ORG-2).")
    async def current_organisation(
        self, info: Info
    ) -> Annotated[OrganisationNode, strawberry.lazy("gardien.schema.organisations")] | None:
        from gardien.schema.organisations import OrganisationNode

        caller = await organisations.current_organisation(info.context.scope, self._user_id)
        return OrganisationNode.of_caller(caller) if caller else None

    @strawberry.field(description="The user's memberships (ORG-2); only for the user themself.")
    async def memberships(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[Annotated[MembershipNode, strawberry.lazy("gardien.schema.members")]]:
        from gardien.schema.members import membership_nodes

        counted = await organisations.own_memberships(
            info.context.scope, self._user_id, first=first, after_id=decode_cursor(after)
        )
        page = counted.page
        return connection(
            membership_nodes(page.items),
            [entry.membership_id for entry in page.items],
            page.has_next_page,
            counted.count,
            page.total_count,
        )

    @strawberry.field(
        description="Your security activity, newest first, filtered by type and time (ACT-4);"
        " null for anyone else's."
    )
    async def activity(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        types: list[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> (
        Connection[Annotated[ActivityEventNode, strawberry.lazy("gardien.schema.activity")]] | None
    ):
        from gardien.schema.security import own_activity

        return await own_activity(info, self._user_id, first, after, types, since, until)

    @strawberry.field(
        description="Your active web and app sessions (ACT-6); null for anyone else's."
    )
    async def sessions(
        self, info: Info
    ) -> list[Annotated[ActiveSessionNode, strawberry.lazy("gardien.schema.security")]] | None:
        from gardien.schema.security import own_sessions

        return await own_sessions(info, self._user_id)

    @strawberry.field(description="Which security e-mails you receive (ACT-4); only your own.")
    async def security_email_preferences(
        self, info: Info
    ) -> Annotated[SecurityEmailPreferences, strawberry.lazy("gardien.schema.security")] | None:
        from gardien.schema.security import own_security_email_preferences

        return await own_security_email_preferences(info, self._user_id)

    @strawberry.field(
        description="Personal access tokens not revoked, with their last use (API-6); only for"
        " the user themself."
    )
    async def personal_access_tokens(
        self, info: Info
    ) -> list[Annotated[PersonalAccessTokenNode, strawberry.lazy("gardien.schema.tokens")]]:
        from gardien.schema.tokens import own_token_nodes

        return await own_token_nodes(info, self._user_id)


async def user_by_id(info: Info, user_id: int) -> UserNode:
    """node(id:): a user answers by id to themself alone."""
    return await UserNode.load(info, profile.visible_user(info.context.actor, user_id))


async def two_factor_method_by_id(info: Info, method_id: int) -> TwoFactorMethodNode:
    """node(id:): one of the caller's own confirmed second factors."""
    method = await two_factor.own_confirmed_method(info.context.actor, method_id)
    return TwoFactorMethodNode.from_model(method)
