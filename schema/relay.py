"""Relay conventions (API-1): the Node interface, global IDs, cursors and page info."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Generic, TypeVar

import strawberry

from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.pagination import Counted

T = TypeVar("T")
Item = TypeVar("Item")


@strawberry.interface(name="Node", description="An object with a global ID.")
class Node:
    id: strawberry.ID


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    _count: strawberry.Private[Callable[[], Awaitable[int]]]
    _total: strawberry.Private[int | None] = None

    @strawberry.field(description="Items matching the filters, over all pages.")
    async def total_count(self) -> int:
        # Counted with the page when the resolver could; counted now only when asked for.
        return self._total if self._total is not None else await self._count()


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unb64(value: str) -> str:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()


MAX_KEY = 2**31 - 1


def _is_key(pk: str) -> bool:
    # isascii() too: str.isdigit() accepts digits such as "²" that int() refuses.
    # Primary keys are 32-bit integer columns: a larger number names nothing, and PostgreSQL
    # would refuse it as a parameter rather than find no row.
    return pk.isascii() and pk.isdigit() and len(pk) <= 10 and int(pk) <= MAX_KEY


# IDs repeat from request to request (the same members, the same organisation): encoding each
# once keeps base64 off the hot path. Bounded, and holds nothing secret.
@lru_cache(maxsize=65536)
def encode_id(type_name: str, pk: int | str) -> strawberry.ID:
    return strawberry.ID(_b64(f"{type_name}:{pk}"))


def decode_any_id(global_id: str, field: str = "id") -> tuple[str, str]:
    """(type name, key text) of a global ID; INVALID_ID, naming `field`, when it is not one."""
    try:
        type_name, _, pk = _unb64(global_id).partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        type_name, pk = "", ""
    if not type_name or not pk:
        raise DomainError(ErrorCode.INVALID_ID, "This is not a valid ID.", field)
    return type_name, pk


def decode_id(global_id: str, expected_type: str, field: str = "id") -> int:
    """The primary key of an ID of the expected type; an ID of another type is not found.

    Every refusal names `field`, the input field at fault (its GraphQL name)."""
    type_name, pk = decode_any_id(global_id, field)
    if type_name != expected_type:
        raise DomainError(ErrorCode.NOT_FOUND, f"No such {expected_type.lower()}.", field)
    if not _is_key(pk):
        raise DomainError(ErrorCode.INVALID_ID, "This is not a valid ID.", field)
    return int(pk)


@lru_cache(maxsize=65536)
def encode_cursor(pk: int) -> str:
    return _b64(f"cursor:{pk}")


def decode_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        prefix, _, pk = _unb64(cursor).partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        prefix, pk = "", ""
    if prefix != "cursor" or not _is_key(pk):
        raise DomainError(ErrorCode.INVALID_INPUT, "This cursor is not valid.", "after")
    return int(pk)


def connection(
    nodes: list[T],
    pks: list[int],
    has_next_page: bool,
    count: Callable[[], Awaitable[int]],
    total: int | None = None,
) -> Connection[T]:
    edges = [Edge(cursor=encode_cursor(pk), node=node) for pk, node in zip(pks, nodes, strict=True)]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=has_next_page, end_cursor=edges[-1].cursor if edges else None
        ),
        _count=count,
        _total=total,
    )


def counted_connection(
    counted: Counted[Item], to_node: Callable[[Item], T], pk: Callable[[Item], int]
) -> Connection[T]:
    """The connection of one guarded page: a node and a cursor per item, the count when asked."""
    page = counted.page
    return connection(
        [to_node(item) for item in page.items],
        [pk(item) for item in page.items],
        page.has_next_page,
        counted.count,
    )
