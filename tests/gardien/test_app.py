"""The assembled app: /metrics access, the client address, and the device cookie it sets."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gardien.app import create_app
from gardien.clock import ManualClock
from gardien.models.activity import ActivityEvent
from gardien.resolvers.services import Services
from gardien.settings import Settings, load_settings
from tests import factories

METRICS_TOKEN = secrets.token_urlsafe(32)
SIGN_IN = (
    "mutation($i: SignInInput!) { signIn(input: $i) {"
    " session { token } errors { code message field retryAfterSeconds } } }"
)


def _settings(tmp_path: Path, **extra: str) -> Settings:
    return load_settings(
        {
            "GARDIEN_VAR_DIR": str(tmp_path),
            "GARDIEN_SECRET_KEY": secrets.token_urlsafe(48),
            **{f"GARDIEN_{name.upper()}": value for name, value in extra.items()},
        }
    )


async def _get_metrics(settings: Settings, authorization: str | None = None) -> httpx.Response:
    app = create_app(settings, manage_database=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        headers = {"authorization": authorization} if authorization else {}
        return await http.get("/metrics", headers=headers)


PRODUCTION = {"env": "production", "public_url": "https://manager.example"}


async def test_ops5_metrics_in_production_answer_only_the_bearer_token(tmp_path: Path) -> None:
    settings = _settings(tmp_path, metrics_token=METRICS_TOKEN, **PRODUCTION)

    anonymous = await _get_metrics(settings)
    wrong = await _get_metrics(settings, f"Bearer {METRICS_TOKEN[:-1]}x")
    basic = await _get_metrics(settings, f"Basic {METRICS_TOKEN}")
    right = await _get_metrics(settings, f"bearer {METRICS_TOKEN}")

    for refused in (anonymous, wrong, basic):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Bearer realm="metrics"'
        assert "gardien_" not in refused.text
    assert right.status_code == 200
    assert "gardien_http_requests_total" in right.text


async def test_ops5_metrics_in_production_without_a_token_do_not_exist(tmp_path: Path) -> None:
    response = await _get_metrics(_settings(tmp_path, **PRODUCTION))

    assert response.status_code == 404
    assert "gardien_" not in response.text


async def test_ops5_metrics_in_development_open_unless_a_token_is_set(tmp_path: Path) -> None:
    open_ = await _get_metrics(_settings(tmp_path))
    guarded = _settings(tmp_path, metrics_token=METRICS_TOKEN)

    assert open_.status_code == 200 and "gardien_errors" in open_.text
    assert (await _get_metrics(guarded)).status_code == 401
    assert (await _get_metrics(guarded, f"Bearer {METRICS_TOKEN}")).status_code == 200


@pytest.fixture
def proxied_settings(tmp_path: Path) -> Settings:
    return _settings(tmp_path, trusted_proxies="10.0.0.0/8")


@pytest.fixture
async def http_from(
    proxied_settings: Settings, clock: ManualClock, database: str
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """Clients of one app: a trusted proxy (10.0.0.2) and an untrusted peer (203.0.113.50)."""
    app = create_app(proxied_settings, clock=clock, manage_database=False)
    clients: dict[str, httpx.AsyncClient] = {}
    for name, peer in (("proxy", "10.0.0.2"), ("direct", "203.0.113.50")):
        transport = httpx.ASGITransport(app=app, client=(peer, 5000))
        clients[name] = httpx.AsyncClient(transport=transport, base_url="http://testserver")
    yield clients
    for client in clients.values():
        await client.aclose()


async def _sign_in(
    http: httpx.AsyncClient, login: str, password: str, forwarded_for: str | None = None
) -> httpx.Response:
    headers = {"x-forwarded-for": forwarded_for} if forwarded_for else {}
    return await http.post(
        "/graphql",
        json={"query": SIGN_IN, "variables": {"i": {"login": login, "password": password}}},
        headers=headers,
    )


async def test_api4_spoofed_forwarded_for_from_untrusted_peer_ignored_by_limit_and_record(
    http_from: dict[str, httpx.AsyncClient],
) -> None:
    """Each of 101 concurrent guesses claims a new address; the per-IP budget (100) still runs
    out for the peer."""
    responses = await asyncio.gather(
        *(
            _sign_in(http_from["direct"], f"u{n}@example.test", "guess!", f"198.51.100.{n}")
            for n in range(101)
        )
    )

    codes = sorted(r.json()["data"]["signIn"]["errors"][0]["code"] for r in responses)
    assert codes == ["INVALID_CREDENTIALS"] * 100 + ["TOO_MANY_ATTEMPTS"]
    recorded = {e.ip for e in await ActivityEvent.filter(type="sign_in.failed")}
    assert recorded == {"203.0.113.50"}


async def test_api4_forwarded_for_from_a_trusted_proxy_names_the_client(
    services: Services, http_from: dict[str, httpx.AsyncClient]
) -> None:
    await factories.sign_up(services, email="rae@example.test")
    before = await ActivityEvent.all().count()

    failed = await _sign_in(
        http_from["proxy"], "rae@example.test", "guess!", "6.6.6.6, 198.51.100.7"
    )
    signed_in = await _sign_in(
        http_from["proxy"], "rae@example.test", factories.PASSWORD, "198.51.100.8"
    )

    assert failed.json()["data"]["signIn"]["errors"][0]["code"] == "INVALID_CREDENTIALS"
    assert signed_in.json()["data"]["signIn"]["errors"] == []
    events = (await ActivityEvent.all().order_by("id"))[before:]
    assert [(e.type, e.ip) for e in events] == [
        ("sign_in.failed", "198.51.100.7"),
        ("sign_in.succeeded", "198.51.100.8"),
        # A client with no device cookie is a new device for the account (ACT-2).
        ("sign_in.new_location", "198.51.100.8"),
    ]


async def test_api4_device_cookie_set_on_success_httponly_strict_for_ninety_days(
    services: Services, http_from: dict[str, httpx.AsyncClient]
) -> None:
    await factories.sign_up(services, email="sam@example.test")

    failed = await _sign_in(http_from["direct"], "sam@example.test", "guess!")
    succeeded = await _sign_in(http_from["direct"], "sam@example.test", factories.PASSWORD)

    assert [c for c in failed.headers.get_list("set-cookie") if "gardien_device" in c] == []
    (device,) = [c for c in succeeded.headers.get_list("set-cookie") if "gardien_device" in c]
    attributes = [part.strip().lower() for part in device.split(";")]
    assert attributes[0].startswith("gardien_device=")
    assert sorted(attributes[1:]) == ["httponly", "max-age=7776000", "path=/", "samesite=strict"]


async def test_api4_device_cookie_is_host_prefixed_and_secure_over_https(
    tmp_path: Path, services: Services, clock: ManualClock, database: str
) -> None:
    settings = _settings(tmp_path, public_url="https://manager.example")
    await factories.sign_up(services, email="tia@example.test")
    app = create_app(settings, clock=clock, manage_database=False)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.51", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        succeeded = await _sign_in(http, "tia@example.test", factories.PASSWORD)

    (device,) = [c for c in succeeded.headers.get_list("set-cookie") if "_device=" in c]
    assert device.startswith("__Host-gardien_device=")
    assert "; secure" in device.lower()


# Run in a process of its own: a serving app opens its own database (the tests' is open here)
# and freezes its heap (this one is shared by every test).
_FROZEN_ONCE_SERVING = """
import asyncio, gc
from gardien.app import create_app
from gardien.settings import load_settings

