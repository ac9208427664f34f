"""The outbox worker against a real SMTP server: once, in order, through outages (OPS-6)."""

from __future__ import annotations

import asyncio
import os
import random
from datetime import UTC, datetime, timedelta

import pytest
from starlette.applications import Starlette
from tortoise.transactions import in_transaction

from gardien.app import create_app
from gardien.clock import ManualClock
from gardien.mail.templates import Template
from gardien.mail.worker import BACKOFF_CAP, LEASE, MAX_ATTEMPTS, backoff
from gardien.models.enums import OutboxStatus
from gardien.models.outbox import OutboxMessage
from gardien.resolvers.services import Services
from gardien.settings import Settings
from tests.gardien.mail.conftest import MAIL_FROM, SmtpTestServer, make_worker
from tests.ports import free_port

pytestmark = pytest.mark.usefixtures("database")
POSTGRES = os.environ.get("GARDIEN_TEST_BACKEND", "sqlite") == "postgres"

EXPIRES = datetime(2026, 1, 22, 9, 0, tzinfo=UTC)


def invitation(organisation: str = "Démo SA") -> dict[str, object]:
    return {
        "organisation": organisation,
        "inviter": "Anna Legal",
        "role": "COLLABORATOR",
        "link": f"https://manager.example/invitations/join?org={organisation.replace(' ', '+')}",
        "expires_at": EXPIRES,
    }


async def enqueue(services: Services, to: str, language: str = "fr", **context: object) -> int:
    async with in_transaction():
        message = await services.mail.enqueue(
            Template.INVITATION_JOIN,
            to=to,
            language=language,
            context={**invitation(), **context},
            timezone="Europe/Zurich",
        )
    return int(message.id)


async def test_ops6_pro1_committed_message_arrives_once_multipart_in_the_recipients_language(
    services: Services, smtp_server: SmtpTestServer
) -> None:
    message_id = await enqueue(services, "marc@example.test", language="de")

    async def failing_operation() -> None:
        async with in_transaction():
            await services.mail.enqueue(
                Template.INVITATION_JOIN,
                to="rolled.back@example.test",
                language="fr",
                context=invitation(),
            )
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await failing_operation()
    worker = make_worker(services, smtp_server.url)

    attempted = await worker.drain()
    again = await worker.drain()

    assert (attempted, again) == (1, 0)
    assert smtp_server.handler.envelopes == [("no-reply@gardien.example", ["marc@example.test"])]
    [received] = smtp_server.messages
    assert received["Subject"] == "Anna Legal lädt Sie zu Démo SA ein"
    assert received["From"] == MAIL_FROM
    assert received["To"] == "marc@example.test"
    assert received["Message-ID"] == worker.message_id(message_id)
    assert received["Auto-Submitted"] == "auto-generated"
    assert received.get_content_type() == "multipart/alternative"
    text = received.get_body(("plain",))
    html = received.get_body(("html",))
    assert text is not None and html is not None
    assert "der Organisation «Démo SA» als Mitarbeiter beizutreten" in text.get_content()
    assert "https://manager.example/invitations/join?org=Démo+SA" in text.get_content()
    assert '<html lang="de">' in html.get_content()
    stored = await OutboxMessage.get(id=message_id)
    assert (stored.status, stored.attempts, stored.sent_at) == (
        OutboxStatus.SENT,
        1,
        services.clock.now(),
    )
    assert stored.last_error is None
    # Single-use links do not outlive the delivery in the database.
    assert stored.payload == {"subject": "Anna Legal lädt Sie zu Démo SA ein"}
    assert await OutboxMessage.all().count() == 1


