"""Database connection: Tortoise configuration, opening/closing, migrations."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from tortoise.backends.base.client import TransactionalDBClient
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.connection import get_connections
from tortoise.context import TortoiseContext
from tortoise.migrations.api import migrate as tortoise_migrate
from tortoise.transactions import in_transaction

from gardien.models import MODEL_MODULES

APP_LABEL = "models"
logger = logging.getLogger("gardien.db")
# Set on the outermost transaction's client: what to run once it has committed.
_AFTER_COMMIT = "_gardien_after_commit"


def tortoise_config(database_url: str) -> dict[str, Any]:
    return {
        "connections": {"default": _connection(database_url)},
        "apps": {
            APP_LABEL: {
                "models": MODEL_MODULES,
                "default_connection": "default",
                "migrations": "gardien.models.migrations",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def _connection(database_url: str) -> str | dict[str, Any]:
    """Tortoise's connection settings for the URL.

    On PostgreSQL, a connection goes back to the pool without asyncpg's reset query (advisory
    unlocks, CLOSE ALL, UNLISTEN, RESET ALL). It would be one more round trip at every release,
    so after every statement run outside a transaction (each takes a connection of its own), and
    the gateway leaves nothing for it to reset: it takes no session-level advisory lock, opens
    no cursor, LISTENs to nothing and sets nothing outside a transaction (SET LOCAL ends with
    its transaction). asyncpg still rolls back a transaction left open before the connection is
    reused."""
    if not database_url.startswith(("postgres://", "postgresql://", "asyncpg://")):
        return database_url
    settings = expand_db_url(database_url)
    settings["credentials"]["reset"] = _keep_session
    return settings


async def _keep_session(connection: object) -> None:
    """asyncpg's pool `reset` hook: nothing to reset (see _connection)."""


async def open_database(database_url: str) -> TortoiseContext:
    """Open the process's database context.

    Uvicorn runs the lifespan and every request in different tasks, so the context is made the
    process-wide fallback instead of a task-local one; close_database clears it again.
    """
    ctx = TortoiseContext()
    with ctx:  # init needs the context current; afterwards the global fallback serves it
        await ctx.init(config=tortoise_config(database_url), _enable_global_fallback=True)
    return ctx


async def close_database(ctx: TortoiseContext) -> None:
    await ctx.close_connections()


async def migrate(database_url: str) -> None:
    """Apply every pending migration (OPS-3)."""
    ctx = TortoiseContext()
    with ctx:
        try:
            await tortoise_migrate(config=tortoise_config(database_url))
        finally:
            await ctx.close_connections()


async def ping() -> None:
    """Raise unless the database answers (readiness)."""
    from tortoise.connection import get_connection

    await get_connection("default").execute_query("SELECT 1")


def in_a_transaction() -> bool:
    """Whether the running task holds an open transaction on the default connection."""
    connection = get_connections().get("default")
    return isinstance(connection, TransactionalDBClient) and not connection._finalized


@contextlib.asynccontextmanager
async def atomic() -> AsyncIterator[None]:
    """A transaction for a caller outside one; inside one, that transaction itself.

    A nested `in_transaction()` is a savepoint: two more round trips, worth it only to a caller
    that catches an error and carries on. Writes that must stand or fall together, and whose
    errors nobody recovers from, need no savepoint of their own inside a transaction.
    """
    if in_a_transaction():
        yield
        return
    async with in_transaction():
        yield


def after_commit(callback: Callable[[], None]) -> None:
    """Run callback once the current transaction commits; at once outside a transaction.

    Nothing runs when the transaction rolls back. Tortoise has no commit hook, so the outermost
    transaction's client (a nested transaction is a savepoint on that same client) gets its
    commit wrapped, once, the first time a callback is queued on it. Callbacks must not block:
    they hand work to a task or a queue.
    """
    connection = get_connections().get("default")
    if not isinstance(connection, TransactionalDBClient) or connection._finalized:
        _run(callback)
        return
    callbacks: list[Callable[[], None]] | None = getattr(connection, _AFTER_COMMIT, None)
    if callbacks is None:
        callbacks = []
        commit = connection.commit
        queued = callbacks

        async def commit_then_run() -> None:
            await commit()
            for queued_callback in queued:
                _run(queued_callback)

        setattr(connection, _AFTER_COMMIT, callbacks)
        connection.commit = commit_then_run  # type: ignore[method-assign]
    callbacks.append(callback)


def _run(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:
        # The change is committed whatever a listener does; its failure is logged, not raised.
        logger.exception("after-commit callback failed")
