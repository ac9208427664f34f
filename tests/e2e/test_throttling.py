"""Sign-in throttling against served gateways (API-4): concurrent guesses, device cookies, and
X-Forwarded-For believed only from trusted proxies. Each test has a gateway of its own, so the
budgets it spends never touch the shared one."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gardien.demo import DEMO_PASSWORD
from tests.e2e.conftest import ServedGateway, start_gateway

SIGN_IN = (
    "mutation($i: SignInInput!) { signIn(input: $i) {"
    " session { token } errors { code message field retryAfterSeconds } } }"
)
# A second loopback address stands in for the reverse proxy in front of the gateway.
PROXY_ADDRESS = "127.0.0.2"


def _own_env(gateway_env: dict[str, str], var_dir: Path, **extra: str) -> dict[str, str]:
    return {**gateway_env, "GARDIEN_VAR_DIR": str(var_dir), **extra}


@pytest.fixture
def guessing_gateway(gateway_env: dict[str, str], tmp_path: Path) -> Iterator[ServedGateway]:
    with start_gateway(_own_env(gateway_env, tmp_path)) as gateway:
        yield gateway


@pytest.fixture
def proxied_gateway(gateway_env: dict[str, str], tmp_path: Path) -> Iterator[ServedGateway]:
    env = _own_env(gateway_env, tmp_path, GARDIEN_TRUSTED_PROXIES=PROXY_ADDRESS)
    with start_gateway(env) as gateway:
        yield gateway


def _rows(gateway: ServedGateway, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Reads the served gateway's own database, as an operator would."""
    path = Path(gateway.env["GARDIEN_VAR_DIR"]) / "gardien.sqlite3"
    with sqlite3.connect(path) as connection:
        return connection.execute(query, params).fetchall()


def _variables(login: str, password: str) -> dict[str, Any]:
    return {"i": {"login": login, "password": password}}


def _sign_in_answer(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200
    answer: dict[str, Any] = response.json()["data"]["signIn"]
    return answer


async def test_api4_sixty_concurrent_guesses_verify_ten_and_owner_keeps_signing_in(
    guessing_gateway: ServedGateway,
) -> None:
    """The attack of issue 5: 60 simultaneous wrong guesses for one login were all verified,
    then the owner was locked out. Now at most 10 reach argon2 (one sign_in.failed event each,
    reason wrong_password), the spent budget is recorded once (ASVS V2.2.1), and the owner's
    browser, known by its device cookie (OWASP device cookies), signs in."""
    login = "marc.admin@demo.example"
    url = guessing_gateway.url

    async def sign_in(http: httpx.AsyncClient, password: str) -> dict[str, Any]:
        response = await http.post(
            "/graphql", json={"query": SIGN_IN, "variables": _variables(login, password)}
        )
        return _sign_in_answer(response)

    limits = httpx.Limits(max_connections=60)
    async with (
        httpx.AsyncClient(base_url=url) as owner,
        httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as attacker,
        httpx.AsyncClient(base_url=url) as new_browser,
    ):
        first = await sign_in(owner, DEMO_PASSWORD)
        assert first["errors"] == [] and owner.cookies.get("gardien_device")

        guesses = await asyncio.gather(*(sign_in(attacker, f"guess {n}") for n in range(60)))

        with_cookie = await sign_in(owner, DEMO_PASSWORD)
        without_cookie = await sign_in(new_browser, DEMO_PASSWORD)

    codes = sorted(answer["errors"][0]["code"] for answer in guesses)
    assert codes == ["INVALID_CREDENTIALS"] * 10 + ["TOO_MANY_ATTEMPTS"] * 50
    verified = _rows(
        guessing_gateway,
        "SELECT count(*) FROM activity_event e JOIN user_account u ON u.id = e.subject_id"
        " WHERE u.email = ? AND e.type = 'sign_in.failed'"
        " AND json_extract(e.data, '$.reason') = 'wrong_password'",
        login,
    )
    assert verified == [(10,)]
    # The spent budget is on record once, as the owner's event, although 50 guesses were refused.
    throttled = _rows(
        guessing_gateway,
        "SELECT json_extract(e.data, '$.budget') FROM activity_event e"
        " JOIN user_account u ON u.id = e.subject_id"
        " WHERE u.email = ? AND e.type = 'sign_in.throttled'",
        login,
    )
    assert throttled == [("login",)]
    assert with_cookie["errors"] == [] and with_cookie["session"]["token"]
    assert without_cookie["session"] is None
    [refusal] = without_cookie["errors"]
    assert refusal["code"] == "TOO_MANY_ATTEMPTS"
    assert 0 < refusal["retryAfterSeconds"] <= 900
    assert refusal["message"].startswith("Too many attempts. Wait ")


def test_api4_spoofed_forwarded_for_ignored_and_trusted_proxy_honoured(
    proxied_gateway: ServedGateway,
) -> None:
    """Only GARDIEN_TRUSTED_PROXIES may name the client. A direct peer that claims a new address
    each time still meets the per-IP limit (100 failures), and is recorded as itself; the same
    header from the configured proxy is believed."""
    url = f"{proxied_gateway.url}/graphql"
    with httpx.Client() as direct:
        codes = [
            _sign_in_answer(
                direct.post(
                    url,
                    json={"query": SIGN_IN, "variables": _variables(f"u{n}@example.test", "x!")},
                    headers={"X-Forwarded-For": f"198.51.100.{n}"},
                )
            )["errors"][0]["code"]
            for n in range(101)
        ]
    proxy = httpx.Client(transport=httpx.HTTPTransport(local_address=PROXY_ADDRESS))
    with proxy:
        through_proxy = _sign_in_answer(
            proxy.post(
                url,
                json={"query": SIGN_IN, "variables": _variables("v@example.test", "x!")},
                headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.77"},
            )
        )

    assert codes == ["INVALID_CREDENTIALS"] * 100 + ["TOO_MANY_ATTEMPTS"]
    assert through_proxy["errors"][0]["code"] == "INVALID_CREDENTIALS"
    recorded = _rows(
        proxied_gateway,
        "SELECT ip, count(*) FROM activity_event WHERE type = 'sign_in.failed'"
        " GROUP BY ip ORDER BY ip",
    )
    assert recorded == [("127.0.0.1", 100), ("203.0.113.77", 1)]
