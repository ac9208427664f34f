"""Settings from GARDIEN_* environment variables, validated once at start-up."""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

PREFIX = "GARDIEN_"
# Variables of the test suite and benchmarks share the prefix; the application never reads them.
RESERVED_PREFIXES = ("GARDIEN_TEST_", "GARDIEN_BENCH_")
KNOWN = frozenset(
    {
        "ENV",
        "DATABASE_URL",
        "REDIS_URL",
        "SMTP_URL",
        "SECRET_KEY",
        "PUBLIC_URL",
        "VAR_DIR",
        "LOG_LEVEL",
        "INTROSPECTION",
        "MAX_DEPTH",
        "MAX_ALIASES",
        "MAX_ROOT_FIELDS",
        "MAX_DIRECTIVES",
        "MAX_TOKENS",
        "MAX_COST",
        "MAX_BODY_BYTES",
    }
)
MIN_SECRET_KEY_BYTES = 32


class SettingsError(Exception):
    """A setting is missing or invalid; the message is one line meant for the operator."""


@dataclass(frozen=True)
class Settings:
    env: Literal["development", "production"]
    database_url: str
    redis_url: str | None
    smtp_url: str | None
    secret_key: bytes
    public_url: str
    var_dir: Path
    log_level: str
    introspection: bool
    # Bounds on one GraphQL request (API-4); see gardien/graphql/limits.py.
    max_depth: int
    max_aliases: int
    max_root_fields: int
    max_directives: int
    max_tokens: int
    max_cost: int
    max_body_bytes: int

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env_vars = os.environ if environ is None else environ
    values = {
        name.removeprefix(PREFIX): value
        for name, value in env_vars.items()
        if name.startswith(PREFIX) and not name.startswith(RESERVED_PREFIXES)
    }
    unknown = sorted(set(values) - KNOWN)
    if unknown:
        known = ", ".join(PREFIX + k for k in sorted(KNOWN))
        raise SettingsError(f"unknown setting {PREFIX}{unknown[0]} (known settings: {known})")

    env = values.get("ENV", "development")
    if env not in ("development", "production"):
        raise SettingsError(f"GARDIEN_ENV must be development or production, not {env!r}")
    var_dir = Path(values.get("VAR_DIR", "var")).resolve()
    database_url = normalise_database_url(
        values.get("DATABASE_URL", f"sqlite://{var_dir / 'gardien.sqlite3'}")
    )
    redis_url = _optional_url(values, "REDIS_URL", ("redis", "rediss"))
    smtp_url = _optional_url(values, "SMTP_URL", ("smtp", "smtps"))
    public_url = values.get("PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
    if urlsplit(public_url).scheme not in ("http", "https") or not urlsplit(public_url).netloc:
        raise SettingsError(f"GARDIEN_PUBLIC_URL must be an http(s) URL, not {public_url!r}")
    if env == "production" and not public_url.startswith("https://"):
        raise SettingsError("GARDIEN_PUBLIC_URL must use https in production")
    log_level = values.get("LOG_LEVEL", "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(
            f"GARDIEN_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {log_level!r}"
        )
    introspection = _boolean(values, "INTROSPECTION", default=env == "development")
    return Settings(
        env=env,  # type: ignore[arg-type]  # checked just above
        database_url=database_url,
        redis_url=redis_url,
        smtp_url=smtp_url,
        secret_key=_secret_key(values.get("SECRET_KEY"), env, var_dir),
        public_url=public_url,
        var_dir=var_dir,
        log_level=log_level,
        introspection=introspection,
        max_depth=_positive_integer(values, "MAX_DEPTH"),
        max_aliases=_positive_integer(values, "MAX_ALIASES"),
        max_root_fields=_positive_integer(values, "MAX_ROOT_FIELDS"),
        max_directives=_positive_integer(values, "MAX_DIRECTIVES"),
        max_tokens=_positive_integer(values, "MAX_TOKENS"),
        max_cost=_positive_integer(values, "MAX_COST"),
        max_body_bytes=_positive_integer(values, "MAX_BODY_BYTES"),
    )


# Defaults in the class of GraphQL Armor's; every contract operation uses at most half of each.
REQUEST_LIMITS = {
    "MAX_DEPTH": 15,  # GraphiQL's introspection query is 15 deep
    "MAX_ALIASES": 15,
    "MAX_ROOT_FIELDS": 20,
    "MAX_DIRECTIVES": 50,
    "MAX_TOKENS": 2000,
    "MAX_COST": 5000,
    "MAX_BODY_BYTES": 100_000,
}


def _positive_integer(values: Mapping[str, str], name: str) -> int:
    raw = values.get(name)
    if raw is None:
        return REQUEST_LIMITS[name]
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise SettingsError(f"GARDIEN_{name} must be a positive integer, not {raw!r}")
    return int(raw)


def normalise_database_url(url: str) -> str:
    scheme = urlsplit(url).scheme
    if scheme == "postgresql":
        return "postgres" + url.removeprefix("postgresql")
    if scheme not in ("sqlite", "postgres"):
        raise SettingsError(
            f"GARDIEN_DATABASE_URL must be a sqlite:// or postgres:// URL, not {scheme or url!r}://"
        )
    return url


def _optional_url(values: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str | None:
    url = values.get(name)
    if not url:
        return None
    if urlsplit(url).scheme not in schemes:
        raise SettingsError(
            f"GARDIEN_{name} must be a {' or '.join(s + '://' for s in schemes)} URL"
        )
    return url


def _boolean(values: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = values.get(name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"GARDIEN_{name} must be true or false, not {raw!r}")


def _secret_key(raw: str | None, env: str, var_dir: Path) -> bytes:
    if raw:
        key = _decode_key(raw)
        if len(key) < MIN_SECRET_KEY_BYTES:
            raise SettingsError(
                f"GARDIEN_SECRET_KEY must hold at least {MIN_SECRET_KEY_BYTES} random bytes "
                "(e.g. the output of: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        return key
    if env == "production":
        raise SettingsError("GARDIEN_SECRET_KEY is required in production")
    # Development: one key per checkout, kept beside the embedded database.
    path = var_dir / "secret_key"
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return _decode_key(path.read_text().strip())


def _decode_key(raw: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except ValueError:
        return raw.encode()
