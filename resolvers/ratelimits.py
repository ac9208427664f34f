"""Attempt limits on guessable inputs (API-4, ASVS V2.2.1): fixed windows kept in the database."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from gardien.resolvers import sql
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import Services


@dataclass(frozen=True)
class Rule:
    name: str
    limit: int
    window: timedelta


# NIST SP 800-63B 5.2.2 allows at most 100 failed attempts per account; ten per quarter hour from
# untrusted clients is far stricter, and the device cookie keeps the owner from paying for it.
SIGN_IN_ATTEMPTS_PER_LOGIN = Rule("sign_in_login", 10, timedelta(minutes=15))
# A browser that signed in before (OWASP device cookies) spends its own budget, not the login's.
SIGN_IN_ATTEMPTS_PER_DEVICE = Rule("sign_in_device", 10, timedelta(minutes=15))
# A device cookie that spends its budget is itself locked (OWASP: "lockout the device cookie"),
# far longer than the budget's window: a stolen cookie buys about ten guesses a day, not forty an
# hour. Locked means any count in the window; the lock is set once, by the attempt that exhausts
# the budget.
SIGN_IN_DEVICE_LOCK = Rule("sign_in_device_lock", 0, timedelta(hours=24))
# Every trusted attempt for one user, whatever cookie it carries: cookies (minted by each sign-in
# from a new browser) must not multiply the budget. Failures only; a success gives its own back.
SIGN_IN_TRUSTED_ATTEMPTS_PER_USER = Rule("sign_in_trusted_user", 30, timedelta(hours=24))
# Counted before verifying and given back on success: at most 100 failures per address.
SIGN_IN_ATTEMPTS_PER_IP = Rule("sign_in_ip", 100, timedelta(minutes=15))
SIGN_UPS_PER_IP = Rule("sign_up_ip", 10, timedelta(hours=1))

# One budget: a rule and the subject it is kept for.
Budget = tuple[Rule, str]

TOO_MANY_ATTEMPTS_MESSAGE = "Too many attempts. Wait {minutes} before trying again."


@dataclass(frozen=True)
class Attempt:
    """One counted attempt: its rank in the current window, and when the window ends."""

    rule: Rule
    count: int
    window_ends_at: datetime

    @property
    def allowed(self) -> bool:
        return self.count <= self.rule.limit

    @property
    def exhausts_budget(self) -> bool:
        """The first attempt refused in this window (worth one activity record, not one per try)."""
        return self.count == self.rule.limit + 1

    def retry_after_seconds(self, now: datetime) -> int:
        return max(1, math.ceil((self.window_ends_at - now).total_seconds()))


def ip_subject(ip: str | None) -> str | None:
    """The address a per-IP budget is kept for.

    An IPv6 customer is routinely given a whole /64, so a budget per /128 would hand an attacker
    2^64 budgets; IPv6 addresses share their /64's budget. IPv4-mapped addresses count as IPv4.
    """
    if ip is None:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _key(services: Services, rule: Rule, subject: str) -> str:
    return f"{rule.name}:{services.keyring.token_digest(subject.lower(), 'rate-limit')}"


# _IN_KEY_ORDER: every statement that changes several counters (counting a sign-in's budgets,
# giving them back) locks their rows in key order. Two attempts over the same budgets then wait
# for each other in turn; locked in different orders, PostgreSQL would find them deadlocked and
# abort one, after a second holding two pooled connections: a flood of refused attempts would
# turn into errors and a stalled pool for everyone. SQLite writes one statement at a time.
#
# One statement that counts the attempt and answers the new count, so two concurrent attempts can
# never both read the old one (an upsert is atomic on PostgreSQL and on SQLite ≥ 3.35). An expired
# window restarts at 1. Runs outside any transaction: a counted attempt stays counted. A sign-in
# counts several budgets at once: one row each, in one statement (one round trip, not one per
# budget); the placeholders are ($1 key, $2 window end), ($3, $4)… and the last one is now.
_CONSUME_UPDATE = (
    " ON CONFLICT (key) DO UPDATE SET"
    " count = CASE WHEN rate_limit_counter.window_ends_at <= ${now} THEN 1"
    " ELSE rate_limit_counter.count + 1 END,"
    " window_ends_at = CASE WHEN rate_limit_counter.window_ends_at <= ${now}"
    " THEN excluded.window_ends_at ELSE rate_limit_counter.window_ends_at END"
    " RETURNING key, count, window_ends_at"
)


@lru_cache(maxsize=8)
def _consume_statement(budgets: int) -> str:
    rows = ", ".join(f"(${2 * row + 1}, 1, ${2 * row + 2})" for row in range(budgets))
    return (
        f"INSERT INTO rate_limit_counter (key, count, window_ends_at) VALUES {rows}"
        + _CONSUME_UPDATE.replace("{now}", str(2 * budgets + 1))
    )


# Given back in one statement too: each key on its own terms, as one UPDATE per key would. Its
# placeholders are the keys, then now, numbered from `first` (1, unless it runs inside another
# statement, see give_back_if). On PostgreSQL the rows are locked in key order first (see
# _IN_KEY_ORDER): an UPDATE by itself locks them in the order it finds them on disk.
@lru_cache(maxsize=16)
def _give_back_statement(budgets: int, first: int, in_key_order: bool) -> str:
    keys = ", ".join(f"${first + row}" for row in range(budgets))
    live = f"count > 0 AND window_ends_at > ${first + budgets}"
    if in_key_order:
        return (
            "UPDATE rate_limit_counter SET count = count - 1 WHERE key IN (SELECT key FROM"
            f" rate_limit_counter WHERE key IN ({keys}) AND {live} ORDER BY key FOR UPDATE)"
            f" AND {live}"
        )
    return f"UPDATE rate_limit_counter SET count = count - 1 WHERE key IN ({keys}) AND {live}"


_CURRENT = (
    "SELECT count, window_ends_at FROM rate_limit_counter WHERE key = $1 AND window_ends_at > $2"
)
_RESET = "DELETE FROM rate_limit_counter WHERE key = $1"
_PRUNE = "DELETE FROM rate_limit_counter WHERE window_ends_at <= $1"
# On PostgreSQL the job leaves alone the rows an attempt holds (they go at its next run), rather
# than lock expired rows in disk order against attempts locking them in key order.
_PRUNE_SKIPPING_LOCKED = (
    "DELETE FROM rate_limit_counter WHERE key IN (SELECT key FROM rate_limit_counter"
    " WHERE window_ends_at <= $1 FOR UPDATE SKIP LOCKED) AND window_ends_at <= $1"
)


async def consume(services: Services, rule: Rule, subject: str) -> Attempt:
    """Count one attempt against the subject's budget and say whether it is still allowed."""
    (attempt,) = await consume_each(services, [(rule, subject)])
    return attempt


