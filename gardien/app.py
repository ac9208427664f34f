"""Application assembly: routes, middleware, lifespan, and the per-request GraphQL context."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from gardien import db, devices, geo, jobs, redis_client
from gardien.clock import Clock, SystemClock
from gardien.events import EventBus
from gardien.graphql import GraphQLEndpoint, GraphQLEngine, Limits, RequestError
from gardien.graphql.frames import DirectFramesMiddleware
from gardien.graphql.ws import GraphQLWebSocket, SubscriptionHub, WebSocketLimits
from gardien.observability import Metrics, RequestIdMiddleware
from gardien.proxies import TrustedProxies, TrustedProxyMiddleware
from gardien.resolvers import push_approvals, sessions, tokens
from gardien.resolvers.authz import Actor
from gardien.resolvers.errors import ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.schema import schema
from gardien.schema.context import Context
from gardien.security import DEVICE_COOKIE_LIFETIME, Keyring, common_passwords
from gardien.settings import Settings

logger = logging.getLogger("gardien.app")
READINESS_TIMEOUT_SECONDS = 2.0
# MFA-4: `Authorization: Device <credential>`, the approval app's own scheme.
DEVICE_SCHEME = "device"
WORKER_STOP_SECONDS = 10.0


def session_cookie_name(settings: Settings) -> str:
    # The __Host- prefix pins the cookie to this host over HTTPS; plain HTTP cannot carry it.
    return "__Host-gardien_session" if settings.secure_cookies else "gardien_session"


def device_cookie_name(settings: Settings) -> str:
    return "__Host-gardien_device" if settings.secure_cookies else "gardien_device"


def _scheme_and_secret(authorization: str) -> tuple[str, str]:
    """An Authorization value split once: its scheme, lower-cased, and its secret."""
    scheme, _, secret = authorization.partition(" ")
    return scheme.lower(), secret.strip()


def create_app(
    settings: Settings, *, clock: Clock | None = None, manage_database: bool = True
) -> Starlette:
    """The gateway. With manage_database=False the caller opens and closes the database."""
    services = Services(
        settings=settings,
        clock=clock or SystemClock(),
        keyring=Keyring(settings.secret_key),
        events=EventBus(settings.redis_url),
    )
    metrics = Metrics()
    cookie_name = session_cookie_name(settings)
    device_cookie = device_cookie_name(settings)
    common_passwords()  # read the shipped list now, not on the event loop of a first sign-up

    def client_meta(connection: HTTPConnection) -> RequestMeta:
        """ACT-1: where a request or a WebSocket comes from, described the same way for both."""
        # The client's address as the trusted-proxy rule decided (proxies.py).
        ip = connection.client.host if connection.client else None
        device = devices.describe(connection.headers.get("user-agent"))
        return RequestMeta(
            ip=ip,
            country=geo.country_of(ip),
            device=device.label if device else None,
            device_family=device.family if device else None,
            request_id=connection.scope.get("state", {}).get("request_id"),
        )

    async def build_context(request: Request) -> Context:
        meta = client_meta(request)
        actor = await _actor(request, meta)
        if actor.token is not None:
            meta = replace(meta, via_token=tokens.token_use(actor.token))
        return Context(
            services=services,
            actor=actor,
            meta=meta,
            device_cookie=request.cookies.get(device_cookie),
        )

    async def authorization_actor(authorization: str, meta: RequestMeta) -> Actor | None:
        """The one reading of an Authorization value, from an HTTP header or a connection_init
        payload alike: `Bearer` carries a session or an integrator token, `Device` an approval
        app's device credential (MFA-4; the operation gate decides what that opens). None when
        the scheme is unknown or the secret opens nothing."""
        return await _credential_actor(*_scheme_and_secret(authorization), meta)

    async def _credential_actor(scheme: str, secret: str, meta: RequestMeta) -> Actor | None:
        if scheme == DEVICE_SCHEME:
            return await push_approvals.authenticate_device(services, secret)
        if scheme != "bearer":
            return None
        if tokens.is_integrator_token(secret):
            # API-6: an integrator token; unknown, expired, revoked or its owner blocked.
            return await tokens.authenticate(services, meta, secret)
        return await sessions.authenticate(services, secret)

    async def _actor(request: Request, meta: RequestMeta) -> Actor:
        authorization = request.headers.get("authorization")
        if authorization is not None:
            scheme, secret = _scheme_and_secret(authorization)
            actor = await _credential_actor(scheme, secret, meta)
            if actor is None:
                if scheme == DEVICE_SCHEME:
                    message = "The device credential is invalid or was removed."
                    challenge = 'Device error="invalid_token"'
                elif tokens.is_integrator_token(secret):
                    message = "The access token is invalid, expired or revoked."
                    challenge = 'Bearer error="invalid_token"'
                else:
                    message = "The session token is invalid or has expired; sign in again."
                    challenge = 'Bearer error="invalid_token"'
                raise RequestError(
                    message,
                    401,
                    {"WWW-Authenticate": challenge},
                    code=ErrorCode.UNAUTHENTICATED,
                )
            return actor
        cookie = request.cookies.get(cookie_name)
        if cookie:
            # A stale cookie is not an error: the browser simply is no longer signed in.
            return await sessions.authenticate(services, cookie) or Actor()
        return Actor()

    def finish_response(context: Any, response: Response) -> None:
        if context.new_device_cookie is not None:
            # OWASP device cookies: long-lived, so a returning browser keeps its own budget.
            response.set_cookie(
                device_cookie,
                context.new_device_cookie,
                max_age=int(DEVICE_COOKIE_LIFETIME.total_seconds()),
                path="/",
                secure=settings.secure_cookies,
                httponly=True,
                samesite="strict",
            )
        instruction = context.session_cookie
        if instruction is None:
            return
        if instruction.token is None:
            response.delete_cookie(
                cookie_name,
                path="/",
                secure=settings.secure_cookies,
                httponly=True,
                samesite="strict",
            )
            return
        response.set_cookie(
            cookie_name,
            instruction.token,
            # MFA-8: without "remember this browser" the cookie ends with the browser.
            max_age=int(sessions.ABSOLUTE_LIFETIME.total_seconds())
            if instruction.persistent
            else None,
            path="/",
            secure=settings.secure_cookies,
            httponly=True,
            samesite="strict",
        )

    engine = GraphQLEngine(
        schema,
        metrics,
        limits=Limits(
            max_depth=settings.max_depth,
            max_aliases=settings.max_aliases,
            max_root_fields=settings.max_root_fields,
            max_directives=settings.max_directives,
            max_tokens=settings.max_tokens,
            max_cost=settings.max_cost,
        ),
        introspection=settings.introspection,
    )
    graphql = GraphQLEndpoint(
        engine,
        build_context,
        graphiql=settings.introspection,  # GraphiQL is of no use without introspection
        finish_response=finish_response,
        max_body_bytes=settings.max_body_bytes,
    )

    async def websocket_actor(websocket: WebSocket, payload: dict[str, Any]) -> Actor | None:
        """EVT-1: the authorization of connection_init (a bearer token, or an approval app's
        device credential, MFA-4), else the session cookie from an allowed origin (a page of
        another site must not ride on the browser's cookie)."""
        authorization = payload.get("authorization")
        if authorization is not None:
            if not isinstance(authorization, str):
                return None
            client = websocket.client.host if websocket.client else None
            return await authorization_actor(authorization, RequestMeta(ip=client))
        cookie = websocket.cookies.get(cookie_name)
        if not cookie or websocket.headers.get("origin") not in settings.allowed_origins:
            return None
        return await sessions.authenticate(services, cookie)

    hub = SubscriptionHub(
        engine, services.events, lambda actor, meta: Context(services, actor, meta)
    )
    graphql_ws = GraphQLWebSocket(
        engine,
        hub,
        websocket_actor,
        client_meta,
        limits=WebSocketLimits(max_connections_per_user=settings.ws_max_connections_per_user),
    )

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    redis = redis_client.connect(settings.redis_url) if settings.redis_url else None

    async def readyz(_: Request) -> Response:
        """Ready when every configured dependency answers within its timeout."""
        checks: dict[str, Callable[[], Awaitable[None]]] = {"database": db.ping}
        if redis is not None:
            checks["redis"] = functools.partial(redis_client.ping, redis)
        body: dict[str, str] = {"status": "ok"}
        for name, check in checks.items():
            try:
                await asyncio.wait_for(check(), READINESS_TIMEOUT_SECONDS)
                body[name] = "ok"
            except Exception:
                logger.warning("readiness: %s unreachable", name, exc_info=True)
                body[name] = "unreachable"
                body["status"] = "unavailable"
        return JSONResponse(body, 200 if body["status"] == "ok" else 503)

    async def metrics_endpoint(request: Request) -> Response:
        token = settings.metrics_token
        if token is None:
            if settings.env == "production":
                # No token configured: in production the endpoint does not exist.
                return PlainTextResponse("Not Found", 404)
        elif not _bearer_matches(request.headers.get("authorization"), token):
            return PlainTextResponse(
                "Send the metrics token as a bearer token.",
                401,
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        database = await db.open_database(settings.database_url) if manage_database else None
        await services.events.start()
        hub.start()
        # OPS-6: with SMTP configured, each serving process also delivers the outbox, unless
        # GARDIEN_OUTBOX_WORKER=off leaves that to dedicated `gardien worker` processes.
        stop_worker = asyncio.Event()
        worker_task = None
        if settings.smtp_url and settings.outbox_worker:
            from gardien.mail.worker import worker_from_settings

            worker = worker_from_settings(settings, services.clock)
            worker_task = asyncio.create_task(worker.run(stop_worker), name="outbox-worker")
        # EVT-5: webhook deliveries go through the outbox too, on the same switch (no SMTP needed).
        webhook_task = None
        if settings.outbox_worker:
            from gardien.resolvers.webhook_delivery import worker_from_services

            webhook_worker = worker_from_services(services)
            webhook_task = asyncio.create_task(
                webhook_worker.run(stop_worker), name="webhook-worker"
            )
        # MFA-3: SMS leave through the outbox too, when a gateway is configured.
        sms_task = None
        if settings.sms_webhook_url and settings.outbox_worker:
            from gardien.sms.worker import worker_from_settings as sms_worker_from_settings

            sms_worker = sms_worker_from_settings(settings, services.clock)
            sms_task = asyncio.create_task(sms_worker.run(stop_worker), name="sms-worker")
        # DOM-1, DOM-3: the domain lifecycle runs in every replica; the jobs are safe to overlap.
        job_runner = (
            asyncio.create_task(
                jobs.run_periodically(services, settings.jobs_interval_seconds), name="job-runner"
            )
            if settings.jobs
            else None
        )
        if manage_database:
            # A serving process (it owns its database; tests share one heap across many apps):
            # what start-up built (the schema, models, templates, modules) lives as long as the
            # process. Collected once and frozen, it is left out of every later full collection,
            # which would otherwise walk all of it again each time (measured: about 4 % of a
            # sign-in's event-loop time).
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            await hub.stop()
            await services.events.stop()
            if job_runner is not None:
                job_runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await job_runner
            stop_worker.set()
            for task in (worker_task, webhook_task, sms_task):
                if task is not None:
                    # A send cut short here stays claimed until its lease ends, then is retried.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(task, WORKER_STOP_SECONDS)
            if redis is not None:
                await redis.aclose()
            if database is not None:
                await db.close_database(database)
            if manage_database:
                gc.unfreeze()  # what it froze is garbage now, or soon

    app = Starlette(
        routes=[
            Route(
                "/graphql",
                graphql.handle,
                methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            ),
            WebSocketRoute("/graphql", graphql_ws.handle),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
        ],
        middleware=[
            # Before any wrapper of `send`: it finds the socket of the server (frames.py).
            Middleware(DirectFramesMiddleware),
            # Next, so every later consumer sees the one client address (see proxies.py).
            Middleware(TrustedProxyMiddleware, trusted=TrustedProxies(settings.trusted_proxies)),
            Middleware(RequestIdMiddleware, metrics=metrics),
        ],
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.redis = redis
    app.state.metrics = metrics
    app.state.graphql_engine = engine
    app.state.graphql_ws = graphql_ws
    return app


def _bearer_matches(authorization: str | None, token: str) -> bool:
    scheme, _, presented = (authorization or "").partition(" ")
    # Compared in constant time, so the token cannot be guessed a character at a time.
    return scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode(), token.encode()
    )


def app_from_environment() -> Starlette:
    """Factory for uvicorn workers: each process reads and validates the settings itself."""
    from gardien.observability import configure_logging
    from gardien.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
