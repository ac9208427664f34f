"""OPS-2/OPS-5: readiness reports every configured dependency, Redis included."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from gardien.app import create_app
from gardien.clock import ManualClock
from gardien.settings import Settings

REDIS_URL = os.environ.get("GARDIEN_TEST_REDIS_URL")
needs_redis = pytest.mark.skipif(
    not REDIS_URL,
    reason="Redis suite needs GARDIEN_TEST_REDIS_URL (set by .ci/run; CI fails without)",
)

pytestmark = pytest.mark.usefixtures("database")


@pytest_asyncio.fixture
async def ready_client(
    request: pytest.FixtureRequest, settings: Settings, clock: ManualClock
) -> AsyncIterator[httpx.AsyncClient]:
    configured = dataclasses.replace(settings, redis_url=request.param)
    app = create_app(configured, clock=clock, manage_database=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client
    if app.state.redis is not None:
        await app.state.redis.aclose()


@pytest.mark.parametrize("ready_client", [None], indirect=True)
async def test_ops5_ready_without_redis_checks_the_database_only(
    ready_client: httpx.AsyncClient,
) -> None:
    response = await ready_client.get("/readyz")

    assert (response.status_code, response.json()) == (200, {"status": "ok", "database": "ok"})


@needs_redis
@pytest.mark.parametrize("ready_client", [REDIS_URL], indirect=True)
async def test_ops2_ready_checks_the_configured_redis(ready_client: httpx.AsyncClient) -> None:
    response = await ready_client.get("/readyz")

    assert (response.status_code, response.json()) == (
        200,
        {"status": "ok", "database": "ok", "redis": "ok"},
    )


@pytest.mark.parametrize("ready_client", ["redis://127.0.0.1:1/0"], indirect=True)
async def test_ops5_unreachable_redis_makes_the_gateway_unready(
    ready_client: httpx.AsyncClient,
) -> None:
    response = await ready_client.get("/readyz")

    assert (response.status_code, response.json()) == (
        503,
        {"status": "unavailable", "database": "ok", "redis": "unreachable"},
    )
