"""Settings: GARDIEN_* variables validated once; a bad one stops start-up with one line."""

from __future__ import annotations

import base64
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from gardien.settings import Settings, SettingsError, load_settings

# A key as `secrets.token_urlsafe(48)` makes one: 64 base64url characters, 48 random bytes.
KEY = "NMJjxRpmHgHFyVSvFIFVPH9NRH7hjiOHoji7uujShcGPN4a2m0l34hDf90OpJAQ7"


def test_ops2_defaults_to_embedded_sqlite_and_generates_a_kept_secret_key(tmp_path: Path) -> None:
    first = load_settings({"GARDIEN_VAR_DIR": str(tmp_path)})
    second = load_settings({"GARDIEN_VAR_DIR": str(tmp_path)})

    assert first.database_url == f"sqlite://{tmp_path / 'gardien.sqlite3'}"
    assert first.secret_key == second.secret_key
    assert len(first.secret_key) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"GARDIEN_DATABSE_URL": "x"}, "unknown setting GARDIEN_DATABSE_URL"),
        ({"GARDIEN_ENV": "staging"}, "GARDIEN_ENV must be development or production"),
        (
            {"GARDIEN_ENV": "production", "GARDIEN_PUBLIC_URL": "https://x.test"},
            "GARDIEN_SECRET_KEY is required in production",
        ),
        ({"GARDIEN_ENV": "production", "GARDIEN_SECRET_KEY": KEY}, "must use https in production"),
        ({"GARDIEN_SECRET_KEY": "c2hvcnQ"}, "at least 32 random bytes"),
        ({"GARDIEN_DATABASE_URL": "mysql://db/x"}, "sqlite:// or postgres://"),
        ({"GARDIEN_REDIS_URL": "http://x"}, "GARDIEN_REDIS_URL must be a redis://"),
        ({"GARDIEN_SMTP_URL": "mail.example"}, "GARDIEN_SMTP_URL must be a smtp://"),
        ({"GARDIEN_INTROSPECTION": "maybe"}, "GARDIEN_INTROSPECTION must be true or false"),
        ({"GARDIEN_MAIL_FROM": "gardien"}, "GARDIEN_MAIL_FROM must be an e-mail address"),
        ({"GARDIEN_MAIL_FROM": "a@b.example\nBcc: x@y"}, "GARDIEN_MAIL_FROM must be an e-mail"),
        ({"GARDIEN_OUTBOX_WORKER": "later"}, "GARDIEN_OUTBOX_WORKER must be true or false"),
        ({"GARDIEN_MAX_DEPTH": "0"}, "GARDIEN_MAX_DEPTH must be a positive integer, not '0'"),
        ({"GARDIEN_MAX_COST": "-5"}, "GARDIEN_MAX_COST must be a positive integer, not '-5'"),
        ({"GARDIEN_MAX_TOKENS": "1e3"}, "GARDIEN_MAX_TOKENS must be a positive integer"),
        ({"GARDIEN_MAX_BODY_BYTES": "١٠٠"}, "GARDIEN_MAX_BODY_BYTES must be a positive integer"),
    ],
)
def test_ops2_invalid_settings_are_refused(
    tmp_path: Path, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings({"GARDIEN_VAR_DIR": str(tmp_path), **environ})


def test_ops2_production_settings_accepted(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "GARDIEN_ENV": "production",
            "GARDIEN_SECRET_KEY": KEY,
            "GARDIEN_PUBLIC_URL": "https://manager.example",
            "GARDIEN_VAR_DIR": str(tmp_path),
            "GARDIEN_DATABASE_URL": "postgresql://gardien@db:5432/gardien",
            "GARDIEN_REDIS_URL": "redis://cache:6379/0",
            "GARDIEN_SMTP_URL": "smtp://mail:25",
        }
    )

    assert settings.database_url == "postgres://gardien@db:5432/gardien"
    assert settings.secure_cookies is True
    assert settings.introspection is False
    assert not (tmp_path / "secret_key").exists()


