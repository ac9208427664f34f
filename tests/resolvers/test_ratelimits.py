"""Attempt budgets kept in the database: atomic counting, fixed windows, give-back and reset."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from tortoise.connection import get_connection

from gardien import jobs
from gardien.clock import ManualClock
from gardien.models.ratelimits import RateLimitCounter
from gardien.resolvers import ratelimits, sql
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import Services
from tests.conftest import BACKEND
from tests.querycount import count_queries

pytestmark = pytest.mark.usefixtures("database")

RULE = ratelimits.Rule("test_rule", 5, timedelta(minutes=15))


async def test_api4_consume_counts_each_concurrent_attempt_exactly_once(
    services: Services,
) -> None:
    """ASVS V2.2.1: the count is incremented and read in one statement, so 40 concurrent attempts
    get the ranks 1..40 (on PostgreSQL they run on separate pooled connections)."""
    attempts = await asyncio.gather(
        *(ratelimits.consume(services, RULE, "subject") for _ in range(40))
    )

    assert sorted(a.count for a in attempts) == list(range(1, 41))
    assert [a.allowed for a in sorted(attempts, key=lambda a: a.count)] == [True] * 5 + [False] * 35
    assert [a.count for a in attempts if a.exhausts_budget] == [6]
    assert (await RateLimitCounter.get()).count == 40


async def test_api4_window_restarts_when_the_clock_passes_its_end(
    services: Services, clock: ManualClock
) -> None:
    first = await ratelimits.consume(services, RULE, "subject")
    clock.advance(timedelta(minutes=14, seconds=59))
    in_window = await ratelimits.consume(services, RULE, "subject")
    clock.advance(timedelta(seconds=1))
    next_window = await ratelimits.consume(services, RULE, "subject")

    assert (first.count, in_window.count, next_window.count) == (1, 2, 1)
    assert first.window_ends_at == in_window.window_ends_at
    assert next_window.window_ends_at == clock.now() + RULE.window
    assert in_window.retry_after_seconds(clock.now() - timedelta(seconds=1)) == 1


async def test_api4_refusal_says_when_to_retry(services: Services, clock: ManualClock) -> None:
    for _ in range(RULE.limit):
        await ratelimits.require_allowed(services, RULE, "subject")
    clock.advance(timedelta(minutes=5, seconds=30))

    with pytest.raises(DomainError) as refused:
        await ratelimits.require_allowed(services, RULE, "subject")

    assert (refused.value.code, refused.value.field) == (ErrorCode.TOO_MANY_ATTEMPTS, None)
    assert refused.value.retry_after_seconds == 9 * 60 + 30
    assert refused.value.message == "Too many attempts. Wait 10 minutes before trying again."


async def test_api4_subjects_are_counted_apart_and_case_insensitively(
    services: Services,
) -> None:
    await ratelimits.consume(services, RULE, "Anna@Example.test")
    same = await ratelimits.consume(services, RULE, "anna@example.test")
    other = await ratelimits.consume(services, RULE, "bob@example.test")

    assert (same.count, other.count) == (2, 1)
    # Only a keyed digest of the subject is stored, never the login or address itself.
    keys = [c.key for c in await RateLimitCounter.all()]
    assert all("example" not in key and key.startswith("test_rule:") for key in keys)


async def test_api4_give_back_returns_one_attempt_and_reset_clears_the_budget(
    services: Services, clock: ManualClock
) -> None:
    for _ in range(3):
        await ratelimits.consume(services, RULE, "subject")

    await ratelimits.give_back(services, RULE, "subject")
    after_give_back = await ratelimits.consume(services, RULE, "subject")
    await ratelimits.reset(services, RULE, "subject")
    after_reset = await ratelimits.consume(services, RULE, "subject")
    clock.advance(RULE.window)
    await ratelimits.give_back(services, RULE, "subject")  # an ended window is left alone

    assert (after_give_back.count, after_reset.count) == (3, 1)
    assert (await RateLimitCounter.get()).count == 1


async def test_api4_consume_each_counts_every_budget_once_in_one_statement_in_order(
    services: Services, clock: ManualClock
) -> None:
    """A sign-in's budgets are counted by one atomic statement; each keeps its own window."""
    long_rule = ratelimits.Rule("test_long", 1, timedelta(hours=24))
    await ratelimits.consume(services, long_rule, "b")

    with count_queries() as statements:
        first, second = await ratelimits.consume_each(services, [(RULE, "a"), (long_rule, "b")])
        await ratelimits.give_back_each(services, [(RULE, "a"), (long_rule, "b")])
    clock.advance(RULE.window)
    again = await ratelimits.consume_each(services, [(long_rule, "b"), (RULE, "a")])

    assert len(statements) == 2
    assert (first.rule, first.count, first.allowed) == (RULE, 1, True)
    assert (second.rule, second.count, second.allowed) == (long_rule, 2, False)
    assert second.window_ends_at - first.window_ends_at == long_rule.window - RULE.window
    # Given back once each; the short window has ended and restarts, the long one runs on.
    assert [(a.rule, a.count) for a in again] == [(long_rule, 2), (RULE, 1)]


