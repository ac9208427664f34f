"""Gathering sibling fields without abandoning a resolver before it starts.

graphql-core runs the async fields of an object (and the items of a list) as tasks through
`graphql.pyutils.gather_with_cancel`, which cancels the siblings as soon as one fails. A task
cancelled before its first step never runs its coroutine: graphql-core's per-field wrapper is
closed unstarted, and the resolver coroutine it holds is never awaited. Python then warns
"coroutine … was never awaited" whenever the garbage collector happens to reach it, from
whatever code is running at that moment (in a namedtuple's `__new__`, whose empty builtins turn
the warning itself into `KeyError: '__import__'`). A field error that propagates through a
non-null field, or the cancellation of a WebSocket operation, is enough to leave such tasks
(graphql-core issue 269 describes the same family).

`gather_settled` keeps graphql-core's contract (results in order, the first failure propagated,
the siblings stopped before it is) but stops them only once each has started: a started
resolver receives the cancellation at its await and unwinds through its own `finally` and
`async with` blocks, database transactions included. `install()` puts it in place of
graphql-core's function for its executor.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Sequence
from typing import Any

from graphql.execution import executor as graphql_executor

# A task created by ensure_future makes its first step in the event loop's next iteration;
# a few iterations cover a task scheduled while the loop was already busy with others.
_START_ITERATIONS = 8


async def gather_settled(*awaitables: Awaitable[Any]) -> list[Any]:
    """The awaitables' results in order; on the first failure (or when this coroutine is
    cancelled) the others are cancelled once started, and waited for, before it propagates."""
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    if not tasks:
        return []
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except asyncio.CancelledError:
        await _stop(tasks)
        raise
    for task in tasks:
        if task.done() and not task.cancelled() and (error := task.exception()) is not None:
            await _stop(tasks)
            raise error
    return [task.result() for task in tasks]


def _unstarted(task: asyncio.Future[Any]) -> bool:
    if task.done() or not isinstance(task, asyncio.Task):
        return False
    coroutine = task.get_coro()
    return (
        inspect.iscoroutine(coroutine)
        and inspect.getcoroutinestate(coroutine) == inspect.CORO_CREATED
    )


async def _stop(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Let every task make its first step, then cancel those still running and wait for all."""
    for _ in range(_START_ITERATIONS):
        if not any(_unstarted(task) for task in tasks):
            break
        await asyncio.sleep(0)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def install() -> None:
    """graphql-core's executor gathers with gather_settled (its module global, looked up at
    each call; the pinned graphql-core minor version is what tests/gardien/graphql checks)."""
    vars(graphql_executor)["gather_with_cancel"] = gather_settled
