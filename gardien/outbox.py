"""Claiming due outbox rows and the retry backoff, shared by the e-mail and webhook workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import datetime, timedelta
from typing import Any, TypeVar

from tortoise.expressions import F
from tortoise.models import Model
from tortoise.transactions import in_transaction

from gardien.models.enums import OutboxStatus

Row = TypeVar("Row", bound=Model)


def backoff(attempts: int, rng: random.Random, *, base: timedelta, cap: timedelta) -> timedelta:
    """The wait after the `attempts`-th failed attempt: exponential, capped, 75-100 % jitter.

    The jitter keeps rows that failed together (a receiver's outage) from all coming back at the
    same second.
    """
    capped = min(cap, base * (1 << min(max(attempts - 1, 0), 20)))
    return capped * rng.uniform(0.75, 1.0)


async def claim_due(
    model: type[Row], now: datetime, lease_until: datetime, limit: int, **filters: Any
) -> list[Row]:
    """Take up to `limit` due PENDING rows of `model` for one lease, counting the attempt.

    The model needs `id`, `status`, `attempts` and `next_attempt_at`. A claim runs
    `SELECT … FOR NO KEY UPDATE SKIP LOCKED` in a transaction, so concurrent workers take disjoint
    batches without waiting for each other, and then moves each row's next_attempt_at one lease
    ahead with a compare-and-set, so the row is invisible to other workers while it is being
    delivered and due again if this worker dies. The transaction ends before any network traffic:
    no database lock is held over the network. SQLite has no row locks (the FOR UPDATE is dropped
    there); its writes are serialised, and the compare-and-set still keeps a row to one claim.
    """
    claimed: list[Row] = []
    async with in_transaction():
        due = (
            await model.filter(status=OutboxStatus.PENDING, next_attempt_at__lte=now, **filters)
            .order_by("next_attempt_at", "id")
            .limit(limit)
            .select_for_update(skip_locked=True, no_key=True)
        )
        for row in due:
            taken = await model.filter(
                id=row.pk, status=OutboxStatus.PENDING, next_attempt_at__lte=now
            ).update(next_attempt_at=lease_until, attempts=F("attempts") + 1)
            if taken:
                # Row is bound to Model, which declares no `attempts`: every model claimed here
                # has one (see above), and a typing Protocol cannot also be a Tortoise Model.
                row.attempts += 1  # type: ignore[attr-defined]
                row.next_attempt_at = lease_until
                claimed.append(row)
    return claimed


class PollingWorker:
    """What every outbox worker (e-mail, SMS, webhooks) shares around its own `run_once`: drain
    what is due now, or poll until stopped, sleeping only when a round found less than a batch.

    Subclasses set `_batch_size`, `poll_seconds` and `label` (for the logs), and may say more
    about where they deliver in `describe()`.
    """

    _batch_size: int
    poll_seconds: float = 2.0
    label: str = "outbox worker"
    logger: logging.Logger = logging.getLogger("gardien.outbox")

    async def run_once(self) -> int:
        """Claim one batch and try to deliver it; returns how many were attempted."""
        raise NotImplementedError

    def describe(self) -> str:
        return ""

    async def drain(self) -> int:
        """Attempt everything due now (each at most once); returns how many were attempted."""
        total = 0
        while attempted := await self.run_once():
            total += attempted
        return total

    async def run(self, stop: asyncio.Event, poll_seconds: float | None = None) -> None:
        """Deliver until `stop` is set, polling when nothing is due."""
        wait = self.poll_seconds if poll_seconds is None else poll_seconds
        described = self.describe()
        self.logger.info("%s started%s", self.label, f" ({described})" if described else "")
        while not stop.is_set():
            try:
                attempted = await self.run_once()
            except Exception:
                # The database may be restarting; the next poll tries again.
                self.logger.exception("%s: delivery round failed", self.label)
                attempted = 0
            if attempted < self._batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
        self.logger.info("%s stopped", self.label)
