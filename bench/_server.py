"""Server of bench/members_query.py: the gateway plus a hand-written /bare/members endpoint.

Started by the benchmark (`served()` below) as `python -m bench._server --port N` from the
repository root, with the GARDIEN_* settings in its environment. One uvicorn process, one worker,
the options of `gardien serve`; both endpoints live in the same Starlette app, behind the same
middleware.

The bare endpoint answers the OrganisationMembers query of the benchmark by hand: the same session
checks as gardien/resolvers/sessions.py, the same membership check, then hand-written SQL through
its own asyncpg pool, and the same JSON (same Relay global IDs and cursors) as the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gardien.app import create_app
from gardien.cli import UVICORN_OPTIONS
from gardien.observability import configure_logging
from gardien.security import Keyring
from gardien.settings import Settings, load_settings

BARE_PATH = "/bare/members"
# The rules of gardien/resolvers/sessions.py and gardien/resolvers/pagination.py.
IDLE_TIMEOUT = timedelta(minutes=30)
LAST_SEEN_RESOLUTION = timedelta(minutes=1)
TOKEN_PURPOSE = "session"
MAX_TOKEN_LENGTH = 256
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
# Tortoise's asyncpg pool defaults (minsize 1, maxsize 5), so both endpoints get the same pool.
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 5

SESSION_SQL = """
SELECT id, user_id, expires_at, last_seen_at
FROM "session"
WHERE token_hash = $1 AND revoked_at IS NULL
"""

TOUCH_SESSION_SQL = 'UPDATE "session" SET last_seen_at = $1 WHERE id = $2'

# The caller's membership (the access check), the organisation, its policy and the member count.
ORGANISATION_SQL = """
SELECT o.name, o.support_plan, p.require_two_factor, p.updated_at,
       (SELECT count(*)
        FROM membership c
        WHERE c.organisation_id = o.id
          AND ($3::boolean IS NULL OR EXISTS (
                SELECT 1 FROM two_factor_method t
                WHERE t.user_id = c.user_id AND t.confirmed_at IS NOT NULL) = $3)
       ) AS total_count
FROM membership m
JOIN organisation o ON o.id = m.organisation_id
LEFT JOIN security_policy p ON p.organisation_id = o.id
WHERE m.user_id = $1 AND m.organisation_id = $2
"""

# One keyset page of members, oldest first, with user, 2FA flag and granted products.
MEMBERS_SQL = """
SELECT m.id, m.role, u.id AS user_id, u.email, u.display_name,
       EXISTS (SELECT 1 FROM two_factor_method t
               WHERE t.user_id = u.id AND t.confirmed_at IS NOT NULL) AS two_factor_enabled,
       g.product_ids, g.product_names
FROM membership m
JOIN user_account u ON u.id = m.user_id
LEFT JOIN LATERAL (
    SELECT array_agg(p.id ORDER BY p.id) AS product_ids,
           array_agg(p.name ORDER BY p.id) AS product_names
    FROM product_grant pg
    JOIN product p ON p.id = pg.product_id
    WHERE pg.membership_id = m.id
) g ON true
WHERE m.organisation_id = $1
  AND m.id > $2
  AND ($4::boolean IS NULL OR EXISTS (
        SELECT 1 FROM two_factor_method t
        WHERE t.user_id = m.user_id AND t.confirmed_at IS NOT NULL) = $4)
