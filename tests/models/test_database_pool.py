"""The PostgreSQL connection pool as the gateway configures it (gardien/db.py)."""

from __future__ import annotations

from typing import Any

import pytest
from tortoise.connection import get_connection

from gardien.db import tortoise_config
from tests.conftest import BACKEND

postgres_only = pytest.mark.skipif(BACKEND != "postgres", reason="SQLite has no connection pool")


async def _pool() -> Any:
    client = get_connection("default")
    await client.execute_query("SELECT 1")  # the pool opens with the first statement
    return client._pool


@postgres_only
@pytest.mark.usefixtures("database")
async def test_ops_a_connection_goes_back_to_the_pool_without_a_reset_round_trip() -> None:
    """asyncpg's default reset (advisory unlocks, CLOSE ALL, UNLISTEN *, RESET ALL) would be one
    more round trip after each statement run outside a transaction: the pool is configured
    without it, so a setting made on a connection outside a transaction outlives its release
    (which is why the gateway never makes one)."""
    pool = await _pool()
    async with pool.acquire() as connection:
        server_pid = connection.get_server_pid()
        await connection.execute("SET application_name = 'gardien-pool-check'")
    try:
        async with pool.acquire() as connection:
            # The pool hands back the connection released last.
            assert connection.get_server_pid() == server_pid
            name = await connection.fetchval("SHOW application_name")
    finally:
        async with pool.acquire() as connection:
            await connection.execute("RESET application_name")

    assert name == "gardien-pool-check"


@postgres_only
@pytest.mark.usefixtures("database")
async def test_ops_a_connection_released_inside_a_transaction_comes_back_outside_it() -> None:
    """What the reset query did that still matters is kept: a transaction left open (a task
    cancelled mid-way) is rolled back before the connection is used again. asyncpg does this
    with or without a reset query; the test guards the promise gardien/db.py relies on."""
    pool = await _pool()
    async with pool.acquire() as connection:
        server_pid = connection.get_server_pid()
        await connection.execute("BEGIN")
        await connection.execute("CREATE TEMPORARY TABLE pool_probe (id int) ON COMMIT DROP")

    async with pool.acquire() as connection:
        assert connection.get_server_pid() == server_pid
        assert not connection.is_in_transaction()
        left = await connection.fetchval("SELECT to_regclass('pool_probe') IS NOT NULL")

    assert left is False


def test_ops_only_postgresql_urls_get_the_pool_settings() -> None:
    postgres = tortoise_config("postgres://gardien@db.internal:5432/gardien")["connections"]
    sqlite = tortoise_config("sqlite:///var/gardien.sqlite3")["connections"]

    assert postgres["default"]["credentials"]["database"] == "gardien"
    assert callable(postgres["default"]["credentials"]["reset"])
    assert sqlite["default"] == "sqlite:///var/gardien.sqlite3"
