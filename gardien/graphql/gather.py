"""Gathering sibling fields without abandoning a resolver before it starts.

graphql-core runs the async fields of an object (and the items of a list) as tasks through
`graphql.pyutils.gather_with_cancel`: `asyncio.gather` over them, and on the first failure a
cancel of the others. When the failure surfaces in the same loop iteration as a sibling that
has just created tasks of its own, cancelling that sibling cancels its `gather`, which cancels
those tasks before their first step: graphql-core's per-field wrapper is closed unstarted, and
the resolver coroutine it holds is never awaited. Python then warns "coroutine … was never
awaited" whenever the garbage collector reaches it, from whatever code runs at that moment (in
a namedtuple's `__new__`, whose empty builtins turn the warning into `KeyError: '__import__'`).
A field error that propagates through a non-null field is enough (graphql-core issue 269
describes the same family).

`gather_settled` keeps graphql-core's contract (the results in order; a failure propagated
once the siblings are stopped) but waits with `asyncio.wait`, which never cancels what it waits
for, and cancels the siblings itself. That is enough: every task is queued for its first step
when it is created, before anything that can wake this coroutine (a sibling's failure, or its
own cancellation) is queued, so by then each sibling has started and receives the cancellation
at an await, unwinding through its `finally` and `async with` blocks. What differs from
graphql-core's function:
- when the operation itself is cancelled (a WebSocket `complete`), it returns once the siblings
  have unwound, not before;
- of several siblings that failed before it woke, the first in selection order is raised.

Importing gardien.graphql.execution puts it in place of graphql-core's function, for every
execution in the process: the module global that graphql-core's executor looks up at each call
(the pinned graphql-core minor version is checked by tests/gardien/graphql/test_execution.py).
A process-wide patch is a deliberate exception to the style guide: graphql-core offers no hook.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

from graphql.execution import executor as graphql_executor


async def gather_settled(*awaitables: Awaitable[Any]) -> list[Any]:
    """The awaitables' results in order; on a failure (or when this coroutine is cancelled)
    the others are cancelled and waited for before it propagates."""
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


async def _stop(tasks: Sequence[asyncio.Future[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def install() -> None:
    vars(graphql_executor)["gather_with_cancel"] = gather_settled