async def main():
    settings = load_settings()
    handed, serving = create_app(settings, manage_database=False), create_app(settings)
    async with handed.router.lifespan_context(handed):
        print(gc.get_freeze_count())
    async with serving.router.lifespan_context(serving):
        print(gc.get_freeze_count())

asyncio.run(main())
"""


def test_ops1_a_serving_process_freezes_the_heap_its_start_up_built(tmp_path: Path) -> None:
    """A process that opens its own database serves (gardien serve, each of its workers): once
    started, it moves what start-up built out of the collector's reach, so full collections no
    longer walk the schema and the models each time. An app handed a database (the tests')
    leaves the collector alone: many apps share one heap there."""
    environment = {
        **os.environ,
        "GARDIEN_VAR_DIR": str(tmp_path),
        "GARDIEN_SECRET_KEY": secrets.token_urlsafe(48),
        "GARDIEN_JOBS": "off",
        "GARDIEN_OUTBOX_WORKER": "off",
    }
    environment.pop("GARDIEN_DATABASE_URL", None)
    environment.pop("GARDIEN_REDIS_URL", None)

    ran = subprocess.run(
        [sys.executable, "-c", _FROZEN_ONCE_SERVING],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )

    handed, serving = (int(line) for line in ran.stdout.split())
    assert handed == 0
    assert serving > 10_000
