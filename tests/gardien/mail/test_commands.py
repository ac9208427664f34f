"""`gardien outbox` and `gardien worker`, run as the real command against a fresh SQLite database."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gardien.webhooks import new_secret
from tests.gardien.mail.conftest import SmtpTestServer
from tests.webhook_receiver import new_receiver, serving

ENQUEUE = """
import asyncio, sys
from datetime import UTC, datetime
from tortoise.transactions import in_transaction
from gardien import db
from gardien.clock import SystemClock
from gardien.mail.outbox import MailOutbox
from gardien.settings import load_settings

async def main() -> None:
    database = await db.open_database(load_settings().database_url)
    try:
        async with in_transaction():
            await MailOutbox(SystemClock()).enqueue(
                "invitation_new_account",
                to="newcomer@example.test",
                language="en",
                context={
                    "organisation": "Démo SA",
                    "inviter": "Anna Legal",
                    "role": "COLLABORATOR",
                    "link": "http://127.0.0.1:8000/invitations/accept?token=abc123",
                    "expires_at": datetime(2030, 1, 1, 12, 0, tzinfo=UTC),
                },
                timezone="Europe/Zurich",
            )
    finally:
        await db.close_database(database)

asyncio.run(main())
"""


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def local_env(tmp_path: Path) -> dict[str, str]:
    """A newcomer's `make run` set-up: SQLite in a var directory, no SMTP server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GARDIEN_")}
    env.update(
        GARDIEN_VAR_DIR=str(tmp_path),
        GARDIEN_SECRET_KEY=secrets.token_urlsafe(48),
        GARDIEN_LOG_LEVEL="WARNING",
    )
    migrated = run("-m", "gardien.cli", "migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    queued = run("-c", ENQUEUE, env=env)
    assert queued.returncode == 0, queued.stderr
    return env


def test_ops6_gardien_outbox_lists_pending_messages_with_their_links(
    local_env: dict[str, str],
) -> None:
    listed = run("-m", "gardien.cli", "outbox", env=local_env)
    shown = run("-m", "gardien.cli", "outbox", "--show", "1", env=local_env)
    missing = run("-m", "gardien.cli", "outbox", "--show", "2", env=local_env)

    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].startswith("#1  PENDING  attempts 0  next ")
    assert lines[1:] == [
        "  to:       newcomer@example.test",
        "  template: invitation_new_account (en)",
        "  subject:  Anna Legal invites you to join Démo SA",
        "  link:     http://127.0.0.1:8000/invitations/accept?token=abc123",
    ]
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(
        "To: newcomer@example.test\nSubject: Anna Legal invites you to join Démo SA\n\nHello,\n"
    )
    assert "01 January 2030" not in shown.stdout and "1 January 2030, 13:00 (CET)" in shown.stdout
    assert (missing.returncode, missing.stderr) == (1, "gardien: no e-mail #2 in the outbox\n")


def test_ops6_gardien_worker_without_smtp_leaves_messages_in_the_outbox(
    local_env: dict[str, str],
) -> None:
    worker = run("-m", "gardien.cli", "worker", "--once", env=local_env)
    listed = run("-m", "gardien.cli", "outbox", env=local_env)

    assert worker.returncode == 2
    assert worker.stderr == (
        "gardien: cannot deliver e-mail: GARDIEN_SMTP_URL is not set; queued messages stay in "
        "the outbox (see `gardien outbox`)\n"
    )
    assert listed.stdout.startswith("#1  PENDING  attempts 0")


def test_ops6_gardien_worker_delivers_the_outbox(
    local_env: dict[str, str], smtp_server: SmtpTestServer
) -> None:
    env = {**local_env, "GARDIEN_SMTP_URL": smtp_server.url, "GARDIEN_MAIL_FROM": "a@b.example"}

    worker = run("-m", "gardien.cli", "worker", "--once", env=env)
    pending = run("-m", "gardien.cli", "outbox", env=env)
    everything = run("-m", "gardien.cli", "outbox", "--all", env=env)

    assert (worker.returncode, worker.stdout) == (0, "outbox: 1 message(s) attempted\n")
    assert [(m["From"], m["To"]) for m in smtp_server.messages] == [
        ("a@b.example", "newcomer@example.test")
    ]
    assert pending.stdout == "outbox: no pending e-mail\n"
    # Delivered: the single-use link is gone from the database; the subject stays for the record.
    assert everything.stdout.startswith("#1  SENT  attempts 1  sent ")
    assert "subject:  Anna Legal invites you to join Démo SA" in everything.stdout
    assert "link:" not in everything.stdout


ENQUEUE_SMS = """
import asyncio
from tortoise.transactions import in_transaction
from gardien import db
from gardien.clock import SystemClock
from gardien.sms.outbox import SmsOutbox
from gardien.settings import load_settings

async def main() -> None:
    database = await db.open_database(load_settings().database_url)
    try:
        async with in_transaction():
            await SmsOutbox(SystemClock()).enqueue(
                "sign_in_code", to="+41791234567", language="de", context={"code": "123456", "minutes": 5}
            )
    finally:
        await db.close_database(database)

asyncio.run(main())
"""


def test_ops6_mfa3_gardien_outbox_shows_pending_sms_with_their_text(
    local_env: dict[str, str],
) -> None:
    queued = run("-c", ENQUEUE_SMS, env=local_env)
    listed = run("-m", "gardien.cli", "outbox", env=local_env)
    shown = run("-m", "gardien.cli", "outbox", "--show", "2", env=local_env)

    assert queued.returncode == 0, queued.stderr
    lines = listed.stdout.split("\n\n")[1].splitlines()
    assert lines[0].startswith("#2  PENDING  attempts 0  next ")
    assert lines[1:] == [
        "  to:       +41791234567",
        "  template: sign_in_code (de)",
        "  sms:      Ihr Gardien-Anmeldecode: 123456. Er ist 5 Minuten gültig. "
        "Geben Sie ihn niemandem weiter.",
    ]
    assert shown.stdout == (
        "To: +41791234567\nSMS\n\nIhr Gardien-Anmeldecode: 123456. Er ist 5 Minuten gültig. "
        "Geben Sie ihn niemandem weiter.\n"
    )


def test_ops6_mfa3_gardien_worker_hands_sms_to_the_gateway_without_smtp(
    local_env: dict[str, str],
) -> None:
    receiver = new_receiver(lambda: int(time.time()))
    receiver.secret = new_secret()
    env = {
        **local_env,
        "GARDIEN_SMS_WEBHOOK_URL": receiver.url,
        "GARDIEN_SMS_WEBHOOK_SECRET": receiver.secret,
    }
    queued = run("-c", ENQUEUE_SMS, env=env)

    with serving(receiver):
        worker = run("-m", "gardien.cli", "worker", "--once", env=env)
    everything = run("-m", "gardien.cli", "outbox", "--all", env=env)

    assert queued.returncode == 0, queued.stderr
    # No SMTP: the e-mail waits; the SMS goes to its gateway, signed.
    assert (worker.returncode, worker.stdout) == (0, "sms: 1 message(s) attempted\n"), worker.stderr
    assert [(r.body["to"], r.signature_valid) for r in receiver.requests] == [
        ("+41791234567", True)
    ]
    assert receiver.requests[0].body["text"].startswith("Ihr Gardien-Anmeldecode: 123456.")
    assert everything.stdout.startswith("#1  PENDING")
    assert "#2  SENT  attempts 1" in everything.stdout
    assert "sms:      (text removed after delivery)" in everything.stdout
