"""The job runner inside `gardien serve`: its settings, and the lifespan task that runs it."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from gardien.app import create_app
from gardien.clock import ManualClock
from gardien.models.domains import Domain
from gardien.models.enums import DomainStatus
from gardien.resolvers.services import Services
from gardien.settings import Settings, SettingsError, load_settings
from tests import factories


def test_dom3_jobs_run_by_default_every_five_minutes(tmp_path: Path) -> None:
    settings = load_settings({"GARDIEN_VAR_DIR": str(tmp_path)})

    assert (settings.jobs, settings.jobs_interval_seconds) == (True, 300)


def test_dom3_jobs_can_be_turned_off_and_their_interval_set(tmp_path: Path) -> None:
    settings = load_settings(
        {"GARDIEN_VAR_DIR": str(tmp_path), "GARDIEN_JOBS": "off", "GARDIEN_JOBS_INTERVAL": "60"}
    )

    assert (settings.jobs, settings.jobs_interval_seconds) == (False, 60)


@pytest.mark.parametrize("interval", ["0", "-5", "1.5", "ten", "86401"])
def test_dom3_jobs_interval_must_be_whole_seconds_up_to_a_day(
    tmp_path: Path, interval: str
) -> None:
    with pytest.raises(SettingsError, match="GARDIEN_JOBS_INTERVAL must be a number of seconds"):
        load_settings({"GARDIEN_VAR_DIR": str(tmp_path), "GARDIEN_JOBS_INTERVAL": interval})


async def _status_once_served(settings: Settings, clock: ManualClock, domain_id: int) -> str:
    app = create_app(settings, clock=clock, manage_database=False)
    async with app.router.lifespan_context(app):
        # The task runs at start-up; give it a bounded moment to finish its first run.
        for _ in range(200):
            domain = await Domain.get(id=domain_id)
            if domain.status != DomainStatus.ACTIVE:
                break
            await asyncio.sleep(0.01)
    return (await Domain.get(id=domain_id)).status.value


@pytest.mark.usefixtures("database")
async def test_dom3_serve_runs_the_due_jobs_unless_turned_off(
    settings: Settings, services: Services, clock: ManualClock
) -> None:
    owner = await factories.sign_up(services)
    domain = await factories.add_domain(
        services, owner.organisation, "served.com", expires_in=-timedelta(minutes=5)
    )

    off = await _status_once_served(dataclasses.replace(settings, jobs=False), clock, domain.id)
    on = await _status_once_served(settings, clock, domain.id)

    assert (off, on) == ("ACTIVE", "REDEMPTION")
