"""The assembled app: /metrics access."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx

from gardien.app import create_app
from gardien.settings import Settings, load_settings

METRICS_TOKEN = secrets.token_urlsafe(32)


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
