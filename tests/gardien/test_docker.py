"""OPS-4: the image and the compose file stay in step with the package and its settings.

Building the image needs a Docker daemon and the network, which the test machine need not have;
what breaks an image in practice is a folder or a setting added to the code and not to docker/,
and that is read here from the files themselves.
"""

from __future__ import annotations

import secrets
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from gardien.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker" / "compose.yaml"
# Compose takes the real key from the environment; the settings refuse a weak one.
SECRET = secrets.token_urlsafe(48)


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _gateways(services: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if "serve" in (s.get("command") or [])}


def _environment(service: dict[str, Any]) -> dict[str, str]:
    environment = dict(service.get("environment") or {})
    environment["GARDIEN_SECRET_KEY"] = SECRET
    return {key: str(value) for key, value in environment.items()}


def test_ops4_image_copies_every_package_folder() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    folders = set(pyproject["tool"]["setuptools"]["package-dir"].values())
    copies = {
        line.split()[1]
        for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if line.startswith("COPY ")
    }
    # A folder left out installs a package without it: the image fails on its first import.
    assert folders <= copies, folders - copies
    assert "pyproject.toml" in copies


def test_ops4_compose_runs_replicas_on_shared_postgres_redis_and_mail_catcher() -> None:
    services = _compose()["services"]
    gateways = _gateways(services)
    assert len(gateways) >= 2  # replicas: live events must cross processes (EVT-3)
    for name, gateway in gateways.items():
        environment = _environment(gateway)
        for variable, service in (
            ("GARDIEN_DATABASE_URL", "postgres"),
            ("GARDIEN_REDIS_URL", "redis"),
            ("GARDIEN_SMTP_URL", "mailpit"),
        ):
            assert urlsplit(environment[variable]).hostname == service, (name, variable)
            assert service in services
        # OPS-3: the schema is migrated once, before any replica serves.
        assert gateway["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    migrate = services["migrate"]
    assert migrate["command"] == ["gardien", "migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in services["postgres"]


def test_ops4_compose_environment_is_one_the_gateway_accepts_in_production() -> None:
    for gateway in _gateways(_compose()["services"]).values():
        settings = load_settings(_environment(gateway))
        assert settings.env == "production"
        assert settings.redis_url is not None
