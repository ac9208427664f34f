"""API-4: introspection can be turned off (it is off by default in production)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from gardien.app import create_app
from gardien.clock import ManualClock
from gardien.settings import Settings

pytestmark = pytest.mark.usefixtures("database")
INTROSPECTION = "{ __schema { queryType { name } } }"


@pytest_asyncio.fixture
async def closed_client(settings: Settings, clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        dataclasses.replace(settings, introspection=False), clock=clock, manage_database=False
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        yield client


async def test_api4_introspection_refused_when_turned_off(closed_client: httpx.AsyncClient) -> None:
    refused = await closed_client.post(
        "/graphql",
        json={"query": INTROSPECTION},
        headers={"accept": "application/graphql-response+json"},
    )
    typename = await closed_client.post("/graphql", json={"query": "{ __typename }"})
    ide = await closed_client.get("/graphql", headers={"accept": "text/html"})

    assert refused.status_code == 400
    assert "introspection" in refused.json()["errors"][0]["message"].lower()
    assert "data" not in refused.json()
    assert typename.json() == {"data": {"__typename": "Query"}}
    assert ide.status_code == 406  # no GraphiQL either (it needs introspection): HTML unavailable


async def test_api4_introspection_available_in_development(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": INTROSPECTION})

    assert response.json() == {"data": {"__schema": {"queryType": {"name": "Query"}}}}
