"""The authorization matrix, generated from the schema: every root field, every mutation, every
field that decides something on its own, and node(id:) for every Node type, asked by each of the
four roles, a signed-in non-member and an anonymous caller, through the real app and database.

A field or Node type in the schema without a row here fails the test: add an authorization rule
to resolvers/authz.py for it, and its row (or, when its parent's decision covers it, its name in
INHERITED) here. OWASP ASVS 4.0.3 V4.1.3 (least privilege), V4.2.1 (IDOR), V4.1.5 (fail closed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

import pytest
from graphql import ExecutionResult, GraphQLInterfaceType, GraphQLObjectType
from starlette.applications import Starlette

from gardien.graphql import GraphQLEngine
from gardien.models.activity import ActivityEvent
from gardien.models.enums import InvitationStatus, Role
from gardien.models.invitations import Invitation
from gardien.models.mail import Mailbox
from gardien.models.mfa import AppPassword, TwoFactorMethod
from gardien.models.organisations import UserBlock
from gardien.models.outbox import WebhookEndpoint
from gardien.models.products import Product, ProductGrant
from gardien.models.sessions import ApiToken
from gardien.models.users import User
from gardien.resolvers import accounts, authz, sessions, webhooks
from gardien.resolvers.authz import Actor
from gardien.resolvers.services import RequestMeta, Services
from gardien.schema import schema
from gardien.schema.context import Context
from gardien.schema.events import EventSource
from gardien.schema.relay import encode_id
from tests import factories
from tests.conftest import GraphQLClient

pytestmark = pytest.mark.usefixtures("database")


class Caller(StrEnum):
    LEGAL = "LEGAL_REPRESENTATIVE"
    ADMIN = "ADMINISTRATOR"
    COLLAB = "COLLABORATOR"
    EXTERNAL = "EXTERNAL"
    NON_MEMBER = "signed-in non-member"
    ANONYMOUS = "anonymous"


CALLERS = tuple(Caller)


class Outcome(StrEnum):
    OK = "allowed, with data"
    NULL = "null"
    EMPTY = "empty list or connection"
    NOT_FOUND = "NOT_FOUND"
    FORBIDDEN = "FORBIDDEN"
    UNAUTH = "UNAUTHENTICATED"
    # Allowed by authorization, then refused for the object's state: proves the rule ran first.
    NOT_IN_REDEMPTION = "DOMAIN_NOT_IN_REDEMPTION"
    LAST_LEGAL = "LAST_LEGAL_REPRESENTATIVE"
    # Invitations: the probe's token is forged, its invitation already answered (INV-4).
    INVITATION_INVALID = "INVITATION_INVALID"
    INVITATION_NOT_PENDING = "INVITATION_NOT_PENDING"
    # Blocking (BLK-*): the product's state refused a manager the rule let through.
    PRODUCT_ALREADY_BLOCKED = "PRODUCT_ALREADY_BLOCKED"
    PRODUCT_NOT_BLOCKED = "PRODUCT_NOT_BLOCKED"
    # Sign-up confirmation (ORG-1): the probe's token is forged.
    SIGN_UP_TOKEN_INVALID = "SIGN_UP_TOKEN_INVALID"
    # Second factors (MFA-*): the probe's challenge is forged, its password wrong.
    CHALLENGE_EXPIRED = "CHALLENGE_EXPIRED"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    # Login e-mail change (PRO-5): the probe's token is forged.
    LOGIN_EMAIL_CHANGE_INVALID = "LOGIN_EMAIL_CHANGE_INVALID"
    # Recovery (REC-*): the probe's request, code and link are forged.
    RECOVERY_REQUEST_INVALID = "RECOVERY_REQUEST_INVALID"
    RECOVERY_CODE_INVALID = "RECOVERY_CODE_INVALID"
    RESET_LINK_INVALID = "RESET_LINK_INVALID"
    # SMS second factor (MFA-3): the probe's number is American, refused after the rule.
    PHONE_COUNTRY_NOT_SUPPORTED = "PHONE_COUNTRY_NOT_SUPPORTED"


OK, NULL, EMPTY = Outcome.OK, Outcome.NULL, Outcome.EMPTY
NOT_FOUND, FORBIDDEN, UNAUTH = Outcome.NOT_FOUND, Outcome.FORBIDDEN, Outcome.UNAUTH
NOT_IN_REDEMPTION = Outcome.NOT_IN_REDEMPTION
LAST_LEGAL = Outcome.LAST_LEGAL


def expect(*outcomes: Outcome) -> dict[Caller, Outcome]:
    """One outcome per caller, in the order of the table's columns (CALLERS)."""
    return dict(zip(CALLERS, outcomes, strict=True))


@dataclass
class World:
    """One organisation with a member of each role, a product, activity and second factors,
    and a signed-up user of another organisation. Each caller's token comes from a sign-in."""

    organisation_id: int
    legal_user_id: int
    legal_membership_id: int
    product_id: int
    activity_event_id: int
    legal_two_factor_method_id: int
    domain_id: int
    tokens: dict[Caller, str | None]
    collaborator_membership_id: int = 0
    external_membership_id: int = 0
    invitation_id: int = 0  # an accepted invitation of the organisation (INV-*)
    # BLK-2: a mail service granted to nobody, with one mailbox per caller.
    mail_product_id: int = 0
    mailbox_ids: dict[Caller, int] = field(default_factory=dict)
    legal_session_id: int = 0  # the legal representative's own web session (ACT-6)
    legal_token_id: int = 0  # the legal representative's personal access token (API-6)
    service_account_id: int = 0  # the organisation's service account, made by the legal one
    # EVT-5: one endpoint of the organisation per caller, so each caller's probe has its own.
    webhook_endpoint_ids: dict[Caller, int] = field(default_factory=dict)
    legal_app_password_id: int = 0  # the legal representative's app password (MFA-6)


Variables = Callable[[World, Caller], dict[str, Any]]


@dataclass(frozen=True)
class Row:
    coordinate: str  # Type.field in the schema
    what: str  # whose object the probe asks for, as a reader of the table needs to know
    query: str
    path: tuple[str | int, ...]  # where the answer sits in data
    variables: Variables
    expected: dict[Caller, Outcome]

    @property
    def id(self) -> str:
        return f"{self.coordinate} ({self.what})"


def _organisation(world: World, _: Caller) -> dict[str, Any]:
    return {"id": encode_id("Organisation", world.organisation_id)}


def _nothing(_: World, __: Caller) -> dict[str, Any]:
    return {}


def _domain_input(**extra: Any) -> Variables:
    def variables(world: World, _: Caller) -> dict[str, Any]:
        return {"input": {"domainId": encode_id("Domain", world.domain_id), **extra}}

    return variables


def _domain_name(_: World, __: Caller) -> dict[str, Any]:
    return {"name": MATRIX_DOMAIN}


MATRIX_DOMAIN = "matrix-demo.ch"
DOMAINS = (
    "query($id: ID!) { organisation(id: $id) { domains(first: 5) { edges { node { id } } } } }"
)
DOMAIN_COUNT = "query($id: ID!) { organisation(id: $id) { domains(first: 0) { totalCount } } }"
DOMAIN_LOOKUP = "query($name: String!) {{ domainLookup(name: $name) {{ {selection} }} }}"


ORGANISATION = "query($id: ID!) { organisation(id: $id) { id name } }"
MEMBERS = (
    "query($id: ID!) { organisation(id: $id) { members(first: 10) { edges { node { id } } } } }"
)
MEMBER_COUNT = "query($id: ID!) { organisation(id: $id) { members(first: 0) { totalCount } } }"
ACTIVITY = (
    "query($id: ID!) { organisation(id: $id) { activity(first: 5) { edges { node { id } } } } }"
)
ACTIVITY_COUNT = "query($id: ID!) { organisation(id: $id) { activity(first: 0) { totalCount } } }"
POLICY = "query($id: ID!) { organisation(id: $id) { securityPolicy { requireTwoFactor } } }"
# The legal representative's profile as fellow members see it: first in the members list.
LEGAL_USER_PATH: tuple[str | int, ...] = ("organisation", "members", "edges", 0, "node", "user")


def _legal_user_field(selection: str) -> str:
    return (
        "query($id: ID!) { organisation(id: $id) { members(first: 1) { edges { node { user {"
        f" {selection} }} }} }} }} }} }}"
    )


def _private_field_rows(field: str, selection: str) -> list[Row]:
    """A private User field: the user alone reads it; to fellow members it is hidden."""
    hidden = (
        EMPTY
        if field in ("twoFactorMethods", "memberships", "personalAccessTokens", "appPasswords")
        else NULL
    )
    return [
        Row(
            f"User.{field}",
            "the legal representative's, through the members list",
            _legal_user_field(selection),
            (*LEGAL_USER_PATH, field),
            _organisation,
            expect(OK, hidden, hidden, hidden, NOT_FOUND, UNAUTH),
        ),
        Row(
            f"User.{field}",
            "the caller's own, through viewer",
            f"{{ viewer {{ {selection} }} }}",
            ("viewer", field),
            _nothing,
            expect(OK, OK, OK, OK, OK, NULL),
        ),
    ]


def _sign_up(_: World, caller: Caller) -> dict[str, Any]:
    email = f"new.{caller.name.lower()}@example.test"
    return {"input": {"email": email, "password": "lantern over the river", "displayName": "New"}}


def _sign_in(_: World, __: Caller) -> dict[str, Any]:
    return {"input": {"login": "legal@example.test", "password": factories.PASSWORD}}


def _member_input(which: str, **extra: Any) -> Variables:
    """A mutation input naming a membership of the organisation: "legal", "collaborator" or
    "external"."""

    def variables(world: World, _: Caller) -> dict[str, Any]:
        membership_id = {
            "legal": world.legal_membership_id,
            "collaborator": world.collaborator_membership_id,
            "external": world.external_membership_id,
        }[which]
        return {"input": {"membershipId": encode_id("Membership", membership_id), **extra}}

    return variables


