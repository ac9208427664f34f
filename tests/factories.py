"""Factories: real rows through the real code paths, with short defaults."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import count

from gardien.models.enums import Role, TwoFactorKind
from gardien.models.mfa import TwoFactorMethod
from gardien.models.organisations import Membership, Organisation
from gardien.models.users import User
from gardien.resolvers import accounts
from gardien.resolvers.services import RequestMeta, Services
from gardien.security import hash_password

PASSWORD = "plum tree under snow"
_sequence = count(1)


@dataclass
class Member:
    user: User
    membership: Membership
    token: str | None = None


async def sign_up(
    services: Services, email: str | None = None, name: str = "Ada Lovelace"
) -> accounts.SignUpResult:
    email = email or f"user{next(_sequence)}@example.test"
    return await accounts.sign_up(
        services, RequestMeta(ip=None), email=email, password=PASSWORD, display_name=name
    )


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
