"""A gateway served for real: `gardien migrate`, `gardien demo`, then `gardien serve` on a free port."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest


@dataclass(frozen=True)
class ServedGateway:
    url: str
    env: dict[str, str]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def gardien(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gardien.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="session")
def gateway_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    var_dir: Path = tmp_path_factory.mktemp("served")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GARDIEN_")}
    env.update(
        GARDIEN_VAR_DIR=str(var_dir),
        GARDIEN_SECRET_KEY=secrets.token_urlsafe(48),
        GARDIEN_LOG_LEVEL="WARNING",
    )
    return env


@contextmanager
def start_gateway(env: dict[str, str]) -> Iterator[ServedGateway]:
    """`gardien migrate`, `gardien demo`, then `gardien serve` on a free port, with this env."""
    for command in (["migrate"], ["demo"]):
        done = gardien(*command, env=env)
        assert done.returncode == 0, done.stderr
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gardien.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                output = process.stdout.read() if process.stdout else ""
                raise RuntimeError(f"gateway did not start:\n{output}")
            time.sleep(0.1)
        yield ServedGateway(url=url, env=env)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def served(gateway_env: dict[str, str]) -> Iterator[ServedGateway]:
    with start_gateway(gateway_env) as gateway:
        yield gateway
