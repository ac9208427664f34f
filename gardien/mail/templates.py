"""E-mail templates (jinja2): a subject, a plain-text and an HTML body per message and language."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2

# PRO-1: the languages a recipient may choose. A language we do not write falls back to French,
# the platform's default language (User.language and OutboxMessage.language default to "fr"), so
# a recipient without a stated choice and one with an unsupported choice read the same thing.
LANGUAGES = ("fr", "en", "de", "it")
FALLBACK_LANGUAGE = "fr"
FALLBACK_TIMEZONE = "UTC"


class Template(StrEnum):
    """Every message the platform sends; the value names the files under mail/templates/<lang>/."""

    SIGN_UP_CONFIRMATION = "sign_up_confirmation"
    SIGN_UP_ADDRESS_TAKEN = "sign_up_address_taken"
    INVITATION_NEW_ACCOUNT = "invitation_new_account"
    INVITATION_JOIN = "invitation_join"
    DOMAIN_EXPIRY_REMINDER = "domain_expiry_reminder"
    PRODUCT_MANAGEMENT_CHANGED = "product_management_changed"
    SECURE_ACCOUNT_PROCEDURE = "secure_account_procedure"
    SECURITY_NEW_LOCATION = "security_new_location"
    SECURITY_WRONG_PASSWORD = "security_wrong_password"
    WEBHOOK_ENDPOINT_DISABLED = "webhook_endpoint_disabled"
    SECURITY_ALERT = "security_alert"
    TWO_FACTOR_CODE_REUSED = "two_factor_code_reused"
    SECURITY_KEY_COUNTER_REGRESSION = "security_key_counter_regression"
    # PRO-2, PRO-3, PRO-5, REC-4: the user's contacts and login.
    LOGIN_EMAIL_CHANGE_CONFIRMATION = "login_email_change_confirmation"
    LOGIN_EMAIL_ADDRESS_TAKEN = "login_email_address_taken"
    ACCOUNT_CONTACT_CHANGED = "account_contact_changed"
    RECOVERY_EMAIL_SET = "recovery_email_set"
    LOGIN_USERNAME_ISSUED = "login_username_issued"
    RECOVERY_CODE = "recovery_code"
    PASSWORD_RESET_DONE = "password_reset_done"
    IDENTITY_VERIFICATION_RESET = "identity_verification_reset"
    LOGIN_IDENTIFIER_REMINDER = "login_identifier_reminder"


# The variables each template needs, exactly: a missing or unexpected one is a programming error
# caught when the message is queued, in the transaction of the change that causes it.
VARIABLES: dict[Template, frozenset[str]] = {
    Template.SIGN_UP_CONFIRMATION: frozenset({"link", "code", "expires_at"}),
    Template.SIGN_UP_ADDRESS_TAKEN: frozenset({"sign_in_link", "password_reset_link"}),
    Template.INVITATION_NEW_ACCOUNT: frozenset(
        {"organisation", "inviter", "role", "link", "expires_at"}
    ),
    Template.INVITATION_JOIN: frozenset({"organisation", "inviter", "role", "link", "expires_at"}),
    Template.DOMAIN_EXPIRY_REMINDER: frozenset(
        {"domain", "organisation", "expires_at", "days_before", "renewal_warranty", "link"}
    ),
    Template.PRODUCT_MANAGEMENT_CHANGED: frozenset(
        {"organisation", "product", "manager", "blocked", "link"}
    ),
    Template.SECURE_ACCOUNT_PROCEDURE: frozenset({"organisation", "sender", "link"}),
    Template.SECURITY_NEW_LOCATION: frozenset({"signed_in_at", "where", "device", "secure_link"}),
    Template.SECURITY_WRONG_PASSWORD: frozenset({"attempted_at", "where", "device", "secure_link"}),
    Template.WEBHOOK_ENDPOINT_DISABLED: frozenset(
        {"organisation", "url", "failures", "failing_since", "link"}
    ),
    Template.SECURITY_ALERT: frozenset(
        {
            "organisation",
            "sender",
            "two_factor_methods",
            "backup_codes_remaining",
            "app_passwords",
            "required",
            "link",
        }
    ),
    Template.TWO_FACTOR_CODE_REUSED: frozenset({"occurred_at", "ip", "link"}),
    Template.SECURITY_KEY_COUNTER_REGRESSION: frozenset({"occurred_at", "ip", "link"}),
    Template.LOGIN_EMAIL_CHANGE_CONFIRMATION: frozenset({"link", "code", "expires_at"}),
    Template.LOGIN_EMAIL_ADDRESS_TAKEN: frozenset({"sign_in_link"}),
    # `what`: login_email, recovery_email or recovery_phone (CONTACT_KINDS).
    Template.ACCOUNT_CONTACT_CHANGED: frozenset({"what", "changed_at", "link"}),
    Template.RECOVERY_EMAIL_SET: frozenset({"changed_at"}),
    Template.LOGIN_USERNAME_ISSUED: frozenset({"username", "address", "link"}),
    Template.RECOVERY_CODE: frozenset({"code", "expires_at"}),
    Template.PASSWORD_RESET_DONE: frozenset({"reset_at", "link"}),
    Template.IDENTITY_VERIFICATION_RESET: frozenset({"link", "expires_at"}),
    Template.LOGIN_IDENTIFIER_REMINDER: frozenset({"login", "link"}),
}

ROLE_LABELS: dict[str, dict[str, str]] = {
    "fr": {
        "LEGAL_REPRESENTATIVE": "représentant légal",
        "ADMINISTRATOR": "administrateur",
        "COLLABORATOR": "collaborateur",
        "EXTERNAL": "externe",
    },
    "en": {
        "LEGAL_REPRESENTATIVE": "legal representative",
        "ADMINISTRATOR": "administrator",
        "COLLABORATOR": "collaborator",
        "EXTERNAL": "external",
    },
    "de": {
        "LEGAL_REPRESENTATIVE": "gesetzlicher Vertreter",
        "ADMINISTRATOR": "Administrator",
        "COLLABORATOR": "Mitarbeiter",
        "EXTERNAL": "Externer",
    },
    "it": {
        "LEGAL_REPRESENTATIVE": "rappresentante legale",
        "ADMINISTRATOR": "amministratore",
        "COLLABORATOR": "collaboratore",
        "EXTERNAL": "esterno",
    },
}

# Dates as each language writes them, always with the zone so a reader abroad is not misled.
# Only numeric strftime fields: month names would follow the process locale, not the reader.
DATETIME_FORMATS = {
    "fr": "%d.%m.%Y à %H:%M",
    "en": "{day} {month} %Y, %H:%M",
    "de": "%d.%m.%Y, %H:%M Uhr",
    "it": "%d.%m.%Y alle %H:%M",
}
ENGLISH_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


class UnknownTemplateError(LookupError):
    """A caller named a template that does not exist, or gave it the wrong variables: a bug."""


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    text: str
    html: str


def supported_language(language: str | None) -> str:
    """The language to write in: the primary subtag when we write it (fr-CH → fr), else French."""
    primary = re.split(r"[-_]", language or "", maxsplit=1)[0].lower()
    return primary if primary in LANGUAGES else FALLBACK_LANGUAGE


def supported_timezone(timezone: str | None) -> str:
    """An IANA zone name that exists, else UTC (profiles validate zones; this is a safety net)."""
    if not timezone:
        return FALLBACK_TIMEZONE
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return FALLBACK_TIMEZONE
    return timezone


def template_named(name: str) -> Template:
    try:
        return Template(name)
    except ValueError:
        raise UnknownTemplateError(f"no e-mail template named {name!r}") from None


@jinja2.pass_context
def _format_datetime(context: jinja2.runtime.Context, value: datetime) -> str:
    zone = ZoneInfo(context["_timezone"])
    local = value.astimezone(zone)
    pattern = DATETIME_FORMATS[context["_language"]].format(
        day=local.day, month=ENGLISH_MONTHS[local.month - 1]
    )
    return f"{local.strftime(pattern)} ({local.tzname()})"


@jinja2.pass_context
def _role_label(context: jinja2.runtime.Context, role: str) -> str:
    return ROLE_LABELS[context["_language"]].get(str(role), str(role))


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("gardien.mail", "templates"),
        # HTML bodies escape every value (an organisation may be named "<script>"); plain text and
        # subjects are not HTML and must not be entity-encoded.
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["datetime"] = _format_datetime
    environment.filters["role"] = _role_label
    return environment


_ENVIRONMENT = _environment()  # read-only once built: compiled templates are cached in it


def render(
    template: Template | str,
    language: str | None,
    context: Mapping[str, object],
    timezone: str | None = None,
) -> RenderedMessage:
    """Render one message; raises UnknownTemplateError for a bad name or variable set."""
    name = template_named(template)
    expected = VARIABLES[name]
    if set(context) != expected:
        missing = sorted(expected - set(context))
        unexpected = sorted(set(context) - expected)
        raise UnknownTemplateError(
            f"template {name.value!r} needs {sorted(expected)}; "
            f"missing {missing}, unexpected {unexpected}"
        )
    lang = supported_language(language)
    variables = {**context, "_language": lang, "_timezone": supported_timezone(timezone)}
    text_template = _ENVIRONMENT.get_template(f"{lang}/{name.value}.txt")
    subject = "".join(text_template.blocks["subject"](text_template.new_context(variables)))
    return RenderedMessage(
        # A subject is one header line whatever the variables hold.
        subject=" ".join(subject.split()),
        text=text_template.render(variables).strip() + "\n",
        html=_ENVIRONMENT.get_template(f"{lang}/{name.value}.html").render(variables),
    )


LINK = re.compile(r"https?://[^\s<>\"']+")


def links_in(text: str) -> list[str]:
    """The links of a plain-text body, for `gardien outbox` (a newcomer follows them locally)."""
    return LINK.findall(text)