async def test_ops6_smtp_outage_loses_nothing_and_sends_each_message_exactly_once(
    services: Services, clock: ManualClock, smtp_server: SmtpTestServer
) -> None:
    smtp_server.stop()
    ids = [await enqueue(services, f"member{n}@example.test") for n in range(5)]
    worker = make_worker(services, smtp_server.url, batch_size=2)

    attempted = await worker.drain()

    assert attempted == 5
    failed = await OutboxMessage.filter(id__in=ids).order_by("id")
    assert {(m.status, m.attempts, m.sent_at) for m in failed} == {(OutboxStatus.PENDING, 1, None)}
    assert all(m.last_error and m.last_error.startswith("SMTPConnectError") for m in failed)
    # Backoff after a first failure: 2 minutes, less up to a quarter of jitter.
    assert all(
        clock.now() + timedelta(seconds=90)
        <= m.next_attempt_at
        <= clock.now() + timedelta(minutes=2)
        for m in failed
    )
    assert await worker.drain() == 0  # nothing is due before its backoff ends

    clock.advance(timedelta(minutes=2))
    smtp_server.start()  # the same port, as after a restart of the mail server
    delivered = await worker.drain()
    clock.advance(timedelta(days=2))
    after = await worker.drain()

    assert (delivered, after) == (5, 0)
    assert sorted(smtp_server.handler.message_ids()) == sorted(worker.message_id(i) for i in ids)
    assert sorted(rcpt for _, [rcpt] in smtp_server.handler.envelopes) == [
        f"member{n}@example.test" for n in range(5)
    ]
    sent = await OutboxMessage.filter(id__in=ids)
    assert {(m.status, m.attempts) for m in sent} == {(OutboxStatus.SENT, 2)}
    assert [m.last_error for m in sent] == [None] * 5


async def test_ops6_retries_back_off_exponentially_then_the_message_is_given_up(
    services: Services, clock: ManualClock
) -> None:
    message_id = await enqueue(services, "nobody@example.test")
    worker = make_worker(services, f"smtp://127.0.0.1:{free_port()}")  # nothing listens there
    waits: list[timedelta] = []

    for _ in range(MAX_ATTEMPTS):
        assert await worker.drain() == 1
        stored = await OutboxMessage.get(id=message_id)
        waits.append(stored.next_attempt_at - clock.now())
        clock.advance(max(waits[-1], timedelta(0)))

    stored = await OutboxMessage.get(id=message_id)
    assert (stored.status, stored.attempts) == (OutboxStatus.DEAD, MAX_ATTEMPTS)
    assert waits[-1] == timedelta(0)
    nominal = [min(BACKOFF_CAP, timedelta(minutes=2) * 2**n) for n in range(MAX_ATTEMPTS - 1)]
    assert all(
        0.75 * expected <= wait <= expected
        for wait, expected in zip(waits[:-1], nominal, strict=True)
    ), waits
    assert timedelta(hours=15) <= sum(waits, timedelta(0)) <= timedelta(hours=21)
    clock.advance(timedelta(days=7))
    assert await worker.drain() == 0


def test_ops6_backoff_is_capped_and_jittered_below_the_cap() -> None:
    rng = random.Random(1)  # noqa: S311  # jitter, not a secret

    assert [backoff(n, rng) <= BACKOFF_CAP for n in (1, 8, 9, 12, 500)] == [True] * 5
    assert backoff(40, rng) >= BACKOFF_CAP * 0.75
    assert len({backoff(3, rng) for _ in range(20)}) > 1


async def test_ops6_a_crashed_workers_claim_expires_and_another_worker_delivers(
    services: Services, clock: ManualClock, smtp_server: SmtpTestServer
) -> None:
    message_id = await enqueue(services, "ada@example.test")
    crashed = make_worker(services, smtp_server.url)
    survivor = make_worker(services, smtp_server.url)

    [claimed] = await crashed.claim()  # … and the process dies before sending
    before_lease_ends = await survivor.drain()
    clock.advance(LEASE)
    after_lease_ends = await survivor.drain()

    assert (claimed.id, before_lease_ends, after_lease_ends) == (message_id, 0, 1)
    assert smtp_server.handler.message_ids() == [survivor.message_id(message_id)]
    stored = await OutboxMessage.get(id=message_id)
    assert (stored.status, stored.attempts) == (OutboxStatus.SENT, 2)


async def test_ops6_a_recipient_refused_for_good_is_not_retried(
    services: Services, clock: ManualClock, smtp_server: SmtpTestServer
) -> None:
    smtp_server.handler.refused.add("gone@example.test")
    gone = await enqueue(services, "gone@example.test")
    kept = await enqueue(services, "here@example.test")
    worker = make_worker(services, smtp_server.url)

    assert await worker.drain() == 2

    refused = await OutboxMessage.get(id=gone)
    assert (refused.status, refused.attempts) == (OutboxStatus.DEAD, 1)
    assert refused.last_error is not None and "No such mailbox" in refused.last_error
    assert (await OutboxMessage.get(id=kept)).status is OutboxStatus.SENT
    assert [rcpt for _, [rcpt] in smtp_server.handler.envelopes] == ["here@example.test"]


