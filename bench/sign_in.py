"""Benchmark: password sign-ins per second through the gateway against bare argon2id verifies,
and the latency of a cheap query while sign-ins keep every core busy.

Run by hand from the repository root (needs PostgreSQL; nothing is timed-asserted):

    .venv/bin/python -m bench.sign_in [--seconds 10 --concurrency 8]
    .venv/bin/python -m bench.sign_in --smoke   # a few requests: does it run, do the sides agree

It creates a throw-away database `gardien_bench_<random>` on the server of
GARDIEN_BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres), migrates it,
opens one account per load connection (each signs in as its own user, so no per-login budget
is ever in the way), then:

1. checks that both sides agree: the gateway signs the right password in and refuses a wrong
   one, and the bare verify (gardien.security's own hasher and parameters, on the stored hash)
   says the same;
2. serves the gateway (bench/_server.py: one uvicorn process, the options of `gardien serve`)
   and measures the `{ viewer { id } }` latency of one signed-in client alone;
3. `--rounds` times, one window each: the bare rate (one thread per CPU verifying the stored
   hash in a loop, in this process, while the server idles — the most a machine of this many
   cores can verify), then the gateway's: `--concurrency` kept-alive connections send SignIn
   mutations as fast as answered. Each connection is a returning browser: it sends back the
   device cookie its first sign-in set, as a browser does (ACT-2 knows it). With
   `--new-browsers` it never does: every sign-in comes from a browser never seen, and records a
   new-location event and queues its e-mail. Alternating keeps each ratio to windows a few
   seconds apart: on a shared machine the CPU the host leaves drifts over a minute;
4. one more gateway window with the cheap query beside the sign-ins (sent about 80 times a
   second, it takes its own share of the CPU), for its latency;
5. prints the table: the median of the rounds' sign-ins/s against bare verifies/s (target >=
   0.8x), and the cheap query's p99 under load (target < 50 ms: hashing must never block the
   event loop).

The load generator and PostgreSQL share the machine with the server; on a 2-core machine they
take some of the CPU the server could have used, so the ratio is a lower bound. Two CPU figures,
steadier than rates on a shared machine, are medians of each round's bare verify CPU time over a
sign-in's: of the server process alone ("bare/gateway"), and of the server, the PostgreSQL
processes (the bench database's backends and the server's background writers; a backend that
exits inside a window loses its share) and the load generator ("bare/server + PostgreSQL + load
generator"), which is what the throughput ratio tends to when the cores are the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from bench._load import HOST, percentile, read_response, read_response_with_headers
from bench._server import ServerProcess, process_cpu_seconds, served
from bench.members_query import gardien_settings, throwaway_database
from gardien import db
from gardien.clock import SystemClock
from gardien.models.users import User
from gardien.resolvers import accounts
from gardien.resolvers.services import RequestMeta, Services
from gardien.security import Keyring, _verify_sync, hash_password
from gardien.settings import load_settings

BASE_URL_VARIABLE = "GARDIEN_BENCH_DATABASE_URL"
DEFAULT_BASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"
PASSWORD = "plum tree under bench snow"
WRONG_PASSWORD = "plum tree under bench rain"
GRAPHQL_PATH = "/graphql"
P99_TARGET_MS = 50.0
RATIO_TARGET = 0.8
# The cheap query is sent one at a time with this pause, so that it samples the event loop's
# responsiveness rather than adding load of its own.
PROBE_PAUSE_SECONDS = 0.01

SIGN_IN = """mutation SignIn($input: SignInInput!) {
  signIn(input: $input) { session { token } secondFactor { challengeId } errors { code } }
}"""
VIEWER = "{ viewer { id } }"


@dataclass(frozen=True)
class Options:
    seconds: float  # length of the measured window (bare and loaded alike)
    concurrency: int  # kept-alive sign-in connections
    max_requests: int | None  # per connection (the smoke run's "a few requests")
    new_browsers: bool = False  # no device cookie sent back: every sign-in from a new browser
    # Bare and gateway windows alternate this many times: on a shared machine the CPU the host
    # leaves (steal time) drifts over a minute, and a ratio of two windows taken far apart
    # measures that drift as much as the gateway.
    rounds: int = 3


# Two rounds: the report's choice of a median round runs too.
SMOKE = Options(seconds=1.0, concurrency=2, max_requests=3, rounds=2)
# One sign-in per connection before the windows (the browsers' first visit).
WARM_UP = Options(seconds=60.0, concurrency=0, max_requests=1)


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# The run, top-down
# --------------------------------------------------------------------------------------------


async def run(options: Options) -> None:
    base_url = os.environ.get(BASE_URL_VARIABLE, DEFAULT_BASE_URL)
    async with throwaway_database(base_url) as url, gardien_settings(url) as settings_env:
        # Every sign-in from the load generator's one address: the per-address budget is given
        # back on success, so only the cost of the check remains.
        settings = load_settings(settings_env)
        await db.migrate(settings.database_url)
        database = await db.open_database(settings.database_url)
        try:
            services = Services(
                settings=settings, clock=SystemClock(), keyring=Keyring(settings.secret_key)
            )
            logins = await populate(services, options.concurrency + 1)
            stored_hash = (await User.get(email=logins[0])).password_hash
        finally:
            await db.close_database(database)
        progress(f"{len(logins)} accounts ready")
        log_path = Path(settings_env["GARDIEN_VAR_DIR"]) / "server.log"
        async with served(settings_env, log_path) as server:
            probe_token = await sides_agree(server, logins[-1], stored_hash)
            progress("both sides agree: the right password passes, a wrong one fails")
            threads = os.cpu_count() or 1
            idle = await probe_alone(server, probe_token, options)
            progress(f"cheap query alone: p99 {idle.p99_ms:.1f} ms")
            # Each login's browser, as its last sign-in left it (returning browsers): the first
            # sign-in of each is a new browser, so it happens here, before any window.
            browsers: dict[str, bytes] = {}
            if not options.new_browsers:
                await sign_ins(server, logins[:-1], None, WARM_UP, browsers)
            rounds: list[tuple[BareRate, Loaded]] = []
            async with PostgresProcesses.of(url) as postgres:
                for _ in range(options.rounds):
                    bare = bare_verify_rate(stored_hash, threads, options)
                    progress(f"bare argon2id verify: {bare.per_second:,.1f}/s on {threads} threads")
                    alone = await sign_ins(server, logins[:-1], None, options, browsers, postgres)
                    progress(f"gateway: {alone.sign_ins_per_second:,.1f} sign-ins/s")
                    rounds.append((bare, alone))
            loaded = await sign_ins(server, logins[:-1], probe_token, options, browsers)
            progress(
                f"gateway with the cheap query beside: {loaded.sign_ins_per_second:,.1f} "
                f"sign-ins/s; cheap query p99 {loaded.probe.p99_ms:.1f} ms"
            )
            server.check_alive()
    print_report(rounds, idle, loaded, options)


async def populate(services: Services, count: int) -> list[str]:
    """`count` confirmed accounts with the same password (one hash: argon2 is slow)."""
    meta = RequestMeta(ip=None, device="gardien-bench")
    password_hash = await hash_password(PASSWORD)
    logins = []
    for index in range(count):
        email = f"signer{index:03d}@bench.example"
        await accounts.open_account(
            services,
            meta,
            email=email,
            password_hash=password_hash,
            display_name=f"Signer {index:03d}",
            language="fr",
        )
        logins.append(email)
    return logins


# --------------------------------------------------------------------------------------------
# Both sides agree
# --------------------------------------------------------------------------------------------


def sign_in_body(login: str, password: str) -> bytes:
    variables = {"input": {"login": login, "password": password}}
    return json.dumps({"query": SIGN_IN, "variables": variables}).encode()


async def sides_agree(server: ServerProcess, login: str, stored_hash: str) -> str:
    """The gateway and the bare verify agree on a right and a wrong password; fails loudly
    otherwise. Returns a session token for the cheap query."""
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
        wrong = (
            await client.post(
                GRAPHQL_PATH, content=sign_in_body(login, WRONG_PASSWORD), headers=headers
            )
        ).json()["data"]["signIn"]
        right = (
            await client.post(GRAPHQL_PATH, content=sign_in_body(login, PASSWORD), headers=headers)
        ).json()["data"]["signIn"]
    gateway = (right["session"] is not None, wrong["session"] is not None)
    bare = (_verify_sync(stored_hash, PASSWORD), _verify_sync(stored_hash, WRONG_PASSWORD))
    if gateway != (True, False) or bare != (True, False):
        raise RuntimeError(
            f"the sides disagree: gateway (right, wrong) = {gateway}, bare = {bare}; "
            f"answers: {right} / {wrong}"
        )
    if [e["code"] for e in wrong["errors"]] != ["INVALID_CREDENTIALS"]:
        raise RuntimeError(f"a wrong password answered {wrong}")
    token: str = right["session"]["token"]
    return token


# --------------------------------------------------------------------------------------------
# Bare verifies
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BareRate:
    verifies: int
    seconds: float
    threads: int
    cpu_seconds: float  # of this process, which does nothing else meanwhile

    @property
    def per_second(self) -> float:
        return self.verifies / self.seconds


def bare_verify_rate(stored_hash: str, threads: int, options: Options) -> BareRate:
    """gardien.security's own verify (same hasher, same parameters) on `threads` threads;
    argon2-cffi releases the GIL while hashing, as it does for the gateway's worker threads."""
    counts = [0] * threads
    cpu_before = time.process_time()
    started = time.perf_counter()
    deadline = started + options.seconds

    def loop(slot: int) -> None:
        while time.perf_counter() < deadline and counts[slot] != options.max_requests:
            if not _verify_sync(stored_hash, PASSWORD):
                raise RuntimeError("the bare verify refused the right password")
            counts[slot] += 1

    workers = [threading.Thread(target=loop, args=(slot,)) for slot in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    return BareRate(sum(counts), elapsed, threads, time.process_time() - cpu_before)


# --------------------------------------------------------------------------------------------
# The gateway: the cheap query alone, then sign-ins with the cheap query beside them
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    latencies: list[float]

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 0.99) * 1000

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies, 0.5) * 1000


