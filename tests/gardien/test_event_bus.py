"""The Redis event bus knows when delivery may have lost messages, and tells its listeners when
it is whole again, so that live subscriptions can catch up from the database (EVT-3)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from gardien.events import EventBus
from tests.redis_server import redis_server


async def _until(condition: Callable[[], bool], seconds: float = 10) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - the state belongs to the bus's own tasks
            await asyncio.sleep(0.02)


class Heard:
    def __init__(self, bus: EventBus) -> None:
        self.messages: list[dict[str, Any]] = []
        self.notices: list[str] = []
        bus.listen(self.messages.append)
        bus.on_resync(lambda: self.notices.append("resync"))

    def numbers(self) -> list[int]:
        return [m["n"] for m in self.messages]


async def test_evt3_redis_stopped_and_restarted_is_one_outage_then_one_resync(
    tmp_path: Path,
) -> None:
    with redis_server(tmp_path) as redis:
        bus = EventBus(redis.url)
        heard = Heard(bus)
        await bus.start()
        try:
            bus.publish({"n": 1})
            await _until(lambda: heard.numbers() == [1])

            redis.stop()
            bus.publish({"n": 2})  # refused by Redis: this process still hears it
            await _until(lambda: heard.numbers() == [1, 2])
            outage = (list(heard.notices), bus.in_outage)
            redis.start()
            await _until(lambda: "resync" in heard.notices)
            bus.publish({"n": 3})
            await _until(lambda: heard.numbers() == [1, 2, 3])
            await asyncio.sleep(0.2)
        finally:
            await bus.stop()

    assert outage == ([], True)
    assert heard.notices == ["resync"]
    assert (bus.in_outage, heard.numbers()) == (False, [1, 2, 3])


async def test_evt3_a_killed_subscription_is_an_outage_until_it_is_back(tmp_path: Path) -> None:
    with redis_server(tmp_path) as redis:
        bus = EventBus(redis.url)
        heard = Heard(bus)
        await bus.start()
        admin = Redis.from_url(redis.url)
        try:
            killed = await admin.client_kill_filter(_type="pubsub")
            # A resync follows an outage only: the subscription was lost, then it was back.
            await _until(lambda: heard.notices == ["resync"])
            bus.publish({"n": 1})
            await _until(lambda: heard.numbers() == [1])
        finally:
            await admin.aclose()
            await bus.stop()

    assert killed == 1
    assert not bus.in_outage


async def test_evt3_a_failed_publish_is_an_outage_until_publishing_works_again(
    tmp_path: Path,
) -> None:
    with redis_server(tmp_path) as redis:
        bus = EventBus(redis.url)
        heard = Heard(bus)
        await bus.start()
        admin = Redis.from_url(redis.url)
        try:
            bus.publish({"n": 0})  # the publishing connection opens on first use
            await _until(lambda: heard.numbers() == [0])
            # The publishing connection is cut; the subscription to the channel is not.
            killed = await admin.client_kill_filter(_type="normal", skipme=True)
            bus.publish({"n": 1})
            await _until(lambda: heard.numbers() == [0, 1])
            during = (list(heard.notices), bus.in_outage)
            bus.publish({"n": 2})
            await _until(lambda: heard.numbers() == [0, 1, 2] and "resync" in heard.notices)
        finally:
            await admin.aclose()
            await bus.stop()

    assert killed == 1
    assert during == ([], True)
    assert (heard.notices, bus.in_outage) == (["resync"], False)