ORDER BY m.id
LIMIT $3
"""


class BadRequest(Exception):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unb64(value: str) -> str:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()


def global_id(type_name: str, pk: int) -> str:
    return _b64(f"{type_name}:{pk}")


def cursor_of(pk: int) -> str:
    return _b64(f"cursor:{pk}")


def _decoded_pk(value: object, prefix: str, code: str, message: str) -> int:
    if not isinstance(value, str):
        raise BadRequest(message, code)
    try:
        found, _, pk = _unb64(value).partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequest(message, code) from None
    if found != prefix or not pk.isdigit() or len(pk) > 18:
        raise BadRequest(message, code)
    return int(pk)


def _dumps(payload: Any) -> bytes:
    # The serialiser of gardien.graphql.http._dumps, so both sides pay the same for JSON.
    return orjson.dumps(payload, default=str)


def _error(
    message: str, code: str, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    body = {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]}
    return Response(_dumps(body), status, headers=headers, media_type="application/json")


def _unauthenticated() -> Response:
    return _error(
        "The session token is invalid or has expired; sign in again.",
        "UNAUTHENTICATED",
        401,
        {"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


class BareMembers:
    """OrganisationMembers by hand: three statements on one pooled connection."""

    def __init__(self, settings: Settings) -> None:
        self._keyring = Keyring(settings.secret_key)
        self._dsn = settings.database_url
        self._pool: Any = None

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self._dsn, min_size=POOL_MIN_SIZE, max_size=POOL_MAX_SIZE
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def handle(self, request: Request) -> Response:
        authorization = request.headers.get("authorization")
        if authorization is None:
            return _unauthenticated()
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
            return _unauthenticated()
        try:
            raw = orjson.loads(await request.body())
            if not isinstance(raw, dict):
                raise BadRequest("The request body must be a JSON object.", "BAD_REQUEST")
            variables = raw.get("variables") or {}
            if not isinstance(variables, dict):
                raise BadRequest("variables must be a JSON object.", "BAD_REQUEST")
            organisation_id = _decoded_pk(
                variables.get("id"), "Organisation", "NOT_FOUND", "No such organisation."
            )
            size = _page_size(variables.get("first"))
            after = variables.get("after")
            after_id = (
                0
                if after is None
                else _decoded_pk(after, "cursor", "INVALID_INPUT", "This cursor is not valid.")
            )
            two_factor = variables.get("twoFactorEnabled")
            if two_factor is not None and not isinstance(two_factor, bool):
                raise BadRequest("twoFactorEnabled must be a boolean.", "BAD_REQUEST")
        except ValueError:
            return _error("The body is not valid JSON.", "BAD_REQUEST")
        except BadRequest as error:
            return _error(error.message, error.code)

        digest = self._keyring.token_digest(token, TOKEN_PURPOSE)
        async with self._pool.acquire() as connection:
            session = await connection.fetchrow(SESSION_SQL, digest)
            now = datetime.now(UTC)
            if (
                session is None
                or session["expires_at"] <= now
                or session["last_seen_at"] + IDLE_TIMEOUT <= now
            ):
                return _unauthenticated()
            if now - session["last_seen_at"] >= LAST_SEEN_RESOLUTION:
                await connection.execute(TOUCH_SESSION_SQL, now, session["id"])
            organisation = await connection.fetchrow(
                ORGANISATION_SQL, session["user_id"], organisation_id, two_factor
            )
            if organisation is None:
                # Not a member: the organisation does not exist for the caller.
                return _error("No such organisation.", "NOT_FOUND")
            rows = await connection.fetch(
                MEMBERS_SQL, organisation_id, after_id, size + 1, two_factor
            )

        page = rows[:size]
        edges = [
            {
                "cursor": cursor_of(row["id"]),
                "node": {
                    "id": global_id("Membership", row["id"]),
                    "role": row["role"],
                    "productAccess": [
                        {"id": global_id("Product", pid), "name": name}
                        for pid, name in zip(
                            row["product_ids"] or (), row["product_names"] or (), strict=True
                        )
                    ],
                    "user": {
                        "id": global_id("User", row["user_id"]),
                        "email": row["email"],
                        "displayName": row["display_name"],
                        "twoFactorEnabled": row["two_factor_enabled"],
                    },
                },
            }
            for row in page
        ]
        updated_at = organisation["updated_at"]
        data = {
            "organisation": {
                "id": global_id("Organisation", organisation_id),
                "name": organisation["name"],
                "supportPlan": organisation["support_plan"],
                "securityPolicy": None
                if updated_at is None
                else {
                    "requireTwoFactor": organisation["require_two_factor"],
                    "updatedAt": updated_at.isoformat(),
                },
                "members": {
                    "totalCount": organisation["total_count"],
                    "pageInfo": {
                        "hasNextPage": len(rows) > size,
                        "endCursor": edges[-1]["cursor"] if edges else None,
                    },
                    "edges": edges,
                },
            }
        }
        return Response(_dumps({"data": data}), 200, media_type="application/json")


def _page_size(first: object) -> int:
    if first is None:
        return DEFAULT_PAGE_SIZE
    if isinstance(first, bool) or not isinstance(first, int) or not 0 <= first <= MAX_PAGE_SIZE:
        raise BadRequest(f"first must be between 0 and {MAX_PAGE_SIZE}.", "INVALID_INPUT")
    return first


def build_app(settings: Settings) -> Starlette:
    """The gateway app of `gardien serve`, with the bare route added to its own router."""
    app = create_app(settings)
    bare = BareMembers(settings)
    app.router.routes.append(Route(BARE_PATH, bare.handle, methods=["POST"]))
    gateway_lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(inner: Starlette) -> AsyncIterator[None]:
        async with gateway_lifespan(inner):
            await bare.open()
            try:
                yield
            finally:
                await bare.close()

    app.router.lifespan_context = lifespan
    return app


# --------------------------------------------------------------------------------------------
# The server process, as the benchmark starts, watches and stops it
# --------------------------------------------------------------------------------------------

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_SECONDS = 60.0


class ServerProcess:
    """A running `python -m bench._server` on HOST:port, its output in a log file."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.log_path = log_path

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the server process (Linux /proc), or None elsewhere."""
        return process_cpu_seconds(self.process.pid)

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"the bench server exited:\n{self.log_tail()}")

    async def wait_until_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        async with httpx.AsyncClient(base_url=self.base_url) as client:
            while time.monotonic() < deadline:
                self.check_alive()
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"the bench server did not become ready:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def process_cpu_seconds(pid: int, name_prefix: str = "") -> float | None:
    """User + system CPU time of a process of this machine (Linux /proc, all its threads); None
    elsewhere, or when the process is gone or its name does not start with `name_prefix`."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            name, fields = stat.read().split(" (", 1)[1].rsplit(")", 1)
    except (OSError, IndexError, ValueError):
        return None
    if not name.startswith(name_prefix):
        return None
    values = fields.split()
    return (int(values[11]) + int(values[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def start_server(settings_env: dict[str, str], log_path: Path) -> ServerProcess:
    # Only the settings of the gateway: load_settings() refuses unknown GARDIEN_* variables
    # (GARDIEN_BENCH_DATABASE_URL among them).
    env = {name: value for name, value in os.environ.items() if not name.startswith("GARDIEN_")}
    env.update(settings_env)
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench._server", "--host", HOST, "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return ServerProcess(process, port, log_path)


@contextlib.asynccontextmanager
async def served(settings_env: dict[str, str], log_path: Path) -> AsyncIterator[ServerProcess]:
    """Start the server with these GARDIEN_* settings, wait until it is ready; stop it on exit."""
    server = start_server(settings_env, log_path)
    try:
        await server.wait_until_ready()
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------------------------
# Entry point of the server process
# --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description="Gateway + bare endpoint for the benchmark.")
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    settings = load_settings()
    configure_logging(settings.log_level)
    uvicorn.run(
        build_app(settings),
        host=args.host,
        port=args.port,
        workers=1,
        **UVICORN_OPTIONS,
    )


if __name__ == "__main__":
    main()