def _organisation_input(**extra: Any) -> Variables:
    def variables(world: World, _: Caller) -> dict[str, Any]:
        return {
            "input": {"organisationId": encode_id("Organisation", world.organisation_id), **extra}
        }

    return variables


def _collaborator_products(world: World, caller: Caller) -> dict[str, Any]:
    return _member_input("collaborator", productIds=[encode_id("Product", world.product_id)])(
        world, caller
    )


def _mutation(name: str, input_type: str, selection: str = "errors { code }") -> str:
    return f"mutation($input: {input_type}!) {{ {name}(input: $input) {{ {selection} }} }}"


# The collaborator is third in the members list (oldest first): legal, admin, collaborator.
COLLABORATOR_MEMBER_PATH: tuple[str | int, ...] = ("organisation", "members", "edges", 2, "node")


def _collaborator_member_field(selection: str) -> str:
    return (
        "query($id: ID!) { organisation(id: $id) { members(first: 3) { edges { node {"
        f" {selection} }} }} }} }} }}"
    )


def _member_management_rows() -> list[Row]:
    return [
        # POL-2: 2FA status and grants are for managers and the member alone.
        Row("User.twoFactorEnabled", "the legal representative's, through the members list",
            _legal_user_field("twoFactorEnabled"), (*LEGAL_USER_PATH, "twoFactorEnabled"),
            _organisation,
            expect(OK, OK, NULL, NULL, NOT_FOUND, UNAUTH)),
        Row("User.twoFactorEnabled", "the caller's own, through viewer",
            "{ viewer { twoFactorEnabled } }", ("viewer", "twoFactorEnabled"), _nothing,
            expect(OK, OK, OK, OK, OK, NULL)),
        Row("Membership.productAccess", "the collaborator's, through the members list",
            _collaborator_member_field("productAccess { id }"),
            (*COLLABORATOR_MEMBER_PATH, "productAccess"), _organisation,
            expect(OK, OK, OK, NULL, NOT_FOUND, UNAUTH)),
        Row("Membership.contactPreferences", "the collaborator's, through the members list",
            _collaborator_member_field("contactPreferences { security }"),
            (*COLLABORATOR_MEMBER_PATH, "contactPreferences"), _organisation,
            expect(OK, OK, OK, NULL, NOT_FOUND, UNAUTH)),
        Row("Organisation.members", "the organisation's, filtered on 2FA status",
            "query($id: ID!) { organisation(id: $id) { members(first: 5,"
            " twoFactorEnabled: false) { totalCount } } }",
            ("organisation", "members"), _organisation,
            expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
        Row("Organisation.sharingRecipients", "the organisation's",
            "query($id: ID!) { organisation(id: $id) { sharingRecipients(first: 5) {"
            " edges { node { id } } } } }",
            ("organisation", "sharingRecipients"), _organisation,
            expect(OK, OK, OK, OK, NOT_FOUND, UNAUTH)),
        Row("Mutation.changeMemberRole", "the external member's, to the role they have",
            _mutation("changeMemberRole", "ChangeMemberRoleInput"), ("changeMemberRole",),
            _member_input("external", role="EXTERNAL"),
            expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
        Row("Mutation.removeMember", "the only legal representative's",
            _mutation("removeMember", "RemoveMemberInput"), ("removeMember",),
            _member_input("legal"),
            expect(LAST_LEGAL, FORBIDDEN, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
        Row("Mutation.leaveOrganisation", "the organisation",
            _mutation("leaveOrganisation", "LeaveOrganisationInput"), ("leaveOrganisation",),
            _organisation_input(),
            expect(FORBIDDEN, FORBIDDEN, FORBIDDEN, OK, NOT_FOUND, UNAUTH)),
        Row("Mutation.setMemberProductAccess", "the collaborator's, to the grant they have",
            _mutation("setMemberProductAccess", "SetMemberProductAccessInput"),
            ("setMemberProductAccess",), _collaborator_products,
            expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
        Row("Mutation.setContactPreferences", "the collaborator's",
            _mutation("setContactPreferences", "SetContactPreferencesInput"),
            ("setContactPreferences",),
            _member_input("collaborator", billing=True, technical=False, security=True,
                          domainExpiry=False),
            expect(OK, OK, OK, FORBIDDEN, NOT_FOUND, UNAUTH)),
        Row("Mutation.switchOrganisation", "the organisation",
            _mutation("switchOrganisation", "SwitchOrganisationInput"), ("switchOrganisation",),
            _organisation_input(),
            expect(OK, OK, OK, OK, NOT_FOUND, UNAUTH)),
        Row("Mutation.setSupportPlan", "the organisation's, to PREMIUM",
            _mutation("setSupportPlan", "SetSupportPlanInput"), ("setSupportPlan",),
            _organisation_input(plan="PREMIUM"),
            expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
    ]  # fmt: skip


# --- Invitations (INV-*) -----------------------------------------------------------------------
INVITATION_INVALID = Outcome.INVITATION_INVALID
INVITATION_NOT_PENDING = Outcome.INVITATION_NOT_PENDING
INVITATIONS = (
    "query($id: ID!) { organisation(id: $id) { invitations(first: 5) { edges { node { id } } } } }"
)
INVITATION_COUNT = (
    "query($id: ID!) { organisation(id: $id) { invitations(first: 0) { totalCount } } }"
)


def _invite(role: str) -> Variables:
    def variables(world: World, caller: Caller) -> dict[str, Any]:
        return {
            "input": {
                "organisationId": encode_id("Organisation", world.organisation_id),
                "email": f"invitee.{role.lower()}.{caller.name.lower()}@example.test",
                "role": role,
            }
        }

    return variables


def _forged_token(_: World, __: Caller) -> dict[str, Any]:
    return {"input": {"token": "forged-" + "x" * 40}}


def _invitation_input(world: World, _: Caller) -> dict[str, Any]:
    return {"input": {"invitationId": encode_id("Invitation", world.invitation_id)}}


async def _answered_invitation(services: Services, organisation_id: int, inviter_id: int) -> int:
    now = services.clock.now()
    invitation = await Invitation.create(
        organisation_id=organisation_id,
        email="answered@example.test",
        role=Role.COLLABORATOR,
        token_hash=services.keyring.token_digest("matrix-invitation", "invitation"),
        status=InvitationStatus.ACCEPTED,
        invited_by_id=inviter_id,
        expires_at=now + timedelta(days=7),
        last_sent_at=now,
        created_at=now,
        responded_at=now,
    )
    return invitation.id


INVITATION_ROWS: list[Row] = [
    Row("Organisation.invitations", "the organisation's", INVITATIONS,
        ("organisation", "invitations"), _organisation,
        expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
    Row("InvitationConnection.totalCount", "the organisation's invitations", INVITATION_COUNT,
        ("organisation", "invitations", "totalCount"), _organisation,
        expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
    Row("Mutation.inviteMember", "a collaborator, to the organisation",
        "mutation($input: InviteMemberInput!) { inviteMember(input: $input) { errors { code } } }",
        ("inviteMember",), _invite("COLLABORATOR"),
        expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
    Row("Mutation.inviteMember", "a legal representative, to the organisation (INV-1)",
        "mutation($input: InviteMemberInput!) { inviteMember(input: $input) { errors { code } } }",
        ("inviteMember",), _invite("LEGAL_REPRESENTATIVE"),
        expect(OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
    # Accepting and declining are decided by the token alone: a forged one is refused for all.
    Row("Mutation.acceptInvitation", "a forged token",
        "mutation($input: AcceptInvitationInput!) {"
        " acceptInvitation(input: $input) { errors { code } } }",
        ("acceptInvitation",), _forged_token,
        expect(*[INVITATION_INVALID] * 6)),
    Row("Mutation.declineInvitation", "a forged token",
        "mutation($input: DeclineInvitationInput!) {"
        " declineInvitation(input: $input) { errors { code } } }",
        ("declineInvitation",), _forged_token,
        expect(*[INVITATION_INVALID] * 6)),
    Row("Mutation.revokeInvitation", "the organisation's answered invitation",
        "mutation($input: RevokeInvitationInput!) {"
        " revokeInvitation(input: $input) { errors { code } } }",
        ("revokeInvitation",), _invitation_input,
        expect(INVITATION_NOT_PENDING, INVITATION_NOT_PENDING, FORBIDDEN, FORBIDDEN, NOT_FOUND,
               UNAUTH)),
    Row("Mutation.resendInvitation", "the organisation's answered invitation",
        "mutation($input: ResendInvitationInput!) {"
        " resendInvitation(input: $input) { errors { code } } }",
        ("resendInvitation",), _invitation_input,
        expect(INVITATION_NOT_PENDING, INVITATION_NOT_PENDING, FORBIDDEN, FORBIDDEN, NOT_FOUND,
               UNAUTH)),
]  # fmt: skip


# --- Blocking (BLK-*) ---------------------------------------------------------------------------
PRODUCT_ALREADY_BLOCKED = Outcome.PRODUCT_ALREADY_BLOCKED
PRODUCT_NOT_BLOCKED = Outcome.PRODUCT_NOT_BLOCKED
PRODUCTS = (
    "query($id: ID!) { organisation(id: $id) { products(first: 5) { edges { node { id } } } } }"
)
PRODUCT_COUNT = "query($id: ID!) { organisation(id: $id) { products(first: 0) { totalCount } } }"
MAIL_NODE = "query($id: ID!) {{ node(id: $id) {{ ... on Product {{ {selection} }} }} }}"
MAILBOX_NODE = "query($id: ID!) {{ node(id: $id) {{ ... on Mailbox {{ {selection} }} }} }}"


def _product_input(which: str, **extra: Any) -> Variables:
    """ "drive": the product granted to the collaborator; "mail": the mail service."""

    def variables(world: World, _: Caller) -> dict[str, Any]:
        product_id = world.product_id if which == "drive" else world.mail_product_id
        return {"input": {"productId": encode_id("Product", product_id), **extra}}

    return variables


def _mail_product(world: World, _: Caller) -> dict[str, Any]:
    return {"id": encode_id("Product", world.mail_product_id)}


def _legal_mailbox(world: World, _: Caller) -> dict[str, Any]:
    return {"id": encode_id("Mailbox", world.mailbox_ids[Caller.LEGAL])}


def _own_mailbox(world: World, caller: Caller) -> dict[str, Any]:
    return {"input": {"mailboxId": encode_id("Mailbox", world.mailbox_ids[caller])}}


def _new_mailbox(world: World, caller: Caller) -> dict[str, Any]:
    return {
        "input": {
            "productId": encode_id("Product", world.mail_product_id),
            "address": f"new.{caller.name.lower()}@{MATRIX_DOMAIN}",
        }
    }


def _support_input(world: World, _: Caller) -> dict[str, Any]:
    return {
        "input": {
            "organisationId": encode_id("Organisation", world.organisation_id),
            "userId": encode_id("User", world.legal_user_id),
            "requesterSupportCode": "123456",
            "justification": "Reported stolen laptop",
        }
    }


BLOCKING_ROWS: list[Row] = [
    Row("Organisation.products", "the organisation's", PRODUCTS, ("organisation", "products"),
        _organisation,
        expect(OK, OK, OK, OK, NOT_FOUND, UNAUTH)),
    Row("ProductConnection.totalCount", "the organisation's products", PRODUCT_COUNT,
        ("organisation", "products", "totalCount"), _organisation,
        expect(OK, OK, OK, OK, NOT_FOUND, UNAUTH)),
    # The mail service is granted to nobody: collaborators and external members do not use it.
    Row("Product.mailboxes", "the organisation's mail service's",
        MAIL_NODE.format(selection="mailboxes(first: 5) { edges { node { id } } }"),
        ("node", "mailboxes"), _mail_product,
        expect(OK, OK, FORBIDDEN, FORBIDDEN, NULL, UNAUTH)),
    Row("MailboxConnection.totalCount", "the organisation's mail service's mailboxes",
        MAIL_NODE.format(selection="mailboxes(first: 0) { totalCount }"),
        ("node", "mailboxes", "totalCount"), _mail_product,
        expect(OK, OK, FORBIDDEN, FORBIDDEN, NULL, UNAUTH)),
    Row("Mailbox.messages", "a mailbox of the organisation's mail service",
        MAILBOX_NODE.format(selection="messages(first: 5) { edges { node { subject } } }"),
        ("node", "messages"), _legal_mailbox,
        expect(EMPTY, EMPTY, NULL, NULL, NULL, UNAUTH)),
    Row("MailMessageConnection.totalCount", "a mailbox of the organisation's mail service",
        MAILBOX_NODE.format(selection="messages(first: 0) { totalCount }"),
        ("node", "messages", "totalCount"), _legal_mailbox,
        expect(OK, OK, NULL, NULL, NULL, UNAUTH)),
    Row("Mutation.blockProductManagement", "the collaborator's granted product",
        _mutation("blockProductManagement", "BlockProductManagementInput"),
        ("blockProductManagement",), _product_input("drive"),
        expect(OK, PRODUCT_ALREADY_BLOCKED, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
    Row("Mutation.unblockProductManagement", "the collaborator's granted product, not blocked",
        _mutation("unblockProductManagement", "UnblockProductManagementInput"),
        ("unblockProductManagement",), _product_input("drive"),
        expect(PRODUCT_NOT_BLOCKED, PRODUCT_NOT_BLOCKED, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
    Row("Mutation.setMailMaintenance", "the mail service, to the state it has",
        _mutation("setMailMaintenance", "SetMailMaintenanceInput"),
        ("setMailMaintenance",), _product_input("mail", enabled=False),
        expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
    Row("Mutation.createMailbox", "a new address in the mail service",
        _mutation("createMailbox", "CreateMailboxInput"), ("createMailbox",), _new_mailbox,
        expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
    Row("Mutation.deleteMailbox", "a mailbox of the mail service",
        _mutation("deleteMailbox", "DeleteMailboxInput"), ("deleteMailbox",), _own_mailbox,
        expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
    # Support operations are for platform staff alone: no member, whatever the role.
    Row("Mutation.supportBlockUser", "the legal representative",
        _mutation("supportBlockUser", "SupportBlockUserInput"), ("supportBlockUser",),
        _support_input,
        expect(FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, UNAUTH)),
    Row("Mutation.supportUnblockUser", "the legal representative",
        _mutation("supportUnblockUser", "SupportUnblockUserInput"), ("supportUnblockUser",),
        _support_input,
        expect(FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, UNAUTH)),
    Row("Mutation.sendSecurityProcedure", "the collaborator",
        _mutation("sendSecurityProcedure", "SendSecurityProcedureInput"),
        ("sendSecurityProcedure",), _member_input("collaborator"),
        expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
]  # fmt: skip


# --- Own security (ACT-4…ACT-6): each user's own, and nobody else's ------------------------------


def _legal_session_input(world: World, _: Caller) -> dict[str, Any]:
    return {"input": {"sessionId": encode_id("ActiveSession", world.legal_session_id)}}


SECURITY_ROWS: list[Row] = [
    *_private_field_rows("activity", "activity(first: 5) { edges { node { id } } }"),
    *_private_field_rows("sessions", "sessions { id }"),
    *_private_field_rows("securityEmailPreferences", "securityEmailPreferences { wrongPassword }"),
    # Someone else's session answers like one that does not exist (no enumeration).
    Row("Mutation.revokeSession", "the legal representative's session",
        _mutation("revokeSession", "RevokeSessionInput"), ("revokeSession",),
        _legal_session_input,
        expect(OK, NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND, UNAUTH)),
    Row("Mutation.secureAccount", "the caller's own account",
        "mutation { secureAccount { errors { code } } }", ("secureAccount",), _nothing,
        expect(OK, OK, OK, OK, OK, UNAUTH)),
    Row("Mutation.setSecurityEmailPreferences", "the caller's own",
        _mutation("setSecurityEmailPreferences", "SetSecurityEmailPreferencesInput"),
        ("setSecurityEmailPreferences",), lambda *_: {"input": {"wrongPassword": False}},
        expect(OK, OK, OK, OK, OK, UNAUTH)),
]  # fmt: skip


# --- Webhooks (EVT-5) ---------------------------------------------------------------------------
WEBHOOK_ENDPOINTS = "query($id: ID!) { organisation(id: $id) { webhookEndpoints { id } } }"


def _webhook_create(world: World, _: Caller) -> dict[str, Any]:
    return {
        "input": {
            "organisationId": encode_id("Organisation", world.organisation_id),
            "url": "https://93.184.215.14/hooks/matrix",
            "eventTypes": ["member.role_changed"],
        }
    }


def _webhook_endpoint(**extra: Any) -> Variables:
    def variables(world: World, caller: Caller) -> dict[str, Any]:
        endpoint_id = encode_id("WebhookEndpoint", world.webhook_endpoint_ids[caller])
        return {"input": {"endpointId": endpoint_id, **extra}}

    return variables


async def _webhook_endpoints(services: Services, organisation_id: int) -> dict[Caller, int]:
    endpoints = {}
    for caller in CALLERS:
        endpoint = await WebhookEndpoint.create(
            organisation_id=organisation_id,
            url=f"https://93.184.215.14/hooks/{caller.name.lower()}",
            event_types=["member.role_changed"],
            secret_encrypted=webhooks.encrypt_secret(services, organisation_id, "whsec_matrix"),
            created_at=services.clock.now(),
        )
        endpoints[caller] = endpoint.id
    return endpoints


WEBHOOK_ROWS: list[Row] = [
    Row("Query.webhookEventTypes", "the catalogue", "{ webhookEventTypes }",
        ("webhookEventTypes",), _nothing,
        expect(OK, OK, OK, OK, OK, OK)),
    Row("Organisation.webhookEndpoints", "the organisation's", WEBHOOK_ENDPOINTS,
        ("organisation", "webhookEndpoints"), _organisation,
        expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
    Row("Mutation.createWebhookEndpoint", "an endpoint of the organisation",
        _mutation("createWebhookEndpoint", "CreateWebhookEndpointInput"),
        ("createWebhookEndpoint",), _webhook_create,
        expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
    Row("Mutation.updateWebhookEndpoint", "an endpoint of the organisation",
        _mutation("updateWebhookEndpoint", "UpdateWebhookEndpointInput"),
        ("updateWebhookEndpoint",), _webhook_endpoint(enabled=False),
        expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
    Row("Mutation.rotateWebhookSecret", "an endpoint of the organisation",
        _mutation("rotateWebhookSecret", "RotateWebhookSecretInput"),
        ("rotateWebhookSecret",), _webhook_endpoint(),
        expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
    Row("Mutation.deleteWebhookEndpoint", "an endpoint of the organisation",
        _mutation("deleteWebhookEndpoint", "DeleteWebhookEndpointInput"),
        ("deleteWebhookEndpoint",), _webhook_endpoint(),
        expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
]  # fmt: skip


# --- The caller's profile, contacts and login e-mail (PRO-1…PRO-5, REC-4) ----------------------


def _contact_change(**fields: Any) -> Variables:
    def variables(_: World, caller: Caller) -> dict[str, Any]:
        values = {
            name: value.format(caller=caller.name.lower()) if isinstance(value, str) else value
            for name, value in fields.items()
        }
        return {"input": {**values, "currentPassword": factories.PASSWORD}}

    return variables


def _phone_change(_: World, caller: Caller) -> dict[str, Any]:
    # A number of each caller's own: one number is texted a few times an hour, whoever asks.
    phone = f"+4178111220{CALLERS.index(caller)}"
    return {"input": {"phone": phone, "currentPassword": factories.PASSWORD}}


PROFILE_ROWS: list[Row] = [
    *_private_field_rows("mustSetLoginEmail", "mustSetLoginEmail"),
    # Each of them changes the caller's own account only: there is nobody else's to name.
    Row("Mutation.updateProfile", "the caller's own profile",
        _mutation("updateProfile", "UpdateProfileInput"), ("updateProfile",),
        lambda *_: {"input": {"language": "en", "country": "CH"}},
        expect(OK, OK, OK, OK, OK, UNAUTH)),
    Row("Mutation.setRecoveryPhone", "the caller's own recovery phone",
        _mutation("setRecoveryPhone", "SetRecoveryPhoneInput"), ("setRecoveryPhone",),
        _phone_change,
        expect(OK, OK, OK, OK, OK, UNAUTH)),
    Row("Mutation.setRecoveryEmail", "the caller's own recovery e-mail",
        _mutation("setRecoveryEmail", "SetRecoveryEmailInput"), ("setRecoveryEmail",),
        _contact_change(email="backup.{caller}@example.test"),
        expect(OK, OK, OK, OK, OK, UNAUTH)),
    Row("Mutation.regenerateSupportCode", "the caller's own support code",
        "mutation { regenerateSupportCode { errors { code } } }", ("regenerateSupportCode",),
        _nothing,
        expect(OK, OK, OK, OK, OK, UNAUTH)),
    Row("Mutation.requestLoginEmailChange", "the caller's own login e-mail",
        _mutation("requestLoginEmailChange", "RequestLoginEmailChangeInput"),
        ("requestLoginEmailChange",), _contact_change(newEmail="new.{caller}@example.test"),
        expect(OK, OK, OK, OK, OK, UNAUTH)),
    # The token alone names the change: whoever holds the link confirms it, signed in or not.
    Row("Mutation.confirmLoginEmailChange", "a forged link",
        _mutation("confirmLoginEmailChange", "ConfirmLoginEmailChangeInput"),
        ("confirmLoginEmailChange",), lambda *_: {"input": {"token": "forged"}},
        expect(*(Outcome.LOGIN_EMAIL_CHANGE_INVALID,) * 6)),
]  # fmt: skip


# --- Second factors (MFA-*) and the security policy (POL-1, POL-3) ------------------------------
CHALLENGE_EXPIRED = Outcome.CHALLENGE_EXPIRED
INVALID_CREDENTIALS = Outcome.INVALID_CREDENTIALS


def _input(**values: Any) -> Variables:
    return lambda *_: {"input": values}


def _legal_method_input(world: World, _: Caller) -> dict[str, Any]:
    method_id = encode_id("TwoFactorMethod", world.legal_two_factor_method_id)
    return {"input": {"methodId": method_id, "password": "not the password"}}


def _legal_app_password_input(world: World, _: Caller) -> dict[str, Any]:
    return {"input": {"appPasswordId": encode_id("AppPassword", world.legal_app_password_id)}}


TWO_FACTOR_ROWS: list[Row] = [
    Row("Mutation.completeSecondFactor", "a forged challenge",
        _mutation("completeSecondFactor", "CompleteSecondFactorInput"), ("completeSecondFactor",),
        _input(challengeId="forged", method="TOTP", code="123456"),
        expect(*[CHALLENGE_EXPIRED] * 6)),
    Row("Mutation.beginTotpEnrolment", "the caller's own", "mutation { beginTotpEnrolment {"
        " errors { code } } }", ("beginTotpEnrolment",), _nothing,
        expect(OK, OK, OK, OK, OK, UNAUTH)),
    Row("Mutation.confirmTotpEnrolment", "an enrolment of nobody",
        _mutation("confirmTotpEnrolment", "ConfirmTotpEnrolmentInput"), ("confirmTotpEnrolment",),
        _input(enrolmentId=encode_id("TotpEnrolment", 999999), code="123456"),
        expect(NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND, UNAUTH)),
    Row("Mutation.regenerateBackupCodes", "the caller's own", "mutation { regenerateBackupCodes {"
        " errors { code } } }", ("regenerateBackupCodes",), _nothing,
        expect(OK, OK, OK, OK, OK, UNAUTH)),
    Row("Mutation.removeTwoFactorMethod", "the legal representative's, with a wrong password",
        _mutation("removeTwoFactorMethod", "RemoveTwoFactorMethodInput"),
        ("removeTwoFactorMethod",), _legal_method_input,
        expect(INVALID_CREDENTIALS, NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND, UNAUTH)),
    Row("Mutation.createAppPassword", "the caller's own",
        _mutation("createAppPassword", "CreateAppPasswordInput"), ("createAppPassword",),
        _input(label="Mail"),
        expect(OK, OK, OK, OK, OK, UNAUTH)),
    Row("Mutation.revokeAppPassword", "the legal representative's",
        _mutation("revokeAppPassword", "RevokeAppPasswordInput"), ("revokeAppPassword",),
        _legal_app_password_input,
        expect(OK, NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND, UNAUTH)),
    Row("Mutation.authenticateApp", "the legal representative's login, a wrong app password",
        _mutation("authenticateApp", "AuthenticateAppInput"), ("authenticateApp",),
        _input(login="legal@example.test", appPassword="wrong"),
        expect(*[INVALID_CREDENTIALS] * 6)),
    Row("Mutation.updateSecurityPolicy", "the organisation's, to what it is",
        _mutation("updateSecurityPolicy", "UpdateSecurityPolicyInput"), ("updateSecurityPolicy",),
        _organisation_input(requireTwoFactor=False, confirm=True),
        expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
    Row("Mutation.sendSecurityAlert", "to the collaborator",
        _mutation("sendSecurityAlert", "SendSecurityAlertInput"), ("sendSecurityAlert",),
        _member_input("collaborator"),
        expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
    Row("Mutation.beginSecurityKeyRegistration", "the caller's own",
        "mutation { beginSecurityKeyRegistration { errors { code } } }",
        ("beginSecurityKeyRegistration",), _nothing,
        expect(OK, OK, OK, OK, OK, UNAUTH)),
    Row("Mutation.completeSecurityKeyRegistration", "a registration of nobody",
        _mutation("completeSecurityKeyRegistration", "CompleteSecurityKeyRegistrationInput"),
        ("completeSecurityKeyRegistration",),
        _input(registrationId=encode_id("SecurityKeyRegistration", 999999), credential={},
               nickname="Key"),
        expect(NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND, UNAUTH)),
    Row("Mutation.beginSecurityKeySignIn", "a forged challenge",
        _mutation("beginSecurityKeySignIn", "BeginSecurityKeySignInInput"),
        ("beginSecurityKeySignIn",), _input(challengeId="forged"),
        expect(*[CHALLENGE_EXPIRED] * 6)),
    # Push approval (MFA-4): the approval app's own fields refuse every web session (the
    # device credential's side is tests/resolvers/test_push_approvals.py).
    Row("Mutation.registerPushDevice", "the caller's own",
        _mutation("registerPushDevice", "RegisterPushDeviceInput"), ("registerPushDevice",),
        _input(label="Phone"),
        expect(OK, OK, OK, OK, OK, UNAUTH)),
    Row("Mutation.requestLoginApproval", "a forged challenge",
        _mutation("requestLoginApproval", "RequestLoginApprovalInput"),
        ("requestLoginApproval",), _input(challengeId="forged"),
        expect(*[CHALLENGE_EXPIRED] * 6)),
    Row("Mutation.answerLoginApproval", "a request of nobody, from a web session",
        _mutation("answerLoginApproval", "AnswerLoginApprovalInput"), ("answerLoginApproval",),
        _input(approvalId="00000000-0000-4000-8000-000000000000", approve=False),
        expect(*[UNAUTH] * 6)),
    Row("Subscription.loginApprovalRequests", "from a web session",
        "subscription { loginApprovalRequests { approvalId } }", ("loginApprovalRequests",),
        _nothing, expect(*[UNAUTH] * 6)),
    Row("Mutation.beginSmsEnrolment", "the caller's own, to a US number",
        _mutation("beginSmsEnrolment", "BeginSmsEnrolmentInput"), ("beginSmsEnrolment",),
        _input(phone="+1 650 253 0000"),
        expect(*[Outcome.PHONE_COUNTRY_NOT_SUPPORTED] * 5, UNAUTH)),
    Row("Mutation.confirmSmsEnrolment", "an enrolment of nobody",
        _mutation("confirmSmsEnrolment", "ConfirmSmsEnrolmentInput"), ("confirmSmsEnrolment",),
        _input(enrolmentId=encode_id("SmsEnrolment", 999999), code="123456"),
        expect(NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND, UNAUTH)),
    Row("Mutation.sendSignInCode", "a forged challenge",
        _mutation("sendSignInCode", "SendSignInCodeInput"), ("sendSignInCode",),
        _input(challengeId="forged"),
        expect(*[CHALLENGE_EXPIRED] * 6)),
]  # fmt: skip


def _per_caller_login(_: World, caller: Caller) -> dict[str, Any]:
    # One login per caller: the probes must not spend one login's request budget.
    return {"input": {"login": f"lost.{caller.name.lower()}@example.test"}}


def _per_caller_case(_: World, caller: Caller) -> dict[str, Any]:
    # One login per caller, as above: cases are limited per login named.
    login = f"lost.{caller.name.lower()}@example.test"
    return {"input": {"login": login, "contactEmail": "me@example.org", "details": "I am Ada."}}


def _per_caller_phone(_: World, caller: Caller) -> dict[str, Any]:
    number = f"+4179000000{CALLERS.index(caller)}"
    return {"input": {"phone": number, "recoveryEmail": "x@example.test", "channel": "SMS"}}


# Recovery (REC-1…REC-3): open to anyone signed in or not (people who lost access use them),
# except support's review of identity-verification cases, for support agents only (none here).
RECOVERY_ROWS: list[Row] = [
    Row("Mutation.requestPasswordReset", "any login",
        _mutation("requestPasswordReset", "RequestPasswordResetInput"),
        ("requestPasswordReset",), _per_caller_login,
        expect(*[OK] * 6)),
    Row("Mutation.sendRecoveryCode", "a forged request",
        _mutation("sendRecoveryCode", "SendRecoveryCodeInput"), ("sendRecoveryCode",),
        lambda _, caller: {"input": {"recoveryId": f"forged-{caller.name}", "optionId": "x"}},
        expect(*[Outcome.RECOVERY_REQUEST_INVALID] * 6)),
    Row("Mutation.resetPassword", "a forged request",
        _mutation("resetPassword", "ResetPasswordInput"), ("resetPassword",),
        lambda _, caller: {"input": {"recoveryId": f"forged-{caller.name}", "code": "00000000",
                                     "newPassword": "lantern over the river"}},
        expect(*[Outcome.RECOVERY_CODE_INVALID] * 6)),
    Row("Mutation.requestIdentityVerification", "a case naming any login",
        _mutation("requestIdentityVerification", "RequestIdentityVerificationInput"),
        ("requestIdentityVerification",), _per_caller_case,
        expect(*[OK] * 6)),
    Row("Mutation.reviewIdentityVerification", "a case, by no support agent",
        _mutation("reviewIdentityVerification", "ReviewIdentityVerificationInput"),
        ("reviewIdentityVerification",),
        _input(caseId=encode_id("IdentityVerificationCase", 1), approve=False),
        expect(*[FORBIDDEN] * 5, UNAUTH)),
    Row("Mutation.completeIdentityVerificationReset", "a forged link",
        _mutation("completeIdentityVerificationReset", "CompleteIdentityVerificationResetInput"),
        ("completeIdentityVerificationReset",),
        _input(token="forged", newPassword="lantern over the river"),
        expect(*[Outcome.RESET_LINK_INVALID] * 6)),
    Row("Mutation.recoverLoginIdentifier", "contacts no account has",
        _mutation("recoverLoginIdentifier", "RecoverLoginIdentifierInput"),
        ("recoverLoginIdentifier",), _per_caller_phone,
        expect(*[OK] * 6)),
    Row("Query.identityVerificationCases", "support's list, by no support agent",
        "{ identityVerificationCases { edges { node { id } } } }",
        ("identityVerificationCases",), _nothing,
        expect(*[FORBIDDEN] * 5, UNAUTH)),
]  # fmt: skip


# The columns of every expect(...): legal representative, administrator, collaborator,
# external, signed-in non-member, anonymous.
ROWS: list[Row] = [
    # --- root fields -------------------------------------------------------------------------
    Row("Query.viewer", "the caller", "{ viewer { id } }", ("viewer",), _nothing,
        expect(OK, OK, OK, OK, OK, NULL)),
    Row("Query.organisation", "the organisation", ORGANISATION, ("organisation",), _organisation,
        expect(OK, OK, OK, OK, NOT_FOUND, UNAUTH)),
    Row("Query.node", "an ID of no Node type", "query($id: ID!) { node(id: $id) { id } }",
        ("node",), lambda *_: {"id": encode_id("Nothing", 1)},
        expect(NULL, NULL, NULL, NULL, NULL, UNAUTH)),
    # --- mutations ---------------------------------------------------------------------------
    Row("Mutation.signUp", "a new account",
        "mutation($input: SignUpInput!) { signUp(input: $input) { errors { code } } }",
        ("signUp",), _sign_up,
        expect(OK, OK, OK, OK, OK, OK)),
    Row("Mutation.signIn", "the legal representative's login",
        "mutation($input: SignInInput!) { signIn(input: $input) { errors { code } } }",
        ("signIn",), _sign_in,
        expect(OK, OK, OK, OK, OK, OK)),
    Row("Mutation.signOut", "the caller's session", "mutation { signOut { errors { code } } }",
        ("signOut",), _nothing,
        expect(OK, OK, OK, OK, OK, UNAUTH)),
    # --- organisation-scoped fields ----------------------------------------------------------
    Row("Organisation.members", "the organisation's", MEMBERS, ("organisation", "members"),
        _organisation,
        expect(OK, OK, OK, OK, NOT_FOUND, UNAUTH)),
    Row("MembershipConnection.totalCount", "the organisation's members", MEMBER_COUNT,
        ("organisation", "members", "totalCount"), _organisation,
        expect(OK, OK, OK, OK, NOT_FOUND, UNAUTH)),
    Row("Organisation.activity", "the organisation's", ACTIVITY, ("organisation", "activity"),
        _organisation,
        expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
    Row("ActivityEventConnection.totalCount", "the organisation's activity", ACTIVITY_COUNT,
        ("organisation", "activity", "totalCount"), _organisation,
        expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
    Row("Organisation.securityPolicy", "the organisation's", POLICY,
        ("organisation", "securityPolicy"), _organisation,
        expect(OK, OK, OK, OK, NOT_FOUND, UNAUTH)),
    # --- domains (DOM-*): managers, and members granted the DOMAIN product (none here) ----------
    Row("Organisation.domains", "the organisation's", DOMAINS, ("organisation", "domains"),
        _organisation,
        expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
    Row("DomainConnection.totalCount", "the organisation's domains", DOMAIN_COUNT,
        ("organisation", "domains", "totalCount"), _organisation,
        expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
    Row("Query.domainLookup", "a name the organisation holds",
        DOMAIN_LOOKUP.format(selection="answer"), ("domainLookup",), _domain_name,
        expect(OK, OK, OK, OK, OK, UNAUTH)),
    Row("DomainLookup.organisation", "a name the organisation holds",
        DOMAIN_LOOKUP.format(selection="organisation { id }"),
        ("domainLookup", "organisation"), _domain_name,
        expect(OK, OK, OK, OK, NULL, UNAUTH)),
    Row("DomainLookup.domain", "a name the organisation holds",
        DOMAIN_LOOKUP.format(selection="domain { id }"), ("domainLookup", "domain"),
        _domain_name,
        expect(OK, OK, NULL, NULL, NULL, UNAUTH)),
    Row("Mutation.renewDomain", "the organisation's active domain",
        "mutation($input: RenewDomainInput!) { renewDomain(input: $input) { errors { code } } }",
        ("renewDomain",), _domain_input(years=1),
        expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
    Row("Mutation.restoreDomain", "the organisation's active domain",
        "mutation($input: RestoreDomainInput!) { restoreDomain(input: $input) { errors { code } } }",
        ("restoreDomain",), _domain_input(),
        expect(NOT_IN_REDEMPTION, NOT_IN_REDEMPTION, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
    Row("Mutation.setDomainRenewalWarranty", "the organisation's active domain",
        "mutation($input: SetDomainRenewalWarrantyInput!) {"
        " setDomainRenewalWarranty(input: $input) { errors { code } } }",
        ("setDomainRenewalWarranty",), _domain_input(enabled=True),
        expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
    # --- private fields of a user ------------------------------------------------------------
    *_private_field_rows("recoveryPhone", "recoveryPhone"),
    *_private_field_rows("recoveryEmail", "recoveryEmail"),
    *_private_field_rows("supportCode", "supportCode"),
    *_private_field_rows("twoFactorMethods", "twoFactorMethods { id }"),
    *_private_field_rows("currentOrganisation", "currentOrganisation { id }"),
    *_private_field_rows("memberships", "memberships { edges { node { id } } }"),
    *_private_field_rows("backupCodesRemaining", "backupCodesRemaining"),
    *_private_field_rows("appPasswords", "appPasswords { id }"),
    *_private_field_rows("personalAccessTokens", "personalAccessTokens { id }"),
    # --- membership management (ORG-2…ORG-7) and the member directory by role (POL-2) ----------
    *_member_management_rows(),
    # --- invitations (INV-*) -------------------------------------------------------------------
    *INVITATION_ROWS,
    # --- blocking (BLK-*) ----------------------------------------------------------------------
    *BLOCKING_ROWS,
    # --- own security: activity, sessions, security e-mails, secure my account (ACT-4…ACT-6) ---
    *SECURITY_ROWS,
    # --- integrator tokens (API-6): each caller's own, from a web session ---------------------
    Row("Mutation.createPersonalAccessToken", "a token of the caller's own",
        "mutation($input: CreatePersonalAccessTokenInput!) {"
        " createPersonalAccessToken(input: $input) { errors { code } } }",
        ("createPersonalAccessToken",),
        lambda *_: {"input": {"label": "Matrix", "scopes": ["members:read"]}},
        expect(OK, OK, OK, OK, OK, UNAUTH)),
    Row("Mutation.revokePersonalAccessToken", "the legal representative's token",
        "mutation($input: RevokePersonalAccessTokenInput!) {"
        " revokePersonalAccessToken(input: $input) { errors { code } } }",
        ("revokePersonalAccessToken",),
        lambda w, _: {"input": {"tokenId": encode_id("PersonalAccessToken", w.legal_token_id)}},
        expect(OK, NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND, UNAUTH)),
    Row("Organisation.serviceAccounts", "the organisation's",
        "query($id: ID!) { organisation(id: $id) { serviceAccounts { id } } }",
        ("organisation", "serviceAccounts"), _organisation,
        expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
    Row("Mutation.createServiceAccount", "a collaborator account of the organisation",
        "mutation($input: CreateServiceAccountInput!) {"
        " createServiceAccount(input: $input) { errors { code } } }",
        ("createServiceAccount",),
        lambda w, _: {"input": {"organisationId": encode_id("Organisation", w.organisation_id),
                                "name": "Matrix", "role": "COLLABORATOR",
                                "scopes": ["members:read"]}},
        expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
    Row("Mutation.revokeServiceAccount", "the organisation's service account",
        "mutation($input: RevokeServiceAccountInput!) {"
        " revokeServiceAccount(input: $input) { errors { code } } }",
        ("revokeServiceAccount",),
        lambda w, _: {"input": {"serviceAccountId": encode_id("ServiceAccount",
                                                              w.service_account_id)}},
        expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
    # --- webhooks (EVT-5) ----------------------------------------------------------------------
    *WEBHOOK_ROWS,
    # Confirming a sign-up is decided by the token alone: a forged one is refused for all.
    Row("Mutation.confirmSignUp", "a forged token",
        "mutation($input: ConfirmSignUpInput!) { confirmSignUp(input: $input) { errors { code } } }",
        ("confirmSignUp",), _forged_token,
        expect(*[Outcome.SIGN_UP_TOKEN_INVALID] * 6)),
    # --- second factors (MFA-*) and the security policy (POL-1, POL-3) ------------------------
    *TWO_FACTOR_ROWS,
    *PROFILE_ROWS,
    # --- account recovery (REC-1…REC-3) --------------------------------------------------------
    *RECOVERY_ROWS,
    # --- live security events (EVT-1): asked of the subscribe functions (see _subscribe) -------
    Row("Subscription.organisationSecurityEvents", "the organisation's events",
        "subscription($id: ID!) { organisationSecurityEvents(organisationId: $id) { cursor } }",
        ("organisationSecurityEvents",), _organisation,
        expect(OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND, UNAUTH)),
    Row("Subscription.viewerSecurityEvents", "the caller's own events",
        "subscription { viewerSecurityEvents { cursor } }", ("viewerSecurityEvents",), _nothing,
        expect(OK, OK, OK, OK, OK, UNAUTH)),
]  # fmt: skip


@dataclass(frozen=True)
class NodeRow:
    """node(id:) for one Node type: answers what that type's own field answers, else null."""

    target: Callable[[World], str]
    expected: dict[Caller, Outcome]


NODES: dict[str, NodeRow] = {
    "Organisation": NodeRow(lambda w: encode_id("Organisation", w.organisation_id),
                            expect(OK, OK, OK, OK, NULL, UNAUTH)),
    "Membership": NodeRow(lambda w: encode_id("Membership", w.legal_membership_id),
                          expect(OK, OK, OK, OK, NULL, UNAUTH)),
    "Product": NodeRow(lambda w: encode_id("Product", w.product_id),
                       expect(OK, OK, OK, OK, NULL, UNAUTH)),
    "ActivityEvent": NodeRow(lambda w: encode_id("ActivityEvent", w.activity_event_id),
                             expect(OK, OK, NULL, NULL, NULL, UNAUTH)),
    "User": NodeRow(lambda w: encode_id("User", w.legal_user_id),
                    expect(OK, NULL, NULL, NULL, NULL, UNAUTH)),
    "TwoFactorMethod": NodeRow(
        lambda w: encode_id("TwoFactorMethod", w.legal_two_factor_method_id),
        expect(OK, NULL, NULL, NULL, NULL, UNAUTH)),
    "Domain": NodeRow(lambda w: encode_id("Domain", w.domain_id),
                      expect(OK, OK, NULL, NULL, NULL, UNAUTH)),
    "Invitation": NodeRow(lambda w: encode_id("Invitation", w.invitation_id),
                          expect(OK, OK, NULL, NULL, NULL, UNAUTH)),
    "Mailbox": NodeRow(lambda w: encode_id("Mailbox", w.mailbox_ids[Caller.LEGAL]),
                       expect(OK, OK, NULL, NULL, NULL, UNAUTH)),
    "ActiveSession": NodeRow(lambda w: encode_id("ActiveSession", w.legal_session_id),
                             expect(OK, NULL, NULL, NULL, NULL, UNAUTH)),
    "PersonalAccessToken": NodeRow(
        lambda w: encode_id("PersonalAccessToken", w.legal_token_id),
        expect(OK, NULL, NULL, NULL, NULL, UNAUTH)),
    "ServiceAccount": NodeRow(
        lambda w: encode_id("ServiceAccount", w.service_account_id),
        expect(OK, OK, NULL, NULL, NULL, UNAUTH)),
    "WebhookEndpoint": NodeRow(
        lambda w: encode_id("WebhookEndpoint", w.webhook_endpoint_ids[Caller.LEGAL]),
        expect(OK, OK, NULL, NULL, NULL, UNAUTH)),
    "AppPassword": NodeRow(lambda w: encode_id("AppPassword", w.legal_app_password_id),
                           expect(OK, NULL, NULL, NULL, NULL, UNAUTH)),
}  # fmt: skip

# Fields with no decision of their own: plain values of an object the caller was already allowed
# to reach (its parent's row decides), connection plumbing, and payload parts.
INHERITED = frozenset(
    {
        "ActivityEvent.id", "ActivityEvent.type", "ActivityEvent.occurredAt", "ActivityEvent.ip",
        "ActivityEvent.country", "ActivityEvent.device",
        # Who acted and whom it concerns: public profiles, read by those who see the event.
        "ActivityEvent.actor", "ActivityEvent.subject",
        "ActivityEventConnection.edges", "ActivityEventConnection.pageInfo",
        "ActivityEventEdge.cursor", "ActivityEventEdge.node",
        "Membership.id", "Membership.role", "Membership.user", "Membership.organisation",
        "MembershipConnection.edges", "MembershipConnection.pageInfo",
        "MembershipEdge.cursor", "MembershipEdge.node",
        "Organisation.id", "Organisation.name", "Organisation.supportPlan",
        "PageInfo.hasNextPage", "PageInfo.endCursor",
        "Product.id", "Product.name", "Product.kind",
        "SecondFactorChallenge.challengeId", "SecondFactorChallenge.methods",
        "SecondFactorChallenge.expiresAt",
        "SecurityPolicy.requireTwoFactor", "SecurityPolicy.updatedAt",
        "Session.token", "Session.expiresAt",
        "SignInPayload.session", "SignInPayload.secondFactor", "SignInPayload.errors",
        "SignOutPayload.errors",
        "SignUpPayload.user", "SignUpPayload.session", "SignUpPayload.errors",
        "TwoFactorMethod.id", "TwoFactorMethod.kind", "TwoFactorMethod.label",
        "TwoFactorMethod.createdAt", "TwoFactorMethod.lastUsedAt",
        # What fellow members see of each other (the members list, POL-2).
        "User.id", "User.email", "User.displayName", "User.language", "User.country",
        "User.timezone",
        "UserError.code", "UserError.message", "UserError.field", "UserError.retryAfterSeconds",
        "Domain.id", "Domain.name", "Domain.status", "Domain.expiresAt", "Domain.redemptionEndsAt",
        "Domain.renewalWarranty", "Domain.restoreFee", "Money.amount", "Money.currency",
        "DomainConnection.edges", "DomainConnection.pageInfo", "DomainEdge.cursor",
        "DomainEdge.node", "DomainLookup.answer", "DomainLookup.name",
        "RenewDomainPayload.domain", "RenewDomainPayload.errors", "RestoreDomainPayload.domain",
        "RestoreDomainPayload.charge", "RestoreDomainPayload.errors",
        "SetDomainRenewalWarrantyPayload.domain", "SetDomainRenewalWarrantyPayload.errors",
        # Membership management (ORG-2…ORG-7): payload parts, and the preferences' values.
        "ContactPreferences.billing", "ContactPreferences.technical",
        "ContactPreferences.security", "ContactPreferences.domainExpiry",
        "ChangeMemberRolePayload.membership", "ChangeMemberRolePayload.errors",
        "RemoveMemberPayload.errors", "LeaveOrganisationPayload.errors",
        "SetMemberProductAccessPayload.membership", "SetMemberProductAccessPayload.errors",
        "SetContactPreferencesPayload.membership", "SetContactPreferencesPayload.errors",
        "SwitchOrganisationPayload.organisation", "SwitchOrganisationPayload.errors",
        "SetSupportPlanPayload.organisation", "SetSupportPlanPayload.errors",
        # Invitations (INV-*): values of an invitation the caller was allowed to reach.
        "Invitation.id", "Invitation.email", "Invitation.role", "Invitation.status",
        "Invitation.expiresAt", "Invitation.createdAt", "Invitation.lastSentAt",
        "Invitation.sendCount", "Invitation.productIds", "Invitation.contactPreferences",
        "InvitationContactPreferences.billing", "InvitationContactPreferences.technical",
        "InvitationContactPreferences.security", "InvitationContactPreferences.domainExpiry",
        "InvitationConnection.edges", "InvitationConnection.pageInfo",
        "InvitationEdge.cursor", "InvitationEdge.node",
        "InviteMemberPayload.invitation", "InviteMemberPayload.errors",
        "AcceptInvitationPayload.membership", "AcceptInvitationPayload.session",
        "AcceptInvitationPayload.errors", "DeclineInvitationPayload.errors",
        "RevokeInvitationPayload.invitation", "RevokeInvitationPayload.errors",
        "ResendInvitationPayload.invitation", "ResendInvitationPayload.errors",
        # Blocking (BLK-*): values of a product or mailbox the caller was allowed to reach,
        # connection plumbing and payload parts.
        "Product.managementBlocked", "Product.mailMaintenance",
        "ProductConnection.edges", "ProductConnection.pageInfo", "ProductEdge.cursor",
        "ProductEdge.node",
        "Mailbox.id", "Mailbox.address",
        "MailboxConnection.edges", "MailboxConnection.pageInfo", "MailboxEdge.cursor",
        "MailboxEdge.node",
        "MailMessage.sender", "MailMessage.subject", "MailMessage.body", "MailMessage.receivedAt",
        "MailMessageConnection.edges", "MailMessageConnection.pageInfo",
        "MailMessageEdge.cursor", "MailMessageEdge.node",
        "BlockProductManagementPayload.product", "BlockProductManagementPayload.errors",
        "UnblockProductManagementPayload.product", "UnblockProductManagementPayload.errors",
        "SetMailMaintenancePayload.product", "SetMailMaintenancePayload.errors",
        "CreateMailboxPayload.mailbox", "CreateMailboxPayload.errors",
        "DeleteMailboxPayload.errors",
        "SupportBlockUserPayload.blockedAt", "SupportBlockUserPayload.errors",
        "SupportUnblockUserPayload.unblockedAt", "SupportUnblockUserPayload.errors",
        "SendSecurityProcedurePayload.errors",
        # Own security (ACT-4…ACT-6): values of the caller's own session, payload parts.
        "ActiveSession.id", "ActiveSession.kind", "ActiveSession.device", "ActiveSession.ip",
        "ActiveSession.country", "ActiveSession.createdAt", "ActiveSession.lastSeenAt",
        "ActiveSession.current", "RevokeSessionPayload.errors",
        "SecureAccountPayload.sessionsRevoked", "SecureAccountPayload.appPasswordsRevoked",
        "SecureAccountPayload.steps", "SecureAccountPayload.errors",
        "SecureAccountPayload.tokensRevoked", "SecureAccountPayload.serviceAccountsRevoked",
        "SecurityEmailPreferences.newLocation", "SecurityEmailPreferences.wrongPassword",
        "SetSecurityEmailPreferencesPayload.preferences", "SetSecurityEmailPreferencesPayload.errors",
        # Integrator tokens (API-6): values of a token its owner was allowed to reach.
        "PersonalAccessToken.id", "PersonalAccessToken.label", "PersonalAccessToken.scopes",
        "PersonalAccessToken.prefix", "PersonalAccessToken.organisationId",
        "PersonalAccessToken.createdAt", "PersonalAccessToken.expiresAt",
        "PersonalAccessToken.lastUsedAt", "PersonalAccessToken.lastUsedIp",
        "PersonalAccessToken.useCount", "PersonalAccessToken.revokedAt",
        "CreatePersonalAccessTokenPayload.token", "CreatePersonalAccessTokenPayload.secret",
        "CreatePersonalAccessTokenPayload.errors",
        "RevokePersonalAccessTokenPayload.token", "RevokePersonalAccessTokenPayload.errors",
        "ServiceAccount.id", "ServiceAccount.name", "ServiceAccount.role",
        "ServiceAccount.scopes", "ServiceAccount.prefix", "ServiceAccount.createdById",
        "ServiceAccount.createdAt", "ServiceAccount.expiresAt", "ServiceAccount.lastUsedAt",
        "ServiceAccount.lastUsedIp", "ServiceAccount.useCount", "ServiceAccount.revokedAt",
        "CreateServiceAccountPayload.serviceAccount", "CreateServiceAccountPayload.secret",
        "CreateServiceAccountPayload.errors",
        "RevokeServiceAccountPayload.serviceAccount", "RevokeServiceAccountPayload.errors",
        # Webhooks (EVT-5): values of an endpoint the caller was allowed to reach; payload parts.
        "WebhookEndpoint.id", "WebhookEndpoint.url", "WebhookEndpoint.eventTypes",
        "WebhookEndpoint.enabled", "WebhookEndpoint.disabledAt",
        "WebhookEndpoint.consecutiveFailures", "WebhookEndpoint.failingSince",
        "WebhookEndpoint.createdAt", "WebhookEndpoint.lastDelivery",
        "WebhookEndpoint.recentDeliveries",
        "WebhookDelivery.eventId", "WebhookDelivery.eventType", "WebhookDelivery.status",
        "WebhookDelivery.attempts", "WebhookDelivery.lastStatusCode", "WebhookDelivery.lastError",
        "WebhookDelivery.lastAttemptAt", "WebhookDelivery.nextAttemptAt",
        "WebhookDelivery.deliveredAt",
        "CreateWebhookEndpointPayload.endpoint", "CreateWebhookEndpointPayload.secret",
        "CreateWebhookEndpointPayload.errors", "UpdateWebhookEndpointPayload.endpoint",
        "UpdateWebhookEndpointPayload.errors", "RotateWebhookSecretPayload.endpoint",
        "RotateWebhookSecretPayload.secret", "RotateWebhookSecretPayload.errors",
        "DeleteWebhookEndpointPayload.deletedEndpointId", "DeleteWebhookEndpointPayload.errors",
        # Sign-up confirmation (ORG-1): the account it opened, for the token's holder only.
        "ConfirmSignUpPayload.user", "ConfirmSignUpPayload.session", "ConfirmSignUpPayload.errors",
        # Second factors (MFA-*) and the security policy (POL-*): payload parts, values of the
        # caller's own app passwords.
        "AppPassword.id", "AppPassword.label", "AppPassword.createdAt", "AppPassword.lastUsedAt",
        "AppSession.token", "AppSession.expiresAt",
        "AuthenticateAppPayload.session", "AuthenticateAppPayload.errors",
        "BeginTotpEnrolmentPayload.enrolmentId", "BeginTotpEnrolmentPayload.secret",
        "BeginTotpEnrolmentPayload.otpauthUri", "BeginTotpEnrolmentPayload.qrCodeSvg",
        "BeginTotpEnrolmentPayload.errors",
        "CompleteSecondFactorPayload.session", "CompleteSecondFactorPayload.errors",
        "ConfirmTotpEnrolmentPayload.method", "ConfirmTotpEnrolmentPayload.backupCodes",
        "ConfirmTotpEnrolmentPayload.errors",
        "CreateAppPasswordPayload.appPassword", "CreateAppPasswordPayload.secret",
        "CreateAppPasswordPayload.errors",
        "RegenerateBackupCodesPayload.backupCodes", "RegenerateBackupCodesPayload.errors",
        "RemoveTwoFactorMethodPayload.twoFactorEnabled", "RemoveTwoFactorMethodPayload.errors",
        "RevokeAppPasswordPayload.errors", "SendSecurityAlertPayload.errors",
        "UpdateSecurityPolicyPayload.securityPolicy", "UpdateSecurityPolicyPayload.errors",
        # Security keys (MFA-2): payload parts of the caller's own registration or sign-in.
        "BeginSecurityKeyRegistrationPayload.registrationId",
        "BeginSecurityKeyRegistrationPayload.options", "BeginSecurityKeyRegistrationPayload.errors",
        "CompleteSecurityKeyRegistrationPayload.method",
        "CompleteSecurityKeyRegistrationPayload.backupCodes",
        "CompleteSecurityKeyRegistrationPayload.errors",
        "BeginSecurityKeySignInPayload.options", "BeginSecurityKeySignInPayload.errors",
        # SMS second factor (MFA-3): payload parts of the caller's own enrolment or sign-in.
        "BeginSmsEnrolmentPayload.enrolmentId", "BeginSmsEnrolmentPayload.sentTo",
        "BeginSmsEnrolmentPayload.expiresAt", "BeginSmsEnrolmentPayload.errors",
        "ConfirmSmsEnrolmentPayload.method", "ConfirmSmsEnrolmentPayload.backupCodes",
        "ConfirmSmsEnrolmentPayload.errors",
        "SendSignInCodePayload.sentTo", "SendSignInCodePayload.expiresAt",
        "SendSignInCodePayload.errors",
        # Live security events (EVT-1): parts of an event the subscription was allowed to follow.
        "SecurityEventEdge.cursor", "SecurityEventEdge.event",
        # The caller's own profile, contacts and login e-mail (PRO-1…PRO-5).
        "UpdateProfilePayload.user", "UpdateProfilePayload.errors",
        "SetRecoveryContactPayload.user", "SetRecoveryContactPayload.errors",
        "RegenerateSupportCodePayload.supportCode", "RegenerateSupportCodePayload.errors",
        "RequestLoginEmailChangePayload.expiresAt", "RequestLoginEmailChangePayload.errors",
        "ConfirmLoginEmailChangePayload.email", "ConfirmLoginEmailChangePayload.errors",
        # Recovery (REC-*): payload parts, and the cases of support's list (agents only).
        "RequestPasswordResetPayload.recoveryId", "RequestPasswordResetPayload.options",
        "RequestPasswordResetPayload.errors", "RecoveryOption.id", "RecoveryOption.channel",
        "RecoveryOption.maskedDestination", "SendRecoveryCodePayload.errors",
        "ResetPasswordPayload.errors", "RequestIdentityVerificationPayload.errors",
        "ReviewIdentityVerificationPayload.case", "ReviewIdentityVerificationPayload.errors",
        "CompleteIdentityVerificationResetPayload.errors",
        "RecoverLoginIdentifierPayload.identityVerificationOffered",
        "RecoverLoginIdentifierPayload.errors",
        "IdentityVerificationCase.id", "IdentityVerificationCase.status",
        "IdentityVerificationCase.login", "IdentityVerificationCase.contactEmail",
        "IdentityVerificationCase.details", "IdentityVerificationCase.hasAccount",
        "IdentityVerificationCase.createdAt", "IdentityVerificationCase.reviewedAt",
        "IdentityVerificationCaseConnection.edges", "IdentityVerificationCaseConnection.pageInfo",
        "IdentityVerificationCaseConnection.totalCount",
        "IdentityVerificationCaseEdge.cursor", "IdentityVerificationCaseEdge.node",
        # Push approval (MFA-4): payload parts; a request the device's subscription may follow.
        "RegisterPushDevicePayload.device", "RegisterPushDevicePayload.deviceCredential",
        "RegisterPushDevicePayload.backupCodes", "RegisterPushDevicePayload.errors",
        "RequestLoginApprovalPayload.approvalId", "RequestLoginApprovalPayload.number",
        "RequestLoginApprovalPayload.expiresAt", "RequestLoginApprovalPayload.errors",
        "AnswerLoginApprovalPayload.status", "AnswerLoginApprovalPayload.errors",
        "LoginApprovalRequest.approvalId", "LoginApprovalRequest.status",
        "LoginApprovalRequest.country",
        "LoginApprovalRequest.device", "LoginApprovalRequest.requestedAt",
        "LoginApprovalRequest.expiresAt", "LoginApprovalRequest.numbers",
    }
)  # fmt: skip


def _schema_fields() -> set[str]:
    return {
        f"{name}.{field}"
        for name, graphql_type in schema._schema.type_map.items()
        if isinstance(graphql_type, GraphQLObjectType) and not name.startswith("__")
        for field in graphql_type.fields
    }


def _node_types() -> set[str]:
    node = schema._schema.type_map["Node"]
    assert isinstance(node, GraphQLInterfaceType)
    return {t.name for t in schema._schema.get_implementations(node).objects}


def test_api1_every_schema_field_has_an_authorization_row() -> None:
    """A new field without a rule fails here: add an authorization rule and a row here."""
    ruled = {row.coordinate for row in ROWS}

    missing = _schema_fields() - ruled - INHERITED
    stale = (ruled | INHERITED) - _schema_fields()

    assert missing == set(), f"add an authorization rule and a row here for: {sorted(missing)}"
    assert stale == set(), f"rows for fields the schema no longer has: {sorted(stale)}"
    assert ruled.isdisjoint(INHERITED)


def test_api1_every_node_type_has_an_authorization_row() -> None:
    """node(id:) must answer for each type exactly what that type's own field answers."""
    assert set(NODES) == _node_types(), "add an authorization rule and a NODES row here"


async def _world(services: Services) -> World:
    legal = await factories.sign_up(services, email="legal@example.test", name="Ada Lovelace")
    organisation = legal.organisation
    members = {
        caller: await factories.add_member(
            services, organisation, Role(caller.value), email=f"{caller.name.lower()}@example.test"
        )
        for caller in (Caller.ADMIN, Caller.COLLAB, Caller.EXTERNAL)
    }
    outsider = await factories.sign_up(services, email="outsider@example.test", name="Grace")
    tokens: dict[Caller, str | None] = {
        Caller.LEGAL: legal.session.token,
        Caller.NON_MEMBER: outsider.session.token,
        Caller.ANONYMOUS: None,
    }
    for caller, member in members.items():
        signed_in = await accounts.sign_in(
            services,
            RequestMeta(ip="198.51.100.1"),
            login=member.user.email or "",
            password=factories.PASSWORD,
        )
        assert signed_in.session is not None
        tokens[caller] = signed_in.session.token
    # Every account gets private data of its own, so "hidden" and "empty" mean refused.
    methods: dict[int, TwoFactorMethod] = {}
    tokens_of: dict[int, ApiToken] = {}
    for user in await User.all():
        user.recovery_phone = "+41791234567"
        user.recovery_email = f"recovery.{user.id}@example.test"
        user.support_code_encrypted = services.keyring.encrypt(b"123456", "support-code")
        await user.save()
        methods[user.id] = await factories.confirm_totp(services, user)
        tokens_of[user.id] = await ApiToken.create(
            owner=user,
            name="Matrix",
            token_hash=services.keyring.token_digest(f"matrix-{user.id}", "api-token"),
            scopes=["members:read"],
            created_at=services.clock.now(),
            expires_at=services.clock.now() + timedelta(days=30),
        )
    product = await Product.create(
        organisation=organisation, kind="WEB_DRIVE", name="Drive", created_at=services.clock.now()
    )
    await ProductGrant.create(membership=members[Caller.COLLAB].membership, product=product)
    domain = await factories.add_domain(
        services, organisation, MATRIX_DOMAIN, expires_in=timedelta(days=60)
    )
    app_password_ids = {
        user_id: (
            await AppPassword.create(
                user_id=user_id, label="Mail", password_hash=f"matrix-{user_id}",
                created_at=services.clock.now(),
            )
        ).id
        for user_id in methods
    }  # fmt: skip
    event = await ActivityEvent.filter(organisation_id=organisation.id).order_by("id").first()
    assert event is not None
    mail = await Product.create(
        organisation=organisation, kind="MAIL_SERVICE", name="Mail", created_at=services.clock.now()
    )
    mailbox_ids = {
        caller: (
            await Mailbox.create(
                product=mail,
                address=f"box.{caller.name.lower()}@example.test",
                created_at=services.clock.now(),
            )
        ).id
        for caller in CALLERS
    }
    return World(
        organisation_id=organisation.id,
        legal_user_id=legal.user.id,
        legal_membership_id=(await legal.user.memberships.all())[0].id,
        product_id=product.id,
        activity_event_id=event.id,
        legal_two_factor_method_id=methods[legal.user.id].id,
        domain_id=domain.id,
        tokens=tokens,
        collaborator_membership_id=members[Caller.COLLAB].membership.id,
        external_membership_id=members[Caller.EXTERNAL].membership.id,
        invitation_id=await _answered_invitation(services, organisation.id, legal.user.id),
        mail_product_id=mail.id,
        mailbox_ids=mailbox_ids,
        legal_session_id=legal.session.session.id,
        legal_token_id=tokens_of[legal.user.id].id,
        service_account_id=(
            await ApiToken.create(
                organisation=organisation,
                created_by=legal.user,
                role=Role.ADMINISTRATOR,
                name="Matrix account",
                token_hash=services.keyring.token_digest("matrix-account", "api-token"),
                scopes=["members:read"],
                created_at=services.clock.now(),
                expires_at=services.clock.now() + timedelta(days=30),
            )
        ).id,
        webhook_endpoint_ids=await _webhook_endpoints(services, organisation.id),
        legal_app_password_id=app_password_ids[legal.user.id],
    )


def _outcome(body: dict[str, Any], path: tuple[str | int, ...]) -> Outcome:
    codes = {error["extensions"]["code"] for error in body.get("errors", [])}
    if codes:
        assert len(codes) == 1, body
        return Outcome(codes.pop())
    value: Any = body["data"]
    for key in path:
        if value is None:
            return NULL
        value = value[key]
    if value is None:
        return NULL
    if isinstance(value, dict) and value.get("errors"):  # a mutation payload's typed errors
        payload_codes = {error["code"] for error in value["errors"]}
        assert len(payload_codes) == 1, body
        return Outcome(payload_codes.pop())
    if value == [] or (isinstance(value, dict) and value.get("edges") == []):
        return EMPTY
    return OK


async def _ask(gql: GraphQLClient, world: World, caller: Caller, query: str, variables: Any) -> Any:
    gql.token = world.tokens[caller]
    response = await gql.post(query, variables)
    assert response.status_code == 200, (caller, response.text)
    return response.json()


async def _subscribe(app: Starlette, token: str | None, query: str, variables: Any) -> Any:
    """A subscription is refused or started by its subscribe function, which the WebSocket
    transport runs through the engine (tests/e2e/test_security_events.py runs the socket)."""
    engine: GraphQLEngine = app.state.graphql_engine
    services: Services = app.state.services
    actor = (await sessions.authenticate(services, token) if token else None) or Actor()
    prepared = engine.prepare(query)
    operation = prepared.operation(None)
    assert operation is not None, prepared.errors
    source = await engine.open_stream(
        prepared, operation, variables, Context(services, actor, RequestMeta())
    )
    if isinstance(source, ExecutionResult):
        return {"data": None, "errors": engine.format_errors(list(source.errors or []), "test")}
    assert isinstance(source, EventSource)
    (field,) = operation.root_fields
    return {"data": {field: {"ok": True}}}


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
async def test_api1_role_matrix_field(
    services: Services, gql: GraphQLClient, app: Starlette, row: Row
) -> None:
    world = await _world(services)

    observed = {
        caller: _outcome(
            await _subscribe(app, world.tokens[caller], row.query, row.variables(world, caller))
            if row.query.startswith("subscription")
            else await _ask(gql, world, caller, row.query, row.variables(world, caller)),
            row.path,
        )
        for caller in CALLERS
    }

    assert observed == row.expected


@pytest.mark.parametrize("type_name", sorted(NODES))
async def test_api1_role_matrix_node(
    services: Services, gql: GraphQLClient, type_name: str
) -> None:
    world = await _world(services)
    row = NODES[type_name]
    query = "query($id: ID!) { node(id: $id) { __typename id } }"
    target = row.target(world)

    bodies = {caller: await _ask(gql, world, caller, query, {"id": target}) for caller in CALLERS}
    observed = {caller: _outcome(body, ("node",)) for caller, body in bodies.items()}

    assert observed == row.expected
    for caller, body in bodies.items():
        if observed[caller] is OK:
            assert body["data"]["node"] == {"__typename": type_name, "id": target}, caller


async def test_blk3_sign_in_rule_refuses_a_user_only_while_blocked(services: Services) -> None:
    """BLK-3: is_blocked / may_sign_in_web follow the active block of this user alone."""
    blocked = await factories.sign_up(services, email="blocked@example.test")
    other = await factories.sign_up(services, email="other@example.test")
    block = await UserBlock.create(
        organisation_id=blocked.organisation.id,
        user_id=blocked.user.id,
        justification="Phone lost, reported by the administrator",
        created_at=services.clock.now(),
    )

    while_blocked = (
        await authz.is_blocked(blocked.user.id),
        await authz.may_sign_in_web(blocked.user.id),
        await authz.may_sign_in_web(other.user.id),
    )
    block.lifted_at = services.clock.now()
    await block.save(update_fields=["lifted_at"])
    lifted = (await authz.is_blocked(blocked.user.id), await authz.may_sign_in_web(blocked.user.id))

    assert while_blocked == (True, False, True)
    assert lifted == (False, True)


async def test_api1_a_cancelled_field_leaves_the_shared_membership_lookup_to_its_siblings(
    services: Services,
) -> None:
    """Fields resolved concurrently share one membership lookup: cancelling the first to ask
    (its parent failed, the client left) must not fail the others with CancelledError."""
    legal = await factories.sign_up(services, email="legal@example.test")
    actor = await sessions.authenticate(services, legal.session.token)
    assert actor is not None
    scope = authz.RequestScope(actor)

    first = asyncio.ensure_future(authz.membership_of(scope, legal.organisation.id))
    sibling = asyncio.ensure_future(authz.membership_of(scope, legal.organisation.id))
    await asyncio.sleep(0)  # both now await the one shared lookup, still running
    assert not scope._memberships[legal.organisation.id].done()
    first.cancel()
    membership = await sibling

    assert first.cancelled()
    assert membership is not None
    assert (membership.organisation_id, membership.role) == (
        legal.organisation.id,
        Role.LEGAL_REPRESENTATIVE,
    )
