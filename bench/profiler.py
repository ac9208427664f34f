"""In-process profiler of gateway requests: SQL statements, wall time per step, cProfile by library.

Used by the benchmarks (bench/members_query.py): it runs requests against a `create_app()` app
through httpx's ASGI transport, in this process, and reports

- the SQL statements of one request (the tortoise.db_client debug log);
- exclusive wall time per bucket: wrappers around the gateway's steps (document preparation,
  session authentication, field execution, ORM, db client, JSON) push a bucket on a per-task stack
  and every task switch of the event loop charges the resumed task's bucket, so concurrent work
  (DataLoaders, resolver tasks) is never counted twice;
- own CPU time by library under cProfile, and the top functions.

The wrappers are monkeypatches of this process only, undone when the profile ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import logging
import os
import pstats
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextvars import Context, ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from graphql import ExecutionResult
from starlette.types import ASGIApp, Receive, Scope, Send
from tortoise import queryset as tortoise_queryset
from tortoise.backends.asyncpg.client import AsyncpgDBClient
from tortoise.models import Model

from gardien.graphql import documents as graphql_documents
from gardien.graphql import engine as graphql_engine
from gardien.graphql import http as graphql_http
from gardien.graphql.engine import GraphQLEngine
from gardien.resolvers import sessions
from gardien.resolvers.services import Services

REPO_ROOT = Path(__file__).resolve().parent.parent
CLIENT_ADDRESS = ("127.0.0.1", 50000)

# One gateway request, sent by the caller's client; raises when the answer is not the expected one.
SendRequest = Callable[[httpx.AsyncClient], Awaitable[None]]


@contextlib.asynccontextmanager
async def in_process_client(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=CLIENT_ADDRESS)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        yield client


# --------------------------------------------------------------------------------------------
# SQL statements per request (in-process, from the tortoise.db_client debug log)
# --------------------------------------------------------------------------------------------


class StatementLog(logging.Handler):
    """Tortoise 1.1 logs every execute_* call of its asyncpg client at DEBUG ("%s: %s")."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.statements: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(("Created connection pool", "Closed connection pool")):
            return
        self.statements.append(message)


@contextlib.contextmanager
def captured_statements() -> Iterator[StatementLog]:
    logger = logging.getLogger("tortoise.db_client")
    handler = StatementLog()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


async def statements_of(app: ASGIApp, send: SendRequest) -> list[str]:
    """The SQL statements of one request, after a first one (document cache, session last_seen)."""
    async with in_process_client(app) as client:
        await send(client)
        with captured_statements() as log:
            await send(client)
    return log.statements


# --------------------------------------------------------------------------------------------
# Profile (in-process): exclusive wall time per bucket, then cProfile
# --------------------------------------------------------------------------------------------

PARSE = "parse + validate (cached document)"
AUTH = "session authentication, in all (split below)"
IDLE = "SQL: waiting for PostgreSQL (event loop idle)"
SQL_CLIENT = "SQL: asyncpg + Tortoise db client + socket I/O"
ORM_QUERY = "ORM: query building, SQL compiling, row handling"
ORM_INIT = "ORM: model instantiation (Model._init_from_db)"
GRAPHQL = "GraphQL field execution (graphql-core, strawberry, resolvers)"
JSON = "JSON serialisation (gardien.graphql.http._dumps)"
HTTP = "HTTP/ASGI: Starlette, middleware, body, variables"
LOOP = "asyncio event loop: scheduling tasks and callbacks"
BUCKETS = (PARSE, AUTH, IDLE, SQL_CLIENT, ORM_QUERY, ORM_INIT, GRAPHQL, JSON, HTTP, LOOP)
SHORT_NAMES = {
    PARSE: "parse/validate",
    AUTH: "digest and checks",
    IDLE: "waiting for PostgreSQL",
    SQL_CLIENT: "db client",
    ORM_QUERY: "ORM query building",
    ORM_INIT: "ORM instantiation",
    GRAPHQL: "GraphQL",
    JSON: "JSON",
    HTTP: "HTTP",
    LOOP: "event loop",
}
AUTH_PHASE = "auth|"
# The stack of buckets of the running asyncio task (a context variable: one per task).
BUCKET_STACK: ContextVar[tuple[str, ...]] = ContextVar("bench_bucket_stack", default=())
# Tortoise's query entry points, timed as ORM_QUERY (the SQL they await is timed apart).
MODEL_QUERY_METHODS = ("filter", "exclude", "all", "get", "get_or_none", "exists", "first")
QUERYSET_METHODS = (
    "filter",
    "exclude",
    "select_related",
    "prefetch_related",
    "order_by",
    "limit",
    "offset",
    "distinct",
    "first",
    "get",
    "get_or_none",
    "values",
    "values_list",
    "count",
    "exists",
    "only",
    "update",
    "delete",
    "annotate",
)
_MISSING = object()


