"""Expected failures of operations: one ErrorCode enum, one exception that only carries data."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Stable codes that clients branch on; a code is never renamed or reused."""

    INVALID_INPUT = "INVALID_INPUT"
    INVALID_ID = "INVALID_ID"
    NOT_FOUND = "NOT_FOUND"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    TOO_MANY_ATTEMPTS = "TOO_MANY_ATTEMPTS"
    ACCOUNT_BLOCKED = "ACCOUNT_BLOCKED"
    EMAIL_UNAVAILABLE = "EMAIL_UNAVAILABLE"
    PASSWORD_TOO_SHORT = "PASSWORD_TOO_SHORT"
    PASSWORD_TOO_LONG = "PASSWORD_TOO_LONG"
    PASSWORD_TOO_COMMON = "PASSWORD_TOO_COMMON"
    TWO_FACTOR_ENROLMENT_REQUIRED = "TWO_FACTOR_ENROLMENT_REQUIRED"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    DOMAIN_RELEASED = "DOMAIN_RELEASED"
    DOMAIN_IN_REDEMPTION = "DOMAIN_IN_REDEMPTION"
    DOMAIN_NOT_IN_REDEMPTION = "DOMAIN_NOT_IN_REDEMPTION"
    # The GraphQL engine's refusals (API-3, API-4): nothing of the operation was executed.
    BAD_REQUEST = "BAD_REQUEST"
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
    BAD_USER_INPUT = "BAD_USER_INPUT"
    QUERY_TOO_LARGE = "QUERY_TOO_LARGE"
    QUERY_TOO_DEEP = "QUERY_TOO_DEEP"
    QUERY_TOO_COSTLY = "QUERY_TOO_COSTLY"
    TOO_MANY_ALIASES = "TOO_MANY_ALIASES"
    TOO_MANY_ROOT_FIELDS = "TOO_MANY_ROOT_FIELDS"
    TOO_MANY_DIRECTIVES = "TOO_MANY_DIRECTIVES"
    # Membership management (ORG-6): an organisation always keeps a legal representative.
    LAST_LEGAL_REPRESENTATIVE = "LAST_LEGAL_REPRESENTATIVE"
    # Invitations (INV-*).
    ALREADY_MEMBER = "ALREADY_MEMBER"
    INVITATION_ALREADY_PENDING = "INVITATION_ALREADY_PENDING"
    INVITATION_INVALID = "INVITATION_INVALID"
    INVITATION_EXPIRED = "INVITATION_EXPIRED"
    INVITATION_NOT_PENDING = "INVITATION_NOT_PENDING"
    # Live security events (EVT-1): a connection holds a bounded number of subscriptions.
    TOO_MANY_SUBSCRIPTIONS = "TOO_MANY_SUBSCRIPTIONS"


class DomainError(Exception):
    def __init__(
        self,
        code: ErrorCode,
        message: str,
        field: str | None = None,
        *,
        retry_after_seconds: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        # Set on TOO_MANY_ATTEMPTS: when the budget that refused the attempt is renewed.
        self.retry_after_seconds = retry_after_seconds