async def test_api4_expired_counters_are_pruned_and_live_ones_kept(
    services: Services, clock: ManualClock
) -> None:
    await ratelimits.consume(services, RULE, "old")
    clock.advance(timedelta(minutes=10))
    await ratelimits.consume(services, RULE, "recent")
    clock.advance(timedelta(minutes=5))

    await ratelimits.prune_expired(services)

    assert await RateLimitCounter.all().count() == 1
    assert (await ratelimits.consume(services, RULE, "recent")).count == 2


async def test_api4_job_runner_prunes_expired_counters(
    services: Services, clock: ManualClock
) -> None:
    await ratelimits.consume(services, RULE, "old")
    clock.advance(timedelta(hours=1))

    await jobs.run_due(services)

    assert await RateLimitCounter.all().count() == 0


@pytest.mark.parametrize(
    ("ip", "subject"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:DB8:0:1::7", "2001:db8:0:1::/64"),
        ("2001:db8:0:1:ffff:ffff:ffff:ffff", "2001:db8:0:1::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        (None, None),
    ],
)
def test_api4_ipv6_clients_share_the_budget_of_their_64(
    ip: str | None, subject: str | None
) -> None:
    """An IPv6 subscriber is handed a whole /64: one budget per /128 would give 2^64 budgets."""
    assert ratelimits.ip_subject(ip) == subject


async def test_api4_current_reads_the_running_window_without_counting(
    services: Services, clock: ManualClock
) -> None:
    """The device-cookie lock is checked this way: looking must not extend or spend anything."""
    nothing = await ratelimits.current(services, RULE, "subject")
    await ratelimits.consume(services, RULE, "subject")
    seen = [await ratelimits.current(services, RULE, "Subject") for _ in range(3)]
    clock.advance(RULE.window)
    ended = await ratelimits.current(services, RULE, "subject")

    assert nothing is None
    assert [(a.count, a.window_ends_at) for a in seen if a] == [
        (1, clock.now()),
    ] * 3
    assert ended is None


async def test_api4_refusal_counts_a_long_wait_in_hours(
    services: Services, clock: ManualClock
) -> None:
    day_lock = ratelimits.Rule("test_lock", 0, timedelta(hours=24))
    attempt = await ratelimits.consume(services, day_lock, "subject")
    clock.advance(timedelta(hours=2, minutes=30))

    refused = ratelimits.refusal(services, attempt)

    assert refused.retry_after_seconds == 21 * 3600 + 30 * 60
    assert refused.message == "Too many attempts. Wait 22 hours before trying again."


async def test_api4_consume_each_unless_held_counts_nothing_while_the_hold_is_on(
    services: Services, clock: ManualClock
) -> None:
    """A locked device cookie is refused without spending any budget: while the hold (a rule of
    limit 0 with a count in its window) is on, nothing is counted; once its window ends, the
    budgets are counted as consume_each counts them. One statement on PostgreSQL."""
    hold = (ratelimits.Rule("test_hold", 0, timedelta(hours=1)), "cookie")
    other = ratelimits.Rule("test_other", 3, timedelta(minutes=5))
    budgets = [(RULE, "a"), (other, "b")]
    with count_queries() as free_statements:
        free = await ratelimits.consume_each_unless_held(services, budgets, hold)
    await ratelimits.consume(services, *hold)

    with count_queries() as held_statements:
        held, counted = await ratelimits.consume_each_unless_held(services, budgets, hold)
    while_held = [await ratelimits.current(services, *budget) for budget in budgets]
    clock.advance(timedelta(hours=1))
    after = await ratelimits.consume_each_unless_held(services, budgets, hold)

    assert free[0] is None and [(a.rule, a.count) for a in free[1]] == [(RULE, 1), (other, 1)]
    assert held is not None and counted == []
    assert [a.count if a else None for a in while_held] == [1, 1]
    assert (held.rule, held.count, held.allowed) == (hold[0], 1, False)
    assert held.window_ends_at == clock.now()
    assert len(free_statements) == (1 if BACKEND == "postgres" else 2), free_statements
    assert len(held_statements) == 1, held_statements
    # The windows of both budgets ended meanwhile: each restarts at 1, nothing was spent held.
    assert after[0] is None and [(a.rule, a.count) for a in after[1]] == [(RULE, 1), (other, 1)]


@pytest.mark.parametrize("condition", [True, False])
async def test_api4_give_back_if_gives_back_only_when_its_condition_holds(
    services: Services, condition: bool
) -> None:
    """The give-back a caller runs inside its own statement: numbered after the caller's
    placeholders, and limited by the caller's condition."""
    await ratelimits.consume_each(services, [(RULE, "a"), (RULE, "b")])
    await ratelimits.consume(services, RULE, "a")
    statement, params = ratelimits.give_back_if(
        services, [(RULE, "a"), (RULE, "b")], "$1 = 'yes'", first=2
    )

    await sql.fetch(statement, ["yes" if condition else "no", *params])

    counts = [await ratelimits.current(services, RULE, subject) for subject in ("a", "b")]
    expected = [1, 0] if condition else [2, 1]
    assert [attempt.count if attempt else None for attempt in counts] == expected


async def test_api4_counting_and_giving_back_never_deadlock(services: Services) -> None:
    """Counting and giving back lock the same counter rows; a sign-in refused by one budget gives
    the later ones back while other attempts count them. Both lock rows in key order, so
    concurrent attempts over the same budgets queue instead of deadlocking (PostgreSQL would
    abort one of each pair after a second, as a 500, holding two pooled connections meanwhile)."""
    budgets = [(RULE, subject) for subject in ("ip", "device", "trusted", "login")]
    await ratelimits.consume_each(services, budgets)

    async def count() -> None:
        await ratelimits.consume_each(services, budgets)

    async def give_back(order: int) -> None:
        await ratelimits.give_back_each(services, budgets[::order])

    async def count_unless_held() -> None:
        await ratelimits.consume_each_unless_held(
            services, budgets[::-1], (ratelimits.Rule("test_hold", 0, timedelta(hours=1)), "h")
        )

    tasks = [
        work
        for _ in range(15)
        for work in (count(), give_back(1), give_back(-1), count_unless_held())
    ]
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)

    assert [o for o in outcomes if isinstance(o, BaseException)] == []


@pytest.mark.skipif(BACKEND != "postgres", reason="SQLite has no row locks to wait for")
async def test_api4_pruning_leaves_a_counter_an_attempt_holds_for_the_next_run(
    services: Services, clock: ManualClock
) -> None:
    """The job takes no row lock an attempt holds (it would wait on it, holding the others it
    has taken, in disk order, not in the attempts' key order): a held expired row stays until the
    next run, the others go at once."""
    await ratelimits.consume_each(services, [(RULE, "held"), (RULE, "free")])
    clock.advance(RULE.window)
    pool = get_connection("default")._pool
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SELECT 1 FROM rate_limit_counter ORDER BY key LIMIT 1 FOR UPDATE")
        await asyncio.wait_for(ratelimits.prune_expired(services), timeout=10)
        left = await RateLimitCounter.all().count()
    await ratelimits.prune_expired(services)

    assert left == 1
    assert await RateLimitCounter.all().count() == 0
