"""The login e-mail: changed once the new address confirms it (PRO-5), and replaced by a generated
username when its mailbox is deleted here, the account then held to setting a new one (REC-4)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from graphql import GraphQLObjectType

from gardien.clock import ManualClock
from gardien.mail.templates import Template, links_in
from gardien.models.activity import ActivityEvent
from gardien.models.enums import OutboxChannel, ProductKind
from gardien.models.mail import Mailbox
from gardien.models.organisations import Membership, Organisation, SecurityPolicy
from gardien.models.outbox import OutboxMessage
from gardien.models.products import Product
from gardien.models.users import EmailChange, User
from gardien.resolvers import accounts, authz, login_email, mailboxes, sessions, tokens
from gardien.resolvers.authz import Actor
from gardien.resolvers.errors import DomainError, ErrorCode
from gardien.resolvers.services import RequestMeta, Services
from gardien.schema import schema
from gardien.sms.templates import SmsTemplate
from tests import factories

pytestmark = pytest.mark.usefixtures("database")

MAIL_DOMAIN = "team-mail.ch"
HOSTED_LOGIN = f"ada@{MAIL_DOMAIN}"


async def _actor(services: Services, login: str) -> Actor:
    result = await accounts.sign_in(
        services,
        RequestMeta(ip="198.51.100.1"),
        login=login,
        password=factories.PASSWORD,
        device_cookie=factories.device_cookie(login),
    )
    assert result.session is not None
    actor = await sessions.authenticate(services, result.session.token)
    assert actor is not None
    return actor


async def _refused(awaitable: Any) -> DomainError:
    with pytest.raises(DomainError) as raised:
        await awaitable
    return raised.value


async def _token_sent_to(address: str) -> str:
    message = (
        await OutboxMessage.filter(
            recipient=address, template=Template.LOGIN_EMAIL_CHANGE_CONFIRMATION.value
        )
        .order_by("-id")
        .first()
    )
    assert message is not None, f"no confirmation was sent to {address}"
    (link,) = links_in(message.payload["text"])
    (token,) = parse_qs(urlsplit(link).fragment.split("?", 1)[1])["token"]
    assert token in message.payload["text"].replace(link, "")  # the code, to paste
    return token


async def _request(services: Services, meta: RequestMeta, actor: Actor, new: str) -> None:
    await login_email.request_login_email_change(
        services, meta, actor, new_email=new, current_password=factories.PASSWORD
    )


# --- PRO-5 ---------------------------------------------------------------------------------------


async def test_pro5_login_email_changes_once_the_new_address_confirms_and_the_old_is_told(
    services: Services, meta: RequestMeta
) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    actor = await _actor(services, "ada@example.test")

    await _request(services, meta, actor, " Ada.New@Example.test ")
    assert (await User.get(id=signed_up.user.id)).email == "ada@example.test"
    user = await login_email.confirm_login_email_change(
        services, meta, token=await _token_sent_to("ada.new@example.test")
    )

    assert user.email == "ada.new@example.test"
    assert (await User.get(id=signed_up.user.id)).email == "ada.new@example.test"
    notice = await OutboxMessage.get(template=Template.ACCOUNT_CONTACT_CHANGED.value)
    assert notice.recipient == "ada@example.test"
    assert "L’adresse e-mail de connexion de votre compte" in notice.payload["text"]
    assert await accounts.find_by_login("ada@example.test") is None
    assert await _actor(services, "ada.new@example.test")
    events = await ActivityEvent.filter(subject_id=user.id, type__startswith="login_email.")
    assert sorted(e.type for e in events) == ["login_email.change_requested", "login_email.changed"]
    changed = await ActivityEvent.get(type="login_email.changed")
    assert changed.data == {
        "previous": "ada@example.test",
        "new": "ada.new@example.test",
        "left_recovery": False,
    }


async def test_pro5_a_taken_address_gets_the_same_answer_and_its_owner_a_note(
    services: Services, meta: RequestMeta
) -> None:
    await factories.sign_up(services, email="ada@example.test")
    owner = await factories.sign_up(services, email="grace@example.test", language="en")
    actor = await _actor(services, "ada@example.test")

    free = await login_email.request_login_email_change(
        services, meta, actor, new_email="free@example.test", current_password=factories.PASSWORD
    )
    taken = await login_email.request_login_email_change(
        services, meta, actor, new_email="grace@example.test", current_password=factories.PASSWORD
    )

    assert free == taken  # the same answer: the expiry of a link, at the same time
    note = await OutboxMessage.get(recipient="grace@example.test")
    assert note.template == Template.LOGIN_EMAIL_ADDRESS_TAKEN.value
    assert note.language == "en"
    assert "/console/#/" in note.payload["text"] and "token" not in note.payload["text"]
    # No change waits for the taken address, and asking replaced the earlier link.
    assert await EmailChange.filter(new_email="grace@example.test").count() == 0
    assert await EmailChange.all().count() == 0
    assert (await User.get(id=owner.user.id)).email == "grace@example.test"
    events = await ActivityEvent.filter(type="login_email.change_requested").order_by("id")
    assert [e.data for e in events] == [{}, {}]


async def test_pro5_confirmation_fails_when_the_address_was_taken_meanwhile(
    services: Services, meta: RequestMeta
) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    actor = await _actor(services, "ada@example.test")
    await _request(services, meta, actor, "shared@example.test")
    token = await _token_sent_to("shared@example.test")
    await factories.sign_up(services, email="shared@example.test")

    error = await _refused(login_email.confirm_login_email_change(services, meta, token=token))

    assert (error.code, error.field) == (ErrorCode.EMAIL_UNAVAILABLE, "token")
    assert (await User.get(id=signed_up.user.id)).email == "ada@example.test"
    assert await ActivityEvent.filter(type="login_email.changed").count() == 0


async def test_pro5_link_is_single_use_expires_and_is_replaced_by_a_newer_request(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    signed_up = await factories.sign_up(services, email="ada@example.test")
    actor = await _actor(services, "ada@example.test")
    await _request(services, meta, actor, "first@example.test")
    replaced = await _token_sent_to("first@example.test")
    await _request(services, meta, actor, "second@example.test")
    expiring = await _token_sent_to("second@example.test")

    replaced_error = await _refused(
        login_email.confirm_login_email_change(services, meta, token=replaced)
    )
    clock.advance(login_email.CHANGE_LIFETIME)
    expired_error = await _refused(
        login_email.confirm_login_email_change(services, meta, token=expiring)
    )
    clock.advance(-timedelta(minutes=1))
    await login_email.confirm_login_email_change(services, meta, token=expiring)
    used_error = await _refused(
        login_email.confirm_login_email_change(services, meta, token=expiring)
    )
    forged_error = await _refused(
        login_email.confirm_login_email_change(services, meta, token="x" * 300)
    )

    assert replaced_error.code == ErrorCode.LOGIN_EMAIL_CHANGE_INVALID
    assert expired_error.code == ErrorCode.LOGIN_EMAIL_CHANGE_EXPIRED
    assert used_error.code == ErrorCode.LOGIN_EMAIL_CHANGE_INVALID
    assert forged_error.code == ErrorCode.LOGIN_EMAIL_CHANGE_INVALID
    assert (await User.get(id=signed_up.user.id)).email == "second@example.test"


async def test_pro5_requests_are_rate_limited_per_account(
    services: Services, meta: RequestMeta, clock: ManualClock
) -> None:
    await factories.sign_up(services, email="ada@example.test")
    actor = await _actor(services, "ada@example.test")
    for n in range(login_email.CHANGE_REQUESTS_PER_USER.limit):
        await _request(services, meta, actor, f"new{n}@example.test")

    refused = await _refused(_request(services, meta, actor, "one.more@example.test"))
    sent_before = await OutboxMessage.filter(recipient="one.more@example.test").count()
    clock.advance(login_email.CHANGE_REQUESTS_PER_USER.window)
    await _request(services, meta, actor, "one.more@example.test")

    assert refused.code == ErrorCode.TOO_MANY_ATTEMPTS
    assert sent_before == 0
    assert await OutboxMessage.filter(recipient="one.more@example.test").count() == 1


async def test_pro5_requests_for_one_address_are_rate_limited_whoever_asks(
    services: Services, meta: RequestMeta
) -> None:
    limit = login_email.CHANGE_REQUESTS_PER_ADDRESS.limit
    actors = []
    for n in range(limit + 1):
        await factories.sign_up(services, email=f"asker{n}@example.test")
        actors.append(await _actor(services, f"asker{n}@example.test"))
    for actor in actors[:limit]:
        await _request(services, meta, actor, "target@example.test")

    refused = await _refused(_request(services, meta, actors[limit], "target@example.test"))

    assert refused.code == ErrorCode.TOO_MANY_ATTEMPTS
    assert await OutboxMessage.filter(recipient="target@example.test").count() == limit


@pytest.mark.parametrize(
    ("new_email", "password", "code", "field"),
    [
        ("not an address", factories.PASSWORD, ErrorCode.INVALID_INPUT, "newEmail"),
        ("a@[127.0.0.1]", factories.PASSWORD, ErrorCode.INVALID_INPUT, "newEmail"),
        ("ADA@example.test", factories.PASSWORD, ErrorCode.INVALID_INPUT, "newEmail"),
        ("new@example.test", "wrong password", ErrorCode.INVALID_CREDENTIALS, "currentPassword"),
    ],
)
async def test_pro5_bad_address_or_password_is_refused_and_nothing_is_sent(
    services: Services,
    meta: RequestMeta,
    new_email: str,
    password: str,
    code: ErrorCode,
    field: str,
) -> None:
    await factories.sign_up(services, email="ada@example.test")
    actor = await _actor(services, "ada@example.test")

    error = await _refused(
        login_email.request_login_email_change(
            services, meta, actor, new_email=new_email, current_password=password
        )
    )

    assert (error.code, error.field) == (code, field)
    assert await EmailChange.all().count() == 0
    assert (
        await OutboxMessage.filter(channel=OutboxChannel.EMAIL)
        .exclude(template="security_new_location")
        .count()
        == 0
    )


# --- REC-4 ---------------------------------------------------------------------------------------


async def _hosted_login(services: Services, *, phone: bool = True, email: bool = True) -> Any:
    """An organisation's mail service hosting its legal representative's login e-mail, and a
    fellow administrator who manages the service."""
    admin_signed_up = await factories.sign_up(services, email="admin@example.test")
    organisation: Organisation = admin_signed_up.organisation
    await factories.add_domain(services, organisation, MAIL_DOMAIN, expires_in=timedelta(days=200))
    mail = await Product.create(
        organisation=organisation,
        kind=ProductKind.MAIL_SERVICE,
        name="Mail",
        created_at=services.clock.now(),
    )
    member = await factories.sign_up(services, email=HOSTED_LOGIN, name="Ada Émilie Lovelace")
    member.user.recovery_phone = "+41791234567" if phone else None
    member.user.recovery_email = "ada.backup@example.test" if email else None
    await member.user.save()
    manager = await _actor(services, "admin@example.test")
    scope = authz.RequestScope(manager)
    mailbox = await mailboxes.create_mailbox(
        services, RequestMeta(ip="198.51.100.1"), scope, mail.id, HOSTED_LOGIN
    )
    return member.user, scope, mailbox


async def test_rec4_deleting_the_login_mailbox_puts_the_account_in_recovery(
    services: Services, meta: RequestMeta
) -> None:
    user, manager, mailbox = await _hosted_login(services)

    await mailboxes.delete_mailbox(services, meta, manager, mailbox.id)

    stored = await User.get(id=user.id)
    assert stored.email is None and stored.must_set_login_email
    username = stored.generated_username
    assert username is not None and re.fullmatch(r"ael\d{6}", username)
    sms = await OutboxMessage.get(channel=OutboxChannel.SMS)
    assert (sms.recipient, sms.template) == (
        "+41791234567",
        SmsTemplate.LOGIN_USERNAME_ISSUED.value,
    )
    assert username in sms.payload["text"]
    mail = await OutboxMessage.get(
        channel=OutboxChannel.EMAIL, template=Template.LOGIN_USERNAME_ISSUED.value
    )
    assert mail.recipient == "ada.backup@example.test"
    assert username in mail.payload["text"] and HOSTED_LOGIN in mail.payload["text"]
    event = await ActivityEvent.get(type="login_email.deleted")
    assert (event.subject_id, event.actor_id, event.subject_email) == (
        user.id,
        manager.actor.user_id,
        HOSTED_LOGIN,
    )
    assert event.data == {"told_by_sms": True, "told_by_email": True}
    assert not await Mailbox.exists(id=mailbox.id)


async def test_rec4_a_username_drawn_by_another_account_meanwhile_is_drawn_again(
    services: Services, meta: RequestMeta, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two deletions at the same instant can both find a name free: the unique column refuses the
    # second, which draws again instead of failing the mailbox deletion with a 500.
    user, manager, mailbox = await _hosted_login(services)
    other = await factories.sign_up(services, email="other@example.test")
    await User.filter(id=other.user.id).update(generated_username="ael000001")
    draws = iter(["ael000001", "ael000002"])

    async def racing_draw(display_name: str) -> str:
        return next(draws)

    monkeypatch.setattr(login_email, "_new_username", racing_draw)
    await mailboxes.delete_mailbox(services, meta, manager, mailbox.id)

    stored = await User.get(id=user.id)
    assert (stored.email, stored.generated_username) == (None, "ael000002")
    assert not await Mailbox.exists(id=mailbox.id)


async def test_rec4_old_address_no_longer_signs_in_the_username_with_the_password_does(
    services: Services, meta: RequestMeta
) -> None:
    user, manager, mailbox = await _hosted_login(services)
    await mailboxes.delete_mailbox(services, meta, manager, mailbox.id)
    username = (await User.get(id=user.id)).generated_username
    assert username is not None

    old = await _refused(
        accounts.sign_in(services, meta, login=HOSTED_LOGIN, password=factories.PASSWORD)
    )
    wrong = await _refused(accounts.sign_in(services, meta, login=username, password="nope"))
    signed_in = await accounts.sign_in(
        services, meta, login=username.upper(), password=factories.PASSWORD
    )

    assert old.code == ErrorCode.INVALID_CREDENTIALS
    assert wrong.code == ErrorCode.INVALID_CREDENTIALS
    assert signed_in.session is not None
    actor = await sessions.authenticate(services, signed_in.session.token)
    assert actor is not None and actor.user is not None
    assert actor.user.must_set_login_email and actor.user.email is None


def _root_fields() -> list[tuple[str, str]]:
    roots = {
        "query": schema._schema.query_type,
        "mutation": schema._schema.mutation_type,
        "subscription": schema._schema.subscription_type,
    }
    return [
        (operation_type, name)
        for operation_type, root in roots.items()
        if isinstance(root, GraphQLObjectType)
        for name in root.fields
    ]


@pytest.mark.parametrize(("operation_type", "field"), _root_fields())
async def test_rec4_gate_lets_an_account_in_recovery_only_set_its_login_email(
    services: Services, meta: RequestMeta, operation_type: str, field: str
) -> None:
    """Every root field of the schema, allowed or refused, to an account in recovery; the same
    field for the same account once it has a login e-mail again."""
    user, manager, mailbox = await _hosted_login(services)
    await mailboxes.delete_mailbox(services, meta, manager, mailbox.id)
    username = (await User.get(id=user.id)).generated_username
    assert username is not None
    in_recovery = await _actor(services, username)
    allowed = operation_type != "subscription" and field in {
        "viewer",
        "signOut",
        "requestLoginEmailChange",
        "confirmLoginEmailChange",
    }

    if allowed:
        authz.check_operation(in_recovery, operation_type, frozenset({field}))
    else:
        error = await _refused(_check(in_recovery, operation_type, field))
        assert error.code == ErrorCode.LOGIN_EMAIL_REQUIRED
    if f"{operation_type.capitalize()}.{field}" in authz.DEVICE_ROOT_FIELDS:
        # MFA-4: the approval app's fields take a device credential, never a session.
        error = await _refused(_check(manager.actor, operation_type, field))
        assert error.code == ErrorCode.UNAUTHENTICATED
    else:
        authz.check_operation(manager.actor, operation_type, frozenset({field}))


async def _check(actor: Actor, operation_type: str, field: str) -> None:
    authz.check_operation(actor, operation_type, frozenset({field}))


async def test_rec4_gate_refuses_an_operation_mixing_allowed_and_other_fields(
    services: Services, meta: RequestMeta
) -> None:
    user, manager, mailbox = await _hosted_login(services)
    await mailboxes.delete_mailbox(services, meta, manager, mailbox.id)
    username = (await User.get(id=user.id)).generated_username
    assert username is not None
    in_recovery = await _actor(services, username)

    error = await _refused(
        _check_fields(in_recovery, "query", frozenset({"viewer", "organisation"}))
    )

    assert error.code == ErrorCode.LOGIN_EMAIL_REQUIRED


async def _check_fields(actor: Actor, operation_type: str, fields: frozenset[str]) -> None:
    authz.check_operation(actor, operation_type, fields)


async def test_rec4_confirming_a_new_login_email_ends_recovery_and_retires_the_username(
    services: Services, meta: RequestMeta
) -> None:
    user, manager, mailbox = await _hosted_login(services)
    await mailboxes.delete_mailbox(services, meta, manager, mailbox.id)
    username = (await User.get(id=user.id)).generated_username
    assert username is not None
    signed_in = await accounts.sign_in(services, meta, login=username, password=factories.PASSWORD)
    assert signed_in.session is not None
    in_recovery = await sessions.authenticate(services, signed_in.session.token)
    assert in_recovery is not None

    await _request(services, meta, in_recovery, "ada@elsewhere.example")
    await login_email.confirm_login_email_change(
        services, meta, token=await _token_sent_to("ada@elsewhere.example")
    )

    stored = await User.get(id=user.id)
    assert (stored.email, stored.must_set_login_email, stored.generated_username) == (
        "ada@elsewhere.example",
        False,
        None,
    )
    retired = await _refused(
        accounts.sign_in(services, meta, login=username, password=factories.PASSWORD)
    )
    assert retired.code == ErrorCode.INVALID_CREDENTIALS
    back = await _actor(services, "ada@elsewhere.example")
    authz.check_operation(back, "query", frozenset({"organisation"}))
    # The session opened with the username is free again too: the flag is read per request.
    same_session = await sessions.authenticate(services, signed_in.session.token)
    assert same_session is not None and same_session.user is not None
    assert not same_session.user.must_set_login_email
    authz.check_operation(same_session, "query", frozenset({"organisation"}))
    changed = await ActivityEvent.get(type="login_email.changed")
    assert changed.data["left_recovery"] is True and changed.data["previous"] is None
    # No former login address to tell: the mailbox is gone.
    assert await OutboxMessage.filter(template=Template.ACCOUNT_CONTACT_CHANGED.value).count() == 0


async def test_rec4_gate_holds_the_accounts_integrator_tokens_too(
    services: Services, meta: RequestMeta
) -> None:
    user, manager, mailbox = await _hosted_login(services)
    owner = authz.RequestScope(await _actor(services, HOSTED_LOGIN))
    issued = await tokens.create_personal_access_token(
        services, meta, owner, label="Sync", scopes=["members:read"]
    )
    await mailboxes.delete_mailbox(services, meta, manager, mailbox.id)

    actor = await tokens.authenticate(services, meta, issued.secret)

    assert actor is not None and actor.user is not None and actor.user.id == user.id
    # Query.organisation is open to any token scope: only the recovery gate refuses it here.
    refused = await _refused(_check(actor, "query", "organisation"))
    assert refused.code == ErrorCode.LOGIN_EMAIL_REQUIRED


async def test_rec4_an_account_also_held_to_2fa_sets_its_login_email_first_then_enrols(
    services: Services, meta: RequestMeta
) -> None:
    """POL-4 and REC-4 together: neither gate may leave the account with nothing to do."""
    user, manager, mailbox = await _hosted_login(services)
    membership = await Membership.get(user_id=user.id)
    await SecurityPolicy.filter(organisation_id=membership.organisation_id).update(
        require_two_factor=True
    )
    await mailboxes.delete_mailbox(services, meta, manager, mailbox.id)
    username = (await User.get(id=user.id)).generated_username
    assert username is not None
    held = await _actor(services, username)
    assert held.two_factor_enrolment_required

    authz.check_operation(held, "mutation", frozenset({"requestLoginEmailChange"}))
    enrolment = await _refused(_check(held, "mutation", "beginTotpEnrolment"))
    await _request(services, meta, held, "ada@elsewhere.example")
    await login_email.confirm_login_email_change(
        services, meta, token=await _token_sent_to("ada@elsewhere.example")
    )
    back = await _actor(services, "ada@elsewhere.example")

    assert enrolment.code == ErrorCode.LOGIN_EMAIL_REQUIRED
    authz.check_operation(back, "mutation", frozenset({"beginTotpEnrolment"}))
    still_held = await _refused(_check(back, "query", "organisation"))
    assert still_held.code == ErrorCode.TWO_FACTOR_ENROLMENT_REQUIRED


async def test_rec4_without_recovery_contacts_the_account_still_enters_recovery(
    services: Services, meta: RequestMeta
) -> None:
    user, manager, mailbox = await _hosted_login(services, phone=False, email=False)

    await mailboxes.delete_mailbox(services, meta, manager, mailbox.id)

    stored = await User.get(id=user.id)
    assert stored.email is None and stored.must_set_login_email
    assert await OutboxMessage.filter(channel=OutboxChannel.SMS).count() == 0
    assert (
        await OutboxMessage.filter(channel=OutboxChannel.EMAIL)
        .exclude(template="security_new_location")
        .count()
        == 0
    )
    event = await ActivityEvent.get(type="login_email.deleted")
    assert event.data == {"told_by_sms": False, "told_by_email": False}


async def test_rec4_a_mailbox_that_is_nobodys_login_changes_no_account(
    services: Services, meta: RequestMeta
) -> None:
    user, manager, _ = await _hosted_login(services)
    product = await Product.get(kind=ProductKind.MAIL_SERVICE)
    other = await mailboxes.create_mailbox(
        services, meta, manager, product.id, f"info@{MAIL_DOMAIN}"
    )

    await mailboxes.delete_mailbox(services, meta, manager, other.id)

    stored = await User.get(id=user.id)
    assert (stored.email, stored.must_set_login_email, stored.generated_username) == (
        HOSTED_LOGIN,
        False,
        None,
    )
    assert await ActivityEvent.filter(type="login_email.deleted").count() == 0


async def test_rec4_refused_deletion_changes_no_account(
    services: Services, meta: RequestMeta
) -> None:
    user, _, mailbox = await _hosted_login(services)
    outsider = authz.RequestScope(await _actor(services, HOSTED_LOGIN))

    error = await _refused(mailboxes.delete_mailbox(services, meta, outsider, mailbox.id))

    assert error.code == ErrorCode.NOT_FOUND
    assert (await User.get(id=user.id)).email == HOSTED_LOGIN
    assert await Mailbox.exists(id=mailbox.id)


def test_rec4_username_initials_are_ascii_letters_of_the_name() -> None:
    assert login_email.initials("Ada Émilie Lovelace") == "ael"
    assert login_email.initials("Zoë") == "z"
    assert login_email.initials("Jean-Luc de la Tour Picard") == "jdl"
    assert login_email.initials("李 小龍") == "u"
    assert login_email.initials("  ") == "u"


async def test_rec4_generated_usernames_are_unique(services: Services) -> None:
    now = services.clock.now()
    taken = await User.create(
        email=None,
        generated_username="al000001",
        password_hash="x",
        password_changed_at=now,
        display_name="Ada Lovelace",
        created_at=now,
    )

    names = {await login_email._new_username("Ada Lovelace") for _ in range(50)}

    assert taken.generated_username not in names
    assert all(re.fullmatch(r"al\d{6}", name) for name in names)
