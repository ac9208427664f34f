"""What operations need from the outside world, gathered in one object passed to each of them."""

from __future__ import annotations

from dataclasses import dataclass, field

from gardien.clock import Clock
from gardien.events import EventBus
from gardien.mail.outbox import MailOutbox
from gardien.security import Keyring
from gardien.settings import Settings
from gardien.sms.outbox import SmsOutbox


@dataclass(frozen=True)
class Services:
    settings: Settings
    clock: Clock
    keyring: Keyring
    # Live security events (EVT-1…EVT-4): published after commit; in-process unless Redis is set.
    events: EventBus = field(default_factory=EventBus)

    @property
    def mail(self) -> MailOutbox:
        """E-mail through the transactional outbox (OPS-6): queued in the caller's transaction."""
        return MailOutbox(self.clock)

    @property
    def sms(self) -> SmsOutbox:
        """SMS through the same transactional outbox (OPS-6): queued in the caller's transaction."""
        return SmsOutbox(self.clock)


@dataclass(frozen=True)
class TokenUse:
    """API-6 "every use recorded": the integrator token a request came through."""

    id: int
    kind: str  # "personal" or "service_account"

    def as_dict(self) -> dict[str, int | str]:
        return {"id": self.id, "kind": self.kind}


@dataclass(frozen=True)
class RequestMeta:
    """Where a request comes from, as recorded on sessions and activity events (ACT-1)."""

    ip: str | None = None
    country: str | None = None
    device: str | None = None
    # ACT-2: browser and OS families without versions, so an update is not a new device.
    device_family: str | None = None
    request_id: str | None = None
    # Set when the request authenticated with a token: every event it records names the token,
    # not only the person it acts for.
    via_token: TokenUse | None = None
