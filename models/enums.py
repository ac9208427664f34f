"""Enumerations stored in the database, shared by every layer."""

from enum import StrEnum


class Role(StrEnum):
    LEGAL_REPRESENTATIVE = "LEGAL_REPRESENTATIVE"
    ADMINISTRATOR = "ADMINISTRATOR"
    COLLABORATOR = "COLLABORATOR"
    EXTERNAL = "EXTERNAL"


class PlatformRole(StrEnum):
    """Platform staff are not organisation members; they act only through support flows."""

    CUSTOMER = "CUSTOMER"
    SUPPORT_AGENT = "SUPPORT_AGENT"


class SupportPlan(StrEnum):
    STANDARD = "STANDARD"
    PREMIUM = "PREMIUM"


class ProductKind(StrEnum):
    MAIL_SERVICE = "MAIL_SERVICE"
    WEB_DRIVE = "WEB_DRIVE"
    HOSTING = "HOSTING"
    DOMAIN = "DOMAIN"
    CALENDAR = "CALENDAR"
    VPS = "VPS"


class InvitationStatus(StrEnum):
    PENDING = "PENDING"
    ACCEPTED = "ACCEPTED"
    DECLINED = "DECLINED"
    REVOKED = "REVOKED"
    EXPIRED = "EXPIRED"


class SessionKind(StrEnum):
    WEB = "WEB"
    APP = "APP"


class TwoFactorKind(StrEnum):
    TOTP = "TOTP"
    SECURITY_KEY = "SECURITY_KEY"
    SMS = "SMS"
    PUSH = "PUSH"


class ApprovalStatus(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    DENIED = "DENIED"
    EXPIRED = "EXPIRED"


class DomainStatus(StrEnum):
    ACTIVE = "ACTIVE"
    REDEMPTION = "REDEMPTION"
    RELEASED = "RELEASED"


class RecoveryKind(StrEnum):
    PASSWORD_RESET = "PASSWORD_RESET"
    LOGIN_EMAIL_REMINDER = "LOGIN_EMAIL_REMINDER"


class RecoveryChannel(StrEnum):
    LOGIN_EMAIL = "LOGIN_EMAIL"
    RECOVERY_EMAIL = "RECOVERY_EMAIL"
    SMS = "SMS"


class CaseStatus(StrEnum):
    OPEN = "OPEN"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


class OutboxChannel(StrEnum):
    EMAIL = "EMAIL"
    SMS = "SMS"
    PUSH = "PUSH"
    WEBHOOK = "WEBHOOK"


class OutboxStatus(StrEnum):
    PENDING = "PENDING"
    SENT = "SENT"
    DEAD = "DEAD"


class SecurityKeyCeremonyPurpose(StrEnum):
    """MFA-2: what a security-key challenge is for; one is never accepted for the other."""

    REGISTRATION = "REGISTRATION"
    SIGN_IN = "SIGN_IN"
