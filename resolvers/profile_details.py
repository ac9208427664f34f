"""The user's name, language, country and time zone (PRO-1): what e-mails are written with."""

from __future__ import annotations

from functools import cache
from importlib import resources

from tortoise.transactions import in_transaction

from gardien.models.users import User
from gardien.resolvers import accounts, activity, authz
from gardien.resolvers.authz import Actor
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services

MAX_TIMEZONE_LENGTH = 64  # User.timezone


@cache
def country_codes() -> frozenset[str]:
    """ISO 3166-1 alpha-2, as the IANA time zone database ships it (tzdata's iso3166.tab): the
    whole current list, kept up to date with the zones themselves."""
    table = resources.files("tzdata").joinpath("zoneinfo", "iso3166.tab")
    return frozenset(
        line.split("\t", 1)[0]
        for line in table.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    )


@cache
def timezone_names() -> frozenset[str]:
    """IANA zone names, as tzdata lists them (its `zones` file); a name outside it would silently
    fall back to UTC in e-mails. Not zoneinfo.available_timezones(): it also walks the system's
    zone directory, where "localtime" is the server's own zone, no IANA name at all."""
    listed = resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8")
    return frozenset(listed.split())


def validate_country(raw: str) -> str:
    code = raw.strip().upper()
    if code not in country_codes():
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "Give a country as its ISO 3166-1 two-letter code, such as CH.",
            "country",
        )
    return code


def validate_timezone(raw: str) -> str:
    name = raw.strip()
    if len(name) > MAX_TIMEZONE_LENGTH or name not in timezone_names():
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "Give an IANA time zone name, such as Europe/Zurich.",
            "timezone",
        )
    return name


async def update_profile(
    services: Services,
    meta: RequestMeta,
    actor: Actor,
    *,
    display_name: str | None = None,
    language: str | None = None,
    country: str | None = None,
    clear_country: bool = False,
    timezone: str | None = None,
) -> User:
    """PRO-1: None keeps a value (clear_country removes the country). Everything is checked
    before anything changes; e-mails follow the new language and zone from the next one on."""
    user = authz.require_profile_owner(actor)
    changes: dict[str, str | None] = {}
    if display_name is not None:
        changes["display_name"] = accounts.validate_display_name(display_name)
    if language is not None:
        changes["language"] = accounts.validate_language(language)
    if country is not None:
        changes["country"] = validate_country(country)
    elif clear_country:
        changes["country"] = None
    if timezone is not None:
        changes["timezone"] = validate_timezone(timezone)
    async with in_transaction():
        row = await User.filter(id=user.id).select_for_update().get()
        changed = sorted(name for name, value in changes.items() if getattr(row, name) != value)
        if changed:
            for name in changed:
                setattr(row, name, changes[name])
            await row.save(update_fields=changed)
            await activity.profile_updated(services, meta, user.id, fields=changed)
    return row