async def consume_each(services: Services, budgets: Sequence[Budget]) -> list[Attempt]:
    """Count one attempt against each budget, atomically each, in one statement; the attempts
    in the order of `budgets`. A caller that checks them in turn gives back (give_back_each) the
    ones after the first refused, to leave the counts that checking them one by one would."""
    if not budgets:
        return []
    now = services.clock.now()
    keys, params = _consume_params(services, budgets, now)
    rows = await sql.fetch(_consume_statement(len(budgets)), [*params, sql.moment(now)])
    return _attempts(budgets, keys, rows)


def _consume_params(
    services: Services, budgets: Sequence[Budget], now: datetime
) -> tuple[list[str], list[Any]]:
    """Each budget's key, in the order of `budgets`; and the statement's rows, in key order:
    each key and the end its window would have if it started now (see _IN_KEY_ORDER)."""
    keys = [_key(services, rule, subject) for rule, subject in budgets]
    rows = sorted(
        (key, sql.moment(now + rule.window)) for key, (rule, _) in zip(keys, budgets, strict=True)
    )
    return keys, [value for row in rows for value in row]


def _attempts(
    budgets: Sequence[Budget], keys: list[str], rows: list[dict[str, Any]]
) -> list[Attempt]:
    """The counted rows as attempts in the order of `budgets`, whose keys are `keys`: RETURNING
    gives no promise of order, so rows are matched by key."""
    by_key = {row["key"]: row for row in rows}
    return [_attempt(rule, by_key[key]) for (rule, _), key in zip(budgets, keys, strict=True)]


def _attempt(rule: Rule, row: dict[str, Any]) -> Attempt:
    return Attempt(
        rule=rule, count=int(row["count"]), window_ends_at=sql.as_datetime(row["window_ends_at"])
    )


# consume_each unless a hold (a lock: a budget spent in its running window) is on, in one
# statement on PostgreSQL (one round trip where a read and a write were two). The placeholders
# are those of _consume_statement, then the hold's key and its rule's limit. VALUES outside an
# INSERT gives its placeholders no type: hence the casts.
@lru_cache(maxsize=8)
def _consume_unless_held_statement(budgets: int) -> str:
    now, hold, limit = 2 * budgets + 1, 2 * budgets + 2, 2 * budgets + 3
    rows = ", ".join(f"(${2 * row + 1}, ${2 * row + 2}::timestamptz)" for row in range(budgets))
    return (
        "WITH held AS (SELECT key, count, window_ends_at FROM rate_limit_counter"
        f" WHERE key = ${hold} AND window_ends_at > ${now} AND count > ${limit}),"
        " counted AS (INSERT INTO rate_limit_counter (key, count, window_ends_at)"
        f" SELECT v.key, 1, v.window_ends_at FROM (VALUES {rows}) AS v (key, window_ends_at)"
        " WHERE NOT EXISTS (SELECT 1 FROM held) ORDER BY v.key"
        + _CONSUME_UPDATE.replace("{now}", str(now))
        + ") SELECT key, count, window_ends_at FROM held"
        " UNION ALL SELECT key, count, window_ends_at FROM counted"
    )


