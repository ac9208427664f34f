"""Handing one SMS to a gateway: a recording sender (development, tests) and an HTTP webhook."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

import httpx
import orjson

from gardien.clock import Clock
from gardien.webhooks import SIGNATURE_HEADER, signature_header

USER_AGENT = "Gardien-SMS/1"
REFERENCE_HEADER = "Gardien-Sms-Reference"
# A gateway answers at once and sends afterwards; a slow one must not hold the worker's lease.
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
DEADLINE_SECONDS = 15.0
ERROR_LENGTH = 500


@dataclass(frozen=True)
class Sms:
    """One message on its way: `reference` is the same for every attempt (the gateway's
    idempotency key), so a retry after a lost answer can be recognised as the same message."""

    reference: str
    to: str
    text: str


class SmsDeliveryError(Exception):
    """The gateway did not take the message. `permanent`: retrying the same message cannot help
    (the gateway refused it as such); otherwise the outbox tries again later."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class SmsSender(Protocol):
    async def send(self, sms: Sms) -> None:
        """Return once the gateway has taken the message; raise SmsDeliveryError otherwise."""

    def describe(self) -> str:
        """Where messages go, for the worker's log (no secret)."""


@dataclass
class RecordingSmsSender:
    """Keeps what it is given instead of sending it: the development and test gateway.

    `failing` simulates an outage (every send raises a temporary error until it is cleared).
    """

    sent: list[Sms] = field(default_factory=list)
    failing: bool = False

    async def send(self, sms: Sms) -> None:
        if self.failing:
            raise SmsDeliveryError("recording gateway unavailable")
        self.sent.append(sms)

    def describe(self) -> str:
        return "recording (nothing leaves this machine)"

    def texts_to(self, number: str) -> list[str]:
        return [sms.text for sms in self.sent if sms.to == number]


class WebhookSmsSender:
    """POSTs {"reference", "to", "text"} as JSON to the gateway's URL, signed like the platform's
    webhooks (Gardien-Signature: t=<unix time>,v1=<HMAC-SHA256 of "t.body">) with the gateway's
    shared secret, so the gateway can refuse forged or replayed requests.

    A 2xx is taken; 4xx other than 408/429 is a refusal of this message (permanent); anything
    else (5xx, 408, 429, no answer) is an outage, retried by the outbox with backoff. The URL is
    the operator's setting, not user input: no SSRF address check as for integrators' webhooks.
    """

    def __init__(
        self,
        url: str,
        secret: str,
        clock: Clock,
        *,
        timeout: httpx.Timeout = TIMEOUT,
        deadline: float = DEADLINE_SECONDS,
    ) -> None:
        self._url = url
        self._secret = secret
        self._clock = clock
        self._timeout = timeout
        self._deadline = deadline

    def describe(self) -> str:
        return f"webhook {httpx.URL(self._url).copy_with(query=None, username=None, password=None)}"

    async def send(self, sms: Sms) -> None:
        body = orjson.dumps({"reference": sms.reference, "to": sms.to, "text": sms.text})
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            REFERENCE_HEADER: sms.reference,
            SIGNATURE_HEADER: signature_header(
                self._secret, int(self._clock.now().timestamp()), body
            ),
        }
        try:
            async with (
                asyncio.timeout(self._deadline),
                httpx.AsyncClient(
                    timeout=self._timeout, follow_redirects=False, trust_env=False
                ) as client,
            ):
                response = await client.post(self._url, content=body, headers=headers)
        except TimeoutError:
            raise SmsDeliveryError(f"no answer within {self._deadline:g} s") from None
        except httpx.HTTPError as error:
            raise SmsDeliveryError(f"{type(error).__name__}: {error}"[:ERROR_LENGTH]) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        refused = 400 <= status < 500 and status not in (408, 429)
        raise SmsDeliveryError(f"HTTP {status}", permanent=refused)
