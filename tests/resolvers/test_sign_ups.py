"""Sign-up confirmed by e-mail (ORG-1): asked for, confirmed, refused, expired and purged."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from gardien import jobs
from gardien.clock import ManualClock
from gardien.models.activity import ActivityEvent
from gardien.models.enums import Role
from gardien.models.organisations import Membership, Organisation, SecurityPolicy
from gardien.models.outbox import OutboxMessage
from gardien.models.sessions import Session
from gardien.models.users import PendingSignUp, User
from gardien.resolvers import accounts, ratelimits, sessions, sign_ups
from gardien.resolvers.domain_lifecycle import JobReport
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.security import new_token
from tests import factories

pytestmark = pytest.mark.usefixtures("database")

NEWCOMER = "new.comer@example.test"


async def _ask(
    services: Services,
    email: str = NEWCOMER,
    *,
    password: str = factories.PASSWORD,
    name: str = "New Comer",
    language: str | None = None,
    ip: str | None = "198.51.100.7",
) -> None:
    await sign_ups.request_sign_up(
        services,
        RequestMeta(ip=ip),
        email=email,
        password=password,
        display_name=name,
        language=language,
    )


async def _refused(operation: Any) -> DomainError:
    with pytest.raises(DomainError) as raised:
        await operation
    return raised.value


async def _counts() -> dict[str, int]:
    return {
        "users": await User.all().count(),
        "organisations": await Organisation.all().count(),
        "memberships": await Membership.all().count(),
        "sessions": await Session.all().count(),
        "pending": await PendingSignUp.all().count(),
        "outbox": await OutboxMessage.all().count(),
        "activity": await ActivityEvent.all().count(),
    }


# --- asking (ORG-1) ------------------------------------------------------------------------------


async def test_org1_sign_up_of_a_free_address_queues_a_confirmation_and_opens_nothing_yet(
    services: Services,
) -> None:
    await _ask(services, " New.Comer@Example.TEST ", language="de")

    pending = await PendingSignUp.get(email=NEWCOMER)
    message = await OutboxMessage.get(recipient=NEWCOMER)
    token = await factories.sign_up_token_sent_to(NEWCOMER)
    assert (message.template, message.language) == ("sign_up_confirmation", "de")
    assert (
        message.payload["text"].count(
            f"{services.settings.public_url}/console/#/sign-up/confirm?token={token}"
        )
        == 1
    )
    # The code to paste is the token itself.
    assert f": {token}" in message.payload["text"]
    assert len(token) >= 43  # 256 random bits, URL-safe base64
    assert pending.token_hash == services.keyring.token_digest(token, "sign-up")
    assert token not in str(await PendingSignUp.all().values())
    assert pending.password_hash.startswith("$argon2id$")
    assert factories.PASSWORD not in str(await PendingSignUp.all().values())
    assert (pending.display_name, pending.language) == ("New Comer", "de")
    assert pending.expires_at == services.clock.now() + timedelta(hours=24)
    assert await User.all().count() == 0
    assert await Session.all().count() == 0


async def test_org1_sign_up_of_a_taken_address_mails_its_owner_a_note_and_keeps_no_row(
    services: Services,
) -> None:
    owner = await factories.sign_up(services, email="taken@example.test")
    owner.user.language = "it"
    await owner.user.save(update_fields=["language"])
    before = await _counts()

    await _ask(services, "TAKEN@example.test", password="another long passphrase", language="en")

    after = await _counts()
    note = await OutboxMessage.get(template="sign_up_address_taken")
    event = await ActivityEvent.get(type="account.sign_up_attempted")
    assert (note.recipient, note.language) == ("taken@example.test", "it")
    assert f"{services.settings.public_url}/console/#/sign-in" in note.payload["text"]
    assert f"{services.settings.public_url}/console/#/password-reset" in note.payload["text"]
    assert (event.actor_id, event.subject_id, event.ip) == (None, owner.user.id, "198.51.100.7")
    assert after == before | {
        "outbox": before["outbox"] + 1,
        "activity": before["activity"] + 1,
    }
    assert await PendingSignUp.filter(email="taken@example.test").count() == 0
    assert (await User.get(id=owner.user.id)).password_hash == owner.user.password_hash


async def test_org1_sign_up_same_work_for_taken_and_free_address(services: Services) -> None:
    """One row and one e-mail each, no account and no session: only the mailbox tells."""
    await factories.sign_up(services, email="taken@example.test")
    start = await _counts()

    await _ask(services, "free@example.test")
    free = await _counts()
    await _ask(services, "taken@example.test")
    taken = await _counts()

    def grown(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
        return {name: after[name] - before[name] for name in after if after[name] != before[name]}

    assert grown(start, free) == {"pending": 1, "outbox": 1}
    assert grown(free, taken) == {"activity": 1, "outbox": 1}


@pytest.mark.parametrize(
    ("email", "password", "name", "language", "code", "field"),
    [
        ("not-an-address", factories.PASSWORD, "N", None, ErrorCode.INVALID_INPUT, "email"),
        ("a@b", factories.PASSWORD, "N", None, ErrorCode.INVALID_INPUT, "email"),
        ("ok@example.test", "short7!", "N", None, ErrorCode.PASSWORD_TOO_SHORT, "password"),
        ("ok@example.test", "password1", "N", None, ErrorCode.PASSWORD_TOO_COMMON, "password"),
        ("ok@example.test", factories.PASSWORD, " ", None, ErrorCode.INVALID_INPUT, "displayName"),
        ("ok@example.test", factories.PASSWORD, "N", "es", ErrorCode.INVALID_INPUT, "language"),
    ],
)
async def test_org1_sign_up_bad_input_is_typed_and_queues_nothing(
    services: Services,
    email: str,
    password: str,
    name: str,
    language: str | None,
    code: ErrorCode,
    field: str,
) -> None:
    refused = await _refused(_ask(services, email, password=password, name=name, language=language))

    assert (refused.code, refused.field) == (code, field)
    assert set((await _counts()).values()) == {0}


async def test_org1_weak_password_refused_for_a_taken_address_too(services: Services) -> None:
    """The password is judged before the address is looked at: a weak one says nothing."""
    await factories.sign_up(services, email="taken@example.test")
    before = await _counts()

    refused = await _refused(_ask(services, "taken@example.test", password="password1"))

    assert (refused.code, refused.field) == (ErrorCode.PASSWORD_TOO_COMMON, "password")
    assert await _counts() == before


async def test_org1_api4_sign_ups_limited_per_address_taken_or_free(
    services: Services, clock: ManualClock
) -> None:
    """No mail-bombing: a few e-mails an hour to one address, whatever the sender's IP."""
    await factories.sign_up(services, email="taken@example.test")
    # A fresh window for both addresses: the owner's own sign-up counted once.
    clock.advance(timedelta(hours=1))
    for attempt in range(sign_ups.SIGN_UPS_PER_ADDRESS.limit):
        await _ask(services, NEWCOMER, ip=f"198.51.100.{attempt}")
        await _ask(services, "taken@example.test", ip=f"203.0.113.{attempt}")
    before = await _counts()

    free = await _refused(_ask(services, NEWCOMER, ip="192.0.2.1"))
    taken = await _refused(_ask(services, "Taken@Example.test", ip="192.0.2.2"))

    assert (free.code, taken.code) == (ErrorCode.TOO_MANY_ATTEMPTS,) * 2
    assert free.message == taken.message
    assert free.retry_after_seconds == taken.retry_after_seconds == 3600
    assert await _counts() == before


