"""Templates: every message in every language, escaped HTML, times in the reader's zone (PRO-1)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gardien.mail.templates import (
    LANGUAGES,
    VARIABLES,
    Template,
    UnknownTemplateError,
    links_in,
    render,
    supported_language,
)

EXPIRES = datetime(2026, 1, 22, 9, 0, tzinfo=UTC)
SAMPLES: dict[Template, dict[str, object]] = {
    Template.SIGN_UP_CONFIRMATION: {
        "link": "https://manager.example/sign-up/confirm?token=t0k3n",
        "code": "482913",
        "expires_at": EXPIRES,
    },
    Template.SIGN_UP_ADDRESS_TAKEN: {
        "sign_in_link": "https://manager.example/sign-in",
        "password_reset_link": "https://manager.example/recovery/password",
    },
    Template.INVITATION_NEW_ACCOUNT: {
        "organisation": "Démo SA",
        "inviter": "Anna Legal",
        "role": "COLLABORATOR",
        "link": "https://manager.example/invitations/accept?token=t0k3n",
        "expires_at": EXPIRES,
    },
    Template.INVITATION_JOIN: {
        "organisation": "Démo SA",
        "inviter": "Anna Legal",
        "role": "ADMINISTRATOR",
        "link": "https://manager.example/invitations/view?token=t0k3n",
        "expires_at": EXPIRES,
    },
    Template.DOMAIN_EXPIRY_REMINDER: {
        "domain": "demo-sa.ch",
        "organisation": "Démo SA",
        "expires_at": EXPIRES,
        "days_before": 7,
        "renewal_warranty": False,
        "link": "https://manager.example/console/#/domains",
    },
    Template.PRODUCT_MANAGEMENT_CHANGED: {
        "organisation": "Démo SA",
        "product": "kDrive Démo",
        "manager": "Anna Legal",
        "blocked": True,
        "link": "https://manager.example/console/#/products",
    },
    Template.SECURE_ACCOUNT_PROCEDURE: {
        "organisation": "Démo SA",
        "sender": "Marc Admin",
        "link": "https://manager.example/console/#/security",
    },
    Template.SECURITY_NEW_LOCATION: {
        "signed_in_at": EXPIRES,
        "where": "CH · 195.176.96.1",
        "device": "Firefox 125 on Linux",
        "secure_link": "https://manager.example/console/#/security/secure-account",
    },
    Template.SECURITY_WRONG_PASSWORD: {
        "attempted_at": EXPIRES,
        "where": "FR · 80.12.0.1",
        "device": "Chrome 124 on Windows 10",
        "secure_link": "https://manager.example/console/#/security/secure-account",
    },
    Template.WEBHOOK_ENDPOINT_DISABLED: {
        "organisation": "Démo SA",
        "url": "https://hooks.example/gardien",
        "failures": 20,
        "failing_since": EXPIRES,
        "link": "https://manager.example/console/#/webhooks",
    },
    Template.SECURITY_ALERT: {
        "organisation": "Démo SA",
        "sender": "Anna Legal",
        "two_factor_methods": ["TOTP"],
        "backup_codes_remaining": 7,
        "app_passwords": 1,
        "required": True,
        "link": "https://manager.example/console/#/security",
    },
    Template.TWO_FACTOR_CODE_REUSED: {
        "occurred_at": EXPIRES,
        "ip": "203.0.113.7",
        "link": "https://manager.example/console/#/security",
    },
    Template.SECURITY_KEY_COUNTER_REGRESSION: {
        "occurred_at": EXPIRES,
        "ip": "203.0.113.7",
        "link": "https://manager.example/console/#/security",
    },
    Template.LOGIN_EMAIL_CHANGE_CONFIRMATION: {
        "link": "https://manager.example/console/#/profile/login-email?token=t0k3n",
        "code": "t0k3n",
        "expires_at": EXPIRES,
    },
    Template.LOGIN_EMAIL_ADDRESS_TAKEN: {"sign_in_link": "https://manager.example/sign-in"},
    Template.ACCOUNT_CONTACT_CHANGED: {
        "what": "recovery_email",
        "changed_at": EXPIRES,
        "link": "https://manager.example/console/#/security/secure-account",
    },
    Template.RECOVERY_EMAIL_SET: {"changed_at": EXPIRES},
    Template.LOGIN_USERNAME_ISSUED: {
        "username": "al482913",
        "address": "ada@demo-sa.ch",
        "link": "https://manager.example/console/#/sign-in",
    },
    Template.RECOVERY_CODE: {"code": "48291375", "expires_at": EXPIRES},
    Template.PASSWORD_RESET_DONE: {
        "reset_at": EXPIRES,
        "link": "https://manager.example/console/#/sign-in",
    },
    Template.IDENTITY_VERIFICATION_RESET: {
        "link": "https://manager.example/console/#/recovery/identity?token=t0k3n",
        "expires_at": EXPIRES,
    },
    Template.LOGIN_IDENTIFIER_REMINDER: {
        "login": "anna@example.ch",
        "link": "https://manager.example/console/#/sign-in",
    },
}


def test_pro1_samples_cover_every_template() -> None:
    assert set(SAMPLES) == set(Template)
    assert {name: set(values) for name, values in SAMPLES.items()} == {
        name: set(variables) for name, variables in VARIABLES.items()
    }


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("template", list(Template))
def test_pro1_every_template_renders_in_every_language(template: Template, language: str) -> None:
    """StrictUndefined: a variable a template uses but nobody passes fails here."""
    message = render(template, language, SAMPLES[template], "Europe/Zurich")

    assert message.subject and "\n" not in message.subject
    assert f'<html lang="{language}">' in message.html
    for value in SAMPLES[template].values():
        if isinstance(value, str) and value.startswith("https://"):
            assert links_in(message.text).count(value) == 1
            assert f'href="{value}"' in message.html
    if template is Template.SIGN_UP_CONFIRMATION:
        assert "482913" in message.text and "482913" in message.html
    if "expires_at" in SAMPLES[template]:
        assert "10:00" in message.text and "(CET)" in message.text


@pytest.mark.parametrize("template", list(Template))
def test_pro1_subject_and_body_are_translated(template: Template) -> None:
    rendered = [render(template, language, SAMPLES[template]) for language in LANGUAGES]

    assert len({message.subject for message in rendered}) == len(LANGUAGES)
    assert len({message.text for message in rendered}) == len(LANGUAGES)


def test_pro1_invitation_names_role_and_organisation_in_the_readers_language() -> None:
    context = SAMPLES[Template.INVITATION_JOIN]

    assert render(Template.INVITATION_JOIN, "fr", context).subject == (
        "Anna Legal vous invite à rejoindre Démo SA"
    )
    assert "en tant que administrateur" in render(Template.INVITATION_JOIN, "fr", context).text
    assert "as administrator" in render(Template.INVITATION_JOIN, "en", context).text
    assert "als Administrator" in render(Template.INVITATION_JOIN, "de", context).text
    assert "come amministratore" in render(Template.INVITATION_JOIN, "it", context).text


def test_pro1_html_escapes_a_hostile_organisation_name() -> None:
    """OWASP ASVS 5.3.3: output encoding for the HTML context."""
    hostile = {
        **SAMPLES[Template.INVITATION_JOIN],
        "organisation": '<script>alert("x")</script>',
        "inviter": "<img src=x onerror=alert(1)>",
    }

    message = render(Template.INVITATION_JOIN, "en", hostile)

    assert "<script>" not in message.html and "<img" not in message.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in message.html
    assert "&lt;img src=x onerror=alert(1)&gt;" in message.html
    # Plain text is not HTML: the name reads as the organisation wrote it.
    assert '“<script>alert("x")</script>”' in message.text


def test_pro1_subject_stays_one_header_line_whatever_the_name() -> None:
    context = {**SAMPLES[Template.INVITATION_JOIN], "organisation": "Evil\r\nBcc: all@example.test"}

    subject = render(Template.INVITATION_JOIN, "en", context).subject

    assert subject == "Anna Legal invites you to join Evil Bcc: all@example.test"


@pytest.mark.parametrize(
    ("timezone", "language", "expected"),
    [
        ("Europe/Zurich", "fr", "22.01.2026 à 10:00 (CET)"),
        ("America/New_York", "en", "22 January 2026, 04:00 (EST)"),
        ("Asia/Tokyo", "de", "22.01.2026, 18:00 Uhr (JST)"),
        ("Europe/Rome", "it", "22.01.2026 alle 10:00 (CET)"),
        (None, "en", "22 January 2026, 09:00 (UTC)"),
        ("Not/AZone", "en", "22 January 2026, 09:00 (UTC)"),
    ],
)
def test_pro1_times_are_shown_in_the_recipients_timezone(
    timezone: str | None, language: str, expected: str
) -> None:
    message = render(
        Template.INVITATION_JOIN, language, SAMPLES[Template.INVITATION_JOIN], timezone
    )

    assert expected in message.text
    assert expected in message.html


@pytest.mark.parametrize(
    ("asked", "written"),
    [("fr", "fr"), ("de-CH", "de"), ("IT", "it"), ("en_GB", "en"), ("es", "fr"), (None, "fr")],
)
def test_pro1_unsupported_language_falls_back_to_french(asked: str | None, written: str) -> None:
    assert supported_language(asked) == written
    assert (
        render(Template.SIGN_UP_ADDRESS_TAKEN, asked, SAMPLES[Template.SIGN_UP_ADDRESS_TAKEN]).text
        == render(
            Template.SIGN_UP_ADDRESS_TAKEN, written, SAMPLES[Template.SIGN_UP_ADDRESS_TAKEN]
        ).text
    )


def test_ops6_unknown_template_is_a_programming_error() -> None:
    with pytest.raises(UnknownTemplateError, match="no e-mail template named 'invitation'"):
        render("invitation", "fr", {})


def test_ops6_missing_or_unexpected_variable_is_a_programming_error() -> None:
    context = dict(SAMPLES[Template.SIGN_UP_CONFIRMATION])
    del context["code"]
    context["token"] = "x"

    with pytest.raises(UnknownTemplateError, match=r"missing \['code'\], unexpected \['token'\]"):
        render(Template.SIGN_UP_CONFIRMATION, "fr", context)
