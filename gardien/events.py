"""The live-event bus (EVT-3): in-process when run alone, Redis pub/sub across gateway processes."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson
from redis.asyncio import Redis

logger = logging.getLogger("gardien.events")

CHANNEL_PREFIX = "gardien:events:"
# Messages waiting for Redis; beyond this a burst is delivered in-process only, and logged.
MAX_PENDING = 100_000
RECONNECT_SECONDS = 0.5

Listener = Callable[[dict[str, Any]], None]


class EventBus:
    """Carries messages published after their transaction commits to every listener.

    Alone, a message reaches this process's listeners on the next loop iteration (never inside
    the publisher's call, so a listener cannot run inside a commit). With a Redis URL, every
    message goes through one channel and comes back to the listeners of every process, this one
    included, so all processes see the same order. While Redis is unreachable, messages are
    delivered in-process only, and may have been lost on their way to other processes: the bus
    is `in_outage` until delivery is whole again, when listeners are told (`on_resync`) to catch
    up from where they were (EVT-3).
    """

    def __init__(self, redis_url: str | None = None) -> None:
        self._redis_url = redis_url
        self._channel = channel_of(redis_url) if redis_url else ""
        self._listeners: list[Listener] = []
        self._resync_listeners: list[Callable[[], None]] = []
        # Set from the moment a message may have been lost until the channel is heard again.
        self._in_outage = False
        self._reader_subscribed = False
        self._outgoing: asyncio.Queue[bytes] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()

    @property
    def distributed(self) -> bool:
        return self._redis_url is not None

    def listen(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def on_resync(self, listener: Callable[[], None]) -> Callable[[], None]:
        self._resync_listeners.append(listener)
        return lambda: self._resync_listeners.remove(listener)

    @property
    def in_outage(self) -> bool:
        return self._in_outage

    def publish(self, message: dict[str, Any]) -> None:
        """Never blocks and never raises on the publisher (it runs right after a commit)."""
        data = orjson.dumps(message)
        if self._outgoing is not None and self._outgoing.qsize() < MAX_PENDING:
            self._outgoing.put_nowait(data)
            return
        if self._outgoing is not None:
            logger.warning("event bus backlog full: message delivered in this process only")
            # This process's subscriptions catch up from the database once publishing drains.
            self._in_outage = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a CLI command): there are no listeners either
        # In an empty context, as when the message comes back from Redis: publication runs right
        # after a commit, where the context still names the finished transaction's connection;
        # listeners (and the tasks they start) inheriting it would query on a connection
        # already given back to the pool (PostgreSQL: "another operation is in progress").
        loop.call_soon(self._deliver, data, context=contextvars.Context())

    async def start(self) -> None:
        """Connect to Redis when configured; returns once the channel is subscribed."""
        if self._redis_url is None or self._tasks:
            return
        self._outgoing = asyncio.Queue()
        self._tasks = [
            asyncio.create_task(self._read(), name="event-bus-reader"),
            asyncio.create_task(self._write(), name="event-bus-writer"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 5)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._outgoing = None

    def _deliver(self, data: bytes) -> None:
        message = orjson.loads(data)
        for listener in list(self._listeners):
            try:
                listener(message)
            except Exception:
                logger.exception("event listener failed")

    def _client(self) -> Redis:
        assert self._redis_url is not None
        # No socket timeout: a subscribed connection is quiet for as long as nothing happens.
        return Redis.from_url(self._redis_url, socket_connect_timeout=1, health_check_interval=15)

    async def _read(self) -> None:
        while True:
            client = self._client()
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    self._subscribed.set()
                    self._reader_subscribed = True
                    if self._in_outage:
                        self._resync()
                    async for item in pubsub.listen():
                        if item.get("type") == "message":
                            self._deliver(item["data"])
            except asyncio.CancelledError:
                raise
            except Exception:
                # What was published from now until the subscription is back never reaches us.
                self._reader_subscribed = False
                self._in_outage = True
                logger.warning("event bus: Redis subscription lost; reconnecting", exc_info=True)
                await asyncio.sleep(RECONNECT_SECONDS)
            finally:
                self._reader_subscribed = False
                await client.aclose()

    async def _write(self) -> None:
        assert self._outgoing is not None
        outgoing = self._outgoing
        client = self._client()
        try:
            while True:
                data = await outgoing.get()
                try:
                    await client.publish(self._channel, data)
                except Exception:
                    # Redis is down: this process's listeners still get it (an access notice
                    # must not wait), and, like every process's subscriptions, catch up from
                    # the database once the channel is heard again.
                    logger.warning("event bus: publish to Redis failed", exc_info=True)
                    self._in_outage = True
                    self._deliver(data)
                    continue
                if self._in_outage and self._reader_subscribed:
                    # Only publishing had failed: the channel was heard throughout.
                    self._resync()
        finally:
            await client.aclose()

    def _resync(self) -> None:
        self._in_outage = False
        for listener in list(self._resync_listeners):
            try:
                listener()
            except Exception:
                logger.exception("event resync listener failed")


def channel_of(redis_url: str) -> str:
    """Pub/sub channels ignore Redis database numbers: the number goes into the channel's name,
    so deployments sharing a Redis on different databases never hear each other."""
    database = urlsplit(redis_url).path.strip("/") or "0"
    return f"{CHANNEL_PREFIX}{database}"