class Probe:
    """Exact, exclusive wall-clock accounting of in-process requests run one after the other.

    Time is charged to one bucket at a time: the innermost bucket of the asyncio task that runs
    (buckets are pushed by wrappers around the gateway's steps and kept per task in a context
    variable), IDLE while the loop waits in its selector, LOOP between callbacks. Every switch of
    task goes through Handle._run, where the bucket of the resumed task takes over, so work that
    runs concurrently (DataLoaders, resolver tasks) is never counted twice.
    """

    def __init__(self) -> None:
        self.in_request = False
        self.authenticating = False
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.counts: defaultdict[str, int] = defaultdict(int)
        self._key = LOOP
        self._mark = 0.0

    def reset(self) -> None:
        self.seconds.clear()
        self.counts.clear()

    def add(self, key: str, seconds: float) -> None:
        self.seconds[key] += seconds
        self.counts[key] += 1

    def switch(self, bucket: str) -> None:
        now = time.perf_counter()
        if self.in_request:
            self.seconds[self._key] += now - self._mark
        self._mark = now
        self._key = AUTH_PHASE + bucket if self.authenticating else bucket

    def charged(self) -> float:
        return sum(v for k, v in self.seconds.items() if k in BUCKETS or k.startswith(AUTH_PHASE))


def _top(stack: tuple[str, ...]) -> str:
    return stack[-1] if stack else LOOP


class Patches:
    """Monkeypatches of this process only (never of a file), undone on exit."""

    def __init__(self) -> None:
        self._undo: list[tuple[object, str, object]] = []

    def replace(self, target: object, name: str, value: object) -> None:
        self._undo.append((target, name, vars(target).get(name, _MISSING)))
        setattr(target, name, value)

    def undo(self) -> None:
        while self._undo:
            target, name, original = self._undo.pop()
            if original is _MISSING:
                delattr(target, name)
            else:
                setattr(target, name, original)


