"""`gardien tld` and `gardien jobs run-due` as an operator runs them: real subprocesses."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from decimal import Decimal
from pathlib import Path

import pytest

from tests.e2e.conftest import gardien


@pytest.fixture
def fresh_env(gateway_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    env = {**gateway_env, "GARDIEN_VAR_DIR": str(tmp_path)}
    done = gardien("migrate", env=env)
    assert done.returncode == 0, done.stderr
    return env


def _database(env: dict[str, str]) -> sqlite3.Connection:
    path = Path(env["GARDIEN_VAR_DIR"]) / "gardien.sqlite3"
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def test_dom3_cli_tld_set_changes_the_table_with_its_source(fresh_env: dict[str, str]) -> None:
    source = "Redemption: SWITCH rule (checked 2026). Restore fee: provider price list 2027."

    changed = gardien(
        "tld",
        "set",
        "CH",
        "--redemption-days",
        "45",
        "--restore-fee",
        "130.00",
        "--currency",
        "CHF",
        "--source",
        source,
        env=fresh_env,
    )
    listed = gardien("tld", "list", env=fresh_env)

    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.split()[:5] == ["ch", "45", "days", "130.00", "CHF"]
    assert any(line.startswith("ch ") and source in line for line in listed.stdout.splitlines())
    assert any(line.startswith("com ") for line in listed.stdout.splitlines())
    with closing(_database(fresh_env)) as connection:
        row = connection.execute(
            "SELECT redemption_days, restore_fee, currency, source FROM tld_policy WHERE tld='ch'"
        ).fetchone()
    assert (row[0], Decimal(str(row[1])), row[2], row[3]) == (45, Decimal("130.00"), "CHF", source)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", " "], "Say where the values come from"),
        (["--source", "x", "--currency", "chf"], "ISO 4217"),
        (["--source", "x", "--redemption-days", "900"], "Redemption days must be from 0 to 365."),
        (["--source", "x", "--restore-fee", "lots"], "is not an amount such as 120.00"),
    ],
)
def test_dom3_cli_tld_set_refuses_bad_values_and_changes_nothing(
    fresh_env: dict[str, str], args: list[str], message: str
) -> None:
    done = gardien("tld", "set", "ch", *args, env=fresh_env)

    assert done.returncode == 2
    assert message in done.stderr
    with closing(_database(fresh_env)) as connection:
        row = connection.execute(
            "SELECT redemption_days, currency FROM tld_policy WHERE tld='ch'"
        ).fetchone()
    assert tuple(row) == (40, "CHF")


def test_dom1_cli_jobs_run_due_sends_the_demo_reminder_once(fresh_env: dict[str, str]) -> None:
    assert gardien("demo", env=fresh_env).returncode == 0

    first = gardien("jobs", "run-due", env=fresh_env)
    second = gardien("jobs", "run-due", env=fresh_env)

    assert first.returncode == second.returncode == 0
    # demo-sa.fr expires in 7 days; its administrator wants domain notices.
    assert first.stdout.split() == [
        "entered_redemption=0",
        "renewed_by_warranty=0",
        "released=0",
        "reminders_sent=1",
        "sign_ups_purged=0",
        "known_devices_purged=0",
    ]
    assert second.stdout.split() == [
        "entered_redemption=0",
        "renewed_by_warranty=0",
        "released=0",
        "reminders_sent=0",
        "sign_ups_purged=0",
        "known_devices_purged=0",
    ]
    with closing(_database(fresh_env)) as connection:
        mails = connection.execute(
            "SELECT recipient, template, language FROM outbox_message"
        ).fetchall()
    assert mails == [("marc.admin@demo.example", "domain_expiry_reminder", "fr")]