async def test_org1_api4_sign_ups_limited_per_ip(services: Services) -> None:
    for index in range(ratelimits.SIGN_UPS_PER_IP.limit):
        await _ask(services, f"person{index}@example.test", ip="2001:db8::1")
    before = await _counts()

    # The same /64 shares one budget.
    refused = await _refused(_ask(services, "one.more@example.test", ip="2001:db8::2"))

    assert refused.code == ErrorCode.TOO_MANY_ATTEMPTS
    assert await _counts() == before


# --- confirming (ORG-1) --------------------------------------------------------------------------


async def test_org1_confirm_sign_up_opens_account_own_organisation_and_session(
    services: Services,
) -> None:
    await _ask(services, name="New  Comer", language="en")
    token = await factories.sign_up_token_sent_to(NEWCOMER)

    result = await sign_ups.confirm_sign_up(services, RequestMeta(ip="198.51.100.8"), token=token)

    user = await User.get(email=NEWCOMER)
    membership = await Membership.get(user_id=user.id)
    actor = await sessions.authenticate(services, result.session.token)
    signed_up = await ActivityEvent.get(type="account.signed_up")
    assert result.user.id == user.id and result.organisation.id == membership.organisation_id
    assert (user.display_name, user.language) == ("New Comer", "en")
    assert user.current_organisation_id == result.organisation.id
    assert (await Organisation.get(id=result.organisation.id)).name == "New Comer"
    assert membership.role == Role.LEGAL_REPRESENTATIVE
    assert await SecurityPolicy.exists(organisation_id=result.organisation.id)
    assert actor is not None and actor.user_id == user.id
    assert (signed_up.actor_id, signed_up.organisation_id, signed_up.ip) == (
        user.id,
        result.organisation.id,
        "198.51.100.8",
    )
    assert await ActivityEvent.filter(type="sign_in.succeeded", actor_id=user.id).count() == 1
    # The hash asked for is the account's; no copy of it, nor the sign-up, is kept.
    assert user.password_hash.startswith("$argon2id$")
    assert await PendingSignUp.all().count() == 0