async def consume_each_unless_held(
    services: Services, budgets: Sequence[Budget], hold: Budget | None
) -> tuple[Attempt | None, list[Attempt]]:
    """consume_each, unless the `hold` budget is spent in its running window: then nothing is
    counted and the answer is (the hold's attempt, []); otherwise (None, the attempts). One
    statement on PostgreSQL, two elsewhere; with no hold, consume_each."""
    if hold is None:
        return None, await consume_each(services, budgets)
    hold_rule, hold_subject = hold
    if not sql.writes_in_with():
        held = await current(services, hold_rule, hold_subject)
        if held is not None and not held.allowed:
            return held, []
        return None, await consume_each(services, budgets)
    now = services.clock.now()
    keys, params = _consume_params(services, budgets, now)
    hold_key = _key(services, hold_rule, hold_subject)
    rows = await sql.fetch(
        _consume_unless_held_statement(len(budgets)),
        [*params, sql.moment(now), hold_key, hold_rule.limit],
    )
    hold_rows = [row for row in rows if row["key"] == hold_key]
    if hold_rows:
        return _attempt(hold_rule, hold_rows[0]), []
    return None, _attempts(budgets, keys, rows)


async def current(services: Services, rule: Rule, subject: str) -> Attempt | None:
    """The subject's count in the running window, without counting anything (None: no window)."""
    rows = await sql.fetch(
        _CURRENT, [_key(services, rule, subject), sql.moment(services.clock.now())]
    )
    return _attempt(rule, rows[0]) if rows else None


def refusal(services: Services, attempt: Attempt) -> DomainError:
    """The one answer to a spent budget; it says nothing about the login it was spent on."""
    seconds = attempt.retry_after_seconds(services.clock.now())
    minutes = math.ceil(seconds / 60)
    if minutes > 120:
        # A locked device cookie waits up to a day: count it in hours.
        hours = math.ceil(seconds / 3600)
        wait = f"{hours} hours"
    else:
        wait = f"{minutes} minute{'s' if minutes > 1 else ''}"
    return DomainError(
        ErrorCode.TOO_MANY_ATTEMPTS,
        TOO_MANY_ATTEMPTS_MESSAGE.format(minutes=wait),
        retry_after_seconds=seconds,
    )


async def require_allowed(services: Services, rule: Rule, subject: str | None) -> None:
    """Count an attempt and refuse it when over budget (for limits with nothing to give back)."""
    if subject is None:
        return
    attempt = await consume(services, rule, subject)
    if not attempt.allowed:
        raise refusal(services, attempt)


async def give_back(services: Services, rule: Rule, subject: str) -> None:
    """Return an attempt that turned out well, so only failures use the budget up."""
    await give_back_each(services, [(rule, subject)])


async def give_back_each(services: Services, budgets: Sequence[Budget]) -> None:
    """give_back for each budget, in one statement."""
    if not budgets:
        return
    statement = _give_back_statement(len(budgets), 1, sql.locks_rows())
    await sql.fetch(statement, _give_back_params(services, budgets))


def give_back_if(
    services: Services, budgets: Sequence[Budget], condition: str, first: int
) -> tuple[str, list[Any]]:
    """give_back_each as a statement to run inside another one's WITH (PostgreSQL), so that a
    caller that reads something anyway gives back in the same round trip: only when
    `condition` holds (an SQL condition on the caller's placeholders), and with this statement's
    own placeholders numbered from `first`. Answers the statement and its parameters."""
    if not budgets:
        raise ValueError("nothing to give back")
    statement = _give_back_statement(len(budgets), first, sql.locks_rows())
    return f"{statement} AND ({condition})", _give_back_params(services, budgets)


def _give_back_params(services: Services, budgets: Sequence[Budget]) -> list[Any]:
    keys = [_key(services, rule, subject) for rule, subject in budgets]
    return [*keys, sql.moment(services.clock.now())]


async def reset(services: Services, rule: Rule, subject: str) -> None:
    await sql.fetch(_RESET, [_key(services, rule, subject)])


async def prune_expired(services: Services) -> None:
    """Drop counters whose window has ended (each guessed login leaves one); for a periodic job."""
    statement = _PRUNE_SKIPPING_LOCKED if sql.locks_rows() else _PRUNE
    await sql.fetch(statement, [sql.moment(services.clock.now())])
