"""The User type; its private fields answer only to the user themself."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry
from gardien.models.enums import TwoFactorKind as TwoFactorKindModel
from gardien.models.mfa import TwoFactorMethod
from gardien.models.users import User
from gardien.resolvers import authz, organisations
from gardien.schema.context import Info
from gardien.schema.relay import Connection, Node, connection, decode_cursor, encode_id

if TYPE_CHECKING:
    from gardien.schema.members import MembershipNode
    from gardien.schema.organisations import OrganisationNode

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
    _model: strawberry.Private[User]

    @classmethod
    def from_model(cls, user: User) -> UserNode:
        return cls(
            id=encode_id("User", user.id),
            email=user.email,
            display_name=user.display_name,
            language=user.language,
            country=user.country,
            timezone=user.timezone,
            _model=user,
        )

    def _is_self(self, info: Info) -> bool:
        return authz.can_view_private_profile(info.context.actor, self._model.id)

    @strawberry.field(description="True once a second factor is confirmed (POL-2).")
    async def two_factor_enabled(self, info: Info) -> bool:
        return await info.context.loaders.two_factor_enabled.load(self._model.id)

    @strawberry.field(description="E.164 recovery phone; only for the user themself.")
    def recovery_phone(self, info: Info) -> str | None:
        return self._model.recovery_phone if self._is_self(info) else None

    @strawberry.field(description="Recovery e-mail; only for the user themself.")
    def recovery_email(self, info: Info) -> str | None:
        return self._model.recovery_email if self._is_self(info) else None

    @strawberry.field(
        description="Code the user reads to support (PRO-4); only for the user themself."
    )
    def support_code(self, info: Info) -> str | None:
        encrypted = self._model.support_code_encrypted
        if not self._is_self(info) or encrypted is None:
            return None
        return info.context.services.keyring.decrypt(encrypted, "support-code").decode()

    @strawberry.field(description="Second factors; only for the user themself.")
    async def two_factor_methods(self, info: Info) -> list[TwoFactorMethodNode]:
        if not self._is_self(info):
            return []
        methods = await TwoFactorMethod.filter(
            user_id=self._model.id, confirmed_at__isnull=False
        ).order_by("id")
        return [TwoFactorMethodNode.from_model(m) for m in methods]

    @strawberry.field(description="The organisation the user works in now (ORG-2).")
    async def current_organisation(
        self, info: Info
    ) -> Annotated[OrganisationNode, strawberry.lazy("gardien.schema.organisations")] | None:
        from gardien.schema.organisations import OrganisationNode

        organisation_id = self._model.current_organisation_id
        if not self._is_self(info) or organisation_id is None:
            return None
        organisation = await info.context.loaders.organisation.load(organisation_id)
        return OrganisationNode.from_model(organisation) if organisation else None

    @strawberry.field(description="The user's memberships (ORG-2); only for the user themself.")
    async def memberships(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[Annotated[MembershipNode, strawberry.lazy("gardien.schema.members")]]:
        from gardien.schema.members import MembershipNode

        actor = info.context.actor
        if not self._is_self(info):
            return connection([], [], False, _zero)
        page = await organisations.viewer_memberships(
            actor, first=first, after_id=decode_cursor(after)
        )
        return connection(
            [MembershipNode.from_model(m) for m in page.items],
            [m.id for m in page.items],
            page.has_next_page,
            lambda: organisations.count_viewer_memberships(actor),
        )


async def _zero() -> int:
    return 0