def _in_bucket(probe: Probe, bucket: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = BUCKET_STACK.set((*BUCKET_STACK.get(), bucket))
        probe.switch(bucket)
        try:
            return function(*args, **kwargs)
        finally:
            BUCKET_STACK.reset(token)
            probe.switch(_top(BUCKET_STACK.get()))

    return wrapper


def _in_bucket_async(
    probe: Probe, bucket: str, function: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = BUCKET_STACK.set((*BUCKET_STACK.get(), bucket))
        probe.switch(bucket)
        try:
            return await function(*args, **kwargs)
        finally:
            BUCKET_STACK.reset(token)
            probe.switch(_top(BUCKET_STACK.get()))

    return wrapper


def _replace_classmethods(
    patches: Patches, probe: Probe, owner: type, names: Sequence[str], bucket: str
) -> None:
    for name in names:
        method = vars(owner).get(name)
        if isinstance(method, classmethod):
            patches.replace(owner, name, classmethod(_in_bucket(probe, bucket, method.__func__)))


def _query_classes() -> list[type]:
    return [
        value
        for value in vars(tortoise_queryset).values()
        if isinstance(value, type) and value.__module__ == tortoise_queryset.__name__
    ]


@contextlib.contextmanager
def instrumented(probe: Probe, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Wrap (in this process only) the gateway's steps in buckets; undone on exit."""
    patches = Patches()

    original_prepare = GraphQLEngine.prepare
    timed_prepare = _in_bucket(probe, PARSE, original_prepare)

    def prepare(self: GraphQLEngine, query: str) -> graphql_documents.PreparedDocument:
        key = "prepare:cached" if query in self.documents else "prepare:cold"
        started = time.perf_counter()
        try:
            prepared: graphql_documents.PreparedDocument = timed_prepare(self, query)
            return prepared
        finally:
            probe.add(key, time.perf_counter() - started)

    timed_authenticate = _in_bucket_async(probe, AUTH, sessions.authenticate)

    async def authenticate(services: Services, token: str) -> Any:
        probe.authenticating = True
        probe.switch(HTTP)
        started = time.perf_counter()
        try:
            return await timed_authenticate(services, token)
        finally:
            probe.add("auth", time.perf_counter() - started)
            probe.authenticating = False
            probe.switch(_top(BUCKET_STACK.get()))

    execute_sync = _in_bucket(probe, GRAPHQL, vars(graphql_engine)["execute"])

    async def finish(awaitable: Awaitable[ExecutionResult]) -> ExecutionResult:
        return await awaitable

    finish_in_bucket = _in_bucket_async(probe, GRAPHQL, finish)

    def execute(*args: Any, **kwargs: Any) -> Any:
        result = execute_sync(*args, **kwargs)
        return result if isinstance(result, ExecutionResult) else finish_in_bucket(result)

    build_model = _in_bucket(probe, ORM_INIT, vars(Model)["_init_from_db"].__func__)

    def init_from_db(cls: type[Model], /, **kwargs: Any) -> Model:
        probe.counts["models:auth" if probe.authenticating else "models"] += 1
        instance: Model = build_model(cls, **kwargs)
        return instance

    def counted(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        timed = _in_bucket_async(probe, SQL_CLIENT, original)

        async def execute_sql(*args: Any, **kwargs: Any) -> Any:
            probe.counts["statements:auth" if probe.authenticating else "statements"] += 1
            return await timed(*args, **kwargs)

        return execute_sql

    patches.replace(GraphQLEngine, "prepare", prepare)
    patches.replace(sessions, "authenticate", authenticate)
    patches.replace(graphql_engine, "execute", execute)
    patches.replace(graphql_http, "_dumps", _in_bucket(probe, JSON, graphql_http._dumps))
    patches.replace(Model, "_init_from_db", classmethod(init_from_db))
    _replace_classmethods(patches, probe, Model, MODEL_QUERY_METHODS, ORM_QUERY)
    for name in ("execute_query", "execute_query_dict", "execute_insert", "execute_many"):
        patches.replace(AsyncpgDBClient, name, counted(getattr(AsyncpgDBClient, name)))
    for query_class in _query_classes():
        for name in ("__await__", "_make_query"):
            if name in vars(query_class):
                patches.replace(
                    query_class, name, _in_bucket(probe, ORM_QUERY, vars(query_class)[name])
                )
        if "_execute" in vars(query_class):
            patches.replace(
                query_class,
                "_execute",
                _in_bucket_async(probe, ORM_QUERY, vars(query_class)["_execute"]),
            )
    for name in QUERYSET_METHODS:
        if name in vars(tortoise_queryset.QuerySet):
            method = vars(tortoise_queryset.QuerySet)[name]
            patches.replace(tortoise_queryset.QuerySet, name, _in_bucket(probe, ORM_QUERY, method))

    # Every task switch: the resumed task's own bucket takes over. Socket callbacks are the
    # PostgreSQL connections' (in-process, no other socket is open): asyncpg decodes rows there.
    original_run = asyncio.events.Handle._run

    def run(handle: asyncio.events.Handle) -> None:
        if not probe.in_request:
            original_run(handle)
            return
        callback = getattr(handle, "_callback", None)
        if getattr(callback, "__name__", "") in ("_read_ready", "_write_ready"):
            probe.switch(SQL_CLIENT)
        else:
            context: Context = handle._context  # type: ignore[attr-defined]
            probe.switch(_top(context.get(BUCKET_STACK, ())))
        try:
            original_run(handle)
        finally:
            probe.switch(LOOP)

    patches.replace(asyncio.events.Handle, "_run", run)

    selector: Any = getattr(loop, "_selector", None)
    if selector is None:
        raise RuntimeError("the in-process profile needs asyncio's selector event loop")
    original_select = selector.select

    def select(timeout: float | None = None) -> Any:
        probe.switch(IDLE)
        try:
            return original_select(timeout)
        finally:
            probe.switch(LOOP)

    patches.replace(selector, "select", select)
    try:
        yield
    finally:
        patches.undo()


class TimedApp:
    """The server side of a request: from the ASGI call to the last byte sent."""

    def __init__(self, app: ASGIApp, probe: Probe) -> None:
        self.app = app
        self.probe = probe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = BUCKET_STACK.set((HTTP,))
        self.probe.switch(HTTP)
        self.probe.in_request = True
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.probe.switch(LOOP)
            self.probe.in_request = False
            self.probe.add("total", time.perf_counter() - started)
            BUCKET_STACK.reset(token)


@dataclass(frozen=True)
class ProfileResult:
    requests: int
    rows: list[tuple[str, float]]  # bucket, ms/request
    auth_split: list[tuple[str, float]]
    total_ms: float
    unaccounted_ms: float
    first_prepare_ms: float
    first_total_ms: float
    client_overhead_ms: float
    instrumented_ms: float  # client side, with the wrappers
    plain_ms: float  # client side, without them
    statements_auth: float
    statements: float
    models_auth: float
    models: float
    cprofile_cpu_ms: float
    cprofile_libraries: list[tuple[str, float]]
    cprofile_top: list[tuple[str, float, float]]  # function, calls/request, own ms/request


def _library_of(key: tuple[str, int, str]) -> str:
    filename = key[0]
    if "site-packages" + os.sep in filename:
        top = filename.split("site-packages" + os.sep, 1)[1].split(os.sep, 1)[0]
        top = top.removesuffix(".py").split(".")[0]
        return {"graphql": "graphql-core", "pypika_tortoise": "pypika"}.get(top, top)
    if filename.startswith(str(REPO_ROOT) + os.sep):
        part = filename[len(str(REPO_ROOT)) + 1 :].split(os.sep, 1)[0]
        return "gardien" if part == "gardien" else f"gardien {part}/"
    if f"{os.sep}asyncio{os.sep}" in filename:
        return "asyncio"
    return "python stdlib"


def _function_label(key: tuple[str, int, str]) -> str:
    filename, line, name = key
    if filename == "~":
        return name.removeprefix("<built-in method ").removeprefix("<method ").rstrip(">")
    for marker in ("site-packages" + os.sep, str(REPO_ROOT) + os.sep, f"lib{os.sep}python3."):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            if marker.endswith("python3."):  # the standard library: drop the version
                filename = filename.split(os.sep, 1)[-1]
            break
    return f"{filename}:{line}({name})"


def summarise_cprofile(
    profiler: cProfile.Profile, requests: int
) -> tuple[float, list[tuple[str, float]], list[tuple[str, float, float]]]:
    """Own CPU time by library (built-ins charged to their callers), and the top functions."""
    stats = pstats.Stats(profiler)
    table: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    libraries: defaultdict[str, float] = defaultdict(float)
    for key, (_, _, own, _, callers) in table.items():
        if key[0] == "~":
            for caller, edge in callers.items():
                libraries[_library_of(caller)] += edge[2]
        else:
            libraries[_library_of(key)] += own
    total = sum(libraries.values())
    ranked_libraries = sorted(libraries.items(), key=lambda item: item[1], reverse=True)
    ranked = sorted(table.items(), key=lambda item: item[1][2], reverse=True)[:10]
    top = [
        (_function_label(key), row[1] / requests, row[2] * 1000 / requests) for key, row in ranked
    ]
    per_request = [(name, seconds * 1000 / requests) for name, seconds in ranked_libraries]
    return total * 1000 / requests, per_request, top


async def profile_gateway(
    app: ASGIApp, send: SendRequest, requests: int, warmup: int = 20
) -> ProfileResult:
    """Profile `requests` sequential gateway requests of a fresh app, twice: under the bucket
    wrappers, then under cProfile (and once with neither, to show what the wrappers cost)."""
    probe = Probe()

    async def send_all(client: httpx.AsyncClient, count: int) -> None:
        for _ in range(count):
            await send(client)

    with instrumented(probe, asyncio.get_running_loop()):
        async with in_process_client(TimedApp(app, probe)) as client:
            await send_all(client, 1)  # a fresh app: its first request parses and validates
            first_prepare = probe.seconds["prepare:cold"]
            first_total = probe.seconds["total"]
            await send_all(client, warmup)
            probe.reset()
            started = time.perf_counter()
            await send_all(client, requests)
            client_seconds = time.perf_counter() - started

    s, n = probe.seconds, requests
    if s["prepare:cold"]:
        raise RuntimeError("the document cache missed during the measured requests")
    auth_keys = [key for key in s if key.startswith(AUTH_PHASE)]
    rows = [
        (label, (sum(s[k] for k in auth_keys) if label == AUTH else s[label]) * 1000 / n)
        for label in BUCKETS
    ]
    auth_split = sorted(
        ((key.removeprefix(AUTH_PHASE), s[key] * 1000 / n) for key in auth_keys),
        key=lambda item: item[1],
        reverse=True,
    )

    profiler = cProfile.Profile()
    async with in_process_client(app) as client:
        await send_all(client, warmup)
        started = time.perf_counter()
        await send_all(client, requests)
        plain_seconds = time.perf_counter() - started
        profiler.enable()
        await send_all(client, requests)
        profiler.disable()
    cpu_ms, libraries, top = summarise_cprofile(profiler, requests)
    return ProfileResult(
        requests=n,
        rows=rows,
        auth_split=auth_split,
        total_ms=s["total"] * 1000 / n,
        unaccounted_ms=(s["total"] - probe.charged()) * 1000 / n,
        first_prepare_ms=first_prepare * 1000,
        first_total_ms=first_total * 1000,
        client_overhead_ms=(client_seconds - s["total"]) * 1000 / n,
        instrumented_ms=client_seconds * 1000 / n,
        plain_ms=plain_seconds * 1000 / n,
        statements_auth=probe.counts["statements:auth"] / n,
        statements=probe.counts["statements"] / n,
        models_auth=probe.counts["models:auth"] / n,
        models=probe.counts["models"] / n,
        cprofile_cpu_ms=cpu_ms,
        cprofile_libraries=libraries,
        cprofile_top=top,
    )


def print_profile(profile: ProfileResult, what: str) -> None:
    """The two profile tables: wall time per bucket, then cProfile by library and by function."""
    print(
        f"Profile of one gateway request, in-process ({what}, mean of "
        f"{profile.requests} sequential requests; exclusive wall time per bucket)"
    )
    header = f"{'bucket':<64}{'ms/request':>11}{'%':>7}"
    print(header)
    print("-" * len(header))
    for label, ms in profile.rows:
        print(f"{label:<64}{ms:>11.3f}{ms / profile.total_ms * 100:>6.1f}%")
    print("-" * len(header))
    print(f"{'total, server side (ASGI call)':<64}{profile.total_ms:>11.3f}{'100.0%':>7}")
    for label, ms in (
        ("parse + validate, first request of a fresh app (one-off)", profile.first_prepare_ms),
        ("whole first request of a fresh app (one-off)", profile.first_total_ms),
        ("in-process httpx client (outside the total)", profile.client_overhead_ms),
    ):
        print(f"{label:<64}{ms:>11.3f}")
    print(
        f"cost of the wrappers: {profile.instrumented_ms:.3f} ms/request with them, "
        f"{profile.plain_ms:.3f} without (client side, httpx included)"
    )
    split = ", ".join(
        f"{SHORT_NAMES[label]} {ms:.3f}" for label, ms in profile.auth_split if ms >= 0.0005
    )
    print(f"session authentication split (ms): {split}")
    print(
        f"per request: SQL statements {profile.statements_auth:g} (session) + "
        f"{profile.statements:g} (resolvers); ORM instances {profile.models_auth:g} (session) + "
        f"{profile.models:g} (resolvers); unaccounted {profile.unaccounted_ms:.3f} ms"
    )

    print()
    print(
        f"cProfile, {profile.requests} in-process requests: own CPU time by library "
        f"(built-ins charged to their caller; {profile.cprofile_cpu_ms:.2f} ms/request "
        "under the profiler, which inflates call-heavy code)"
    )
    header = f"{'library':<30}{'ms/request':>11}{'%':>7}"
    print(header)
    print("-" * len(header))
    for name, ms in profile.cprofile_libraries[:10]:
        print(f"{name:<30}{ms:>11.3f}{ms / profile.cprofile_cpu_ms * 100:>6.1f}%")
    print()
    print("cProfile: top functions by own time")
    header = f"{'function':<80}{'calls/req':>10}{'ms/request':>11}"
    print(header)
    print("-" * len(header))
    for label, calls, ms in profile.cprofile_top:
        print(f"{label[-80:]:<80}{calls:>10.1f}{ms:>11.3f}")


def statement_summary(statement: str) -> str:
    """One line per statement, a long column list replaced by its length."""
    text = " ".join(statement.split())
    if text.startswith("SELECT ") and " FROM " in text:
        columns, _, rest = text.removeprefix("SELECT ").partition(" FROM ")
        if columns.count(",") >= 4:
            text = f"SELECT <{columns.count(',') + 1} columns> FROM {rest}"
    return text
