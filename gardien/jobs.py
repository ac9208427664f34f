"""The job runner: time-driven work (the domain lifecycle, expired attempt counters, sign-ups and
stale known devices), safe when several replicas run it."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict

from gardien.resolvers import domain_lifecycle, ratelimits, recovery, security_notices, sign_ups
from gardien.resolvers.domain_lifecycle import JobReport
from gardien.resolvers.services import Services

logger = logging.getLogger("gardien.jobs")


async def run_due(services: Services) -> JobReport:
    """Run every job that is due now, by the services' clock; running it twice does nothing more.

    Expiry first, then release (a domain whose redemption also ended while no runner ran goes
    all the way in one run), then reminders for domains that are still active.
    """
    entered, renewed = await domain_lifecycle.expire_due(services)
    released = await domain_lifecycle.release_due(services)
    reminders = await domain_lifecycle.send_due_reminders(services)
    # Every guessed login leaves a counter behind; ended windows count for nothing (API-4).
    await ratelimits.prune_expired(services)
    purged = await sign_ups.purge_expired(services)
    await recovery.purge_expired(services)
    devices_purged = await security_notices.purge_stale_known_devices(services)
    report = JobReport(
        entered_redemption=entered,
        renewed_by_warranty=renewed,
        released=released,
        reminders_sent=reminders,
        sign_ups_purged=purged,
        known_devices_purged=devices_purged,
    )
    if any(asdict(report).values()):
        # The JSON log line carries the message only, so the counts go into it.
        logger.info("jobs run: %s", asdict(report))
    return report


async def run_periodically(services: Services, interval_seconds: float) -> None:
    """`gardien serve`'s loop: run_due now, then every interval, until cancelled."""
    while True:
        try:
            await run_due(services)
        except Exception:
            # A failed run (database restarting) must not end the loop; the next one retries.
            logger.exception("job run failed")
        await asyncio.sleep(interval_seconds)
