"""The `gardien` command: serve, migrate, demo, schema."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

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
    if args.command == "demo":
        from gardien.demo import load_demo

        print(asyncio.run(load_demo(settings)))
        return 0
    return _serve(settings, args.host, args.port, args.workers)


def _prepare_sqlite_dir(settings: Settings) -> None:
    if settings.database_url.startswith("sqlite://"):
        settings.var_dir.mkdir(parents=True, exist_ok=True)


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
        log_config=None,
        access_log=False,
        # The client address is decided once, by gardien.proxies from GARDIEN_TRUSTED_PROXIES;
        # uvicorn's own rule (which trusts 127.0.0.1 by default) would be a second one.
        proxy_headers=False,
        server_header=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
