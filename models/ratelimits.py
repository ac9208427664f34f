"""Fixed-window attempt counters for guessable inputs (API-4), when Redis is not configured."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class RateLimitCounter(Model):
    id = fields.IntField(primary_key=True)
    # "<rule>:<digest of the subject>", so no login or IP is stored in clear here.
    key = fields.CharField(max_length=128, unique=True)
    count = fields.IntField(default=0)
    window_ends_at = fields.DatetimeField()

    class Meta:
        table = "rate_limit_counter"
