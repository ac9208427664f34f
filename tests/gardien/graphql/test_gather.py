"""Sibling fields are gathered without abandoning a resolver before it starts (API-2): a field
error that propagates through a non-null field, or a cancelled operation, stops the siblings
once each has started, so every resolver coroutine is awaited and unwinds through its cleanup."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
from graphql import (
    GraphQLField,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLString,
    execute,
    parse,
)
from graphql.execution import executor as graphql_executor
from graphql.pyutils import gather_with_cancel

from gardien.graphql.execution import executor_for
from gardien.graphql.gather import gather_settled
from gardien.schema import schema as gardien_schema


def _unawaited_after(run: Callable[[], Coroutine[Any, Any, Any]]) -> list[str]:
    """The "never awaited" warnings raised once `run` has finished and garbage is collected."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # A loop of its own: the scenario counts event-loop iterations, and collecting garbage
        # right after it ends makes the warnings come out here, not in a later test.
        asyncio.run(run())
        gc.collect()
    return [str(w.message) for w in caught if "never awaited" in str(w.message)]


def _sibling_failure_schema(log: list[str]) -> GraphQLSchema:
    """An object whose non-null field fails while its sibling is completing its own fields."""

    never = asyncio.Event()

    async def leaf(_source: object, _info: object) -> str:
        try:
            await never.wait()
            log.append("leaf finished")
            return "leaf"
        finally:
            log.append("leaf unwound")

    async def failing(_source: object, _info: object) -> str:
        raise ValueError("broken")

    async def parent(_source: object, _info: object) -> object:
        await asyncio.sleep(0)
        return object()

    child = GraphQLObjectType(
        "Child",
        {
            "a": GraphQLField(GraphQLString, resolve=leaf),
            "b": GraphQLField(GraphQLString, resolve=leaf),
        },
    )
    holder = GraphQLObjectType(
        "Holder",
        {
            "failing": GraphQLField(GraphQLNonNull(GraphQLString), resolve=failing),
            "parent": GraphQLField(GraphQLNonNull(child), resolve=parent),
        },
    )
    return GraphQLSchema(
        GraphQLObjectType("Query", {"holder": GraphQLField(holder, resolve=lambda *_: object())})
    )


async def _run_sibling_failure(log: list[str]) -> dict[str, Any]:
    result = execute(_sibling_failure_schema(log), parse("{ holder { failing parent { a b } } }"))
    assert isinstance(result, Awaitable)
    awaited = await result
    return {"data": awaited.data, "errors": [e.message for e in awaited.errors or []]}


def test_api2_the_scenario_abandons_resolvers_under_graphql_cores_own_gather(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The scenario is the one that leaves resolvers unawaited: if graphql-core stops doing so,
    this fails, and gardien.graphql.gather can go."""
    monkeypatch.setattr(graphql_executor, "gather_with_cancel", gather_with_cancel)

    unawaited = _unawaited_after(lambda: _run_sibling_failure([]))

    assert unawaited, "graphql-core's gather no longer abandons unstarted resolvers"


def test_api2_failed_sibling_leaves_no_resolver_unawaited_and_answers_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(graphql_executor, "gather_with_cancel", gather_settled)
    answers: list[dict[str, Any]] = []
    log: list[str] = []

    async def run() -> None:
        answers.append(await _run_sibling_failure(log))

    assert _unawaited_after(run) == []
    # The same answer graphql-core gives: the error, propagated to the nullable holder.
    assert answers == [{"data": {"holder": None}, "errors": ["broken"]}]
    # Both leaves started, were stopped at their await, and ran their cleanup.
    assert log == ["leaf unwound", "leaf unwound"]


async def test_api2_gather_settled_answers_in_order_and_raises_the_first_failure() -> None:
    async def value(result: int, steps: int) -> int:
        for _ in range(steps):
            await asyncio.sleep(0)
        return result

    assert await gather_settled(value(1, 3), value(2, 0), value(3, 1)) == [1, 2, 3]
    assert await gather_settled() == []

    unwound: list[str] = []

    async def slow() -> int:
        try:
            await asyncio.sleep(60)
            return 0
        finally:
            unwound.append("slow")

    async def broken() -> int:
        await asyncio.sleep(0)
        raise LookupError("first")

    with pytest.raises(LookupError, match="first"):
        await gather_settled(slow(), broken(), slow())
    assert unwound == ["slow", "slow"]


async def test_api2_cancelled_gather_starts_then_stops_every_sibling() -> None:
    """A cancelled operation (a WebSocket `complete`) cancels its gather at once: siblings that
    had not started yet are started, then stopped, instead of being dropped unawaited."""
    started: list[int] = []
    unwound: list[int] = []

    async def sibling(index: int) -> None:
        started.append(index)
        try:
            await asyncio.sleep(60)
        finally:
            unwound.append(index)

    task = asyncio.ensure_future(gather_settled(*(sibling(i) for i in range(3))))
    await asyncio.sleep(0)  # the gather has created its sibling tasks; none has started
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(started) == sorted(unwound) == [0, 1, 2]


def test_api2_the_engine_gathers_with_gather_settled() -> None:
    """Importing the engine's executor is what puts gather_settled in place."""
    assert executor_for(gardien_schema)
    assert vars(graphql_executor)["gather_with_cancel"] is gather_settled
