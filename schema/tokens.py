"""Integrator tokens in GraphQL: the PersonalAccessToken node, create and revoke (API-6)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from gardien.models.sessions import ApiToken
from gardien.resolvers import tokens
from gardien.resolvers.errors import DomainError
from gardien.schema.context import Info
from gardien.schema.errors import UserError
from gardien.schema.organisations import Role
from gardien.schema.relay import Node, decode_id, encode_id


@strawberry.type(
    name="PersonalAccessToken",
    description="A token acting as its owner within its scopes (API-6); never its secret.",
)
class PersonalAccessTokenNode(Node):
    label: str
    scopes: list[str] = strawberry.field(
        description="What the token may do: members:read, members:write, activity:read,"
        " domains:read, domains:write."
    )
    prefix: str = strawberry.field(
        description="The secret's first characters, to tell tokens apart."
    )
    organisation_id: strawberry.ID | None = strawberry.field(
        description="The one organisation the token is restricted to, or null."
    )
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    last_used_ip: str | None
    use_count: int = strawberry.field(
        description="Uses recorded: at most one a minute from one address, so a script's polling"
        " counts its active minutes; lastUsedAt lags the latest use by under a minute."
    )
    revoked_at: datetime | None

    @classmethod
    def from_model(cls, token: ApiToken) -> PersonalAccessTokenNode:
        return cls(
            id=encode_id("PersonalAccessToken", token.id),
            label=token.name,
            scopes=list(token.scopes),
            prefix=token.prefix,
            organisation_id=encode_id("Organisation", token.organisation_id)
            if token.organisation_id is not None
            else None,
            created_at=token.created_at,
            expires_at=token.expires_at,
            last_used_at=token.last_used_at,
            last_used_ip=token.last_used_ip,
            use_count=token.use_count,
            revoked_at=token.revoked_at,
        )


async def own_token_nodes(info: Info, user_id: int) -> list[PersonalAccessTokenNode]:
    return [
        PersonalAccessTokenNode.from_model(token)
        for token in await tokens.own_tokens(info.context.scope, user_id)
    ]


async def personal_access_token_by_id(info: Info, token_id: int) -> PersonalAccessTokenNode:
    """node(id:): one of the caller's own tokens."""
    token = await tokens.visible_token(info.context.scope, token_id)
    return PersonalAccessTokenNode.from_model(token)


@strawberry.input
class CreatePersonalAccessTokenInput:
    label: str
    scopes: list[str]
    expires_at: datetime | None = strawberry.field(
        default=None, description="At most a year away; 90 days when omitted."
    )
    organisation_id: strawberry.ID | None = strawberry.field(
        default=None, description="Restrict the token to one of your organisations."
    )


@strawberry.input
class RevokePersonalAccessTokenInput:
    token_id: strawberry.ID


@strawberry.type
class CreatePersonalAccessTokenPayload:
    token: PersonalAccessTokenNode | None = None
    secret: str | None = strawberry.field(
        default=None, description="The token itself: shown this once, never again."
    )
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RevokePersonalAccessTokenPayload:
    token: PersonalAccessTokenNode | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type(
    name="ServiceAccount",
    description="An organisation's token (API-6): acts for the manager who created it, in this"
    " organisation only, with at most its role; never its secret.",
)
class ServiceAccountNode(Node):
    name: str
    role: Role  # type: ignore[valid-type]
    scopes: list[str]
    prefix: str = strawberry.field(
        description="The secret's first characters, to tell accounts apart."
    )
    created_by_id: strawberry.ID | None = strawberry.field(
        description="The manager whose rights bound it; null once their account is deleted."
    )
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    last_used_ip: str | None
    use_count: int = strawberry.field(
        description="Uses recorded: at most one a minute from one address, so a script's polling"
        " counts its active minutes; lastUsedAt lags the latest use by under a minute."
    )
    revoked_at: datetime | None

    @classmethod
    def from_model(cls, token: ApiToken) -> ServiceAccountNode:
        return cls(
            id=encode_id("ServiceAccount", token.id),
            name=token.name,
            role=token.role,
            scopes=list(token.scopes),
            prefix=token.prefix,
            created_by_id=encode_id("User", token.created_by_id)
            if token.created_by_id is not None
            else None,
            created_at=token.created_at,
            expires_at=token.expires_at,
            last_used_at=token.last_used_at,
            last_used_ip=token.last_used_ip,
            use_count=token.use_count,
            revoked_at=token.revoked_at,
        )