async def test_org1_confirmed_account_signs_in_with_the_password_given_at_sign_up(
    services: Services,
) -> None:
    await factories.sign_up(services, email=NEWCOMER, password="a lantern by the river")

    signed_in = await accounts.sign_in(
        services, RequestMeta(), login=NEWCOMER, password="a lantern by the river"
    )

    assert signed_in.session is not None


async def test_org1_confirmation_token_is_single_use(services: Services) -> None:
    await _ask(services)
    token = await factories.sign_up_token_sent_to(NEWCOMER)
    await sign_ups.confirm_sign_up(services, RequestMeta(), token=token)
    before = await _counts()

    reused = await _refused(sign_ups.confirm_sign_up(services, RequestMeta(), token=token))

    assert (reused.code, reused.field) == (ErrorCode.SIGN_UP_TOKEN_INVALID, "token")
    assert await _counts() == before


@pytest.mark.parametrize("token", ["", "x" * 300, "forged", "__forged__"])
async def test_org1_forged_confirmation_token_refused_and_nothing_changes(
    services: Services, token: str
) -> None:
    await _ask(services)
    forged = new_token() if token == "__forged__" else token
    before = await _counts()

    refused = await _refused(sign_ups.confirm_sign_up(services, RequestMeta(), token=forged))

    assert (refused.code, refused.field) == (ErrorCode.SIGN_UP_TOKEN_INVALID, "token")
    assert await _counts() == before


async def test_org1_token_of_another_purpose_is_not_a_sign_up_token(services: Services) -> None:
    """Digests are keyed by purpose: an invitation token never confirms a sign-up."""
    await _ask(services)
    token = await factories.sign_up_token_sent_to(NEWCOMER)
    pending = await PendingSignUp.get(email=NEWCOMER)
    await PendingSignUp.filter(id=pending.id).update(
        token_hash=services.keyring.token_digest(token, "invitation")
    )

    refused = await _refused(sign_ups.confirm_sign_up(services, RequestMeta(), token=token))

    assert refused.code == ErrorCode.SIGN_UP_TOKEN_INVALID


async def test_org1_expired_confirmation_refused_and_nothing_changes(
    services: Services, clock: ManualClock
) -> None:
    await _ask(services)
    token = await factories.sign_up_token_sent_to(NEWCOMER)
    clock.advance(timedelta(hours=24))
    before = await _counts()

    expired = await _refused(sign_ups.confirm_sign_up(services, RequestMeta(), token=token))

    assert (expired.code, expired.field) == (ErrorCode.SIGN_UP_TOKEN_EXPIRED, "token")
    assert await _counts() == before


