"""SMS templates (jinja2): one short plain-text body per message and language."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

import jinja2

from gardien.mail.templates import LANGUAGES, supported_language

__all__ = ["LANGUAGES", "VARIABLES", "SmsTemplate", "UnknownSmsTemplateError", "render"]


class SmsTemplate(StrEnum):
    """Every SMS the platform sends; the value names the files sms/templates/<lang>/<value>.txt.

    A new message is a new member here, its variables in VARIABLES, and one file per language.
    """

    SMS_ENROLMENT_CODE = "sms_enrolment_code"
    SIGN_IN_CODE = "sign_in_code"
    # PRO-2: the new recovery phone and the former one are both told.
    RECOVERY_PHONE_SET = "recovery_phone_set"
    RECOVERY_PHONE_REPLACED = "recovery_phone_replaced"
    # REC-4: the generated username that replaces a deleted login e-mail.
    LOGIN_USERNAME_ISSUED = "login_username_issued"
    RECOVERY_CODE = "recovery_code"
    LOGIN_IDENTIFIER = "login_identifier"


# The variables each template needs, exactly: a missing or unexpected one is a programming error
# caught when the message is queued, in the transaction of the change that causes it.
VARIABLES: dict[SmsTemplate, frozenset[str]] = {
    SmsTemplate.SMS_ENROLMENT_CODE: frozenset({"code", "minutes"}),
    SmsTemplate.SIGN_IN_CODE: frozenset({"code", "minutes"}),
    SmsTemplate.RECOVERY_PHONE_SET: frozenset(),
    SmsTemplate.RECOVERY_PHONE_REPLACED: frozenset(),
    SmsTemplate.LOGIN_USERNAME_ISSUED: frozenset({"username"}),
    SmsTemplate.RECOVERY_CODE: frozenset({"code", "minutes"}),
    SmsTemplate.LOGIN_IDENTIFIER: frozenset({"login"}),
}


class UnknownSmsTemplateError(LookupError):
    """A caller named an SMS template that does not exist, or gave it the wrong variables: a bug."""


def template_named(name: str) -> SmsTemplate:
    try:
        return SmsTemplate(name)
    except ValueError:
        raise UnknownSmsTemplateError(f"no SMS template named {name!r}") from None


# An SMS is plain text: nothing is HTML-escaped. Read-only once built (compiled templates cached).
_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("gardien.sms", "templates"),
    autoescape=False,  # noqa: S701  # plain-text SMS bodies, never rendered as HTML
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(template: SmsTemplate | str, language: str | None, context: Mapping[str, object]) -> str:
    """The text of one SMS; raises UnknownSmsTemplateError for a bad name or variable set.

    A language we do not write falls back to French, as for e-mail (PRO-1).
    """
    name = template_named(template)
    expected = VARIABLES[name]
    if set(context) != expected:
        missing = sorted(expected - set(context))
        unexpected = sorted(set(context) - expected)
        raise UnknownSmsTemplateError(
            f"SMS template {name.value!r} needs {sorted(expected)}; "
            f"missing {missing}, unexpected {unexpected}"
        )
    lang = supported_language(language)
    text = _ENVIRONMENT.get_template(f"{lang}/{name.value}.txt").render(context)
    # One paragraph: line breaks in a template are for its readers, not for the phone screen.
    return " ".join(text.split())
