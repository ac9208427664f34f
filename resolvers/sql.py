"""Hand-written SQL for hot read paths, portable between PostgreSQL and SQLite.

Queries are written with PostgreSQL's $1, $2… placeholders, rewritten once per query text into
SQLite's ?1, ?2… (numbered too, so a parameter may appear more than once). The ORM builds and
compiles every statement anew on each request; for reads that run on every page view, a fixed
text is several times cheaper.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TypeVar

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.connection import get_connection
from tortoise.models import Model

M = TypeVar("M", bound=Model)

_PLACEHOLDER = re.compile(r"\$\d+")


@lru_cache(maxsize=256)
def _for_sqlite(query: str) -> str:
    return _PLACEHOLDER.sub(lambda match: "?" + match.group()[1:], query)


def _is_postgres() -> bool:
    """The other database is SQLite (settings.py accepts no third)."""
    return _speaks_postgres(get_connection("default"))


def _speaks_postgres(connection: BaseDBAsyncClient) -> bool:
    return connection.capabilities.dialect == "postgres"


async def fetch(query: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    connection = get_connection("default")
    if not _speaks_postgres(connection):
        query = _for_sqlite(query)
    return await connection.execute_query_dict(query, list(params))


async def execute(query: str, params: Sequence[Any] = ()) -> int:
    """A fixed write statement; answers the number of rows it changed."""
    connection = get_connection("default")
    if not _speaks_postgres(connection):
        query = _for_sqlite(query)
    changed, _ = await connection.execute_query(query, list(params))
    return int(changed)


def shift_placeholders(part: str, by: int) -> str:
    """A statement's part with its parameters renumbered from $(1 + by): parts written each with
    their own $1… are put together in one statement, their parameters one list after another."""
    return _PLACEHOLDER.sub(lambda match: f"${int(match.group()[1:]) + by}", part)


def writes_in_with() -> bool:
    """Whether the database runs INSERT/UPDATE inside WITH (PostgreSQL does, SQLite does not),
    for a hot path that saves a round trip where it can."""
    return _is_postgres()


def locks_rows() -> bool:
    """Whether the database locks rows (PostgreSQL; SQLite locks the whole database for each
    write), for statements that must take several row locks in a chosen order."""
    return _is_postgres()


def model_from_row(model: type[M], row: dict[str, Any]) -> M:
    """The model instance of a fixed statement's whole row (SELECT *), saved and complete, as
    the ORM makes it from its own query's row, with the same conversions (SQLite's text
    timestamps and integer booleans included)."""
    return model._init_from_db(**row)


def as_datetime(value: datetime | str) -> datetime:
    """A timestamp column: asyncpg returns datetimes, SQLite the ISO text Tortoise wrote."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def moment(value: datetime) -> Any:
    """A timestamp parameter as the column stores it.

    SQLite keeps Tortoise's ISO text (`isoformat(" ")`, always UTC here), which compares in time
    order as text; PostgreSQL takes the datetime itself.
    """
    if not _is_postgres():
        return value.astimezone(UTC).isoformat(" ")
    return value
