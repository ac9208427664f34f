"""Benchmark: live security events fanned out to many WebSocket subscribers (EVT-1, EVT-3).

Run by hand from the repository root (needs PostgreSQL; Redis for the two-process runs):

    .venv/bin/python -m bench.fanout            # the table: 1k, 5k, 10k on one process;
                                                # 5k, 10k on two processes sharing Redis
    .venv/bin/python -m bench.fanout --subscribers 1000,5000 --processes 1 [--events 20]
    .venv/bin/python -m bench.fanout --smoke   # a few subscribers: does it run at all

It creates a throw-away database (GARDIEN_BENCH_DATABASE_URL, as bench/members_query.py),
migrates it, signs up one organisation's owner and adds a member, then for each number N of
subscribers and each layout (one gateway process; two processes sharing events through Redis,
GARDIEN_BENCH_REDIS_URL, default redis://127.0.0.1:6379/0):

1. serves `gardien serve` process(es) and opens N graphql-transport-ws connections from
   separate client processes (bench/_fanout_clients.py), spread evenly over the gateways, each
   subscribing to OrganisationSecurityEvents of the contract (one group of identical
   subscriptions: same document, variables and visibility);
2. reads the gateways' resident memory before and after the connections: memory per connection;
3. causes `--events` events (a member's role changed, through HTTP on the first gateway) and
   measures, per delivered frame, the time from the event's occurredAt (stamped when the
   gateway recorded it, before its commit) to its arrival at the client: p50, p99, max.

The clients share the machine's cores with the gateways, so the latencies include their cost;
they parse as little as they can (bench/_fanout_clients.py: a bare asyncio protocol per
connection, since a library client costs more per frame than the gateway). Each row notes the
machine's load average (1 minute) before and after it: the numbers mean little without it.

Measured on the 2-core machine when quiet, 20 events, 2026-11-26:

    subscribers  processes  delivered/expected  failed  p50 ms  p99 ms  max ms  KB/conn  load
           1000          1      20000/20000          0      17      48      51     37.0  1.8→1.8
           5000          1     100000/100000         0      41      91     115     35.8  1.8→1.8
          10000          1     200000/200000         0      74     203     256     35.7  1.8→1.8

One and two processes sharing Redis, in the same minutes, the machine quiet again (though `top`
showed the host taking CPU as steal time that day), 20 events:

    subscribers  processes  delivered/expected  failed  p50 ms  p99 ms  max ms  KB/conn  load
           5000          1     100000/100000         0      58     152     228     35.7  0.5→0.8
           5000          2     100000/100000         0      41     153     181     35.6  0.8→1.2
          10000          1     200000/200000         0      87     242     341     35.2  1.3→1.6
          10000          2     200000/200000         0      85     259     315     35.8  1.6→2.7

And with other work running (load 5-9), the same day:

    subscribers  processes  delivered/expected  failed  p50 ms  p99 ms  max ms  KB/conn  load
           1000          1      20000/20000          0      26      99     102     37.5  5.2→5.1
           5000          1     100000/100000         0      98     606     792     35.7  5.1→5.9
          10000          1     200000/200000         0     159    1159    1361     35.1  5.9→7.0
           5000          2     100000/100000         0     100     602     717     35.5  7.0→7.4
          10000          2     200000/200000         0     174    1096    1643     35.2  7.4→8.0

Other 10,000-subscriber runs on one process: p50 131 / p99 519 ms (load 5.1→6.1), 127 / 570
(5.5→5.6), 145 / 813 (9.1→8.5), 161 / 670 (7.3→8.1); on two, 239 / 1086 (6.0→7.3); 5,000 on
one: 120 / 506 (6.4→6.8). The same clients against the
gateway before the direct writes (an ASGI send per subscriber, a writer and a keepalive task per
connection), in the minute before the 570 ms run: p50 225 / p99 1337 ms, 39.3 KB per connection
(load 6.9→5.9). Measured with the previous websockets-library clients instead, 10,000
subscribers gave p99 1.9 s against the gateway before the direct writes (load 3.3→3.9) and 4.5 s
against the gateway after them (2.1→3.8): those clients, not the gateway, were the bottleneck.

Where the time goes: writing one event's frame to 5,000 sockets costs the gateway 50-60 ms of
CPU (about 11 µs a subscriber, mostly the kernel's loopback send, which also wakes the reader),
measured with time.process_time() around the group's loop; under this load that loop takes
2 to 8 times as long in wall time, and its last subscribers make the p99. Pings are sent only
to idle connections, spread over the interval: sent to 10,000 at once, they (and the pongs read
back) once held an event for 2.8 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench._load import percentile
from bench.members_query import (
    BASE_URL_VARIABLE,
    DEFAULT_BASE_URL,
    gardien_settings,
    progress,
    throwaway_database,
)
from gardien import db
from gardien.clock import SystemClock
from gardien.models.enums import Role
from gardien.models.organisations import Membership
from gardien.models.users import User
from gardien.resolvers import accounts
from gardien.resolvers.services import RequestMeta, Services
from gardien.schema.relay import encode_id
from gardien.security import Keyring, hash_password
from gardien.settings import load_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
REDIS_VARIABLE = "GARDIEN_BENCH_REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
HOST = "127.0.0.1"
OWNER_EMAIL = "owner@fanout.example"
OWNER_PASSWORD = "plum tree under bench snow"
SUBSCRIPTION = """
subscription OrganisationSecurityEvents($organisationId: ID!, $after: String) {
  organisationSecurityEvents(organisationId: $organisationId, after: $after) {
    cursor
    event { id type occurredAt ip country device actor { id email } subject { id email } }
  }
}"""
CHANGE_ROLE = """
mutation ChangeMemberRole($input: ChangeMemberRoleInput!) {
  changeMemberRole(input: $input) { membership { id role } errors { code message } }
}"""
SUBSCRIBERS_PER_CLIENT_PROCESS = 2500
EVENT_INTERVAL_SECONDS = 0.25


@dataclass
class Fixture:
    organisation_id: str
    membership_id: str
    token: str
    changes: list[str] = field(default_factory=list)  # the roles given so far, in order


@dataclass(frozen=True)
class Outcome:
    subscribers: int
    processes: int
    delivered: int
    expected: int
    failed: int
    latencies: list[float]
    bytes_per_connection: float
    setup_seconds: float
    load_before: float
    load_after: float


async def populate(settings_env: dict[str, str]) -> Fixture:
    settings = load_settings(settings_env)
    await db.migrate(settings.database_url)
    database = await db.open_database(settings.database_url)
    try:
        services = Services(
            settings=settings, clock=SystemClock(), keyring=Keyring(settings.secret_key)
        )
        meta = RequestMeta(device="gardien-bench")
        # Opened as a confirmed sign-up would be: the bench has no mailbox to confirm from.
        owner = await accounts.open_account(
            services,
            meta,
            email=OWNER_EMAIL,
            password_hash=await hash_password(OWNER_PASSWORD),
            display_name="Owner",
            language="fr",
        )
        now = services.clock.now()
        member = await User.create(
            email="member@fanout.example",
            password_hash=await hash_password("another plum tree under snow"),
            password_changed_at=now,
            display_name="Member",
            created_at=now,
        )
        membership = await Membership.create(
            organisation=owner.organisation, user=member, role=Role.COLLABORATOR, created_at=now
        )
        signed_in = await accounts.sign_in(
            services, meta, login=OWNER_EMAIL, password=OWNER_PASSWORD
        )
        assert signed_in.session is not None
        return Fixture(
            organisation_id=encode_id("Organisation", owner.organisation.id),
            membership_id=encode_id("Membership", membership.id),
            token=signed_in.session.token,
        )
    finally:
        await db.close_database(database)


class Gateway:
    """`gardien serve` on a free port, its output in a log file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        from bench._server import free_port

        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self._process: asyncio.subprocess.Process | None = None
        self._env = env

    @property
    def process(self) -> asyncio.subprocess.Process:
        assert self._process is not None, "start() first"
        return self._process

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gardien.cli",
            "serve",
            "--host",
            HOST,
            "--port",
            str(self.port),
            cwd=REPO_ROOT,
            env=self._env,
            stdout=self._log,
            stderr=asyncio.subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                try:
                    if (await client.get(f"{self.url}/readyz", timeout=1)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"gateway did not start:\n{self.log_path.read_text()[-2000:]}")

    def rss_bytes(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    async def stop(self) -> None:
        process = self.process
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()
        self._log.close()


async def scenario(
    settings_env: dict[str, str],
    fixture: Fixture,
    subscribers: int,
    processes: int,
    events: int,
    redis_url: str | None,
) -> Outcome:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GARDIEN_")}
    # Every subscriber is the same user here: their sockets are not to be bounded.
    env.update(
        settings_env,
        GARDIEN_JOBS="off",
        GARDIEN_WS_MAX_CONNECTIONS_PER_USER=str(subscribers),
    )
    if redis_url:
        env["GARDIEN_REDIS_URL"] = redis_url
    var_dir = Path(settings_env["GARDIEN_VAR_DIR"])
    gateways = [
        Gateway(env, var_dir / f"gateway-{subscribers}-{processes}-{i}.log")
        for i in range(processes)
    ]
    load_before = os.getloadavg()[0]
    for gateway in gateways:
        await gateway.start()
    clients: list[asyncio.subprocess.Process] = []
    try:
        rss_before = sum(g.rss_bytes() for g in gateways)
        started = time.monotonic()
        client_count = max(1, -(-subscribers // SUBSCRIBERS_PER_CLIENT_PROCESS))
        ws_urls = [g.url.replace("http://", "ws://") + "/graphql" for g in gateways]
        for index in range(client_count):
            count = subscribers // client_count + (1 if index < subscribers % client_count else 0)
            job = {
                # Each client process spreads its connections over every gateway.
                "urls": ws_urls[index % len(ws_urls) :] + ws_urls[: index % len(ws_urls)],
                "count": count,
                "authorization": f"Bearer {fixture.token}",
                "query": SUBSCRIPTION,
                "variables": {"organisationId": fixture.organisation_id},
                "events": events,
                "seconds": 120 + subscribers / 50,
            }
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench._fanout_clients",
                cwd=REPO_ROOT,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=1 << 26,  # the result line holds every latency measured
            )
            assert process.stdin is not None
            process.stdin.write(json.dumps(job).encode() + b"\n")
            await process.stdin.drain()
            clients.append(process)
        for process in clients:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 300 + subscribers / 20)
            if not line.startswith(b"ready"):
                raise RuntimeError(f"client failed: {line!r}")
        setup_seconds = time.monotonic() - started
        # Subscriptions join their group just after the subscribe message is read.
        await asyncio.sleep(1 + subscribers / 5000)
        rss_after = sum(g.rss_bytes() for g in gateways)
        progress(f"{subscribers} subscribers on {processes} process(es) in {setup_seconds:.1f} s")
        async with httpx.AsyncClient(timeout=300) as http:
            for _ in range(events):
                # Alternate, from whatever role the previous scenario left: a change to the
                # same role records no event.
                fixture.changes.append(
                    "EXTERNAL" if len(fixture.changes) % 2 == 0 else "COLLABORATOR"
                )
                role = fixture.changes[-1]
                response = await http.post(
                    f"{gateways[0].url}/graphql",
                    json={
                        "query": CHANGE_ROLE,
                        "variables": {
                            "input": {"membershipId": fixture.membership_id, "role": role}
                        },
                    },
                    headers={"authorization": f"Bearer {fixture.token}"},
                )
                errors = response.json()["data"]["changeMemberRole"]["errors"]
                if errors:
                    raise RuntimeError(f"changeMemberRole failed: {errors}")
                await asyncio.sleep(EVENT_INTERVAL_SECONDS)
        latencies: list[float] = []
        failed = 0
        for process in clients:
            assert process.stdout is not None
            result = json.loads(await asyncio.wait_for(process.stdout.readline(), 600))
            latencies.extend(result["latencies"])
            failed += result["failed"]
            if result["failures"]:
                progress(f"client failures: {result['failures']}")
            await process.wait()
        return Outcome(
            subscribers=subscribers,
            processes=processes,
            delivered=len(latencies),
            expected=subscribers * events,
            failed=failed,
            latencies=latencies,
            bytes_per_connection=(rss_after - rss_before) / subscribers,
            setup_seconds=setup_seconds,
            load_before=load_before,
            load_after=os.getloadavg()[0],
        )
    finally:
        for process in clients:
            if process.returncode is None:
                process.kill()
                await process.wait()
        for gateway in gateways:
            await gateway.stop()


def report(outcomes: Sequence[Outcome]) -> None:
    progress(f"{os.cpu_count()} cores; load average (1 min) before→after each row")
    print(
        "subscribers  processes  delivered/expected  failed  p50 ms  p99 ms  max ms  KB/conn"
        "  setup s  load"
    )
    for o in outcomes:
        values = o.latencies or [float("nan")]
        print(
            f"{o.subscribers:>11}  {o.processes:>9}  {o.delivered:>9}/{o.expected:<8}"
            f"  {o.failed:>6}  {percentile(values, 0.5) * 1000:>6.0f}"
            f"  {percentile(values, 0.99) * 1000:>6.0f}  {max(values) * 1000:>6.0f}"
            f"  {o.bytes_per_connection / 1024:>7.1f}"
            f"  {o.setup_seconds:>7.1f}  {o.load_before:.1f}→{o.load_after:.1f}"
        )


# The table: (subscribers, gateway processes).
TABLE = ((1000, 1), (5000, 1), (10000, 1), (5000, 2), (10000, 2))


async def run(runs: Sequence[tuple[int, int]], events: int) -> list[Outcome]:
    base_url = os.environ.get(BASE_URL_VARIABLE, DEFAULT_BASE_URL)
    redis_url = os.environ.get(REDIS_VARIABLE, DEFAULT_REDIS_URL)
    outcomes: list[Outcome] = []
    async with throwaway_database(base_url) as url, gardien_settings(url) as settings_env:
        fixture = await populate(settings_env)
        for count, processes in runs:
            outcomes.append(
                await scenario(
                    settings_env,
                    fixture,
                    count,
                    processes,
                    events,
                    redis_url if processes > 1 else None,
                )
            )
    return outcomes


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--subscribers", help="e.g. 1000,5000 (default: the table)")
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--processes", default="1,2", help="layouts, with --subscribers")
    parser.add_argument("--smoke", action="store_true", help="20 subscribers, 3 events")
    args = parser.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    layouts = [int(n) for n in args.processes.split(",")]
    runs: Sequence[tuple[int, int]]
    if args.smoke:
        runs = [(20, processes) for processes in layouts]
    elif args.subscribers:
        runs = [(int(n), p) for n in args.subscribers.split(",") for p in layouts]
    else:
        runs = TABLE
    events = 3 if args.smoke else args.events
    outcomes = asyncio.run(run(runs, events))
    report(outcomes)
    lost = sum(o.expected - o.delivered for o in outcomes)
    if lost:
        progress(f"{lost} frames were not delivered")
        sys.exit(1)
    progress("every subscriber received every event")


if __name__ == "__main__":
    main()
