"""Smoke runs of the benchmarks under bench/: each still runs, and its two endpoints still agree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI, POSTGRES_URL

REPO_ROOT = Path(__file__).resolve().parents[2]
# A smoke run takes about 15 s on a shared 2-core machine; the margin is for a busy one.
TIMEOUT_SECONDS = 180


def _run_smoke(module: str) -> subprocess.CompletedProcess[str]:
    if not POSTGRES_URL:
        if IN_CI:
            pytest.fail("CI=true needs GARDIEN_TEST_DATABASE_URL: the benchmarks run on PostgreSQL")
        pytest.skip("the benchmarks need PostgreSQL: set GARDIEN_TEST_DATABASE_URL")
    env = {name: value for name, value in os.environ.items() if not name.startswith("GARDIEN_")}
    env["GARDIEN_BENCH_DATABASE_URL"] = POSTGRES_URL
    return subprocess.run(
        [sys.executable, "-m", module, "--smoke"],
        cwd=REPO_ROOT,
        env=env,
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
