"""Factories: real rows through the real code paths, with short defaults."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from itertools import count
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tortoise.models import Model
from tortoise.transactions import in_transaction

from gardien.mail.templates import Template, links_in
from gardien.models.domains import Domain
from gardien.models.enums import DomainStatus, Role, TwoFactorKind
from gardien.models.mfa import TwoFactorMethod
from gardien.models.organisations import Membership, Organisation
from gardien.models.outbox import OutboxMessage
from gardien.models.users import User
from gardien.resolvers import accounts, recovery, sessions, sign_ups
from gardien.resolvers.authz import RequestScope
from gardien.resolvers.services import RequestMeta, Services
from gardien.security import hash_password

PASSWORD = "plum tree under snow"
_sequence = count(1)


@dataclass
class Member:
    user: User
    membership: Membership
    token: str | None = None


# ACT-2: the browser each test user signed up with, so that the factories' later sign-ins come
# from it (as a person's do) rather than from a new device that the security e-mail would report.
_DEVICE_COOKIES: dict[str, str] = {}


def device_cookie(email: str) -> str | None:
    """The device cookie of the browser this user signed up with (None for other users)."""
    return _DEVICE_COOKIES.get(email.strip().lower())


async def sign_up(
    services: Services,
    email: str | None = None,
    name: str = "Ada Lovelace",
    *,
    password: str = PASSWORD,
    language: str | None = None,
    meta: RequestMeta | None = None,
) -> accounts.SignUpResult:
    """ORG-1 the way a newcomer does it: ask, read the confirmation e-mail, confirm (from `meta`,
    the browser and place of the sign-up; its device cookie is in the result)."""
    email = email or f"user{next(_sequence)}@example.test"
    meta = meta or RequestMeta(ip=None)
    await sign_ups.request_sign_up(
        services, meta, email=email, password=password, display_name=name, language=language
    )
    token = await sign_up_token_sent_to(email.strip().lower())
    result = await sign_ups.confirm_sign_up(services, meta, token=token)
    _DEVICE_COOKIES[email.strip().lower()] = result.device_cookie
    # The account is what the caller arranges; its confirmation e-mail, read and used, is not
    # part of that world (tests of other mail count the outbox from empty). The sign-up tests
    # check that message themselves.
    await OutboxMessage.filter(
        recipient=result.user.email, template=Template.SIGN_UP_CONFIRMATION.value
    ).delete()
    return result


async def sign_up_token_sent_to(email: str) -> str:
    """The token of the newest sign-up confirmation e-mail queued for this address."""
    message = (
        await OutboxMessage.filter(recipient=email, template=Template.SIGN_UP_CONFIRMATION.value)
        .order_by("-id")
        .first()
    )
    assert message is not None, f"no sign-up confirmation was sent to {email}"
    (link,) = links_in(message.payload["text"])
    (token,) = parse_qs(urlsplit(link).fragment.split("?", 1)[1])["token"]
    return token


async def add_member(
    services: Services, organisation: Organisation, role: Role, email: str | None = None
) -> Member:
    now = services.clock.now()
    user = await User.create(
        email=email or f"member{next(_sequence)}@example.test",
        password_hash=await hash_password(PASSWORD),
        password_changed_at=now,
        display_name=f"Member {role.value.title()}",
        current_organisation=organisation,
        created_at=now,
    )
    membership = await Membership.create(
        organisation=organisation, user=user, role=role, created_at=now
    )
    return Member(user=user, membership=membership)


async def confirm_totp(services: Services, user: User) -> TwoFactorMethod:
    now = services.clock.now()
    return await TwoFactorMethod.create(
        user=user,
        kind=TwoFactorKind.TOTP,
        label="Phone",
        totp_secret_encrypted=services.keyring.encrypt(b"JBSWY3DPEHPK3PXP", "totp"),
        created_at=now,
        confirmed_at=now,
    )


async def add_domain(
    services: Services,
    organisation: Organisation,
    name: str,
    *,
    expires_in: timedelta,
    status: DomainStatus = DomainStatus.ACTIVE,
    renewal_warranty: bool = False,
    redemption_ends_in: timedelta | None = None,
) -> Domain:
    """A domain of `organisation`; its TLD (from the name) must be in the migrated TLD table."""
    now = services.clock.now()
    return await Domain.create(
        organisation=organisation,
        name=name,
        live_name=None if status == DomainStatus.RELEASED else name,
        tld_id=name.rsplit(".", 1)[1],
        status=status,
        registered_at=now - timedelta(days=400),
        expires_at=now + expires_in,
        redemption_ends_at=now + redemption_ends_in if redemption_ends_in is not None else None,
        released_at=now if status == DomainStatus.RELEASED else None,
        renewal_warranty=renewal_warranty,
    )


async def signed_in_scope(services: Services, email: str) -> RequestScope:
    """The request scope a request of this user carries: signed in and authenticated for real."""
    result = await accounts.sign_in(
        services,
        RequestMeta(ip="198.51.100.1"),
        login=email,
        password=PASSWORD,
        device_cookie=device_cookie(email),
    )
    assert result.session is not None
    actor = await sessions.authenticate(services, result.session.token)
    assert actor is not None
    return RequestScope(actor)


def columns(instance: Model) -> dict[str, Any]:
    """A saved model's stored columns and values, to compare rows written by different means."""
    meta = instance._meta
    return {
        column: getattr(instance, meta.fields_db_projection_reverse.get(column, column))
        for column in meta.db_fields
    }


NEW_PASSWORD = "lantern over quiet harbour"


async def reset_password(services: Services, user_id: int, meta: RequestMeta | None = None) -> None:
    """REC-1's end, as a reset by e-mail code commits it: NEW_PASSWORD, every way in ended."""
    user = await User.get(id=user_id)
    new_hash = await hash_password(NEW_PASSWORD)
    async with in_transaction():
        await recovery.reset_credentials(
            services, meta or RequestMeta(ip=None), user, new_hash, via="code"
        )
