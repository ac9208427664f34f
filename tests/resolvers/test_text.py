"""Free text typed by people (ASVS V5.1.4): no control or format characters in e-mail addresses,
names or logins, on both databases (PostgreSQL refuses U+0000 outright)."""

from __future__ import annotations

import pytest

from gardien.models.activity import ActivityEvent
from gardien.models.outbox import OutboxMessage
from gardien.models.users import PendingSignUp, User
from gardien.resolvers import accounts, sign_ups
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.resolvers.text import is_plain_text
from tests import factories

pytestmark = pytest.mark.usefixtures("database")


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("Anna Légal", True),
        ("株式会社 デモ", True),
        ("a\x00b", False),  # NUL
        ("evil\u202etxt.exe", False),  # right-to-left override
        ("zero\u200bwidth", False),
        ("bell\x07", False),
    ],
)
def test_api2_plain_text_refuses_control_and_format_characters(text: str, plain: bool) -> None:
    assert is_plain_text(text) is plain


@pytest.mark.parametrize(
    ("email", "name", "field"),
    [
        ("n\x00ul@example.test", "Null", "email"),
        ("bidi\u202e@example.test", "Bidi", "email"),
        ("fine@example.test", "N\x00ul", "displayName"),
        ("fine@example.test", "Evil\u202eName", "displayName"),
    ],
)
async def test_org1_sign_up_refuses_control_characters(
    services: Services, email: str, name: str, field: str
) -> None:
    with pytest.raises(DomainError) as refused:
        await sign_ups.request_sign_up(
            services,
            RequestMeta(ip="198.51.100.9"),
            email=email,
            password=factories.PASSWORD,
            display_name=name,
        )

    assert (refused.value.code, refused.value.field) == (ErrorCode.INVALID_INPUT, field)
    assert await User.all().count() == 0
    assert await PendingSignUp.all().count() == 0
    assert await OutboxMessage.all().count() == 0


async def test_mfa7_sign_in_with_nul_in_login_is_an_ordinary_failure(services: Services) -> None:
    owner = await factories.sign_up(services, email="owner@example.test")

    with pytest.raises(DomainError) as refused:
        await accounts.sign_in(
            services,
            RequestMeta(ip="198.51.100.9"),
            login=f"{owner.user.email}\x00",
            password="not the password at all",
        )

    assert refused.value.code is ErrorCode.INVALID_CREDENTIALS
    failed = await ActivityEvent.filter(type="sign_in.failed").order_by("-id").first()
    assert failed is not None
    assert (failed.subject_id, failed.subject_email, failed.data) == (
        None,
        None,
        {"reason": "unknown_login"},
    )
