"""Load generator of the benchmarks: kept-alive HTTP/1.1 connections sending one request in a loop.

Deliberately minimal (a prepared request written as is, a response read by Content-Length), so
that the client costs little next to the server it measures; every answer is compared with the
expected body, byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Target:
    label: str
    path: str
    request: bytes  # the whole HTTP/1.1 request, sent as is on a kept-alive connection
    expected_body: bytes


def raw_request(path: str, port: int, headers: Mapping[str, str], body: bytes) -> bytes:
    head = "".join(
        (
            f"POST {path} HTTP/1.1\r\n",
            f"Host: {HOST}:{port}\r\n",
            *(f"{name}: {value}\r\n" for name, value in headers.items()),
            f"Content-Length: {len(body)}\r\n",
            "\r\n",
        )
    )
    return head.encode("latin-1") + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status, _, body = await read_response_with_headers(reader)
    return status, body


async def read_response_with_headers(
    reader: asyncio.StreamReader,
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """(status, headers as (lower-case name, value), body) of one response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers: list[tuple[bytes, bytes]] = []
    length: int | None = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if not name:
            continue
        headers.append((name.strip().lower(), value.strip()))
        if headers[-1][0] == b"content-length":
            length = int(value)
    if length is None:
        raise RuntimeError(f"a response without Content-Length: {head!r}")
    return status, headers, await reader.readexactly(length)


@dataclass(frozen=True)
class RoundResult:
    requests: int
    seconds: float
    server_cpu_seconds: float | None
    latencies: list[float]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


async def run_round(
    target: Target,
    port: int,
    seconds: float,
    concurrency: int,
    server_cpu: Callable[[], float | None],
    max_requests: int | None = None,
) -> RoundResult:
    """`concurrency` connections send `target` until `seconds` have passed (or, with
    max_requests, until each connection has sent that many)."""
    connections = await asyncio.gather(
        *(asyncio.open_connection(HOST, port) for _ in range(concurrency))
    )
    latencies: list[float] = []

    async def loop(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, deadline: float
    ) -> int:
        done = 0
        while (started := time.perf_counter()) < deadline and done != max_requests:
            writer.write(target.request)
            await writer.drain()
            status, body = await read_response(reader)
            if status != 200 or body != target.expected_body:
                raise RuntimeError(f"{target.path} answered {status}: {body[:2000]!r}")
            latencies.append(time.perf_counter() - started)
            done += 1
        return done

    try:
        cpu_before = server_cpu()
        started = time.perf_counter()
        done = await asyncio.gather(
            *(loop(reader, writer, started + seconds) for reader, writer in connections)
        )
        elapsed = time.perf_counter() - started
        cpu_after = server_cpu()
    finally:
        for _, writer in connections:
            writer.close()
        for _, writer in connections:
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return RoundResult(sum(done), elapsed, cpu, latencies)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def cpu_per_request(rounds: Sequence[RoundResult]) -> float | None:
    """Server CPU seconds per request over all rounds, or None without /proc."""
    cpu = [r.server_cpu_seconds for r in rounds]
    if any(c is None for c in cpu):
        return None
    return sum(c for c in cpu if c is not None) / sum(r.requests for r in rounds)


def mean_rate(rounds: Sequence[RoundResult]) -> float:
    return statistics.fmean(r.per_second for r in rounds)


def throughput_row(label: str, rounds: Sequence[RoundResult]) -> str:
    """Requests/s per round and their mean, server CPU per request and busy %, p50 and p99."""
    rates = [r.per_second for r in rounds]
    latencies = [value for r in rounds for value in r.latencies]
    cpu = cpu_per_request(rounds)
    if cpu is None:
        cpu_text = f"{'n/a':>12}{'n/a':>8}"
    else:
        busy = cpu * sum(r.requests for r in rounds) / sum(r.seconds for r in rounds)
        cpu_text = f"{cpu * 1000:12.2f}{busy * 100:7.0f}%"
    per_round = "".join(f"{rate:10,.0f}" for rate in rates)
    return (
        f"{label:<20}{per_round}{mean_rate(rounds):12,.0f}{cpu_text}"
        f"{percentile(latencies, 0.5) * 1000:9.1f}{percentile(latencies, 0.99) * 1000:9.1f}"
    )


def throughput_header(rounds: int) -> str:
    return (
        f"{'endpoint':<20}"
        + "".join(f"{'round ' + str(i + 1):>10}" for i in range(rounds))
        + f"{'mean req/s':>12}{'CPU ms/req':>12}{'CPU':>8}{'p50 ms':>9}{'p99 ms':>9}"
    )
