"""Ordering two transactions on PostgreSQL's row locks: one holds the user's row as every
credential change does first, the other (a sign-in step) starts meanwhile and is seen waiting,
then the change goes on and commits. PostgreSQL's own view tells who waits: there is no event
to await."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tortoise.connection import get_connection
from tortoise.transactions import in_transaction

from gardien.models.users import User

T = TypeVar("T")


async def waiting_on_a_lock() -> bool:
    rows = await get_connection("default").execute_query_dict(
        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock'"
    )
    return bool(rows)


async def change_while_waited_on(
    user_id: int,
    change: Callable[[], Awaitable[None]],
    step: Callable[[], Awaitable[T]],
    while_waiting: Callable[[], Awaitable[None]] | None = None,
) -> T:
    """Holds the user's row, starts `step`, waits until it waits on a lock (then runs
    `while_waiting`), runs `change` in the same transaction, commits; answers the step's
    outcome. Fails the test if the step never waited."""
    holding = asyncio.Event()
    step_waits = asyncio.Event()

    async def hold_then_change() -> None:
        async with in_transaction():
            await User.select_for_update().filter(id=user_id).first()
            holding.set()
            await step_waits.wait()
            await change()

    async def run_step() -> T:
        await holding.wait()
        task = asyncio.ensure_future(step())
        while not task.done() and not await waiting_on_a_lock():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        waited = not task.done()
        if waited and while_waiting is not None:
            await while_waiting()
        step_waits.set()
        assert waited, "the step did not wait for the user's row"
        return await task

    _, outcome = await asyncio.gather(hold_then_change(), run_step())
    return outcome
