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
    # Blocking (BLK-*).
    PRODUCT_BLOCKED = "PRODUCT_BLOCKED"
    PRODUCT_ALREADY_BLOCKED = "PRODUCT_ALREADY_BLOCKED"
    PRODUCT_NOT_BLOCKED = "PRODUCT_NOT_BLOCKED"
    MAIL_SERVICE_NOT_BLOCKABLE = "MAIL_SERVICE_NOT_BLOCKABLE"
    NOT_A_MAIL_SERVICE = "NOT_A_MAIL_SERVICE"
    MAIL_MAINTENANCE = "MAIL_MAINTENANCE"
    INVALID_SUPPORT_CODE = "INVALID_SUPPORT_CODE"
    USER_ALREADY_BLOCKED = "USER_ALREADY_BLOCKED"
    USER_NOT_BLOCKED = "USER_NOT_BLOCKED"
    # Security e-mails (ACT-4): the new sign-in notice cannot be turned off.
    SECURITY_EMAIL_MANDATORY = "SECURITY_EMAIL_MANDATORY"
    # Integrator tokens (API-6).
    INSUFFICIENT_SCOPE = "INSUFFICIENT_SCOPE"
    TOKEN_LIMIT_REACHED = "TOKEN_LIMIT_REACHED"
    # Webhooks (EVT-5).
    UNSAFE_WEBHOOK_URL = "UNSAFE_WEBHOOK_URL"
    UNKNOWN_EVENT_TYPE = "UNKNOWN_EVENT_TYPE"
    TOO_MANY_WEBHOOK_ENDPOINTS = "TOO_MANY_WEBHOOK_ENDPOINTS"
    # Sign-up confirmation (ORG-1): invalid covers unknown, forged and already used tokens.
    SIGN_UP_TOKEN_INVALID = "SIGN_UP_TOKEN_INVALID"
    SIGN_UP_TOKEN_EXPIRED = "SIGN_UP_TOKEN_EXPIRED"
    # Two-factor authentication (MFA-*) and the security policy (POL-*).
    TWO_FACTOR_CODE_INVALID = "TWO_FACTOR_CODE_INVALID"
    TWO_FACTOR_CODE_REUSED = "TWO_FACTOR_CODE_REUSED"
    CHALLENGE_EXPIRED = "CHALLENGE_EXPIRED"
    TWO_FACTOR_NOT_ENABLED = "TWO_FACTOR_NOT_ENABLED"
    TWO_FACTOR_REQUIRED_BY_ORGANISATION = "TWO_FACTOR_REQUIRED_BY_ORGANISATION"
    CONFIRMATION_REQUIRED = "CONFIRMATION_REQUIRED"
    # Live security events (EVT-1): a connection holds a bounded number of subscriptions.
    TOO_MANY_SUBSCRIPTIONS = "TOO_MANY_SUBSCRIPTIONS"
    # Mailboxes (BLK-2): an address is hosted only on a domain of the mail service's organisation.
    MAIL_DOMAIN_NOT_OWNED = "MAIL_DOMAIN_NOT_OWNED"
    # Security keys (MFA-2): an answer that fails WebAuthn verification (origin, challenge, RP ID,
    # signature, form); a key that is not one of the account's; a sign counter that went back
    # (a cloned key); a key registered already.
    SECURITY_KEY_REJECTED = "SECURITY_KEY_REJECTED"
    SECURITY_KEY_UNKNOWN = "SECURITY_KEY_UNKNOWN"
    SECURITY_KEY_COUNTER_REGRESSION = "SECURITY_KEY_COUNTER_REGRESSION"
    SECURITY_KEY_ALREADY_REGISTERED = "SECURITY_KEY_ALREADY_REGISTERED"
    # Login e-mail change (PRO-5): invalid covers unknown, forged, replaced and used links.
    LOGIN_EMAIL_CHANGE_INVALID = "LOGIN_EMAIL_CHANGE_INVALID"
    LOGIN_EMAIL_CHANGE_EXPIRED = "LOGIN_EMAIL_CHANGE_EXPIRED"
    # REC-4: the login e-mail was deleted; setting a new one is all the account may do.
    LOGIN_EMAIL_REQUIRED = "LOGIN_EMAIL_REQUIRED"
    # Account recovery (REC-*): invalid covers unknown, forged, wrong and already used alike.
    RECOVERY_REQUEST_INVALID = "RECOVERY_REQUEST_INVALID"
    RECOVERY_CODE_INVALID = "RECOVERY_CODE_INVALID"
    RECOVERY_CODE_EXPIRED = "RECOVERY_CODE_EXPIRED"
    RESET_LINK_INVALID = "RESET_LINK_INVALID"
    RESET_LINK_EXPIRED = "RESET_LINK_EXPIRED"
    CASE_ALREADY_REVIEWED = "CASE_ALREADY_REVIEWED"
    # Push approval (MFA-4): the sign-in waits for the app's answer, which may refuse it.
    LOGIN_APPROVAL_PENDING = "LOGIN_APPROVAL_PENDING"
    LOGIN_APPROVAL_DENIED = "LOGIN_APPROVAL_DENIED"
    LOGIN_APPROVAL_EXPIRED = "LOGIN_APPROVAL_EXPIRED"
    LOGIN_APPROVAL_ANSWERED = "LOGIN_APPROVAL_ANSWERED"
    LOGIN_APPROVAL_WRONG_NUMBER = "LOGIN_APPROVAL_WRONG_NUMBER"
    # SMS second factor (MFA-3): a number we cannot or may not send codes to; a code past its
    # lifetime, or one replaced by a newer code.
    PHONE_NUMBER_INVALID = "PHONE_NUMBER_INVALID"
    PHONE_COUNTRY_NOT_SUPPORTED = "PHONE_COUNTRY_NOT_SUPPORTED"
    TWO_FACTOR_CODE_EXPIRED = "TWO_FACTOR_CODE_EXPIRED"


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
