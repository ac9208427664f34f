"""`gardien support-agent` as an operator runs it: the only way to grant the staff flag (BLK-3)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from tests.e2e.conftest import gardien


@pytest.fixture
def demo_env(gateway_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    env = {**gateway_env, "GARDIEN_VAR_DIR": str(tmp_path)}
    for command in (("migrate",), ("demo",)):
        done = gardien(*command, env=env)
        assert done.returncode == 0, done.stderr
    return env


def _platform_role(env: dict[str, str], email: str) -> str:
    path = Path(env["GARDIEN_VAR_DIR"]) / "gardien.sqlite3"
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
        row = connection.execute(
            "SELECT platform_role FROM user_account WHERE email = ?", (email,)
        ).fetchone()
    return str(row[0])


def test_blk3_cli_support_agent_add_list_remove(demo_env: dict[str, str]) -> None:
    added = gardien("support-agent", "add", "Marc.Admin@demo.example", env=demo_env)
    role_after_add = _platform_role(demo_env, "marc.admin@demo.example")
    listed = gardien("support-agent", "list", env=demo_env)
    removed = gardien("support-agent", "remove", "marc.admin@demo.example", env=demo_env)
    listed_after = gardien("support-agent", "list", env=demo_env)

    assert added.returncode == 0, added.stderr
    assert role_after_add == "SUPPORT_AGENT"
    assert listed.stdout.split() == ["marc.admin@demo.example"]
    assert removed.returncode == 0, removed.stderr
    assert _platform_role(demo_env, "marc.admin@demo.example") == "CUSTOMER"
    assert listed_after.stdout.strip() == ""


def test_blk3_cli_support_agent_unknown_account_fails(demo_env: dict[str, str]) -> None:
    done = gardien("support-agent", "add", "nobody@demo.example", env=demo_env)

    assert done.returncode == 2
    assert "No account with the login nobody@demo.example" in done.stderr
