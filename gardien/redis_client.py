"""The shared Redis connection (OPS-2), used across replicas when GARDIEN_REDIS_URL is set."""

from __future__ import annotations

from redis.asyncio import Redis

# Readiness must answer quickly even when Redis is gone; a blocked probe is a failed probe.
TIMEOUT_SECONDS = 1.0


def connect(url: str) -> Redis:
    """A client with a lazily opened pool: nothing connects until first use."""
    return Redis.from_url(
        url, socket_connect_timeout=TIMEOUT_SECONDS, socket_timeout=TIMEOUT_SECONDS
    )


async def ping(client: Redis) -> None:
    if not await client.ping():
        raise ConnectionError("Redis did not answer PONG")