async def organisation_service_accounts(
    info: Info, organisation_id: int
) -> list[ServiceAccountNode]:
    accounts = await tokens.organisation_service_accounts(info.context.scope, organisation_id)
    return [ServiceAccountNode.from_model(token) for token in accounts]


async def service_account_by_id(info: Info, token_id: int) -> ServiceAccountNode:
    """node(id:): a service account of an organisation the caller manages."""
    token = await tokens.visible_service_account(info.context.scope, token_id)
    return ServiceAccountNode.from_model(token)


@strawberry.input
class CreateServiceAccountInput:
    organisation_id: strawberry.ID
    name: str
    role: Role = strawberry.field(  # type: ignore[valid-type]
        description="ADMINISTRATOR, COLLABORATOR or EXTERNAL: never LEGAL_REPRESENTATIVE."
    )
    scopes: list[str]
    expires_at: datetime | None = strawberry.field(
        default=None, description="At most a year away; 90 days when omitted."
    )


@strawberry.input
class RevokeServiceAccountInput:
    service_account_id: strawberry.ID


@strawberry.type
class CreateServiceAccountPayload:
    service_account: ServiceAccountNode | None = None
    secret: str | None = strawberry.field(
        default=None, description="The account's token: shown this once, never again."
    )
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RevokeServiceAccountPayload:
    service_account: ServiceAccountNode | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class TokenMutations:
    @strawberry.mutation(
        description="Create a personal access token; its secret is in this answer only (API-6;"
        " from a web session)."
    )
    async def create_personal_access_token(
        self, info: Info, input: CreatePersonalAccessTokenInput
    ) -> CreatePersonalAccessTokenPayload:
        try:
            organisation_id = (
                decode_id(input.organisation_id, "Organisation", "organisationId")
                if input.organisation_id is not None
                else None
            )
            issued = await tokens.create_personal_access_token(
                info.context.services,
                info.context.meta,
                info.context.scope,
                label=input.label,
                scopes=input.scopes,
                expires_at=input.expires_at,
                organisation_id=organisation_id,
            )
        except DomainError as error:
            return CreatePersonalAccessTokenPayload(errors=[UserError.from_domain(error)])
        return CreatePersonalAccessTokenPayload(
            token=PersonalAccessTokenNode.from_model(issued.token), secret=issued.secret
        )

    @strawberry.mutation(description="Revoke one of your tokens; it stops working at once.")
    async def revoke_personal_access_token(
        self, info: Info, input: RevokePersonalAccessTokenInput
    ) -> RevokePersonalAccessTokenPayload:
        try:
            token = await tokens.revoke_personal_access_token(
                info.context.services,
                info.context.meta,
                info.context.scope,
                decode_id(input.token_id, "PersonalAccessToken", "tokenId"),
            )
        except DomainError as error:
            return RevokePersonalAccessTokenPayload(errors=[UserError.from_domain(error)])
        return RevokePersonalAccessTokenPayload(token=PersonalAccessTokenNode.from_model(token))

    @strawberry.mutation(
        description="Create a service account of an organisation you manage; its token is in this"
        " answer only (API-6; from a web session)."
    )
    async def create_service_account(
        self, info: Info, input: CreateServiceAccountInput
    ) -> CreateServiceAccountPayload:
        try:
            issued = await tokens.create_service_account(
                info.context.services,
                info.context.meta,
                info.context.scope,
                decode_id(input.organisation_id, "Organisation", "organisationId"),
                name=input.name,
                role=input.role,
                scopes=input.scopes,
                expires_at=input.expires_at,
            )
        except DomainError as error:
            return CreateServiceAccountPayload(errors=[UserError.from_domain(error)])
        return CreateServiceAccountPayload(
            service_account=ServiceAccountNode.from_model(issued.token), secret=issued.secret
        )

    @strawberry.mutation(description="Revoke a service account; its token stops working at once.")
    async def revoke_service_account(
        self, info: Info, input: RevokeServiceAccountInput
    ) -> RevokeServiceAccountPayload:
        try:
            token = await tokens.revoke_service_account(
                info.context.services,
                info.context.meta,
                info.context.scope,
                decode_id(input.service_account_id, "ServiceAccount", "serviceAccountId"),
            )
        except DomainError as error:
            return RevokeServiceAccountPayload(errors=[UserError.from_domain(error)])
        return RevokeServiceAccountPayload(service_account=ServiceAccountNode.from_model(token))
