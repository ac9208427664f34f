"""Live events survive a Redis outage: each subscription catches up from the database (EVT-3)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from redis import Redis

from tests.e2e.conftest import ServedGateway, fresh_gateway_env, start_gateway
from tests.e2e.test_contract import _organisation_id, _sign_in
from tests.e2e.test_security_events import (
    FILTERED,
    ORGANISATION_EVENTS,
    _change_role,
    _fail_sign_in,
    _membership_ids,
    _next_event,
    _until_error,
)
from tests.e2e.wsclient import GraphQLWebSocketClient
from tests.redis_server import RedisServer, redis_server


@pytest.fixture(scope="module")
def outage_setup(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RedisServer, ServedGateway, ServedGateway]]:
    """Two gateway processes on one database, sharing events through a Redis the test controls."""
    with redis_server(tmp_path_factory.mktemp("redis")) as redis:
        env = fresh_gateway_env(tmp_path_factory.mktemp("outage"))
        env["GARDIEN_REDIS_URL"] = redis.url
        with start_gateway(env) as first, start_gateway(env, prepare=False) as second:
            yield redis, first, second


def _emails(received: list[dict[str, Any]]) -> list[str]:
    return [r["organisationSecurityEvents"]["event"]["subject"]["email"] for r in received]


def _cursors(received: list[dict[str, Any]]) -> list[str]:
    return [r["organisationSecurityEvents"]["cursor"] for r in received]


async def test_evt3_events_published_while_redis_is_down_reach_live_subscribers_once_in_order(
    outage_setup: tuple[RedisServer, ServedGateway, ServedGateway],
) -> None:
    redis, first, second = outage_setup
    legal = _sign_in(second, "anna.legal@demo.example")
    variables = {"organisationId": _organisation_id(second, legal), "types": ["sign_in.failed"]}
    client = await GraphQLWebSocketClient.initialised(second.url, legal)
    await client.subscribe("s", FILTERED, variables)
    await asyncio.sleep(0.3)
    _fail_sign_in(first, "tom.extern@demo.example")
    before = await _next_event(client, "s")

    redis.stop()
    # Caused on the other process (never published) and on this one (published here only).
    _fail_sign_in(first, "lea.collab@demo.example")
    _fail_sign_in(second, "marc.admin@demo.example")
    _fail_sign_in(first, "tom.extern@demo.example")
    during = await client.quiet_for(1.0)
    redis.start()
    caught_up = [await _next_event(client, "s") for _ in range(3)]
    _fail_sign_in(first, "lea.collab@demo.example")
    live = await _next_event(client, "s")
    rest = await client.quiet_for(0.5)
    await client.close()

    # Held back while events may be missing, so none jumps ahead of one that was lost.
    assert during == []
    assert _emails(caught_up) == [
        "lea.collab@demo.example",
        "marc.admin@demo.example",
        "tom.extern@demo.example",
    ]
    assert _emails([live]) == ["lea.collab@demo.example"]
    cursors = _cursors([before, *caught_up, live])
    assert len(set(cursors)) == len(cursors) == 5
    assert rest == []


async def test_evt3_a_dropped_redis_subscription_replays_what_it_missed_once(
    outage_setup: tuple[RedisServer, ServedGateway, ServedGateway],
) -> None:
    redis, first, second = outage_setup
    legal = _sign_in(second, "anna.legal@demo.example")
    variables = {"organisationId": _organisation_id(second, legal), "types": ["sign_in.failed"]}
    client = await GraphQLWebSocketClient.initialised(second.url, legal)
    await client.subscribe("s", FILTERED, variables)
    await asyncio.sleep(0.3)
    admin = Redis(port=redis.port)

    # Every gateway's subscription to the channel is cut; they reconnect on their own.
    killed = admin.client_kill_filter(_type="pubsub")
    _fail_sign_in(first, "marc.admin@demo.example")
    _fail_sign_in(first, "lea.collab@demo.example")
    received = [await _next_event(client, "s") for _ in range(2)]
    rest = await client.quiet_for(1.0)
    _fail_sign_in(second, "tom.extern@demo.example")
    live = await _next_event(client, "s")
    await client.close()
    admin.close()

    assert killed == 2
    assert _emails(received) == ["marc.admin@demo.example", "lea.collab@demo.example"]
    assert rest == []
    assert _emails([live]) == ["tom.extern@demo.example"]
    assert "Redis subscription lost" in second.log_path.read_text()


async def test_evt3_evt4_a_demotion_announced_while_redis_was_down_still_cuts_the_subscriber(
    outage_setup: tuple[RedisServer, ServedGateway, ServedGateway],
) -> None:
    redis, first, second = outage_setup
    legal = _sign_in(first, "anna.legal@demo.example")
    admin = _sign_in(second, "marc.admin@demo.example")
    organisation_id = _organisation_id(first, legal)
    membership = _membership_ids(first, legal)["marc.admin@demo.example"]
    client = await GraphQLWebSocketClient.initialised(second.url, admin)
    await client.subscribe("s", ORGANISATION_EVENTS, {"organisationId": organisation_id})
    await asyncio.sleep(0.3)

    redis.stop()
    _change_role(first, legal, membership, "COLLABORATOR")  # its access notice is lost
    redis.start()
    started = time.monotonic()
    messages = await _until_error(client)
    cut_after = time.monotonic() - started
    await client.close()
    _change_role(first, legal, membership, "ADMINISTRATOR")

    assert [e["extensions"]["code"] for e in messages[-1]["payload"]] == ["FORBIDDEN"]
    # Nothing it may no longer see was replayed to it first.
    assert all(m["type"] == "error" for m in messages), messages
    assert cut_after < 3.0