def test_ops1_cli_stops_with_one_line_on_a_bad_setting(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gardien.cli", "migrate"],
        env={"GARDIEN_VAR_DIR": str(tmp_path), "GARDIEN_ENV": "prod", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert done.stderr.startswith("gardien: GARDIEN_ENV must be development or production")


def test_ops6_outbox_worker_runs_in_serve_unless_turned_off(tmp_path: Path) -> None:
    default = load_settings({"GARDIEN_VAR_DIR": str(tmp_path)})
    dedicated = load_settings(
        {
            "GARDIEN_VAR_DIR": str(tmp_path),
            "GARDIEN_OUTBOX_WORKER": "off",
            "GARDIEN_MAIL_FROM": "Gardien <no-reply@manager.example>",
        }
    )

    assert (default.outbox_worker, default.mail_from) == (
        True,
        "Gardien <no-reply@gardien.localhost>",
    )
    assert (dedicated.outbox_worker, dedicated.mail_from) == (
        False,
        "Gardien <no-reply@manager.example>",
    )


# --- GARDIEN_SECRET_KEY, decoded strictly (issue 5 item 16) ---------------------------------


def test_ops2_secret_key_base64url_decoded_with_or_without_padding(tmp_path: Path) -> None:
    """NIST SP 800-131A Rev. 2: HMAC and AES keys of at least 128 bits of strength; we take 256."""
    key = secrets.token_bytes(32)
    padded = base64.urlsafe_b64encode(key).decode()
    assert padded.endswith("=")

    with_padding = load_settings({"GARDIEN_VAR_DIR": str(tmp_path), "GARDIEN_SECRET_KEY": padded})
    without = load_settings(
        {"GARDIEN_VAR_DIR": str(tmp_path), "GARDIEN_SECRET_KEY": padded.rstrip("=")}
    )

    assert with_padding.secret_key == without.secret_key == key


def test_ops2_secret_key_raw_text_of_32_bytes_accepted_when_not_base64url(tmp_path: Path) -> None:
    """Standard base64 (with + and /) and other printable keys are taken as raw text."""
    raw = "q7+Z/w$Tx!9Lm#2Vb@Rk%8Np^4Hd&6Jf*0Sg"
    assert len(raw.encode()) >= 32

    settings = load_settings({"GARDIEN_VAR_DIR": str(tmp_path), "GARDIEN_SECRET_KEY": raw})

    assert settings.secret_key == raw.encode()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        # base64url characters are always decoded: 43 of them hold 32 bytes, 42 only 31.
        ("a" * 4 + "Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eA", "at least 32 random bytes"),
        ("abcde", "not valid base64url"),  # 5 characters cannot be base64
        ("YWJjZA=", "not valid base64url"),  # padding that does not complete a quantum
        ("YWJj ZGVm", "at least 32 random bytes"),  # not base64url, so raw text: 9 bytes
        ("k" * 48, "not random enough: only 3 distinct symbols"),  # decodes to b"\x92\x49\x24"…
        (base64.urlsafe_b64encode(b"0123456789abcdef" * 3).decode(), "a repeated pattern"),
        (base64.urlsafe_b64encode(bytes(range(40))).decode(), "not random enough: a sequence"),
        ("my key: aaaa bbbb cccc dddd eeee ffff!", "not random enough: only 12 distinct"),
        ("0123456789abcdefghijklmnopqrstuvwxyz+/", "not random enough: a sequence"),
    ],
)
def test_ops2_secret_key_refused_when_malformed_short_or_low_in_entropy(
    tmp_path: Path, raw: str, message: str
) -> None:
    """NIST SP 800-131A Rev. 2 / SP 800-57 Part 1 (≥ 128-bit strength) and ASVS 4.0.3 V6.4.1:
    a key typed or patterned by a person is refused, with a one-line reason."""
    with pytest.raises(SettingsError, match=message) as raised:
        load_settings({"GARDIEN_VAR_DIR": str(tmp_path), "GARDIEN_SECRET_KEY": raw})

    assert "\n" not in str(raised.value)
    assert str(raised.value).startswith("GARDIEN_SECRET_KEY ")


def test_ops2_secret_key_check_never_refuses_a_generated_key(tmp_path: Path) -> None:
    for _ in range(200):
        raw = secrets.token_urlsafe(32)  # the smallest accepted: 43 characters, 32 bytes

        settings = load_settings({"GARDIEN_VAR_DIR": str(tmp_path), "GARDIEN_SECRET_KEY": raw})

        assert len(settings.secret_key) == 32


