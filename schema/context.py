"""The per-request context handed to every field: who calls, from where, with which services."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

import strawberry

from gardien.resolvers.authz import Actor, RequestScope
from gardien.resolvers.services import RequestMeta, Services
from gardien.schema.loaders import Loaders


@dataclass(frozen=True)
class SessionCookie:
    """What the HTTP layer must do with the session cookie once the operation is done."""

    token: str | None  # None clears the cookie
    persistent: bool = False


@dataclass
class Context:
    services: Services
    actor: Actor
    meta: RequestMeta
    loaders: Loaders = field(default_factory=Loaders)
    session_cookie: SessionCookie | None = None
    # The device cookie the browser sent (OWASP device cookies), and the new one to set, if any.
    device_cookie: str | None = None
    new_device_cookie: str | None = None
    # The caller with the memberships looked up during this request (authz.membership_of):
    # made with the context, so it lives exactly as long as one request.
    scope: RequestScope = field(init=False)

    def __post_init__(self) -> None:
        self.scope = RequestScope(self.actor)


Info: TypeAlias = strawberry.Info[Context, None]
