"""Typed errors: the ErrorCode enum and UserError of payloads (API-2)."""

from __future__ import annotations

from contextvars import ContextVar

import strawberry

from gardien.resolvers.errors import DomainError
from gardien.resolvers.errors import ErrorCode as DomainErrorCode

ErrorCode = strawberry.enum(DomainErrorCode, name="ErrorCode", description="Stable error codes.")

# The codes of the payload errors made while one operation runs, for the metrics: the engine sets
# a fresh list before executing and counts it afterwards, so each DomainError turned into a payload
# error counts once, whatever the client selects of the payload. None outside an operation.
payload_errors: ContextVar[list[DomainErrorCode] | None] = ContextVar(
    "gardien_payload_errors", default=None
)


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
        collected = payload_errors.get()
        if collected is not None:
            collected.append(error.code)
        return cls(
            code=error.code,
            message=error.message,
            field=error.field,
            retry_after_seconds=error.retry_after_seconds,
        )
