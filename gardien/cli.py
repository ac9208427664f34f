"""The `gardien` command: serve, migrate, demo, schema, workers, outbox, jobs, tld, support."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Final

from gardien.settings import Settings, SettingsError, load_settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gardien", description="Account & organisation gateway.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="Serve the gateway over HTTP.")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    commands.add_parser("migrate", help="Apply pending database migrations.")
    commands.add_parser("demo", help="Load the demo organisation (idempotent).")
    commands.add_parser("schema", help="Print the GraphQL SDL.")
    worker = commands.add_parser(
        "worker",
        help="Deliver the outbox: e-mail over GARDIEN_SMTP_URL, SMS to GARDIEN_SMS_WEBHOOK_URL.",
    )
    worker.add_argument("--once", action="store_true", help="Deliver what is due now, then stop.")
    webhook_worker = commands.add_parser(
        "webhook-worker", help="Deliver the organisations' webhooks (EVT-5)."
    )
    webhook_worker.add_argument(
        "--once", action="store_true", help="Deliver what is due now, then stop."
    )
    outbox = commands.add_parser("outbox", help="List queued e-mail (with links) and SMS.")
    outbox.add_argument("--all", action="store_true", help="Include sent and dead messages.")
    outbox.add_argument("--limit", type=int, default=50)
    outbox.add_argument("--show", type=int, metavar="ID", help="Print one message's text.")
    _add_jobs_and_tld_commands(commands)
    _add_support_agent_commands(commands)
    args = parser.parse_args(argv)

    if args.command == "schema":
        from gardien.schema import schema

        print(schema.as_str())
        return 0
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"gardien: {error}", file=sys.stderr)
        return 2
    if args.command == "migrate":
        _prepare_sqlite_dir(settings)
        from gardien.db import migrate

        asyncio.run(migrate(settings.database_url))
        print("gardien: database is up to date")
        return 0
    if args.command in ("jobs", "tld"):
        return _jobs_or_tld(settings, args)
    if args.command == "support-agent":
        return _support_agent(settings, args)
    if args.command == "demo":
        from gardien.demo import load_demo

        print(asyncio.run(load_demo(settings)))
        return 0
    if args.command == "worker":
        return _worker(settings, args.once)
    if args.command == "webhook-worker":
        return _webhook_worker(settings, args.once)
    if args.command == "outbox":
        return _outbox(settings, args.all, args.limit, args.show)
    return _serve(settings, args.host, args.port, args.workers)


def _add_jobs_and_tld_commands(commands: Any) -> None:
    jobs = commands.add_parser("jobs", help="Time-driven work: the domain lifecycle.")
    jobs_commands = jobs.add_subparsers(dest="jobs_command", required=True)
    jobs_commands.add_parser("run-due", help="Run the jobs due now (safe beside other runners).")
    tld = commands.add_parser("tld", help="The TLD table: redemption periods and restore fees.")
    tld_commands = tld.add_subparsers(dest="tld_command", required=True)
    tld_commands.add_parser("list", help="Show every TLD with where its values come from.")
    tld_set = tld_commands.add_parser("set", help="Create or change one TLD.")
    tld_set.add_argument("tld")
    tld_set.add_argument("--redemption-days", type=int)
    tld_set.add_argument("--restore-fee", type=_amount)
    tld_set.add_argument("--currency")
    tld_set.add_argument(
        "--source",
        required=True,
        help='where the values come from, e.g. "Redemption: registry rule …; fee: price list"',
    )


def _add_support_agent_commands(commands: Any) -> None:
    agent = commands.add_parser(
        "support-agent", help="Platform staff who may act through the support flows (BLK-3)."
    )
    agent_commands = agent.add_subparsers(dest="agent_command", required=True)
    add = agent_commands.add_parser("add", help="Make an existing account a support agent.")
    add.add_argument("email")
    remove = agent_commands.add_parser("remove", help="Withdraw the support agent flag.")
    remove.add_argument("email")
    agent_commands.add_parser("list", help="List the support agents.")


def _support_agent(settings: Settings, args: argparse.Namespace) -> int:
    """Support agents are granted here only, never through the public API."""
    from gardien import db
    from gardien.clock import SystemClock
    from gardien.resolvers import support
    from gardien.resolvers.errors import DomainError
    from gardien.resolvers.services import Services
    from gardien.security import Keyring

    async def run() -> str:
        database = await db.open_database(settings.database_url)
        try:
            if args.agent_command == "list":
                return "\n".join(u.email or f"user {u.id}" for u in await support.support_agents())
            services = Services(
                settings=settings, clock=SystemClock(), keyring=Keyring(settings.secret_key)
            )
            granted = args.agent_command == "add"
            user = await support.set_support_agent(services, args.email, agent=granted)
            return f"{user.email}: {'support agent' if granted else 'no longer a support agent'}"
        finally:
            await db.close_database(database)

    try:
        print(asyncio.run(run()))
    except DomainError as error:
        print(f"gardien: {error.message}", file=sys.stderr)
        return 2
    return 0


def _amount(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount such as 120.00") from None


def _jobs_or_tld(settings: Settings, args: argparse.Namespace) -> int:
    from gardien import db
    from gardien.resolvers.errors import DomainError

    async def run() -> str:
        database = await db.open_database(settings.database_url)
        try:
            if args.command == "jobs":
                return await _run_due_jobs(settings)
            return await _tld(args)
        finally:
            await db.close_database(database)

    try:
        print(asyncio.run(run()))
    except DomainError as error:
        print(f"gardien: {error.message}", file=sys.stderr)
        return 2
    return 0


async def _run_due_jobs(settings: Settings) -> str:
    from dataclasses import asdict

    from gardien.clock import SystemClock
    from gardien.jobs import run_due
    from gardien.resolvers.services import Services
    from gardien.security import Keyring

    services = Services(
        settings=settings, clock=SystemClock(), keyring=Keyring(settings.secret_key)
    )
    report = await run_due(services)
    return " ".join(f"{name}={count}" for name, count in asdict(report).items())


async def _tld(args: argparse.Namespace) -> str:
    from gardien.resolvers import tlds

    if args.tld_command == "set":
        changed = await tlds.set_tld_policy(
            args.tld,
            source=args.source,
            redemption_days=args.redemption_days,
            restore_fee=args.restore_fee,
            currency=args.currency,
        )
        policies = [changed]
    else:
        policies = await tlds.tld_policies()
    return "\n".join(
        f"{p.tld:<8} {p.redemption_days:>3} days  {p.restore_fee:>8} {p.currency}  {p.source}"
        for p in policies
    )


def _prepare_sqlite_dir(settings: Settings) -> None:
    if settings.database_url.startswith("sqlite://"):
        settings.var_dir.mkdir(parents=True, exist_ok=True)


def _worker(settings: Settings, once: bool) -> int:
    from gardien.mail.commands import run_worker
    from gardien.mail.smtp import SmtpConfigurationError
    from gardien.observability import configure_logging

    configure_logging(settings.log_level)
    try:
        print(asyncio.run(run_worker(settings, once=once)))
    except SmtpConfigurationError as error:
        print(
            f"gardien: cannot deliver e-mail: {error}; queued messages stay in the outbox "
            "(see `gardien outbox`)",
            file=sys.stderr,
        )
        return 2
    return 0


def _webhook_worker(settings: Settings, once: bool) -> int:
    from gardien.observability import configure_logging

    configure_logging(settings.log_level)
    print(asyncio.run(_run_webhook_worker(settings, once)))
    return 0


async def _run_webhook_worker(settings: Settings, once: bool) -> str:
    """Deliver until SIGINT/SIGTERM (or, with once, until nothing is due); returns a summary."""
    import signal

    from gardien import db
    from gardien.clock import SystemClock
    from gardien.resolvers.services import Services
    from gardien.resolvers.webhook_delivery import worker_from_services
    from gardien.security import Keyring

    services = Services(
        settings=settings, clock=SystemClock(), keyring=Keyring(settings.secret_key)
    )
    worker = worker_from_services(services)
    database = await db.open_database(settings.database_url)
    try:
        if once:
            return f"webhooks: {await worker.drain()} delivery(ies) attempted"
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await worker.run(stop)
        return "webhook worker stopped"
    finally:
        await db.close_database(database)


def _outbox(settings: Settings, show_all: bool, limit: int, show: int | None) -> int:
    from gardien.mail.commands import list_outbox, show_message

    if show is None:
        print(asyncio.run(list_outbox(settings, show_all=show_all, limit=limit)))
        return 0
    text = asyncio.run(show_message(settings, show))
    if text is None:
        print(f"gardien: no e-mail #{show} in the outbox", file=sys.stderr)
        return 1
    print(text)
    return 0


# How `gardien serve` runs uvicorn, apart from the app, address and workers (the benchmarks serve
# the gateway with the same options).
UVICORN_OPTIONS: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "log_config": None,
        "access_log": False,
        # The client address is decided once, by gardien.proxies from GARDIEN_TRUSTED_PROXIES;
        # uvicorn's own rule (which trusts 127.0.0.1 by default) would be a second one.
        "proxy_headers": False,
        "server_header": False,
        # EVT-1: the websockets implementation (C-accelerated framing) rather than wsproto, and
        # no per-message compression: fan-out sends the same frame to thousands of clients, and
        # deflate would cost CPU and a compression context (~100 KB) per connection.
        "ws": "websockets-sansio",
        "ws_per_message_deflate": False,
        "ws_max_size": 65_536,
        # One keepalive, not two: the protocol's ping (graphql/ws.py), sent to every connection
        # by one task, keeps idle sockets open through proxies; uvicorn's WebSocket-level ping
        # would be a second timer and frame per connection.
        "ws_ping_interval": None,
    }
)


def _serve(settings: Settings, host: str, port: int, workers: int) -> int:
    import uvicorn

    from gardien.observability import configure_logging

    configure_logging(settings.log_level)
    uvicorn.run(
        "gardien.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        **UVICORN_OPTIONS,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
