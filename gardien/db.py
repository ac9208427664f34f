"""Database connection: Tortoise configuration, opening/closing, migrations."""

from __future__ import annotations

from typing import Any

from tortoise.context import TortoiseContext
from tortoise.migrations.api import migrate as tortoise_migrate

from gardien.models import MODEL_MODULES

APP_LABEL = "models"


def tortoise_config(database_url: str) -> dict[str, Any]:
    return {
        "connections": {"default": database_url},
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