async def test_ops6_a_message_given_up_keeps_its_subject_and_error_but_not_its_bodies(
    services: Services, smtp_server: SmtpTestServer
) -> None:
    """The bodies hold single-use links: a DEAD message is never sent again, so they go as the
    SENT ones' do (OWASP ASVS 4.0.3 V8.3.4: sensitive data deleted once no longer needed)."""
    smtp_server.handler.refused.add("gone@example.test")
    gone = await enqueue(services, "gone@example.test")
    queued = await OutboxMessage.get(id=gone)
    assert set(queued.payload) == {"subject", "text", "html"}
    worker = make_worker(services, smtp_server.url)

    assert await worker.drain() == 1

    dead = await OutboxMessage.get(id=gone)
    assert (dead.status, dead.payload) == (
        OutboxStatus.DEAD,
        {"subject": queued.payload["subject"]},
    )
    assert dead.last_error is not None and "No such mailbox" in dead.last_error


async def test_ops6_credentials_never_travel_in_clear_nor_reach_the_outbox(
    services: Services, smtp_server: SmtpTestServer
) -> None:
    """OWASP ASVS 9.2.1 (TLS for outbound connections); 7.1.1 (no credentials in logs)."""
    message_id = await enqueue(services, "ada@example.test")
    url = f"smtp://mailer:s3cr%C3%A9t-pw@127.0.0.1:{smtp_server.port}"  # no STARTTLS offered

    assert await make_worker(services, url).drain() == 1

    stored = await OutboxMessage.get(id=message_id)
    assert stored.status is OutboxStatus.PENDING
    assert stored.last_error is not None and "STARTTLS" in stored.last_error.upper()
    assert "s3cr" not in stored.last_error and "mailer" not in stored.last_error
    assert smtp_server.messages == []


@pytest.mark.skipif(not POSTGRES, reason="row locks need PostgreSQL; SQLite runs one worker")
async def test_ops6_claims_skip_rows_locked_by_another_worker(
    services: Services, smtp_server: SmtpTestServer
) -> None:
    ids = [await enqueue(services, f"m{n}@example.test") for n in range(6)]
    locked, release = asyncio.Event(), asyncio.Event()

    async def other_worker_mid_claim() -> None:
        async with in_transaction():
            await OutboxMessage.filter(id__in=ids[:3]).select_for_update()
            locked.set()
            await release.wait()

    holder = asyncio.create_task(other_worker_mid_claim())
    await locked.wait()
    worker = make_worker(services, smtp_server.url)
    try:
        claimed = await asyncio.wait_for(worker.claim(), timeout=5)  # waiting would be a failure
    finally:
        release.set()
        await holder

    assert sorted(m.id for m in claimed) == ids[3:]


async def test_ops6_concurrent_workers_never_send_a_message_twice(
    services: Services, smtp_server: SmtpTestServer
) -> None:
    """On PostgreSQL two workers share the batch; SQLite supports one worker, so it runs one."""
    ids = [await enqueue(services, f"bulk{n}@example.test") for n in range(50)]
    workers = [
        make_worker(services, smtp_server.url, batch_size=5) for _ in range(2 if POSTGRES else 1)
    ]

    attempted = await asyncio.gather(*(worker.drain() for worker in workers))

    assert sum(attempted) == 50
    if POSTGRES:
        assert all(count > 0 for count in attempted), attempted  # both took part
    received = smtp_server.handler.message_ids()
    assert len(received) == 50
    assert sorted(received) == sorted(workers[0].message_id(i) for i in ids)
    assert await OutboxMessage.filter(status=OutboxStatus.SENT, attempts=1).count() == 50


async def test_ops6_serving_app_runs_the_worker_when_smtp_is_configured(
    services: Services, settings: Settings, clock: ManualClock, smtp_server: SmtpTestServer
) -> None:
    message_id = await enqueue(services, "served@example.test")
    served_settings = Settings(**{**vars(settings), "smtp_url": smtp_server.url})
    app: Starlette = create_app(served_settings, clock=clock, manage_database=False)

    async with app.router.lifespan_context(app):
        for _ in range(200):
            if smtp_server.messages:
                break
            await asyncio.sleep(0.05)  # waiting for delivery, not for time to pass

    assert [m["To"] for m in smtp_server.messages] == ["served@example.test"]
    assert (await OutboxMessage.get(id=message_id)).status is OutboxStatus.SENT
