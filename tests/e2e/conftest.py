"""A gateway served for real: `gardien migrate`, `gardien demo`, then `gardien serve` on a free port."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from tests.gardien.mail.conftest import SmtpTestServer
from tests.ports import free_port


@dataclass(frozen=True)
class ServedGateway:
    url: str
    env: dict[str, str]
    log_path: Path


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
    return fresh_gateway_env(tmp_path_factory.mktemp("served"))


@pytest.fixture(scope="session")
def served(gateway_env: dict[str, str]) -> Iterator[ServedGateway]:
    with start_gateway(gateway_env) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpTestServer]:
    """A real SMTP server for the module's own gateway to deliver to."""
    server = SmtpTestServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def mailing_gateway(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    gateway_env: dict[str, str],
    smtp: SmtpTestServer,
) -> Iterator[ServedGateway]:
    """A gateway of the module's own (its accounts change there, unseen by other modules),
    delivering e-mail to `smtp`."""
    var_dir = tmp_path_factory.mktemp(f"served-{request.module.__name__.rsplit('.', 1)[-1]}")
    env = {
        **gateway_env,
        "GARDIEN_VAR_DIR": str(var_dir),
        "GARDIEN_SECRET_KEY": secrets.token_urlsafe(48),
        "GARDIEN_SMTP_URL": smtp.url,
    }
    with start_gateway(env) as gateway:
        yield gateway


def mail_text(message: EmailMessage) -> str:
    """The plain-text part of a delivered e-mail, where its links and codes are read."""
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def fresh_gateway_env(var_dir: Path) -> dict[str, str]:
    """An environment of its own, for a test whose changes to the demo data others must not see."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GARDIEN_")}
    env.update(
        GARDIEN_VAR_DIR=str(var_dir),
        GARDIEN_SECRET_KEY=secrets.token_urlsafe(48),
        GARDIEN_LOG_LEVEL="WARNING",
    )
    return env


@contextmanager
def start_gateway(
    env: dict[str, str], host: str = "127.0.0.1", *, prepare: bool = True
) -> Iterator[ServedGateway]:
    """A gateway of its own: migrated, demo data loaded, serving on a free port until the block
    ends. `env` decides everything else (GARDIEN_VAR_DIR, production mode, trusted proxies…).
    prepare=False serves a database another gateway prepared (a second process of it)."""
    for command in (["migrate"], ["demo"]) if prepare else ():
        done = gardien(*command, env=env)
        assert done.returncode == 0, done.stderr
    port = free_port(host)
    # The server's logs go to a file, never an unread pipe (a full pipe would block the server).
    log_path = Path(env["GARDIEN_VAR_DIR"]) / f"gateway-{port}.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gardien.cli", "serve", "--host", host, "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not start:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield ServedGateway(url=url, env=env, log_path=log_path)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


CONFIRM_SIGN_UP = """
mutation ConfirmSignUp($input: ConfirmSignUpInput!) {
  confirmSignUp(input: $input) { session { token } errors { code } }
}
"""


def signed_up_session(served: ServedGateway, email: str, password: str, name: str) -> str:
    """ORG-1 as a newcomer without a mail server does it: sign up, read the confirmation link
    with `gardien outbox`, confirm. Answers the new account's session token."""
    signed_up = httpx.post(
        f"{served.url}/graphql",
        json={
            "query": "mutation($input: SignUpInput!) { signUp(input: $input) { errors { code } } }",
            "variables": {"input": {"email": email, "password": password, "displayName": name}},
        },
        timeout=30,
    ).json()["data"]["signUp"]
    assert signed_up["errors"] == [], signed_up
    listed = gardien("outbox", env=served.env)
    assert listed.returncode == 0, listed.stderr
    (block,) = [b for b in listed.stdout.split("\n#") if f"to:       {email}\n" in b]
    (link,) = re.findall(r"link:\s+(\S+/sign-up/confirm\?token=\S+)", block)
    token = link.rpartition("token=")[2]
    confirmed = httpx.post(
        f"{served.url}/graphql",
        json={"query": CONFIRM_SIGN_UP, "variables": {"input": {"token": token}}},
        timeout=30,
    ).json()["data"]["confirmSignUp"]
    assert confirmed["errors"] == [], confirmed
    session_token: str = confirmed["session"]["token"]
    return session_token
