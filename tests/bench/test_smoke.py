"""Smoke runs of the benchmarks under bench/: each still runs, and its two endpoints still agree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI, POSTGRES_URL, REDIS_URL

REPO_ROOT = Path(__file__).resolve().parents[2]
# A smoke run takes about 15 s on a shared 2-core machine; the margin is for a busy one.
TIMEOUT_SECONDS = 180


def _run_smoke(
    module: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    if not POSTGRES_URL:
        if IN_CI:
            pytest.fail("CI=true needs GARDIEN_TEST_DATABASE_URL: the benchmarks run on PostgreSQL")
        pytest.skip("the benchmarks need PostgreSQL: set GARDIEN_TEST_DATABASE_URL")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GARDIEN_")}
    environment["GARDIEN_BENCH_DATABASE_URL"] = POSTGRES_URL
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", module, "--smoke", *args],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )


def test_api4_members_benchmark_smoke_runs_and_both_endpoints_agree() -> None:
    """The members benchmark (issue 5's proof that the limits keep the gateway fast) must not rot:
    its smoke run checks the gateway and the hand-written endpoint give the same data for every
    variant, then sends a few requests to each (every answer compared byte for byte), counts
    statements and profiles; any disagreement or failure exits non-zero."""
    finished = _run_smoke("bench.members_query")

    output = f"stdout:\n{finished.stdout}\nstderr:\n{finished.stderr}"
    assert finished.returncode == 0, output
    assert "[bench] both endpoints answer the same data" in finished.stderr, output
    assert "[bench] dropped database gardien_bench_" in finished.stderr, output
    report = finished.stdout
    for line in (
        "POST /graphql ",
        "POST /bare/members ",
        "ratio gateway/bare: ",
        "SQL statements per gateway request",
        "total, server side (ASGI call)",
        "cProfile: top functions by own time",
    ):
        assert line in report, output


def test_evt1_fanout_benchmark_smoke_delivers_every_event_to_every_subscriber() -> None:
    """bench/fanout.py must not rot: 20 subscribers on one gateway process (and on two sharing
    Redis, when GARDIEN_TEST_REDIS_URL is set) each receive every event; a lost frame or a
    failed connection exits non-zero."""
    layouts = "1,2" if REDIS_URL else "1"
    extra = {"GARDIEN_BENCH_REDIS_URL": REDIS_URL} if REDIS_URL else {}

    finished = _run_smoke("bench.fanout", "--processes", layouts, env=extra)

    output = f"stdout:\n{finished.stdout}\nstderr:\n{finished.stderr}"
    assert finished.returncode == 0, output
    assert "[bench] every subscriber received every event" in finished.stderr, output
    assert "[bench] dropped database gardien_bench_" in finished.stderr, output
    rows = [line.split() for line in finished.stdout.splitlines()[1:]]
    assert [(row[0], row[1], row[2]) for row in rows] == [
        ("20", processes, "60/60") for processes in layouts.split(",")
    ], output


@pytest.mark.parametrize(
    ("arguments", "browsers"),
    [([], "returning browsers"), (["--new-browsers"], "new browsers (no device cookie)")],
)
def test_mfa7_sign_in_benchmark_smoke_runs_and_both_sides_agree(
    arguments: list[str], browsers: str
) -> None:
    """bench/sign_in.py must not rot: the gateway and the bare argon2id verify must accept the
    right password and refuse a wrong one on the same stored hash, then a few sign-ins run with
    the cheap query beside them (from browsers that send their device cookie back, or not); any
    disagreement or failed answer exits non-zero."""
    finished = _run_smoke("bench.sign_in", *arguments)

    output = f"stdout:\n{finished.stdout}\nstderr:\n{finished.stderr}"
    assert finished.returncode == 0, output
    assert "[bench] both sides agree: the right password passes" in finished.stderr, output
    assert "[bench] dropped database gardien_bench_" in finished.stderr, output
    for line in (
        "bare argon2id verifies/s",
        "gateway sign-ins/s (SignIn over HTTP)",
        "cheap query under sign-ins p50 / p99 ms",
        "ratio gateway/bare: ",
        "cheap query p99 under load: ",
        f"of bare then gateway; {browsers}\n",
    ):
        assert line in finished.stdout, output
