"""OPS-5 on a served gateway: health, readiness, metrics, request IDs; the CLI's schema command."""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from gardien.models.enums import DomainStatus, ProductKind, Role
from gardien.schema import schema
from tests.e2e.conftest import ServedGateway, fresh_gateway_env, gardien, start_gateway


def test_ops5_health_and_readiness(served: ServedGateway) -> None:
    health = httpx.get(f"{served.url}/healthz")
    ready = httpx.get(f"{served.url}/readyz")

    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ok", "database": "ok"})


def test_ops5_metrics_count_requests_and_error_codes(served: ServedGateway) -> None:
    invalid = httpx.post(f"{served.url}/graphql", json={"query": "{ nope }"})
    wrong_password = httpx.post(
        f"{served.url}/graphql",
        json={
            "query": 'mutation { signIn(input: {login: "x@y.z", password: "wrong pass"}) { errors { code } } }'
        },
    )

    metrics = httpx.get(f"{served.url}/metrics").text

    assert invalid.json()["errors"][0]["message"].startswith("Cannot query field 'nope'")
    assert wrong_password.json() == {
        "data": {"signIn": {"errors": [{"code": "INVALID_CREDENTIALS"}]}}
    }

    assert 'gardien_http_requests_total{method="POST",route="/graphql",status="200"}' in metrics
    assert "gardien_http_request_duration_seconds_bucket" in metrics
    assert 'gardien_errors_total{code="GRAPHQL_VALIDATION_FAILED"}' in metrics


def test_ops5_request_id_returned_and_echoed(served: ServedGateway) -> None:
    generated = httpx.get(f"{served.url}/healthz")
    echoed = httpx.get(f"{served.url}/healthz", headers={"x-request-id": "trace-0123456789"})
    hostile = httpx.get(
        f"{served.url}/healthz", headers={"x-request-id": "<script>bad id</script>"}
    )

    assert len(generated.headers["x-request-id"]) == 32
    assert echoed.headers["x-request-id"] == "trace-0123456789"
    assert hostile.headers["x-request-id"] != "<script>bad id</script>"


def test_mfa8_session_cookie_httponly_strict_and_ends_with_browser_unless_remembered(
    served: ServedGateway,
) -> None:
    query = "mutation($i: SignInInput!) { signIn(input: $i) { session { token } errors { code } } }"

    def cookie(remember: bool) -> str:
        response = httpx.post(
            f"{served.url}/graphql",
            json={
                "query": query,
                "variables": {
                    "i": {
                        "login": "lea.collab@demo.example",
                        "password": "correct horse battery staple",
                        "rememberBrowser": remember,
                    }
                },
            },
        )
        # The device cookie is set beside it (long-lived by design); this test is about the session.
        (session_cookie,) = [
            line.lower()
            for line in response.headers.get_list("set-cookie")
            if line.startswith("gardien_session=")
        ]
        return session_cookie

    browser_session, remembered = cookie(False), cookie(True)

    for value in (browser_session, remembered):
        assert "httponly" in value and "samesite=strict" in value
    assert "max-age" not in browser_session and "expires" not in browser_session
    assert "max-age=43200" in remembered


def test_mfa7_cookie_authenticates_the_browser(served: ServedGateway) -> None:
    with httpx.Client(base_url=served.url) as browser:
        browser.post(
            "/graphql",
            json={
                "query": 'mutation { signIn(input: {login: "tom.extern@demo.example", '
                'password: "correct horse battery staple"}) { errors { code } } }'
            },
        )
        viewer = browser.post("/graphql", json={"query": "{ viewer { email } }"}).json()

    assert viewer == {"data": {"viewer": {"email": "tom.extern@demo.example"}}}


def test_api5_cli_schema_prints_the_sdl(served: ServedGateway) -> None:
    done = gardien("schema", env=served.env)

    assert done.returncode == 0
    assert done.stdout.strip() == schema.as_str().strip()


def test_ops1_demo_is_idempotent(served: ServedGateway) -> None:
    again = gardien("demo", env=served.env)

    assert again.returncode == 0
    assert again.stdout.startswith("Demo data already loaded.")
    assert "anna.legal@demo.example" in again.stdout


def test_ops1_demo_has_every_role_product_kind_and_domain_state(served: ServedGateway) -> None:
    database = Path(served.env["GARDIEN_VAR_DIR"]) / "gardien.sqlite3"
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
        roles = {r for (r,) in connection.execute("SELECT role FROM membership")}
        kinds = {k for (k,) in connection.execute("SELECT kind FROM product")}
        states = {s for (s,) in connection.execute("SELECT status FROM domain")}
        events = connection.execute("SELECT COUNT(*) FROM activity_event").fetchone()[0]

    assert roles == {role.value for role in Role}
    assert kinds == {kind.value for kind in ProductKind}
    assert states == {state.value for state in DomainStatus}
    assert events >= 4


def test_ops5_served_gateway_logs_one_line_per_request_and_no_query_string(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Issue 5 item 14, as `gardien serve` really runs (uvicorn included), at INFO."""
    env = {**fresh_gateway_env(tmp_path_factory.mktemp("logs")), "GARDIEN_LOG_LEVEL": "INFO"}
    secret = "SECRET-IN-A-GET-QUERY-STRING"
    query = f'mutation {{ signIn(input: {{login: "x@y.z", password: "{secret}"}}) {{ errors {{ code }} }} }}'

    with start_gateway(env) as gateway:
        refused = httpx.get(f"{gateway.url}/graphql", params={"query": query})
        health = httpx.get(f"{gateway.url}/healthz", params={"token": secret})
        lines = _log_lines_once(gateway, "/healthz 200")

    access = [json.loads(line) for line in lines if '"gardien.access"' in line]
    assert (refused.status_code, health.status_code) == (405, 200)
    assert [entry["message"].split()[:3] for entry in access[-2:]] == [
        ["GET", "/graphql", "405"],
        ["GET", "/healthz", "200"],
    ]
    assert not [line for line in lines if secret in line]
    assert not [line for line in lines if "uvicorn.access" in line]


def _log_lines_once(gateway: ServedGateway, marker: str) -> list[str]:
    """The served gateway's log once `marker` is in it: the access line is written after the
    answer is sent, so it may land a moment after the client has read the answer."""
    deadline = time.monotonic() + 5
    while True:
        lines = gateway.log_path.read_text().splitlines()
        if any(marker in line for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)
