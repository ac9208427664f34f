"""Keyset pages of a query, ordered by primary key: stable under inserts, one query per page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from tortoise.models import Model
from tortoise.queryset import QuerySet

from gardien.resolvers.errors import DomainError, ErrorCode

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100

M = TypeVar("M", bound=Model)
T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    has_next_page: bool
    # Set when the query that read the page also counted every match.
    total_count: int | None = None


@dataclass(frozen=True)
class Counted(Generic[T]):
    """A page with the count of every match, both from the one guarded function that checked
    the caller's right to them: the count has no gate of its own to forget or to bypass."""

    page: Page[T]
    count: Callable[[], Awaitable[int]]


def page_size(first: int | None) -> int:
    if first is None:
        return DEFAULT_PAGE_SIZE
    if not 0 <= first <= MAX_PAGE_SIZE:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"first must be between 0 and {MAX_PAGE_SIZE}.", "first"
        )
    return first


async def forward_page(
    query: QuerySet[M], first: int | None, after_id: int | None, *, descending: bool = False
) -> Page[M]:
    size = page_size(first)
    if after_id is not None:
        query = query.filter(id__lt=after_id) if descending else query.filter(id__gt=after_id)
    rows = await query.order_by("-id" if descending else "id").limit(size + 1)
    return Page(items=rows[:size], has_next_page=len(rows) > size)
