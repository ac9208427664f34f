"""Settings from GARDIEN_* environment variables, validated once at start-up."""

from __future__ import annotations

import base64
import itertools
import math
import os
import re
import secrets
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from gardien.proxies import Network, parse_networks

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
        "MAIL_FROM",
        "OUTBOX_WORKER",
        "JOBS",
        "JOBS_INTERVAL",
        "TRUSTED_PROXIES",
        "METRICS_TOKEN",
        "MAX_DEPTH",
        "MAX_ALIASES",
        "MAX_ROOT_FIELDS",
        "MAX_DIRECTIVES",
        "MAX_TOKENS",
        "MAX_COST",
        "MAX_BODY_BYTES",
        "WEBHOOK_ALLOW_PRIVATE",
        "SIGN_UP_LIFETIME_HOURS",
        "ALLOWED_ORIGINS",
        "WEBAUTHN_RP_ID",
        "WEBAUTHN_ORIGIN",
        "SMS_WEBHOOK_URL",
        "SMS_WEBHOOK_SECRET",
        "WS_MAX_CONNECTIONS_PER_USER",
    }
)
MIN_SECRET_KEY_BYTES = 32
# NIST SP 800-131A Rev. 2 / SP 800-57: keys of at least 128 bits of security strength.
MIN_SECRET_KEY_ENTROPY_BITS = 128
MIN_SECRET_KEY_DISTINCT_SYMBOLS = 16
MIN_METRICS_TOKEN_LENGTH = 32
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")


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
    # OPS-6: the sender of outgoing mail, and whether `gardien serve` runs the outbox worker too.
    mail_from: str = "Gardien <no-reply@gardien.localhost>"
    outbox_worker: bool = True
    # `gardien serve` runs the due jobs (domain lifecycle) every jobs_interval_seconds.
    jobs: bool = True
    jobs_interval_seconds: int = 300
    # Reverse proxies whose X-Forwarded-For is believed (see gardien/proxies.py); none by default.
    trusted_proxies: tuple[Network, ...] = ()
    # Bearer token for /metrics; in production /metrics answers 404 without one.
    metrics_token: str | None = None
    # EVT-5: webhooks to http:// and to private, loopback or link-local addresses, for a
    # receiver on the developer's machine; never in production (SSRF).
    webhook_allow_private: bool = False
    # ORG-1: how long a sign-up's confirmation link stays valid; unconfirmed ones are then purged.
    sign_up_lifetime_hours: int = 24
    # Origins whose pages may open the GraphQL WebSocket with the session cookie (EVT-1); a
    # connection authenticated by the cookie from any other origin is refused. Default: public_url.
    allowed_origins: tuple[str, ...] = ()
    # MFA-2: the WebAuthn relying party. Security keys are bound to the RP ID (a registrable
    # domain: changing it orphans every registered key) and answer only to pages of the origin.
    # Defaults: the host and the origin of public_url.
    webauthn_rp_id: str = "127.0.0.1"
    webauthn_origin: str = "http://127.0.0.1:8000"
    # MFA-3, OPS-6: the SMS gateway's HTTP endpoint and the secret signing requests to it; without
    # them SMS wait in the outbox (readable with `gardien outbox`).
    sms_webhook_url: str | None = None
    sms_webhook_secret: str | None = None
    # EVT-1: GraphQL WebSockets one user (their sessions and tokens together) may hold open at
    # once; each costs the process a file descriptor, so one account cannot take them all.
    ws_max_connections_per_user: int = 100

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
    mail_from = values.get("MAIL_FROM", Settings.mail_from)
    if "@" not in mail_from or any(c in mail_from for c in "\r\n"):
        raise SettingsError(f"GARDIEN_MAIL_FROM must be an e-mail address, not {mail_from!r}")
    outbox_worker = _boolean(values, "OUTBOX_WORKER", default=True)
    jobs = _boolean(values, "JOBS", default=True)
    jobs_interval = values.get("JOBS_INTERVAL", "300")
    if not jobs_interval.isdigit() or not 1 <= int(jobs_interval) <= 86400:
        raise SettingsError(
            "GARDIEN_JOBS_INTERVAL must be a number of seconds from 1 to 86400, "
            f"not {jobs_interval!r}"
        )
    try:
        trusted_proxies = parse_networks(values.get("TRUSTED_PROXIES", ""))
    except ValueError as error:
        raise SettingsError(f"GARDIEN_TRUSTED_PROXIES: {error}") from None
    metrics_token = values.get("METRICS_TOKEN") or None
    if metrics_token is not None and len(metrics_token) < MIN_METRICS_TOKEN_LENGTH:
        raise SettingsError(
            f"GARDIEN_METRICS_TOKEN must be at least {MIN_METRICS_TOKEN_LENGTH} characters "
            "(e.g. the output of: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    webhook_allow_private = _boolean(values, "WEBHOOK_ALLOW_PRIVATE", default=False)
    if env == "production" and webhook_allow_private:
        raise SettingsError(
            "GARDIEN_WEBHOOK_ALLOW_PRIVATE is for development: in production webhooks reach public"
            " HTTPS addresses only"
        )
    sign_up_lifetime = values.get("SIGN_UP_LIFETIME_HOURS", str(Settings.sign_up_lifetime_hours))
    if not (sign_up_lifetime.isascii() and sign_up_lifetime.isdigit()) or not (
        1 <= int(sign_up_lifetime) <= 168
    ):
        raise SettingsError(
            "GARDIEN_SIGN_UP_LIFETIME_HOURS must be a number of hours from 1 to 168, "
            f"not {sign_up_lifetime!r}"
        )
    allowed_origins = _origins(values.get("ALLOWED_ORIGINS"), public_url)
    webauthn_rp_id, webauthn_origin = _webauthn(values, public_url)
    sms_webhook_url = _optional_url(values, "SMS_WEBHOOK_URL", ("https", "http"))
    sms_webhook_secret = values.get("SMS_WEBHOOK_SECRET") or None
    if sms_webhook_url is not None and (
        sms_webhook_secret is None or len(sms_webhook_secret) < MIN_METRICS_TOKEN_LENGTH
    ):
        raise SettingsError(
            "GARDIEN_SMS_WEBHOOK_URL needs GARDIEN_SMS_WEBHOOK_SECRET of at least "
            f"{MIN_METRICS_TOKEN_LENGTH} characters (the gateway checks the signature with it)"
        )
    if env == "production" and sms_webhook_url is not None and sms_webhook_url.startswith("http:"):
        raise SettingsError("GARDIEN_SMS_WEBHOOK_URL must use https in production")
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
        mail_from=mail_from,
        outbox_worker=outbox_worker,
        jobs=jobs,
        jobs_interval_seconds=int(jobs_interval),
        trusted_proxies=trusted_proxies,
        metrics_token=metrics_token,
        sign_up_lifetime_hours=int(sign_up_lifetime),
        allowed_origins=allowed_origins,
        webauthn_rp_id=webauthn_rp_id,
        webauthn_origin=webauthn_origin,
        max_depth=_positive_integer(values, "MAX_DEPTH"),
        max_aliases=_positive_integer(values, "MAX_ALIASES"),
        max_root_fields=_positive_integer(values, "MAX_ROOT_FIELDS"),
        max_directives=_positive_integer(values, "MAX_DIRECTIVES"),
        max_tokens=_positive_integer(values, "MAX_TOKENS"),
        max_cost=_positive_integer(values, "MAX_COST"),
        max_body_bytes=_positive_integer(values, "MAX_BODY_BYTES"),
        webhook_allow_private=webhook_allow_private,
        sms_webhook_url=sms_webhook_url,
        sms_webhook_secret=sms_webhook_secret,
        ws_max_connections_per_user=_positive_integer(
            values, "WS_MAX_CONNECTIONS_PER_USER", Settings.ws_max_connections_per_user
        ),
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


def _positive_integer(values: Mapping[str, str], name: str, default: int | None = None) -> int:
    raw = values.get(name)
    if raw is None:
        return REQUEST_LIMITS[name] if default is None else default
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


def _origins(value: str | None, public_url: str) -> tuple[str, ...]:
    """Comma-separated origins (scheme://host[:port]), compared exactly with the Origin header."""
    if value is None or not value.strip():
        parts = urlsplit(public_url)
        return (f"{parts.scheme}://{parts.netloc}",)
    origins = []
    for item in value.split(","):
        origin = item.strip().rstrip("/")
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            raise SettingsError(
                f"GARDIEN_ALLOWED_ORIGINS: {origin!r} is not an origin such as https://example.com"
            )
        origins.append(origin)
    return tuple(origins)


def _webauthn(values: Mapping[str, str], public_url: str) -> tuple[str, str]:
    """MFA-2: the RP ID and the one origin whose pages may register and use security keys.

    WebAuthn (§5.1.3, §13.4.9) requires the RP ID to be the origin's host or a registrable
    suffix of it; checked here so a misconfiguration fails at start-up, not at every sign-in."""
    parts = urlsplit(public_url)
    origin = values.get("WEBAUTHN_ORIGIN", f"{parts.scheme}://{parts.netloc}").strip().rstrip("/")
    origin_parts = urlsplit(origin)
    if (
        origin_parts.scheme not in ("http", "https")
        or not origin_parts.hostname
        or (origin_parts.path)
    ):
        raise SettingsError(
            f"GARDIEN_WEBAUTHN_ORIGIN: {origin!r} is not an origin such as https://example.com"
        )
    host = origin_parts.hostname
    rp_id = values.get("WEBAUTHN_RP_ID", host).strip().lower()
    if not rp_id or not (host == rp_id or host.endswith("." + rp_id)):
        raise SettingsError(
            f"GARDIEN_WEBAUTHN_RP_ID must be the host of GARDIEN_WEBAUTHN_ORIGIN ({host}) or a"
            f" domain it belongs to, not {rp_id!r}"
        )
    return rp_id, origin


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
        return decode_secret_key(raw)
    if env == "production":
        raise SettingsError("GARDIEN_SECRET_KEY is required in production")
    # Development: one key per checkout, kept beside the embedded database.
    path = var_dir / "secret_key"
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return decode_secret_key(path.read_text().strip())


_KEY_HINT = "e.g. the output of: python -c 'import secrets; print(secrets.token_urlsafe(48))'"


def decode_secret_key(raw: str) -> bytes:
    """The key: base64url (padded or not) of at least 32 bytes, or else raw text of 32 bytes.

    Nothing in between: a value made only of base64url characters is always decoded as such, so a
    short one is refused rather than quietly taken as text. Then the key must look random.
    """
    if _BASE64URL.match(raw):
        unpadded = raw.rstrip("=")
        if len(unpadded) % 4 == 1 or (raw != unpadded and len(raw) % 4):
            raise SettingsError(f"GARDIEN_SECRET_KEY is not valid base64url ({_KEY_HINT})")
        key = base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4))
    else:
        key = raw.encode()
    if len(key) < MIN_SECRET_KEY_BYTES:
        raise SettingsError(
            f"GARDIEN_SECRET_KEY must hold at least {MIN_SECRET_KEY_BYTES} random bytes "
            f"({_KEY_HINT})"
        )
    weakness = _weakness(key)
    if weakness:
        raise SettingsError(f"GARDIEN_SECRET_KEY is not random enough: {weakness} ({_KEY_HINT})")
    return key


def _weakness(key: bytes) -> str | None:
    """Why a key is guessable, or None.

    Counting symbols estimates entropy only from above, so the rule is deliberately coarse: it
    refuses what a person typed or patterned, never what a random generator gave (for 32 random
    bytes, each check fails with a probability far below 2^-40).
    """
    counts = Counter(key)
    if len(counts) < MIN_SECRET_KEY_DISTINCT_SYMBOLS:
        return f"only {len(counts)} distinct symbols (at least {MIN_SECRET_KEY_DISTINCT_SYMBOLS})"
    for unit in range(1, len(key) // 2 + 1):
        if len(key) % unit == 0 and key == key[:unit] * (len(key) // unit):
            return "a repeated pattern"
    steps = Counter((b - a) % 256 for a, b in itertools.pairwise(key))
    if steps.most_common(1)[0][1] * 2 > len(key) - 1:
        return "a sequence"
    bits = -sum(n * math.log2(n / len(key)) for n in counts.values())
    if bits < MIN_SECRET_KEY_ENTROPY_BITS:
        return f"about {bits:.0f} bits of entropy (at least {MIN_SECRET_KEY_ENTROPY_BITS})"
    return None
