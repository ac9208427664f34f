"""PRO-4: the support code proves its holder to support, which then acts for a manager on the
phone (BLK-3). It is read from a web session only: an app password (MFA-6) is one factor kept in
a sync tool's settings, and must not be enough to speak to support as its owner."""

from __future__ import annotations

import pytest

from gardien.models.enums import SessionKind
from gardien.resolvers import app_passwords, profile, sessions
from gardien.resolvers.services import RequestMeta, Services
from tests import factories

pytestmark = pytest.mark.usefixtures("database")

OWNER = "ada@example.test"


async def test_pro4_support_code_is_not_read_from_an_app_session(
    services: Services, meta: RequestMeta
) -> None:
    signed_up = await factories.sign_up(services, email=OWNER)
    web = (await factories.signed_in_scope(services, OWNER)).actor
    await factories.confirm_totp(services, signed_up.user)
    created = await app_passwords.create(services, meta, web, label="Thunderbird")
    issued = await app_passwords.authenticate_app(
        services, meta, login=OWNER, app_password=created.secret
    )
    app = await sessions.authenticate(services, issued.token)
    assert app is not None and app.session is not None
    assert app.session.kind == SessionKind.APP

    from_app = profile.own_support_code(services, app, signed_up.user.id)
    from_web = profile.own_support_code(services, web, signed_up.user.id)

    assert from_app is None
    assert from_web is not None and len(from_web) == profile.SUPPORT_CODE_DIGITS
