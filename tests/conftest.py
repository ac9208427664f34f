"""Shared fixtures: a real database per backend (SQLite always, PostgreSQL when configured),
migrated with the project's migrations and emptied between tests; a manual clock; the app."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette
from tortoise.connection import get_connection

from gardien import db
from gardien.app import create_app
from gardien.clock import ManualClock
from gardien.resolvers.services import RequestMeta, Services
from gardien.security import Keyring
from gardien.settings import Settings, load_settings

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
POSTGRES_URL = os.environ.get("GARDIEN_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("GARDIEN_TEST_REDIS_URL")


def pytest_sessionstart(session: pytest.Session) -> None:
    # In CI a suite that cannot run is a failure, never a silent skip.
    if IN_CI and not (POSTGRES_URL and REDIS_URL):
        raise pytest.UsageError(
            "CI=true needs GARDIEN_TEST_DATABASE_URL and GARDIEN_TEST_REDIS_URL (see .ci/run)"
        )


# Tortoise binds model classes to one SQL dialect per process, so each backend gets its own
# pytest run (see the Makefile): SQLite by default, PostgreSQL with GARDIEN_TEST_BACKEND=postgres.
BACKEND = os.environ.get("GARDIEN_TEST_BACKEND", "sqlite")


def pytest_report_header() -> str:
    return f"gardien database backend: {BACKEND}"


@pytest.fixture(scope="session")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("var")


async def _create_postgres_database(base_url: str) -> tuple[str, str]:
    parts = urlsplit(base_url)
    name = f"gardien_test_{secrets.token_hex(4)}"
    connection = await asyncpg.connect(base_url.replace("postgres://", "postgresql://", 1))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return name, urlunsplit(parts._replace(path=f"/{name}"))


async def _drop_postgres_database(base_url: str, name: str) -> None:
    connection = await asyncpg.connect(base_url.replace("postgres://", "postgresql://", 1))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest_asyncio.fixture(scope="session")
async def database_url(var_dir: Path) -> AsyncIterator[str]:
    """A migrated database (the real migrations, as `gardien migrate` runs them)."""
    if BACKEND == "sqlite":
        url = f"sqlite://{var_dir / 'test.sqlite3'}"
        await db.migrate(url)
        yield url
        return
    if BACKEND != "postgres" or not POSTGRES_URL:
        raise pytest.UsageError("GARDIEN_TEST_BACKEND=postgres needs GARDIEN_TEST_DATABASE_URL")
    name, url = await _create_postgres_database(POSTGRES_URL)
    try:
        await db.migrate(url)
        yield url
    finally:
        await _drop_postgres_database(POSTGRES_URL, name)


@pytest_asyncio.fixture(scope="session")
async def open_db(database_url: str) -> AsyncIterator[str]:
    context = await db.open_database(database_url)
    try:
        yield database_url
    finally:
        await db.close_database(context)


# Reference data written by the migrations themselves stays between tests.
KEPT_TABLES = ("tortoise_migrations", "tld_policy")


async def _empty_tables(database_url: str) -> None:
    connection = get_connection("default")
    if database_url.startswith("sqlite"):
        _, rows = await connection.execute_query(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
        )
        for row in rows:
            if row["name"] in KEPT_TABLES:
                continue
            await connection.execute_script(f'DELETE FROM "{row["name"]}"')
        await connection.execute_script("DELETE FROM sqlite_sequence")
    else:
        _, rows = await connection.execute_query(
            "SELECT tablename FROM pg_tables WHERE schemaname='public'"
        )
        names = ", ".join(
            f'"{row["tablename"]}"' for row in rows if row["tablename"] not in KEPT_TABLES
        )
        await connection.execute_script(f"TRUNCATE {names} RESTART IDENTITY CASCADE")


@pytest_asyncio.fixture
async def database(open_db: str) -> AsyncIterator[str]:
    """An empty, migrated database for one test."""
    yield open_db
    await _empty_tables(open_db)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="session")
def settings(var_dir: Path) -> Settings:
    return load_settings(
        {
            "GARDIEN_SECRET_KEY": secrets.token_urlsafe(48),
            "GARDIEN_VAR_DIR": str(var_dir),
            "GARDIEN_DATABASE_URL": f"sqlite://{var_dir / 'unused.sqlite3'}",
        }
    )


@pytest.fixture
def services(settings: Settings, clock: ManualClock) -> Services:
    return Services(settings=settings, clock=clock, keyring=Keyring(settings.secret_key))


@pytest.fixture
def meta() -> RequestMeta:
    return RequestMeta(ip="203.0.113.7", country="CH", device="pytest")


@pytest.fixture
def app(settings: Settings, clock: ManualClock, database: str) -> Starlette:
    return create_app(settings, clock=clock, manage_database=False)


@pytest_asyncio.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


class GraphQLClient:
    """Posts GraphQL the way real clients do; returns the decoded JSON body."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.token: str | None = None

    async def post(
        self, query: str, variables: dict[str, Any] | None = None, **headers: str
    ) -> httpx.Response:
        sent = {"content-type": "application/json", "accept": "application/graphql-response+json"}
        if self.token:
            sent["authorization"] = f"Bearer {self.token}"
        sent.update({k.replace("_", "-"): v for k, v in headers.items()})
        return await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=sent
        )

    async def __call__(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.post(query, variables)
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
def gql(client: httpx.AsyncClient) -> GraphQLClient:
    return GraphQLClient(client)
