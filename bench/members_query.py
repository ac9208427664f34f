"""Benchmark: the OrganisationMembers query of the gateway against the same answer written by hand.

Run by hand from the repository root (needs PostgreSQL; nothing is timed-asserted):

    .venv/bin/python bench/members_query.py [--seconds 5 --rounds 3 --concurrency 8]

It creates a throw-away database `gardien_bench_<random>` on the server of
GARDIEN_BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres), migrates it,
fills one organisation with 100 members, signs its owner in, then:

1. serves POST /graphql (the gateway) and POST /bare/members (bench/_server.py: hand-written SQL
   through asyncpg, same JSON) from one uvicorn process, checks both answer the same `data`, and
   measures requests per second of each, alternating rounds, with a keep-alive HTTP/1.1 load
   generator in this process;
2. counts the SQL statements of one gateway request (in-process, tortoise.db_client log) for page
   sizes 10 and 100;
3. profiles gateway requests in-process (page size 50): exclusive wall time per bucket (wrappers
   around the gateway's steps, task switches followed), then cProfile by library.

The database is dropped at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import difflib
import json
import logging
import os
import pstats
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextvars import Context, ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from graphql import ExecutionResult
from starlette.types import ASGIApp, Receive, Scope, Send
from tortoise import queryset as tortoise_queryset
from tortoise.backends.asyncpg.client import AsyncpgDBClient
from tortoise.models import Model
from tortoise.transactions import in_transaction

from gardien import db
from gardien.app import create_app
from gardien.clock import SystemClock
from gardien.graphql import documents as graphql_documents
from gardien.graphql import engine as graphql_engine
from gardien.graphql import http as graphql_http
from gardien.graphql.engine import GraphQLEngine
from gardien.models.enums import ProductKind, Role, TwoFactorKind
from gardien.models.mfa import TwoFactorMethod
from gardien.models.organisations import Membership, Organisation
from gardien.models.products import Product, ProductGrant
from gardien.models.users import User
from gardien.resolvers import accounts, sessions
from gardien.resolvers.services import RequestMeta, Services
from gardien.schema.relay import encode_id
from gardien.security import Keyring, hash_password
from gardien.settings import Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parent.parent
BASE_URL_VARIABLE = "GARDIEN_BENCH_DATABASE_URL"
DEFAULT_BASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"
# A fixed 48-byte key (secrets.token_urlsafe(48)), for this throw-away database only.
SECRET_KEY = "NMJjxRpmHgHFyVSvFIFVPH9NRH7hjiOHoji7uujShcGPN4a2m0l34hDf90OpJAQ7"
OWNER_EMAIL = "owner@bench.example"
OWNER_PASSWORD = "plum tree under bench snow"
MEMBER_PASSWORD = "another plum tree under snow"
MEMBER_COUNT = 100  # the owner included
PAGE_SIZE = 50
HOST = "127.0.0.1"
GRAPHQL_PATH = "/graphql"
BARE_PATH = "/bare/members"

QUERY = """
query OrganisationMembers($id: ID!, $first: Int, $after: String, $twoFactorEnabled: Boolean) {
  organisation(id: $id) {
    id
    name
    supportPlan
    securityPolicy { requireTwoFactor updatedAt }
    members(first: $first, after: $after, twoFactorEnabled: $twoFactorEnabled) {
      totalCount
      pageInfo { hasNextPage endCursor }
      edges {
        cursor
        node {
          id
          role
          productAccess { id name }
          user { id email displayName twoFactorEnabled }
        }
      }
    }
  }
}
"""


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Database and data
# --------------------------------------------------------------------------------------------


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


async def create_database(base_url: str) -> tuple[str, str]:
    name = f"gardien_bench_{secrets.token_hex(4)}"
    connection = await asyncpg.connect(_asyncpg_dsn(base_url))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return name, urlunsplit(urlsplit(base_url)._replace(path=f"/{name}"))


async def drop_database(base_url: str, name: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(base_url))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@dataclass(frozen=True)
class Fixture:
    organisation_id: str  # Relay global ID
    token: str  # the owner's session token


async def populate(services: Services) -> Fixture:
    """One organisation of MEMBER_COUNT members, a few product grants, two confirmed 2FA users."""
    meta = RequestMeta(ip=None, device="gardien-bench")
    signed_up = await accounts.sign_up(
        services, meta, email=OWNER_EMAIL, password=OWNER_PASSWORD, display_name="Bench Owner"
    )
    organisation: Organisation = signed_up.organisation
    now = services.clock.now()
    password_hash = await hash_password(MEMBER_PASSWORD)  # one hash for all: argon2 is slow
    roles = (Role.ADMINISTRATOR, Role.COLLABORATOR, Role.COLLABORATOR, Role.EXTERNAL)
    async with in_transaction():
        products = [
            await Product.create(organisation=organisation, kind=kind, name=name, created_at=now)
            for kind, name in (
                (ProductKind.MAIL_SERVICE, "Mail Service bench.example"),
                (ProductKind.WEB_DRIVE, "kDrive Équipe"),
                (ProductKind.HOSTING, "Hébergement web"),
            )
        ]
        memberships: list[Membership] = []
        users: list[User] = []
        for index in range(1, MEMBER_COUNT):
            user = await User.create(
                email=f"member{index:03d}@bench.example",
                password_hash=password_hash,
                password_changed_at=now,
                display_name=f"Membre {index:03d} Zoë",
                current_organisation=organisation,
                created_at=now,
            )
            users.append(user)
            memberships.append(
                await Membership.create(
                    organisation=organisation, user=user, role=roles[index % 4], created_at=now
                )
            )
        # A few grants, on the first page and beyond it; two members hold two products.
        for position, product_indexes in (
            (1, (0,)),
            (2, (2, 0)),
            (4, (1,)),
            (9, (0, 1)),
            (20, (2,)),
            (60, (1,)),
        ):
            for product_index in product_indexes:
                await ProductGrant.create(
                    membership=memberships[position], product=products[product_index]
                )
        for position, confirmed in ((2, True), (7, True), (11, False)):
            await TwoFactorMethod.create(
                user=users[position],
                kind=TwoFactorKind.TOTP,
                label="Phone",
                totp_secret_encrypted=services.keyring.encrypt(b"JBSWY3DPEHPK3PXP", "totp"),
                created_at=now,
                confirmed_at=now if confirmed else None,
            )
    signed_in = await accounts.sign_in(services, meta, login=OWNER_EMAIL, password=OWNER_PASSWORD)
    if signed_in.session is None:
        raise RuntimeError("the owner's sign-in asked for a second factor")
    return Fixture(
        organisation_id=encode_id("Organisation", organisation.id),
        token=signed_in.session.token,
    )


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------


def request_body(fixture: Fixture, first: int, **extra: Any) -> bytes:
    variables = {"id": fixture.organisation_id, "first": first, **extra}
    return json.dumps({"query": QUERY, "variables": variables}).encode()


def request_headers(fixture: Fixture) -> dict[str, str]:
    return {
        "authorization": f"Bearer {fixture.token}",
        "content-type": "application/json",
        "accept": "application/json",
    }


async def post_json(client: httpx.AsyncClient, path: str, fixture: Fixture, body: bytes) -> Any:
    response = await client.post(path, content=body, headers=request_headers(fixture))
    payload = response.json()
    if response.status_code != 200 or "errors" in payload:
        raise RuntimeError(f"{path} answered {response.status_code}: {response.text[:2000]}")
    return payload


@contextlib.asynccontextmanager
async def in_process_client(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(HOST, 50000))
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


async def count_statements(settings: Settings, fixture: Fixture) -> dict[int, list[str]]:
    app = create_app(settings, manage_database=False)
    found: dict[int, list[str]] = {}
    async with in_process_client(app) as client:
        for first in (10, 100):
            body = request_body(fixture, first)
            await post_json(client, GRAPHQL_PATH, fixture, body)  # warm: document cache, last_seen
            with captured_statements() as log:
                await post_json(client, GRAPHQL_PATH, fixture, body)
            found[first] = log.statements
    return found


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


async def profile_gateway(settings: Settings, fixture: Fixture, requests: int) -> ProfileResult:
    body = request_body(fixture, PAGE_SIZE)
    headers = request_headers(fixture)
    probe = Probe()
    app = create_app(settings, manage_database=False)

    async def send_all(client: httpx.AsyncClient, count: int) -> None:
        for _ in range(count):
            response = await client.post(GRAPHQL_PATH, content=body, headers=headers)
            if response.status_code != 200 or b'"errors"' in response.content:
                raise RuntimeError(f"gateway answered {response.status_code}: {response.text}")

    with instrumented(probe, asyncio.get_running_loop()):
        async with in_process_client(TimedApp(app, probe)) as client:
            await send_all(client, 1)  # a fresh app: its first request parses and validates
            first_prepare = probe.seconds["prepare:cold"]
            first_total = probe.seconds["total"]
            await send_all(client, 20)
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

    # The same requests without the wrappers (their cost), then under cProfile, by library.
    profiler = cProfile.Profile()
    async with in_process_client(app) as client:
        await send_all(client, 20)
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


# --------------------------------------------------------------------------------------------
# Server process and load generator
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def start_server(
    settings_env: dict[str, str], port: int, log_path: Path
) -> subprocess.Popen[bytes]:
    # Only the settings of the gateway: load_settings() refuses unknown GARDIEN_* variables
    # (GARDIEN_BENCH_DATABASE_URL among them).
    env = {name: value for name, value in os.environ.items() if not name.startswith("GARDIEN_")}
    env.update(settings_env)
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "bench._server", "--host", HOST, "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def server_log(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-4000:]


async def wait_until_ready(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}") as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the bench server exited early:\n{server_log(log_path)}")
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the bench server did not become ready:\n{server_log(log_path)}")


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), or None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Target:
    label: str
    path: str
    request: bytes  # the whole HTTP/1.1 request, sent as is on a kept-alive connection
    expected_body: bytes


def raw_request(path: str, port: int, fixture: Fixture, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {HOST}:{port}\r\n"
        f"Authorization: Bearer {fixture.token}\r\n"
        "Content-Type: application/json\r\n"
        "Accept: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length: int | None = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise RuntimeError(f"a response without Content-Length: {head!r}")
    return status, await reader.readexactly(length)


@dataclass(frozen=True)
class RoundResult:
    requests: int
    seconds: float
    server_cpu_seconds: float | None
    latencies: list[float]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


async def run_round(
    target: Target, port: int, seconds: float, concurrency: int, server_pid: int
) -> RoundResult:
    connections = await asyncio.gather(
        *(asyncio.open_connection(HOST, port) for _ in range(concurrency))
    )
    latencies: list[float] = []

    async def loop(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, deadline: float
    ) -> int:
        done = 0
        while (started := time.perf_counter()) < deadline:
            writer.write(target.request)
            await writer.drain()
            status, body = await read_response(reader)
            if status != 200 or body != target.expected_body:
                raise RuntimeError(f"{target.path} answered {status}: {body[:2000]!r}")
            latencies.append(time.perf_counter() - started)
            done += 1
        return done

    try:
        cpu_before = process_cpu_seconds(server_pid)
        started = time.perf_counter()
        done = await asyncio.gather(
            *(loop(reader, writer, started + seconds) for reader, writer in connections)
        )
        elapsed = time.perf_counter() - started
        cpu_after = process_cpu_seconds(server_pid)
    finally:
        for _, writer in connections:
            writer.close()
        for _, writer in connections:
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return RoundResult(sum(done), elapsed, cpu, latencies)


def _data_diff(left: Any, right: Any) -> str:
    lines = difflib.unified_diff(
        json.dumps(left, indent=1, sort_keys=True, ensure_ascii=False).splitlines(),
        json.dumps(right, indent=1, sort_keys=True, ensure_ascii=False).splitlines(),
        "gateway",
        "bare",
        lineterm="",
        n=2,
    )
    return "\n".join(list(lines)[:60])


async def check_same_answers(port: int, fixture: Fixture) -> tuple[bytes, bytes]:
    """Both endpoints must answer the same data; fails loudly otherwise. Returns the bodies."""
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}") as client:
        main_body = request_body(fixture, PAGE_SIZE)
        first_page = await post_json(client, GRAPHQL_PATH, fixture, main_body)
        end_cursor = first_page["data"]["organisation"]["members"]["pageInfo"]["endCursor"]
        variants = [
            main_body,
            request_body(fixture, PAGE_SIZE, after=end_cursor),
            request_body(fixture, 10),
            request_body(fixture, 100),
            request_body(fixture, 10, twoFactorEnabled=True),
            request_body(fixture, 100, twoFactorEnabled=False),
        ]
        for body in variants:
            gateway = await post_json(client, GRAPHQL_PATH, fixture, body)
            bare = await post_json(client, BARE_PATH, fixture, body)
            if gateway["data"] != bare["data"]:
                raise RuntimeError(
                    "the gateway and the bare endpoint answer different data for "
                    f"{json.loads(body)['variables']}:\n{_data_diff(gateway['data'], bare['data'])}"
                )
        headers = request_headers(fixture)
        gateway_response = await client.post(GRAPHQL_PATH, content=main_body, headers=headers)
        bare_response = await client.post(BARE_PATH, content=main_body, headers=headers)
    return gateway_response.content, bare_response.content


@dataclass(frozen=True)
class Throughput:
    gateway: list[RoundResult]
    bare: list[RoundResult]
    concurrency: int
    seconds: float
    response_bytes: tuple[int, int]


async def measure_throughput(
    settings_env: dict[str, str], fixture: Fixture, options: argparse.Namespace, work_dir: Path
) -> Throughput:
    port = free_port()
    log_path = work_dir / "server.log"
    process = start_server(settings_env, port, log_path)
    try:
        await wait_until_ready(process, port, log_path)
        gateway_bytes, bare_bytes = await check_same_answers(port, fixture)
        progress("both endpoints answer the same data")
        body = request_body(fixture, PAGE_SIZE)
        gateway = Target(
            "POST /graphql",
            GRAPHQL_PATH,
            raw_request(GRAPHQL_PATH, port, fixture, body),
            gateway_bytes,
        )
        bare = Target(
            "POST /bare/members",
            BARE_PATH,
            raw_request(BARE_PATH, port, fixture, body),
            bare_bytes,
        )
        for target in (gateway, bare):
            await run_round(target, port, options.warmup, options.concurrency, process.pid)
        results: dict[str, list[RoundResult]] = {gateway.path: [], bare.path: []}
        for round_number in range(options.rounds):
            # Alternate which endpoint goes first, so a drift of the machine hits both alike.
            order = (gateway, bare) if round_number % 2 == 0 else (bare, gateway)
            for target in order:
                result = await run_round(
                    target, port, options.seconds, options.concurrency, process.pid
                )
                results[target.path].append(result)
                progress(
                    f"round {round_number + 1}: {target.label}: {result.per_second:,.0f} req/s"
                )
        if process.poll() is not None:
            raise RuntimeError(f"the bench server died:\n{server_log(log_path)}")
    finally:
        stop_server(process)
    return Throughput(
        gateway=results[GRAPHQL_PATH],
        bare=results[BARE_PATH],
        concurrency=options.concurrency,
        seconds=options.seconds,
        response_bytes=(len(gateway_bytes), len(bare_bytes)),
    )


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _cpu_per_request(rounds: list[RoundResult]) -> float | None:
    """Server CPU seconds per request over all rounds, or None without /proc."""
    cpu = [r.server_cpu_seconds for r in rounds]
    if any(c is None for c in cpu):
        return None
    return sum(c for c in cpu if c is not None) / sum(r.requests for r in rounds)


def _throughput_row(label: str, rounds: list[RoundResult]) -> tuple[str, float]:
    rates = [r.per_second for r in rounds]
    mean = statistics.fmean(rates)
    latencies = [value for r in rounds for value in r.latencies]
    cpu = _cpu_per_request(rounds)
    if cpu is None:
        cpu_text = f"{'n/a':>12}{'n/a':>8}"
    else:
        busy = cpu * sum(r.requests for r in rounds) / sum(r.seconds for r in rounds)
        cpu_text = f"{cpu * 1000:12.2f}{busy * 100:7.0f}%"
    per_round = "".join(f"{rate:10,.0f}" for rate in rates)
    line = (
        f"{label:<20}{per_round}{mean:12,.0f}{cpu_text}"
        f"{_percentile(latencies, 0.5) * 1000:9.1f}{_percentile(latencies, 0.99) * 1000:9.1f}"
    )
    return line, mean


def _statement_summary(statement: str) -> str:
    """One line per statement, a long column list replaced by its length."""
    text = " ".join(statement.split())
    if text.startswith("SELECT ") and " FROM " in text:
        columns, _, rest = text.removeprefix("SELECT ").partition(" FROM ")
        if columns.count(",") >= 4:
            text = f"SELECT <{columns.count(',') + 1} columns> FROM {rest}"
    return text


def print_report(
    throughput: Throughput, statements: dict[int, list[str]], profile: ProfileResult
) -> None:
    rounds = len(throughput.gateway)
    print()
    print(
        f"Throughput: one uvicorn process (1 worker), concurrency {throughput.concurrency}, "
        f"keep-alive, {rounds} alternating rounds x {throughput.seconds:g} s per endpoint, "
        f"page size {PAGE_SIZE} of {MEMBER_COUNT} members, {os.cpu_count()} CPUs"
    )
    header = (
        f"{'endpoint':<20}"
        + "".join(f"{'round ' + str(i + 1):>10}" for i in range(rounds))
        + f"{'mean req/s':>12}{'CPU ms/req':>12}{'CPU':>8}{'p50 ms':>9}{'p99 ms':>9}"
    )
    print(header)
    print("-" * len(header))
    gateway_line, gateway_mean = _throughput_row("POST /graphql", throughput.gateway)
    bare_line, bare_mean = _throughput_row("POST /bare/members", throughput.bare)
    print(gateway_line)
    print(bare_line)
    gateway_cpu = _cpu_per_request(throughput.gateway)
    bare_cpu = _cpu_per_request(throughput.bare)
    cpu_ratio = (
        f"; server CPU per request gateway/bare: {gateway_cpu / bare_cpu:.1f}x"
        if gateway_cpu and bare_cpu
        else ""
    )
    print(
        f"ratio gateway/bare: {gateway_mean / bare_mean:.3f} "
        f"(the bare endpoint serves {bare_mean / gateway_mean:.1f}x the requests){cpu_ratio}"
    )
    print(
        "CPU = CPU time of the server process (% of one core); response bodies "
        f"{throughput.response_bytes[0]} / {throughput.response_bytes[1]} bytes"
    )

    print()
    print(
        "SQL statements per gateway request "
        "(in-process, tortoise.db_client log, session lookup included)"
    )
    print(f"{'page size':<12}{'statements':>10}")
    for first, found in statements.items():
        print(f"{first:<12}{len(found):>10}")
    counts = {len(found) for found in statements.values()}
    print("equal: yes" if len(counts) == 1 else "equal: NO (the count grows with the page)")
    print(f"statements of one request (page size {min(statements)}):")
    for number, statement in enumerate(statements[min(statements)], 1):
        text = _statement_summary(statement)
        print(f"  {number}. {text[:160]}{'...' if len(text) > 160 else ''}")

    print()
    print(
        f"Profile of one gateway request, in-process (page size {PAGE_SIZE}, mean of "
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


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


async def run(options: argparse.Namespace) -> None:
    base_url = os.environ.get(BASE_URL_VARIABLE, DEFAULT_BASE_URL)
    name, url = await create_database(base_url)
    progress(f"created database {name}")
    try:
        with tempfile.TemporaryDirectory(prefix="gardien_bench_") as var_dir:
            settings_env = {
                "GARDIEN_SECRET_KEY": SECRET_KEY,
                "GARDIEN_DATABASE_URL": url,
                "GARDIEN_VAR_DIR": var_dir,
                "GARDIEN_LOG_LEVEL": "WARNING",
            }
            settings = load_settings(settings_env)
            await db.migrate(settings.database_url)
            database = await db.open_database(settings.database_url)
            try:
                services = Services(
                    settings=settings, clock=SystemClock(), keyring=Keyring(settings.secret_key)
                )
                fixture = await populate(services)
                progress(f"organisation of {MEMBER_COUNT} members ready; counting statements")
                statements = await count_statements(settings, fixture)
                progress(f"profiling {options.profile_requests} in-process requests")
                profile = await profile_gateway(settings, fixture, options.profile_requests)
                progress("measuring throughput")
                throughput = await measure_throughput(settings_env, fixture, options, Path(var_dir))
            finally:
                await db.close_database(database)
    finally:
        await drop_database(base_url, name)
        progress(f"dropped database {name}")
    print_report(throughput, statements, profile)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of a measured round")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per endpoint")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per endpoint")
    parser.add_argument("--concurrency", type=int, default=8, help="kept-alive connections")
    parser.add_argument("--profile-requests", type=int, default=200)
    options = parser.parse_args(argv)
    asyncio.run(run(options))


if __name__ == "__main__":
    main()