@dataclass(frozen=True)
class Loaded:
    sign_ins: int
    seconds: float
    sign_in_latencies: list[float]
    server_cpu_seconds: float | None
    probe: Probe
    # The server, its PostgreSQL backends and this load generator together (Linux /proc).
    machine_cpu_seconds: float | None = None

    @property
    def sign_ins_per_second(self) -> float:
        return self.sign_ins / self.seconds


def raw_post(port: int, body: bytes, token: str | None = None, cookie: bytes = b"") -> bytes:
    headers = [
        f"POST {GRAPHQL_PATH} HTTP/1.1",
        f"Host: {HOST}:{port}",
        "Content-Type: application/json",
        "Accept: application/json",
        f"Content-Length: {len(body)}",
    ]
    if token:
        headers.append(f"Authorization: Bearer {token}")
    if cookie:
        headers.append(f"Cookie: {cookie.decode('latin-1')}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode("latin-1") + body


async def _probe(
    port: int, token: str, stop: asyncio.Event, max_requests: int | None
) -> list[float]:
    """The cheap query, one at a time, until `stop` (at least one, at most max_requests)."""
    request = raw_post(port, json.dumps({"query": VIEWER}).encode(), token)
    reader, writer = await asyncio.open_connection(HOST, port)
    latencies: list[float] = []
    try:
        while not latencies or (not stop.is_set() and len(latencies) != max_requests):
            started = time.perf_counter()
            writer.write(request)
            await writer.drain()
            status, body = await read_response(reader)
            if status != 200 or b'"viewer":{"id":' not in body:
                raise RuntimeError(f"the cheap query answered {status}: {body[:500]!r}")
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(PROBE_PAUSE_SECONDS)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return latencies


async def probe_alone(server: ServerProcess, token: str, options: Options) -> Probe:
    stop = asyncio.Event()
    task = asyncio.create_task(_probe(server.port, token, stop, options.max_requests))
    await asyncio.sleep(options.seconds)
    stop.set()
    return Probe(await task)


async def sign_ins(
    server: ServerProcess,
    logins: Sequence[str],
    probe_token: str | None,
    options: Options,
    browsers: dict[str, bytes],
    postgres: PostgresProcesses | None = None,
) -> Loaded:
    """One kept-alive connection per login sending its SignIn for `options.seconds`; with a
    probe token, the cheap query beside them over the same window. `browsers` holds each
    login's device cookie, sent back and kept up to date unless options.new_browsers."""
    latencies: list[float] = []

    async def sign_in_loop(login: str, deadline: float) -> int:
        body = sign_in_body(login, PASSWORD)
        cookie = b"" if options.new_browsers else browsers.get(login, b"")
        request = raw_post(server.port, body, cookie=cookie)
        reader, writer = await asyncio.open_connection(HOST, server.port)
        done = 0
        try:
            while (started := time.perf_counter()) < deadline and done != options.max_requests:
                writer.write(request)
                await writer.drain()
                status, headers, answer = await read_response_with_headers(reader)
                if status != 200 or b'"session":{"token":' not in answer:
                    raise RuntimeError(f"a sign-in answered {status}: {answer[:500]!r}")
                latencies.append(time.perf_counter() - started)
                done += 1
                if not options.new_browsers:
                    browsers[login] = device_cookie(headers)
                    request = raw_post(server.port, body, cookie=browsers[login])
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        return done

    stop = asyncio.Event()
    postgres_before = await postgres.cpu_seconds() if postgres is not None else None
    client_before = time.process_time()
    cpu_before = server.cpu_seconds()
    started = time.perf_counter()
    probe = (
        asyncio.create_task(_probe(server.port, probe_token, stop, options.max_requests))
        if probe_token is not None
        else None
    )
    counts = await asyncio.gather(
        *(sign_in_loop(login, started + options.seconds) for login in logins)
    )
    elapsed = time.perf_counter() - started
    cpu_after = server.cpu_seconds()
    client = time.process_time() - client_before
    postgres_used = (
        await postgres.cpu_seconds_since(postgres_before)
        if postgres is not None and postgres_before is not None
        else None
    )
    stop.set()
    probe_latencies = await probe if probe is not None else []
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    machine = None if cpu is None or postgres_used is None else cpu + postgres_used + client
    return Loaded(sum(counts), elapsed, latencies, cpu, Probe(probe_latencies), machine)


class PostgresProcesses:
    """CPU time of the PostgreSQL processes a sign-in makes work: the bench database's backends
    and the server's own background processes (WAL writer, background writer, checkpointer),
    read from Linux /proc (the server runs on this machine), through one connection of this
    process's own, left out."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    @classmethod
    @contextlib.asynccontextmanager
    async def of(cls, url: str) -> AsyncIterator[PostgresProcesses]:
        connection = await asyncpg.connect(url)
        try:
            yield cls(connection)
        finally:
            await connection.close()

    async def cpu_seconds(self) -> dict[int, float] | None:
        """Each process's CPU seconds so far, by process id; None without /proc or when a
        process id is not one of this machine's PostgreSQL processes."""
        rows = await self._connection.fetch(
            "SELECT pid FROM pg_stat_activity"
            " WHERE (datname = current_database() OR datname IS NULL) AND pid <> pg_backend_pid()"
        )
        seconds: dict[int, float] = {}
        for row in rows:
            used = process_cpu_seconds(row["pid"], name_prefix="postgres")
            if used is None:
                return None
            seconds[row["pid"]] = used
        return seconds

    async def cpu_seconds_since(self, before: dict[int, float]) -> float | None:
        """CPU seconds the processes used since `before` (one started since: all of its)."""
        after = await self.cpu_seconds()
        if after is None:
            return None
        return sum(used - before.get(pid, 0.0) for pid, used in after.items())


def device_cookie(headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    """The `name=value` of the device cookie a sign-in set (a browser sends it back)."""
    for name, value in headers:
        cookie = value.split(b";", 1)[0]
        if name == b"set-cookie" and cookie.split(b"=", 1)[0].endswith(b"gardien_device"):
            return cookie
    raise RuntimeError(f"a sign-in set no device cookie: {headers!r}")


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def print_report(
    rounds: Sequence[tuple[BareRate, Loaded]], idle: Probe, loaded: Loaded, options: Options
) -> None:
    ratios = [alone.sign_ins_per_second / bare.per_second for bare, alone in rounds]
    ratio = statistics.median(ratios)
    # The round of the median (of an even count, the one just above it).
    bare, alone = rounds[ratios.index(statistics.median_high(ratios))]
    # Each round's CPU figures, bare and gateway side by side, as the rates are.
    bare_ms = [b.cpu_seconds / b.verifies * 1000 for b, _ in rounds]
    server_ms = _per_sign_in([a.server_cpu_seconds for _, a in rounds], rounds)
    machine_ms = _per_sign_in([a.machine_cpu_seconds for _, a in rounds], rounds)
    print()
    print(
        f"Sign-in: argon2id m=19 MiB, t=2, p=1; {os.cpu_count()} CPUs; one uvicorn process; "
        f"{options.concurrency} sign-in connections; {options.seconds:g} s windows; "
        f"{len(rounds)} round{'s' if len(rounds) != 1 else ''} of bare then gateway; "
        + ("new browsers (no device cookie)" if options.new_browsers else "returning browsers")
    )
    print(f"{'measure (per round)':<44}{'value':>30}")
    print("-" * 74)
    print(f"{'bare argon2id verifies/s':<44}{_each(b.per_second for b, _ in rounds):>30}")
    gateway_rates = _each(a.sign_ins_per_second for _, a in rounds)
    print(f"{'gateway sign-ins/s (SignIn over HTTP)':<44}{gateway_rates:>30}")
    print(f"{'ratio gateway/bare':<44}{_each(ratios, '.2f'):>30}")
    print(f"{'bare CPU ms per verify':<44}{_each(bare_ms):>30}")
    if server_ms:
        print(f"{'gateway server CPU ms per sign-in':<44}{_each(server_ms):>30}")
    if machine_ms:
        print(f"{'  + PostgreSQL + load generator':<44}{_each(machine_ms):>30}")
    print(f"{'sign-in p50 / p99 ms (median round)':<44}{_p50_p99(alone.sign_in_latencies):>30}")
    print(f"{'cheap query alone p50 / p99 ms':<44}{_p50_p99(idle.latencies):>30}")
    print(f"{'cheap query under sign-ins p50 / p99 ms':<44}{_p50_p99(loaded.probe.latencies):>30}")
    print(f"{'  sign-ins/s meanwhile':<44}{loaded.sign_ins_per_second:30,.1f}")
    print()
    print(
        f"ratio gateway/bare: {ratio:.2f}, the median of {len(rounds)} round"
        f"{'s' if len(rounds) != 1 else ''} (target >= {RATIO_TARGET}: "
        f"{'met' if ratio >= RATIO_TARGET else 'NOT met'}); "
        f"{loaded.sign_ins_per_second / bare.per_second:.2f} with the cheap query beside "
        "(against the median round's bare rate)"
    )
    if server_ms:
        # The steadier figures on a shared machine: CPU time does not count the waits for cores
        # that other processes hold.
        efficiency = statistics.median(b / g for b, g in zip(bare_ms, server_ms, strict=True))
        print(f"CPU per sign-in, bare/gateway: {efficiency:.2f} (1.0: the gateway adds nothing)")
    if machine_ms:
        # What the throughput ratio tends to when the cores are the limit.
        whole = statistics.median(b / m for b, m in zip(bare_ms, machine_ms, strict=True))
        print(f"CPU per sign-in, bare/server + PostgreSQL + load generator: {whole:.2f}")
    print(
        f"cheap query p99 under load: {loaded.probe.p99_ms:.1f} ms (target < {P99_TARGET_MS:g} ms: "
        f"{'met' if loaded.probe.p99_ms < P99_TARGET_MS else 'NOT met'})"
    )


def _per_sign_in(
    seconds: Sequence[float | None], rounds: Sequence[tuple[BareRate, Loaded]]
) -> list[float]:
    """CPU milliseconds per sign-in of each round; none at all if a round could not tell."""
    if any(value is None for value in seconds):
        return []
    return [
        (value or 0.0) / alone.sign_ins * 1000
        for value, (_, alone) in zip(seconds, rounds, strict=True)
    ]


def _each(values: Iterable[float], spec: str = ",.1f") -> str:
    return " ".join(format(value, spec) for value in values)


def _p50_p99(latencies: Sequence[float]) -> str:
    return f"{percentile(latencies, 0.5) * 1000:.1f} / {percentile(latencies, 0.99) * 1000:.1f}"


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return value


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each window")
    parser.add_argument("--concurrency", type=int, default=8, help="sign-in connections")
    parser.add_argument(
        "--rounds", type=_at_least_one, default=3, help="bare and gateway windows, alternated"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a few requests: checks that it runs and that both sides agree (figures mean nothing)",
    )
    parser.add_argument(
        "--new-browsers",
        action="store_true",
        help="send no device cookie back: every sign-in from a browser never seen (ACT-2 e-mail)",
    )
    arguments = parser.parse_args(argv)
    options = (
        dataclasses.replace(SMOKE, new_browsers=arguments.new_browsers)
        if arguments.smoke
        else Options(
            seconds=arguments.seconds,
            concurrency=arguments.concurrency,
            max_requests=None,
            new_browsers=arguments.new_browsers,
            rounds=arguments.rounds,
        )
    )
    asyncio.run(run(options))


if __name__ == "__main__":
    main()
