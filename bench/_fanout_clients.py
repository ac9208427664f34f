"""Subscribers of bench/fanout.py: many graphql-transport-ws connections in one process.

Started by the benchmark as `python -m bench._fanout_clients` with a JSON job on stdin. Opens
`count` connections, each subscribing to the organisation's events, prints `ready <n>` once all
are subscribed, then records for every `next` frame the delay between the event's occurredAt
(stamped by the gateway when it recorded the event) and its arrival here. Exits after `events`
frames per connection (or the deadline) and prints one JSON line of results.

The clients share the machine's two cores with the gateway they measure, so they must cost as
little as possible per frame, or the table measures them: 10,000 subscribers receive 40,000
frames a second at the benchmark's pace. A library client (websockets' asyncio connection)
wakes a task and copies each message through a queue: some 50-100 µs a frame, more CPU than
the gateway spends sending it. So each connection is a bare asyncio protocol instead: the
handshake is the RFC 6455 request, and server frames (never masked) are cut out of the bytes
as they arrive, in the callback that reads them, which is also when their arrival is stamped.
The few frames a client sends (init, subscribe, pong) are masked by websockets' Frame. uvloop
runs them when installed, as it runs the gateway.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import sys
import time
from datetime import datetime
from typing import Any, cast
from urllib.parse import urlsplit

import orjson
from websockets.frames import Frame, Opcode

OPEN_CONCURRENCY = 100
NEXT_PREFIX = b'{"id":"1","type":"next","payload":{"data":'
OCCURRED_AT = b'"occurredAt":"'
PONG = Frame(Opcode.TEXT, b'{"type":"pong"}').serialize(mask=True)


def masked(message: dict[str, Any]) -> bytes:
    return Frame(Opcode.TEXT, orjson.dumps(message)).serialize(mask=True)


class Subscriber(asyncio.Protocol):
    """One graphql-transport-ws connection that subscribes, then counts `next` frames."""

    def __init__(self, job: dict[str, Any], results: Results) -> None:
        self.job = job
        self.results = results
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.received = 0
        loop = asyncio.get_running_loop()
        self.subscribed: asyncio.Future[None] = loop.create_future()
        self.finished: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport; they do implement it.
        self.transport = cast(asyncio.Transport, transport)
        url = urlsplit(self.job["url"])
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            (
                f"GET {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        arrived = time.time()
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.fail(f"handshake refused: {bytes(buffer[:60])!r}")
                return
            del buffer[: end + 4]
            self.upgraded = True
            self.write(
                masked(
                    {
                        "type": "connection_init",
                        "payload": {"authorization": self.job["authorization"]},
                    }
                )
            )
        while len(buffer) >= 2:
            opcode = buffer[0] & 0x0F
            length = buffer[1] & 0x7F
            start = 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length = int.from_bytes(buffer[2:4], "big")
                start = 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length = int.from_bytes(buffer[2:10], "big")
                start = 10
            if len(buffer) < start + length:
                return
            payload = bytes(buffer[start : start + length])
            del buffer[: start + length]
            self.on_frame(opcode, payload, arrived)

    def on_frame(self, opcode: int, payload: bytes, arrived: float) -> None:
        if opcode == Opcode.PING:
            self.write(Frame(Opcode.PONG, payload).serialize(mask=True))
            return
        if opcode == Opcode.CLOSE:
            self.fail(f"closed by the gateway: {payload!r}")
            return
        # Minimal parsing, so the clients' own cost stays out of the measure: the frame is
        # checked by its prefix, and only occurredAt is read out of it.
        if payload.startswith(NEXT_PREFIX):
            start = payload.find(OCCURRED_AT)
            if start < 0 or b'"errors"' in payload:
                self.fail(f"unexpected message: {payload[:200]!r}")
                return
            start += len(OCCURRED_AT)
            stamp = payload[start : payload.index(b'"', start)]
            self.results.latencies.append(arrived - self.results.occurred(stamp))
            self.received += 1
            if self.received >= self.job["events"] and not self.finished.done():
                self.finished.set_result(None)
                self.close()
            return
        message = orjson.loads(payload)
        kind = message.get("type")
        if kind == "ping":
            self.write(PONG)
        elif kind == "connection_ack" and not self.subscribed.done():
            self.write(
                masked(
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {"query": self.job["query"], "variables": self.job["variables"]},
                    }
                )
            )
            self.subscribed.set_result(None)
        else:
            self.fail(f"unexpected message: {str(message)[:200]}")

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        # A close frame (1000), then the socket: the gateway sees an orderly goodbye.
        self.write(Frame(Opcode.CLOSE, b"\x03\xe8").serialize(mask=True))
        if self.transport is not None:
            self.transport.close()

    def fail(self, reason: str) -> None:
        for future in (self.subscribed, self.finished):
            if not future.done():
                future.set_exception(RuntimeError(reason))
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished.done():
            self.fail(f"connection lost after {self.received} frames: {exc}")


class Results:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.ready = 0
        self._occurred: dict[bytes, float] = {}

    def occurred(self, stamp: bytes) -> float:
        # Every subscriber receives the same stamp per event: parsed once.
        value = self._occurred.get(stamp)
        if value is None:
            value = self._occurred[stamp] = datetime.fromisoformat(stamp.decode()).timestamp()
        return value


async def subscriber(
    job: dict[str, Any],
    opened: asyncio.Semaphore,
    results: Results,
    settled: asyncio.Event,
) -> None:
    loop = asyncio.get_running_loop()
    url = urlsplit(job["url"])
    try:
        async with opened:
            _transport, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: Subscriber(job, results), url.hostname, url.port),
                120,
            )
            await asyncio.wait_for(protocol.subscribed, 120)
        results.ready += 1
        if results.ready + len(results.failures) >= job["count"]:
            settled.set()
        await asyncio.wait_for(protocol.finished, job["seconds"])
    except Exception as error:
        results.failures.append(f"{type(error).__name__}: {error}"[:200])
        if results.ready + len(results.failures) >= job["count"]:
            settled.set()


async def run(job: dict[str, Any]) -> dict[str, Any]:
    results = Results()
    opened = asyncio.Semaphore(OPEN_CONCURRENCY)
    settled = asyncio.Event()
    urls = job["urls"]
    tasks = [
        asyncio.create_task(
            subscriber({**job, "url": urls[index % len(urls)]}, opened, results, settled)
        )
        for index in range(job["count"])
    ]
    await settled.wait()
    print(f"ready {results.ready}", flush=True)
    await asyncio.gather(*tasks)
    return {
        "latencies": results.latencies,
        "failures": results.failures[:5],
        "failed": len(results.failures),
    }


def main() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    job = json.loads(sys.stdin.readline())
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run(job))
    else:
        result = uvloop.run(run(job))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
