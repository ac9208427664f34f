"""Benchmark: the OrganisationMembers query of the gateway against the same answer written by hand.

Run by hand from the repository root (needs PostgreSQL; nothing is timed-asserted):

    .venv/bin/python -m bench.members_query [--seconds 5 --rounds 3 --concurrency 8]
    .venv/bin/python -m bench.members_query --smoke   # a few requests: does it run, do they agree

It creates a throw-away database `gardien_bench_<random>` on the server of
GARDIEN_BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres), migrates it,
fills one organisation with 100 members, signs its owner in, then:

1. counts the SQL statements of one gateway request (in-process) for page sizes 10 and 100;
2. profiles gateway requests in-process, page size 50 (bench/profiler.py);
3. serves POST /graphql (the gateway) and POST /bare/members (bench/_server.py: hand-written SQL
   through asyncpg, same JSON) from one uvicorn process, checks that both answer the same `data`
   for a few variables, then measures requests per second and server CPU per request of each, in
   alternating rounds, with the kept-alive load generator of bench/_load.py;
4. prints the tables.

The database is dropped at the end, whatever happens. `--smoke` runs every step with a few
requests (one short round), so that `make test` notices a benchmark that no longer runs; its
figures mean nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import json
import os
import secrets
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from tortoise.transactions import in_transaction

from bench import profiler
from bench._load import (
    RoundResult,
    Target,
    cpu_per_request,
    mean_rate,
    raw_request,
    run_round,
    throughput_header,
    throughput_row,
)
from bench._server import ServerProcess, served
from gardien import db
from gardien.app import create_app
from gardien.clock import SystemClock
from gardien.models.enums import ProductKind, Role, TwoFactorKind
from gardien.models.mfa import TwoFactorMethod
from gardien.models.organisations import Membership, Organisation
from gardien.models.products import Product, ProductGrant
from gardien.models.users import User
from gardien.resolvers import accounts
from gardien.resolvers.services import RequestMeta, Services
from gardien.schema.relay import encode_id
from gardien.security import Keyring, hash_password
from gardien.settings import Settings, load_settings

BASE_URL_VARIABLE = "GARDIEN_BENCH_DATABASE_URL"
DEFAULT_BASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"
# A fixed 48-byte key (secrets.token_urlsafe(48)), for this throw-away database only.
SECRET_KEY = "NMJjxRpmHgHFyVSvFIFVPH9NRH7hjiOHoji7uujShcGPN4a2m0l34hDf90OpJAQ7"
OWNER_EMAIL = "owner@bench.example"
OWNER_PASSWORD = "plum tree under bench snow"
MEMBER_PASSWORD = "another plum tree under snow"
MEMBER_COUNT = 100  # the owner included
PAGE_SIZE = 50
STATEMENT_PAGE_SIZES = (10, 100)
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


@dataclass(frozen=True)
class Options:
    seconds: float  # length of a measured round
    rounds: int  # measured rounds per endpoint
    warmup: float  # warm-up seconds per endpoint
    concurrency: int  # kept-alive connections
    profile_requests: int
    profile_warmup: int
    max_requests: int | None  # per connection and round (the smoke run's "a few requests")


SMOKE = Options(
    seconds=2.0,
    rounds=1,
    warmup=0.0,
    concurrency=2,
    profile_requests=3,
    profile_warmup=1,
    max_requests=5,
)


# --------------------------------------------------------------------------------------------
# The run, top-down
# --------------------------------------------------------------------------------------------


async def run(options: Options) -> None:
    base_url = os.environ.get(BASE_URL_VARIABLE, DEFAULT_BASE_URL)
    async with throwaway_database(base_url) as url, gardien_settings(url) as settings_env:
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
            profile = await profiler.profile_gateway(
                create_app(settings, manage_database=False),
                gateway_request(fixture, PAGE_SIZE),
                options.profile_requests,
                warmup=options.profile_warmup,
            )
            progress("starting the server")
            log_path = Path(settings_env["GARDIEN_VAR_DIR"]) / "server.log"
            async with served(settings_env, log_path) as server:
                gateway, bare = await same_answers(server, fixture)
                progress("both endpoints answer the same data")
                throughput = await measure_throughput(server, gateway, bare, options)
        finally:
            await db.close_database(database)
    print_report(throughput, statements, profile)


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Database and data
# --------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def throwaway_database(base_url: str) -> AsyncIterator[str]:
    """A new, empty database on the server of base_url (its URL), dropped on exit."""
    name = f"gardien_bench_{secrets.token_hex(4)}"
    dsn = base_url.replace("postgres://", "postgresql://", 1)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    progress(f"created database {name}")
    try:
        yield urlunsplit(urlsplit(base_url)._replace(path=f"/{name}"))
    finally:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()
        progress(f"dropped database {name}")


@contextlib.asynccontextmanager
async def gardien_settings(database_url: str) -> AsyncIterator[dict[str, str]]:
    """The GARDIEN_* settings of both processes, with a temporary GARDIEN_VAR_DIR."""
    with tempfile.TemporaryDirectory(prefix="gardien_bench_") as var_dir:
        yield {
            "GARDIEN_SECRET_KEY": SECRET_KEY,
            "GARDIEN_DATABASE_URL": database_url,
            "GARDIEN_VAR_DIR": var_dir,
            "GARDIEN_LOG_LEVEL": "WARNING",
        }


@dataclass(frozen=True)
class Fixture:
    organisation_id: str  # Relay global ID
    token: str  # the owner's session token


async def populate(services: Services) -> Fixture:
    """One organisation of MEMBER_COUNT members, a few product grants, two confirmed 2FA users."""
    meta = RequestMeta(ip=None, device="gardien-bench")
    # The owner's address needs no confirmation here: opened as a confirmed sign-up would be.
    signed_up = await accounts.open_account(
        services,
        meta,
        email=OWNER_EMAIL,
        password_hash=await hash_password(OWNER_PASSWORD),
        display_name="Bench Owner",
        language="fr",
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


def gateway_request(fixture: Fixture, first: int) -> profiler.SendRequest:
    """One gateway request of this page size, for the in-process profiler."""
    body = request_body(fixture, first)

    async def send(client: httpx.AsyncClient) -> None:
        await post_json(client, GRAPHQL_PATH, fixture, body)

    return send


async def count_statements(settings: Settings, fixture: Fixture) -> dict[int, list[str]]:
    """The SQL statements of one gateway request per page size (in-process)."""
    app = create_app(settings, manage_database=False)
    return {
        first: await profiler.statements_of(app, gateway_request(fixture, first))
        for first in STATEMENT_PAGE_SIZES
    }


# --------------------------------------------------------------------------------------------
# Both endpoints: the same answers, then requests per second
# --------------------------------------------------------------------------------------------


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


async def same_answers(server: ServerProcess, fixture: Fixture) -> tuple[Target, Target]:
    """Both endpoints must answer the same data for a few variables; fails loudly otherwise.
    Returns the two load targets (page size PAGE_SIZE), with their expected bodies."""
    async with httpx.AsyncClient(base_url=server.base_url) as client:
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
    gateway_target = Target(
        "POST /graphql",
        GRAPHQL_PATH,
        raw_request(GRAPHQL_PATH, server.port, headers, main_body),
        gateway_response.content,
    )
    bare_target = Target(
        "POST /bare/members",
        BARE_PATH,
        raw_request(BARE_PATH, server.port, headers, main_body),
        bare_response.content,
    )
    return gateway_target, bare_target


@dataclass(frozen=True)
class Throughput:
    gateway: list[RoundResult]
    bare: list[RoundResult]
    concurrency: int
    seconds: float
    response_bytes: tuple[int, int]


async def measure_throughput(
    server: ServerProcess, gateway: Target, bare: Target, options: Options
) -> Throughput:
    async def one_round(target: Target, seconds: float) -> RoundResult:
        return await run_round(
            target,
            server.port,
            seconds,
            options.concurrency,
            server.cpu_seconds,
            max_requests=options.max_requests,
        )

    if options.warmup:
        for target in (gateway, bare):
            await one_round(target, options.warmup)
    results: dict[str, list[RoundResult]] = {gateway.path: [], bare.path: []}
    for round_number in range(options.rounds):
        # Alternate which endpoint goes first, so a drift of the machine hits both alike.
        order = (gateway, bare) if round_number % 2 == 0 else (bare, gateway)
        for target in order:
            result = await one_round(target, options.seconds)
            results[target.path].append(result)
            progress(f"round {round_number + 1}: {target.label}: {result.per_second:,.0f} req/s")
    server.check_alive()
    return Throughput(
        gateway=results[gateway.path],
        bare=results[bare.path],
        concurrency=options.concurrency,
        seconds=options.seconds,
        response_bytes=(len(gateway.expected_body), len(bare.expected_body)),
    )


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def print_report(
    throughput: Throughput, statements: dict[int, list[str]], profile: profiler.ProfileResult
) -> None:
    rounds = len(throughput.gateway)
    print()
    print(
        f"Throughput: one uvicorn process (1 worker), concurrency {throughput.concurrency}, "
        f"keep-alive, {rounds} alternating rounds x {throughput.seconds:g} s per endpoint, "
        f"page size {PAGE_SIZE} of {MEMBER_COUNT} members, {os.cpu_count()} CPUs"
    )
    header = throughput_header(rounds)
    print(header)
    print("-" * len(header))
    print(throughput_row("POST /graphql", throughput.gateway))
    print(throughput_row("POST /bare/members", throughput.bare))
    gateway_mean, bare_mean = mean_rate(throughput.gateway), mean_rate(throughput.bare)
    gateway_cpu = cpu_per_request(throughput.gateway)
    bare_cpu = cpu_per_request(throughput.bare)
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
        text = profiler.statement_summary(statement)
        print(f"  {number}. {text[:160]}{'...' if len(text) > 160 else ''}")

    print()
    profiler.print_profile(profile, f"page size {PAGE_SIZE}")


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of a measured round")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per endpoint")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per endpoint")
    parser.add_argument("--concurrency", type=int, default=8, help="kept-alive connections")
    parser.add_argument("--profile-requests", type=int, default=200)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="one short round of a few requests: checks that it runs and that both endpoints "
        "agree (the figures mean nothing)",
    )
    arguments = parser.parse_args(argv)
    options = (
        SMOKE
        if arguments.smoke
        else Options(
            seconds=arguments.seconds,
            rounds=arguments.rounds,
            warmup=arguments.warmup,
            concurrency=arguments.concurrency,
            profile_requests=arguments.profile_requests,
            profile_warmup=20,
            max_requests=None,
        )
    )
    asyncio.run(run(options))


if __name__ == "__main__":
    main()
