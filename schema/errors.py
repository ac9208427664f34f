"""Typed errors: the ErrorCode enum and UserError of payloads (API-2)."""

from __future__ import annotations

import strawberry

from gardien.resolvers.errors import DomainError
from gardien.resolvers.errors import ErrorCode as DomainErrorCode

ErrorCode = strawberry.enum(DomainErrorCode, name="ErrorCode", description="Stable error codes.")


@strawberry.type(description="An expected failure of a mutation.")
class UserError:
    code: ErrorCode  # type: ignore[valid-type]
    message: str
    field: str | None = strawberry.field(
        description="The input field at fault (its GraphQL name), or null."
    )
    retry_after_seconds: int | None = strawberry.field(
        default=None,
        description="With TOO_MANY_ATTEMPTS: seconds to wait before trying again; else null.",
    )

    @classmethod
    def from_domain(cls, error: DomainError) -> UserError:
        return cls(
            code=error.code,
            message=error.message,
            field=error.field,
            retry_after_seconds=error.retry_after_seconds,
        )