async def test_org1_confirmation_just_before_expiry_succeeds(
    services: Services, clock: ManualClock
) -> None:
    await _ask(services)
    token = await factories.sign_up_token_sent_to(NEWCOMER)
    clock.advance(timedelta(hours=24) - timedelta(seconds=1))

    result = await sign_ups.confirm_sign_up(services, RequestMeta(), token=token)

    assert result.user.email == NEWCOMER


async def test_org1_two_pending_sign_ups_for_one_address_make_one_account(
    services: Services,
) -> None:
    await _ask(services, password="first long passphrase")
    first = await factories.sign_up_token_sent_to(NEWCOMER)
    await _ask(services, password="second long passphrase")
    second = await factories.sign_up_token_sent_to(NEWCOMER)
    await sign_ups.confirm_sign_up(services, RequestMeta(), token=second)
    before = await _counts()

    late = await _refused(sign_ups.confirm_sign_up(services, RequestMeta(), token=first))

    assert (late.code, late.field) == (ErrorCode.EMAIL_UNAVAILABLE, "token")
    assert await _counts() == before
    assert await User.filter(email=NEWCOMER).count() == 1


async def test_org1_concurrent_confirmations_for_one_address_make_one_account(
    services: Services,
) -> None:
    tokens = []
    for password in ("first long passphrase", "second long passphrase"):
        await _ask(services, password=password)
        tokens.append(await factories.sign_up_token_sent_to(NEWCOMER))

    results = await asyncio.gather(
        *(sign_ups.confirm_sign_up(services, RequestMeta(), token=t) for t in tokens),
        return_exceptions=True,
    )

    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], DomainError), results
    assert errors[0].code == ErrorCode.EMAIL_UNAVAILABLE
    assert await User.filter(email=NEWCOMER).count() == 1
    assert await Organisation.all().count() == 1


async def test_org1_concurrent_confirmations_of_one_token_make_one_account(
    services: Services,
) -> None:
    await _ask(services)
    token = await factories.sign_up_token_sent_to(NEWCOMER)

    results = await asyncio.gather(
        sign_ups.confirm_sign_up(services, RequestMeta(), token=token),
        sign_ups.confirm_sign_up(services, RequestMeta(), token=token),
        return_exceptions=True,
    )

    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], DomainError), results
    assert errors[0].code in (ErrorCode.SIGN_UP_TOKEN_INVALID, ErrorCode.EMAIL_UNAVAILABLE)
    assert await User.filter(email=NEWCOMER).count() == 1
    assert await Organisation.all().count() == 1


# --- expiry and purge (ORG-1) --------------------------------------------------------------------


async def test_org1_job_runner_purges_sign_ups_past_their_expiry(
    services: Services, clock: ManualClock
) -> None:
    await _ask(services, "early@example.test")
    await factories.sign_up(services, email="confirmed@example.test")
    clock.advance(timedelta(hours=12))
    await _ask(services, "late@example.test")
    clock.advance(timedelta(hours=12))

    report = await jobs.run_due(services)
    again = await jobs.run_due(services)

    remaining = [pending.email for pending in await PendingSignUp.all()]
    assert (report.sign_ups_purged, again.sign_ups_purged) == (1, 0)
    assert remaining == ["late@example.test"]
    # A confirmed sign-up left nothing to purge; its account stays.
    assert await User.exists(email="confirmed@example.test")


async def test_org1_sign_up_lifetime_follows_the_setting(
    services: Services, clock: ManualClock
) -> None:
    short = Services(
        settings=replace(services.settings, sign_up_lifetime_hours=2),
        clock=clock,
        keyring=services.keyring,
    )
    await _ask(short)
    token = await factories.sign_up_token_sent_to(NEWCOMER)
    clock.advance(timedelta(hours=2))

    expired = await _refused(sign_ups.confirm_sign_up(short, RequestMeta(), token=token))

    assert expired.code == ErrorCode.SIGN_UP_TOKEN_EXPIRED
    assert await jobs.run_due(short) == JobReport(sign_ups_purged=1)