def test_ops1_cli_stops_with_one_line_on_a_weak_secret_key(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gardien.cli", "migrate"],
        env={
            "GARDIEN_VAR_DIR": str(tmp_path),
            "GARDIEN_SECRET_KEY": "0123456789" * 5,
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert done.stderr.startswith("gardien: GARDIEN_SECRET_KEY is not random enough")


# --- GARDIEN_TRUSTED_PROXIES and GARDIEN_METRICS_TOKEN ---------------------------------------


def test_api4_trusted_proxies_default_to_none_and_accept_ipv4_ipv6_networks(
    tmp_path: Path,
) -> None:
    default = load_settings({"GARDIEN_VAR_DIR": str(tmp_path)})
    configured = load_settings(
        {
            "GARDIEN_VAR_DIR": str(tmp_path),
            "GARDIEN_TRUSTED_PROXIES": " 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32,::1",
        }
    )

    assert default.trusted_proxies == ()
    assert [str(n) for n in configured.trusted_proxies] == [
        "10.0.0.0/8",
        "192.0.2.7/32",
        "2001:db8::/32",
        "::1/128",
    ]


@pytest.mark.parametrize("raw", ["10.0.0.0/33", "proxy.internal", "10.0.0.1/8", "2001:db8::/129"])
def test_api4_bad_trusted_proxy_refused_with_one_line_and_exit_2(tmp_path: Path, raw: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gardien.cli", "migrate"],
        env={
            "GARDIEN_VAR_DIR": str(tmp_path),
            "GARDIEN_TRUSTED_PROXIES": f"127.0.0.1,{raw}",
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert done.stderr.startswith(f"gardien: GARDIEN_TRUSTED_PROXIES: {raw!r} is not an IP")


def test_ops5_metrics_token_must_be_long(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="GARDIEN_METRICS_TOKEN must be at least 32"):
        load_settings({"GARDIEN_VAR_DIR": str(tmp_path), "GARDIEN_METRICS_TOKEN": "letmein"})


def test_api4_request_limits_default_and_are_configurable(tmp_path: Path) -> None:
    defaults = load_settings({"GARDIEN_VAR_DIR": str(tmp_path)})
    configured = load_settings(
        {
            "GARDIEN_VAR_DIR": str(tmp_path),
            "GARDIEN_MAX_DEPTH": "9",
            "GARDIEN_MAX_ALIASES": "8",
            "GARDIEN_MAX_ROOT_FIELDS": "7",
            "GARDIEN_MAX_DIRECTIVES": "6",
            "GARDIEN_MAX_TOKENS": "5000",
            "GARDIEN_MAX_COST": "4000",
            "GARDIEN_MAX_BODY_BYTES": "3000",
        }
    )

    def limits(settings: Settings) -> list[int]:
        return [
            settings.max_depth,
            settings.max_aliases,
            settings.max_root_fields,
            settings.max_directives,
            settings.max_tokens,
            settings.max_cost,
            settings.max_body_bytes,
        ]

    assert limits(defaults) == [15, 15, 20, 50, 2000, 5000, 100_000]
    assert limits(configured) == [9, 8, 7, 6, 5000, 4000, 3000]


def test_evt5_webhooks_to_private_addresses_off_by_default_and_never_in_production(
    tmp_path: Path,
) -> None:
    production = {
        "GARDIEN_ENV": "production",
        "GARDIEN_SECRET_KEY": KEY,
        "GARDIEN_PUBLIC_URL": "https://manager.example",
        "GARDIEN_VAR_DIR": str(tmp_path),
    }

    assert load_settings({"GARDIEN_VAR_DIR": str(tmp_path)}).webhook_allow_private is False
    assert load_settings(production).webhook_allow_private is False
    allowed = load_settings(
        {"GARDIEN_VAR_DIR": str(tmp_path), "GARDIEN_WEBHOOK_ALLOW_PRIVATE": "1"}
    )
    assert allowed.webhook_allow_private is True
    with pytest.raises(SettingsError, match="GARDIEN_WEBHOOK_ALLOW_PRIVATE is for development"):
        load_settings({**production, "GARDIEN_WEBHOOK_ALLOW_PRIVATE": "1"})


def test_mfa3_sms_gateway_needs_a_long_secret_and_https_in_production(tmp_path: Path) -> None:
    local = {"GARDIEN_VAR_DIR": str(tmp_path)}
    secret = "s" * 16 + "e" * 16
    production = {
        "GARDIEN_ENV": "production",
        "GARDIEN_SECRET_KEY": KEY,
        "GARDIEN_PUBLIC_URL": "https://manager.example",
        "GARDIEN_VAR_DIR": str(tmp_path),
    }

    defaults = load_settings(local)
    configured = load_settings(
        {
            **local,
            "GARDIEN_SMS_WEBHOOK_URL": "http://127.0.0.1:9000/sms",
            "GARDIEN_SMS_WEBHOOK_SECRET": secret,
        }
    )

    assert (defaults.sms_webhook_url, defaults.sms_webhook_secret) == (None, None)
    assert (configured.sms_webhook_url, configured.sms_webhook_secret) == (
        "http://127.0.0.1:9000/sms",
        secret,
    )
    with pytest.raises(SettingsError, match="needs GARDIEN_SMS_WEBHOOK_SECRET of at least 32"):
        load_settings({**local, "GARDIEN_SMS_WEBHOOK_URL": "https://sms.example/send"})
    with pytest.raises(SettingsError, match="needs GARDIEN_SMS_WEBHOOK_SECRET of at least 32"):
        load_settings(
            {
                **local,
                "GARDIEN_SMS_WEBHOOK_URL": "https://sms.example/send",
                "GARDIEN_SMS_WEBHOOK_SECRET": "short",
            }
        )
    with pytest.raises(SettingsError, match="must use https in production"):
        load_settings(
            {
                **production,
                "GARDIEN_SMS_WEBHOOK_URL": "http://sms.example/send",
                "GARDIEN_SMS_WEBHOOK_SECRET": secret,
            }
        )
    with pytest.raises(SettingsError, match="GARDIEN_SMS_WEBHOOK_URL must be a"):
        load_settings(
            {**local, "GARDIEN_SMS_WEBHOOK_URL": "ftp://x", "GARDIEN_SMS_WEBHOOK_SECRET": secret}
        )


def test_org1_sign_up_lifetime_defaults_to_a_day_and_is_configurable(tmp_path: Path) -> None:
    defaults = load_settings({"GARDIEN_VAR_DIR": str(tmp_path)})
    configured = load_settings(
        {"GARDIEN_VAR_DIR": str(tmp_path), "GARDIEN_SIGN_UP_LIFETIME_HOURS": "48"}
    )

    assert (defaults.sign_up_lifetime_hours, configured.sign_up_lifetime_hours) == (24, 48)


@pytest.mark.parametrize("raw", ["0", "169", "-1", "1.5", "a day", "２４"])
def test_org1_sign_up_lifetime_out_of_range_refused(tmp_path: Path, raw: str) -> None:
    with pytest.raises(SettingsError, match="GARDIEN_SIGN_UP_LIFETIME_HOURS must be a number"):
        load_settings({"GARDIEN_VAR_DIR": str(tmp_path), "GARDIEN_SIGN_UP_LIFETIME_HOURS": raw})


def test_evt1_allowed_origins_default_to_the_public_url_and_are_checked(tmp_path: Path) -> None:
    default = load_settings(
        {"GARDIEN_VAR_DIR": str(tmp_path), "GARDIEN_PUBLIC_URL": "https://manager.example/app"}
    )
    configured = load_settings(
        {
            "GARDIEN_VAR_DIR": str(tmp_path),
            "GARDIEN_ALLOWED_ORIGINS": "https://console.example, http://localhost:5173/",
        }
    )

    assert default.allowed_origins == ("https://manager.example",)
    assert configured.allowed_origins == ("https://console.example", "http://localhost:5173")
    for bad in ("console.example", "https://console.example/path", "ftp://console.example"):
        with pytest.raises(SettingsError, match="GARDIEN_ALLOWED_ORIGINS"):
            load_settings({"GARDIEN_VAR_DIR": str(tmp_path), "GARDIEN_ALLOWED_ORIGINS": bad})
