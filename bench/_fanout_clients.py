"""Subscribers of bench/fanout.py: many graphql-transport-ws connections in one process.

Started by the benchmark as `python -m bench._fanout_clients` with a JSON job on stdin. Opens
`count` connections, each subscribing to the organisation's events, prints `ready <n>` once all
are subscribed, then records for every `next` frame the delay between the event's occurredAt
(stamped by the gateway when it recorded the event) and its arrival here. Exits after `events`
frames per connection (or the deadline) and prints one JSON line of results.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from datetime import datetime
from typing import Any

import orjson
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

OPEN_CONCURRENCY = 100
NEXT_PREFIX = '{"id":"1","type":"next","payload":{"data":'
OCCURRED_AT = '"occurredAt":"'


async def subscriber(
    job: dict[str, Any],
    url: str,
    opened: asyncio.Semaphore,
    ready: list[int],
    latencies: list[float],
    failures: list[str],
    settled: asyncio.Event,
) -> None:
    try:
        async with opened:
            socket = await connect(
                url,
                subprotocols=[Subprotocol("graphql-transport-ws")],
                compression=None,
                open_timeout=120,
                ping_interval=None,
                max_queue=64,
            )
            await socket.send(
                json.dumps(
                    {"type": "connection_init", "payload": {"authorization": job["authorization"]}}
                )
            )
            ack = orjson.loads(await socket.recv())
            if ack.get("type") != "connection_ack":
                raise RuntimeError(f"not acknowledged: {ack}")
            await socket.send(
                json.dumps(
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {"query": job["query"], "variables": job["variables"]},
                    }
                )
            )
        ready[0] += 1
        if ready[0] + len(failures) >= job["count"]:
            settled.set()
        received = 0
        deadline = time.monotonic() + job["seconds"]
        async with socket:
            while received < job["events"]:
                raw = await asyncio.wait_for(socket.recv(), max(deadline - time.monotonic(), 0.1))
                arrived = time.time()
                # Minimal parsing, so the clients' own cost stays out of the measure: the frame
                # is checked by its prefix, and only occurredAt is read out of it.
                if not isinstance(raw, str) or not raw.startswith(NEXT_PREFIX):
                    message = orjson.loads(raw)
                    if message.get("type") == "ping":
                        await socket.send('{"type":"pong"}')
                        continue
                    raise RuntimeError(f"unexpected message: {str(message)[:200]}")
                start = raw.find(OCCURRED_AT)
                if start < 0 or '"errors"' in raw:
                    raise RuntimeError(f"unexpected message: {raw[:200]}")
                start += len(OCCURRED_AT)
                occurred = datetime.fromisoformat(raw[start : raw.index('"', start)]).timestamp()
                latencies.append(arrived - occurred)
                received += 1
    except Exception as error:
        failures.append(f"{type(error).__name__}: {error}"[:200])
        if ready[0] + len(failures) >= job["count"]:
            settled.set()


async def run(job: dict[str, Any]) -> dict[str, Any]:
    ready = [0]
    latencies: list[float] = []
    failures: list[str] = []
    opened = asyncio.Semaphore(OPEN_CONCURRENCY)
    settled = asyncio.Event()
    urls = job["urls"]
    tasks = [
        asyncio.create_task(
            subscriber(job, urls[index % len(urls)], opened, ready, latencies, failures, settled)
        )
        for index in range(job["count"])
    ]
    await settled.wait()
    print(f"ready {ready[0]}", flush=True)
    await asyncio.gather(*tasks)
    return {"latencies": latencies, "failures": failures[:5], "failed": len(failures)}


def main() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    job = json.loads(sys.stdin.readline())
    result = asyncio.run(run(job))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
