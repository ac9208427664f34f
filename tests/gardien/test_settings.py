"""Settings: GARDIEN_* variables validated once; a bad one stops start-up with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gardien.settings import Settings, SettingsError, load_settings

KEY = "k" * 48


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
        ({"GARDIEN_SECRET_KEY": "short"}, "at least 32 random bytes"),
        ({"GARDIEN_DATABASE_URL": "mysql://db/x"}, "sqlite:// or postgres://"),
        ({"GARDIEN_REDIS_URL": "http://x"}, "GARDIEN_REDIS_URL must be a redis://"),
        ({"GARDIEN_SMTP_URL": "mail.example"}, "GARDIEN_SMTP_URL must be a smtp://"),
        ({"GARDIEN_INTROSPECTION": "maybe"}, "GARDIEN_INTROSPECTION must be true or false"),
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
