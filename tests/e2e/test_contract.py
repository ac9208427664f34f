"""The client contract: every operation validates against the schema; this issue's run for real.

tests/contract/operations.graphql is the contract of ../shared/contract, kept in the repository
so CI (a clean clone) has it; a test below keeps the two copies equal wherever both exist.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import DocumentNode, FragmentDefinitionNode, OperationDefinitionNode, parse, validate
from graphql.language import FragmentSpreadNode, Visitor, visit

from gardien.demo import DEMO_PASSWORD
from gardien.schema import schema
from tests.e2e.conftest import ServedGateway, fresh_gateway_env, start_gateway

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "tests" / "contract" / "operations.graphql"
SHARED_CONTRACT = ROOT.parent / "shared" / "contract" / "operations.graphql"

# Operations that later capabilities deliver; strict, so each marker must go when they land.
LATER: dict[str, str] = {}


def _document() -> DocumentNode:
    return parse(CONTRACT.read_text(encoding="utf-8"))


def _operations() -> dict[str, OperationDefinitionNode]:
    return {
        op.name.value: op
        for op in _document().definitions
        if isinstance(op, OperationDefinitionNode) and op.name
    }


def _standalone(name: str) -> str:
    """The operation with just the fragments it spreads, as a client would send it."""
    document = _document()
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    operation = _operations()[name]
    used: set[str] = set()

    class Spreads(Visitor):
        def enter_fragment_spread(self, node: FragmentSpreadNode, *_: Any) -> None:
            used.add(node.name.value)

    visit(operation, Spreads())
    assert operation.loc is not None
    parts = [operation.loc.source.body[operation.loc.start : operation.loc.end]]
    for fragment_name in sorted(used):
        loc = fragments[fragment_name].loc
        assert loc is not None
        parts.append(loc.source.body[loc.start : loc.end])
    return "\n".join(parts)


def _cases() -> list[Any]:
    return [
        pytest.param(
            name,
            marks=pytest.mark.xfail(strict=True, reason=f"delivered with {LATER[name]}"),
        )
        if name in LATER
        else name
        for name in _operations()
    ]


def test_api5_contract_copy_matches_shared_contract() -> None:
    if not SHARED_CONTRACT.exists():
        pytest.skip("../shared is not beside this checkout (CI clones the project alone)")
    assert CONTRACT.read_text(encoding="utf-8") == SHARED_CONTRACT.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", _cases())
def test_api5_contract_operation_validates_against_schema(name: str) -> None:
    errors = validate(schema._schema, parse(_standalone(name)))

    assert errors == [], [e.message for e in errors]


def _post(
    gateway: ServedGateway,
    name: str,
    variables: dict[str, Any] | None = None,
    token: str | None = None,
) -> httpx.Response:
    headers = {"accept": "application/graphql-response+json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return httpx.post(
        f"{gateway.url}/graphql",
        json={"query": _standalone(name), "operationName": name, "variables": variables or {}},
        headers=headers,
        timeout=30,
    )


def _sign_in(gateway: ServedGateway, login: str) -> str:
    body = _post(gateway, "SignIn", {"input": {"login": login, "password": DEMO_PASSWORD}}).json()
    assert body["data"]["signIn"]["errors"] == []
    token: str = body["data"]["signIn"]["session"]["token"]
    return token


def test_org1_contract_sign_up_served(served: ServedGateway) -> None:
    response = _post(
        served,
        "SignUp",
        {
            "input": {
                "email": "new.customer@example.test",
                "password": "lantern over the river",
                "displayName": "New Customer",
                "language": "de",
            }
        },
    )

    # ORG-1: "check your mailbox"; the account opens with confirmSignUp (tests/e2e/test_sign_up.py).
    assert response.status_code == 200
    assert response.json() == {"data": {"signUp": {"user": None, "session": None, "errors": []}}}
    assert "set-cookie" not in response.headers


def test_mfa7_contract_sign_in_viewer_and_sign_out_served(served: ServedGateway) -> None:
    signed_in = _post(
        served,
        "SignIn",
        {
            "input": {
                "login": "marc.admin@demo.example",
                "password": DEMO_PASSWORD,
            }
        },
    )
    payload = signed_in.json()["data"]["signIn"]
    token = payload["session"]["token"]

    viewer = _post(served, "Viewer", token=token).json()["data"]["viewer"]
    signed_out = _post(served, "SignOut", token=token).json()["data"]["signOut"]
    after = _post(served, "Viewer", token=token)

    assert payload["secondFactor"] is None and payload["errors"] == []
    assert (viewer["email"], viewer["displayName"], viewer["twoFactorEnabled"]) == (
        "marc.admin@demo.example",
        "Marc Admin",
        False,
    )
    assert viewer["currentOrganisation"]["name"] == "Démo SA"
    assert len(viewer["supportCode"]) == 6 and viewer["supportCode"].isdigit()
    assert viewer["twoFactorMethods"] == []
    assert viewer["memberships"]["totalCount"] == 1
    assert viewer["memberships"]["edges"][0]["node"]["role"] == "ADMINISTRATOR"
    assert signed_out == {"errors": []}
    assert after.status_code == 401
    assert after.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_mfa7_contract_sign_in_wrong_password_served(served: ServedGateway) -> None:
    body = _post(
        served,
        "SignIn",
        {
            "input": {
                "login": "marc.admin@demo.example",
                "password": "not the password",
            }
        },
    ).json()

    assert body["data"]["signIn"] == {
        "session": None,
        "secondFactor": None,
        "errors": [
            {
                "code": "INVALID_CREDENTIALS",
                "message": "The login or password is incorrect.",
                "field": None,
            }
        ],
    }


def _organisation_id(served: ServedGateway, token: str) -> str:
    viewer = _post(served, "Viewer", token=token).json()["data"]["viewer"]
    organisation_id: str = viewer["currentOrganisation"]["id"]
    return organisation_id


def test_pol2_contract_organisation_members_served(served: ServedGateway) -> None:
    """A collaborator sees fellow members' names, e-mails and roles; 2FA status and product
    grants only of themself; the 2FA filter is the managers' (a list of phishing targets)."""
    token = _sign_in(served, "lea.collab@demo.example")
    legal = _sign_in(served, "anna.legal@demo.example")
    organisation_id = _organisation_id(served, token)

    everyone = _post(served, "OrganisationMembers", {"id": organisation_id, "first": 50}, token)
    refused = _post(
        served,
        "OrganisationMembers",
        {"id": organisation_id, "first": 2, "twoFactorEnabled": False},
        token,
    )
    without_2fa = _post(
        served,
        "OrganisationMembers",
        {"id": organisation_id, "first": 2, "twoFactorEnabled": False},
        legal,
    )
    as_legal = _post(served, "OrganisationMembers", {"id": organisation_id, "first": 50}, legal)

    organisation = everyone.json()["data"]["organisation"]
    members = organisation["members"]
    assert organisation["name"] == "Démo SA"
    assert organisation["securityPolicy"]["requireTwoFactor"] is False
    assert [(e["node"]["user"]["email"], e["node"]["role"]) for e in members["edges"]] == [
        ("anna.legal@demo.example", "LEGAL_REPRESENTATIVE"),
        ("marc.admin@demo.example", "ADMINISTRATOR"),
        ("lea.collab@demo.example", "COLLABORATOR"),
        ("tom.extern@demo.example", "EXTERNAL"),
    ]
    assert [e["node"]["user"]["twoFactorEnabled"] for e in members["edges"]] == [
        None,
        None,
        False,
        None,
    ]
    assert [
        None if e["node"]["productAccess"] is None else len(e["node"]["productAccess"])
        for e in members["edges"]
    ] == [None, None, 2, None]
    assert refused.json()["data"] == {"organisation": None}
    assert [e["extensions"]["code"] for e in refused.json()["errors"]] == ["FORBIDDEN"]
    managed = as_legal.json()["data"]["organisation"]["members"]["edges"]
    assert [len(e["node"]["productAccess"]) for e in managed] == [0, 0, 2, 1]
    assert [e["node"]["user"]["twoFactorEnabled"] for e in managed] == [False] * 4
    page = without_2fa.json()["data"]["organisation"]["members"]
    assert (page["totalCount"], len(page["edges"]), page["pageInfo"]["hasNextPage"]) == (4, 2, True)


def test_act4_contract_organisation_activity_served(served: ServedGateway) -> None:
    legal = _sign_in(served, "anna.legal@demo.example")
    external = _sign_in(served, "tom.extern@demo.example")
    organisation_id = _organisation_id(served, legal)

    # ACT-4: members' sign-ins are part of it too, so the first page is a large one.
    allowed = _post(served, "OrganisationActivity", {"id": organisation_id, "first": 100}, legal)
    refused = _post(served, "OrganisationActivity", {"id": organisation_id, "first": 10}, external)

    events = [e["node"] for e in allowed.json()["data"]["organisation"]["activity"]["edges"]]
    assert {e["type"] for e in events} >= {
        "member.joined",
        "account.signed_up",
        "sign_in.succeeded",
    }
    assert all(e["occurredAt"] and e["id"] for e in events)
    assert refused.json()["data"] == {"organisation": None}
    assert refused.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"


def _demo_domains(served: ServedGateway, token: str) -> dict[str, dict[str, Any]]:
    body = _post(served, "OrganisationDomains", {"id": _organisation_id(served, token)}, token)
    edges = body.json()["data"]["organisation"]["domains"]["edges"]
    return {edge["node"]["name"]: edge["node"] for edge in edges}


def test_dom3_contract_organisation_domains_served(served: ServedGateway) -> None:
    legal = _sign_in(served, "anna.legal@demo.example")
    external = _sign_in(served, "tom.extern@demo.example")

    domains = _demo_domains(served, legal)
    refused = _post(
        served, "OrganisationDomains", {"id": _organisation_id(served, external)}, external
    )

    assert {name: d["status"] for name, d in domains.items()} == {
        "demo-sa.ch": "ACTIVE",
        "demo-sa.fr": "ACTIVE",
        "demo-boutique.com": "REDEMPTION",
        "atelier-demo.de": "REDEMPTION",
        "ancienne-demo.be": "RELEASED",
    }
    assert domains["demo-boutique.com"]["restoreFee"] == {"amount": "80.00", "currency": "USD"}
    assert domains["demo-boutique.com"]["redemptionEndsAt"] is not None
    assert domains["demo-sa.ch"]["renewalWarranty"] is True
    assert domains["demo-sa.fr"]["redemptionEndsAt"] is None
    assert refused.json()["data"] == {"organisation": None}
    assert refused.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"


def test_dom2_contract_renew_domain_served(served: ServedGateway) -> None:
    admin = _sign_in(served, "marc.admin@demo.example")
    collaborator = _sign_in(served, "lea.collab@demo.example")
    before = _demo_domains(served, admin)["demo-sa.fr"]

    forbidden = _post(
        served, "RenewDomain", {"input": {"domainId": before["id"], "years": 1}}, collaborator
    )
    renewed = _post(served, "RenewDomain", {"input": {"domainId": before["id"], "years": 1}}, admin)

    old = datetime.fromisoformat(before["expiresAt"])
    assert forbidden.json()["data"]["renewDomain"] == {
        "domain": None,
        "errors": [
            {
                "code": "FORBIDDEN",
                "message": "Only administrators and legal representatives manage domains.",
                "field": None,
            }
        ],
    }
    assert renewed.json()["data"]["renewDomain"] == {
        "domain": {
            "id": before["id"],
            "status": "ACTIVE",
            "expiresAt": old.replace(year=old.year + 1).isoformat(),
        },
        "errors": [],
    }


def test_dom3_contract_restore_domain_served(served: ServedGateway) -> None:
    legal = _sign_in(served, "anna.legal@demo.example")
    domain_id = _demo_domains(served, legal)["atelier-demo.de"]["id"]

    restored = _post(served, "RestoreDomain", {"input": {"domainId": domain_id}}, legal)
    again = _post(served, "RestoreDomain", {"input": {"domainId": domain_id}}, legal)

    payload = restored.json()["data"]["restoreDomain"]
    assert payload["errors"] == []
    assert payload["charge"] == {"amount": "60.00", "currency": "EUR"}
    assert (payload["domain"]["id"], payload["domain"]["status"]) == (domain_id, "ACTIVE")
    assert datetime.fromisoformat(payload["domain"]["expiresAt"]) > datetime.now(UTC) + timedelta(
        days=364
    )
    assert again.json()["data"]["restoreDomain"] == {
        "domain": None,
        "charge": None,
        "errors": [
            {
                "code": "DOMAIN_NOT_IN_REDEMPTION",
                "message": "Only a domain in redemption can be restored; renew an active one.",
                "field": "domainId",
            }
        ],
    }


def _demo_products(served: ServedGateway, token: str) -> dict[str, dict[str, Any]]:
    body = _post(served, "OrganisationProducts", {"id": _organisation_id(served, token)}, token)
    edges = body.json()["data"]["organisation"]["products"]["edges"]
    return {edge["node"]["name"]: edge["node"] for edge in edges}


def test_blk1_contract_organisation_products_served(served: ServedGateway) -> None:
    external = _sign_in(served, "tom.extern@demo.example")

    products = _demo_products(served, external)

    assert {name: p["kind"] for name, p in products.items()} == {
        "Mail demo-sa.ch": "MAIL_SERVICE",
        "kDrive Démo": "WEB_DRIVE",
        "Hébergement Web démo": "HOSTING",
        "Domaines Démo": "DOMAIN",
        "Calendrier Démo": "CALENDAR",
        "VPS Démo": "VPS",
    }
    assert all(p["mailMaintenance"] is False for p in products.values())


def test_blk1_blk2_contract_block_product_management_served(served: ServedGateway) -> None:
    admin = _sign_in(served, "marc.admin@demo.example")
    collaborator = _sign_in(served, "lea.collab@demo.example")
    products = _demo_products(served, admin)
    vps, mail = products["VPS Démo"]["id"], products["Mail demo-sa.ch"]["id"]

    refused = _post(served, "BlockProductManagement", {"input": {"productId": vps}}, collaborator)
    blocked = _post(served, "BlockProductManagement", {"input": {"productId": vps}}, admin)
    not_mail = _post(served, "BlockProductManagement", {"input": {"productId": mail}}, admin)

    assert refused.json()["data"]["blockProductManagement"] == {
        "product": None,
        "errors": [
            {
                "code": "FORBIDDEN",
                "message": "Only administrators and legal representatives block or unblock a"
                " product's management.",
                "field": None,
            }
        ],
    }
    assert blocked.json()["data"]["blockProductManagement"] == {
        "product": {"id": vps, "managementBlocked": True},
        "errors": [],
    }
    assert _demo_products(served, collaborator)["VPS Démo"]["managementBlocked"] is True
    assert not_mail.json()["data"]["blockProductManagement"] == {
        "product": None,
        "errors": [
            {
                "code": "MAIL_SERVICE_NOT_BLOCKABLE",
                "message": "A mail service cannot be blocked: put it in maintenance instead"
                " (setMailMaintenance).",
                "field": "productId",
            }
        ],
    }


@pytest.fixture(scope="module")
def own_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    """A gateway of this module's own: its tests remove demo members the others rely on."""
    with start_gateway(fresh_gateway_env(tmp_path_factory.mktemp("membership"))) as gateway:
        yield gateway


def _membership_ids(gateway: ServedGateway, token: str) -> dict[str, str]:
    body = _post(
        gateway,
        "OrganisationMembers",
        {"id": _organisation_id(gateway, token), "first": 50},
        token,
    ).json()
    edges = body["data"]["organisation"]["members"]["edges"]
    return {edge["node"]["user"]["email"]: edge["node"]["id"] for edge in edges}


MANAGEMENT_FORBIDDEN = {
    "code": "FORBIDDEN",
    "message": "Only administrators and legal representatives manage members; only a legal"
    " representative manages legal representatives.",
    "field": None,
}
LAST_LEGAL = {
    "code": "LAST_LEGAL_REPRESENTATIVE",
    "message": "An organisation keeps at least one legal representative: appoint another one"
    " first.",
    "field": "membershipId",
}


def test_org6_contract_change_member_role_served(own_served: ServedGateway) -> None:
    legal = _sign_in(own_served, "anna.legal@demo.example")
    admin = _sign_in(own_served, "marc.admin@demo.example")
    collaborator = _sign_in(own_served, "lea.collab@demo.example")
    ids = _membership_ids(own_served, legal)

    def change(token: str, email: str, role: str) -> Any:
        variables = {"input": {"membershipId": ids[email], "role": role}}
        return _post(own_served, "ChangeMemberRole", variables, token).json()["data"][
            "changeMemberRole"
        ]

    by_collaborator = change(collaborator, "tom.extern@demo.example", "COLLABORATOR")
    admin_on_legal = change(admin, "anna.legal@demo.example", "ADMINISTRATOR")
    admin_to_legal = change(admin, "lea.collab@demo.example", "LEGAL_REPRESENTATIVE")
    last_legal = change(legal, "anna.legal@demo.example", "ADMINISTRATOR")
    changed = change(admin, "tom.extern@demo.example", "COLLABORATOR")

    assert by_collaborator == {"membership": None, "errors": [MANAGEMENT_FORBIDDEN]}
    assert admin_on_legal == {"membership": None, "errors": [MANAGEMENT_FORBIDDEN]}
    assert admin_to_legal == {"membership": None, "errors": [MANAGEMENT_FORBIDDEN]}
    assert last_legal == {"membership": None, "errors": [LAST_LEGAL]}
    assert changed == {
        "membership": {"id": ids["tom.extern@demo.example"], "role": "COLLABORATOR"},
        "errors": [],
    }
    change(admin, "tom.extern@demo.example", "EXTERNAL")  # as the next tests expect it


def test_org6_contract_leave_organisation_served(own_served: ServedGateway) -> None:
    admin = _sign_in(own_served, "marc.admin@demo.example")
    external = _sign_in(own_served, "tom.extern@demo.example")
    organisation_id = _organisation_id(own_served, admin)
    variables = {"input": {"organisationId": organisation_id}}

    refused = _post(own_served, "LeaveOrganisation", variables, admin).json()
    left = _post(own_served, "LeaveOrganisation", variables, external).json()
    again = _post(own_served, "LeaveOrganisation", variables, external).json()
    viewer = _post(own_served, "Viewer", token=external).json()["data"]["viewer"]

    assert refused["data"]["leaveOrganisation"] == {
        "errors": [
            {
                "code": "FORBIDDEN",
                "message": "Only external members may leave; a legal representative or an"
                " administrator may remove you.",
                "field": None,
            }
        ]
    }
    assert left["data"]["leaveOrganisation"] == {"errors": []}
    assert again["data"]["leaveOrganisation"] == {
        "errors": [{"code": "NOT_FOUND", "message": "No such organisation.", "field": None}]
    }
    # The session stays; the organisation is no longer the member's.
    assert (viewer["email"], viewer["currentOrganisation"]) == ("tom.extern@demo.example", None)
    assert viewer["memberships"]["totalCount"] == 0


def test_org6_contract_remove_member_served(own_served: ServedGateway) -> None:
    legal = _sign_in(own_served, "anna.legal@demo.example")
    collaborator = _sign_in(own_served, "lea.collab@demo.example")
    ids = _membership_ids(own_served, legal)

    def remove(token: str, email: str) -> Any:
        variables = {"input": {"membershipId": ids[email]}}
        return _post(own_served, "RemoveMember", variables, token).json()["data"]["removeMember"]

    by_collaborator = remove(collaborator, "marc.admin@demo.example")
    last_legal = remove(legal, "anna.legal@demo.example")
    removed = remove(legal, "lea.collab@demo.example")
    again = remove(legal, "lea.collab@demo.example")
    remaining = _membership_ids(own_served, legal)
    removed_viewer = _post(own_served, "Viewer", token=collaborator).json()["data"]["viewer"]

    assert by_collaborator == {"errors": [MANAGEMENT_FORBIDDEN]}
    assert last_legal == {"errors": [LAST_LEGAL]}
    assert removed == {"errors": []}
    assert again == {"errors": [{"code": "NOT_FOUND", "message": "No such member.", "field": None}]}
    assert sorted(remaining) == ["anna.legal@demo.example", "marc.admin@demo.example"]
    assert (removed_viewer["currentOrganisation"], removed_viewer["memberships"]["totalCount"]) == (
        None,
        0,
    )


def test_act4_contract_viewer_activity_served(served: ServedGateway) -> None:
    token = _sign_in(served, "lea.collab@demo.example")

    first = _post(served, "ViewerActivity", {"first": 1}, token).json()["data"]["viewer"]
    after = _post(
        served,
        "ViewerActivity",
        {"first": 50, "after": first["activity"]["pageInfo"]["endCursor"]},
        token,
    ).json()["data"]["viewer"]

    (newest,) = first["activity"]["edges"]
    events = [newest["node"]] + [e["node"] for e in after["activity"]["edges"]]
    signed_in = next(e for e in events if e["type"] == "sign_in.succeeded")
    # A sign-in without a device cookie from a second time on also records a new device.
    assert newest["node"]["type"] in ("sign_in.succeeded", "sign_in.new_location")
    assert (signed_in["ip"], signed_in["country"]) == ("127.0.0.1", None)
    assert signed_in["device"].startswith("python-httpx/")
    assert first["activity"]["pageInfo"]["hasNextPage"] is True
    assert len({e["id"] for e in events}) == len(events)


def test_act6_contract_viewer_sessions_and_revoke_session_served(served: ServedGateway) -> None:
    keeping = _sign_in(served, "tom.extern@demo.example")
    ending = _sign_in(served, "tom.extern@demo.example")
    stranger = _sign_in(served, "lea.collab@demo.example")

    sessions = _post(served, "ViewerSessions", token=keeping).json()["data"]["viewer"]["sessions"]
    (current,) = [s for s in sessions if s["current"]]
    others = [s for s in sessions if not s["current"]]
    refused = _post(
        served, "RevokeSession", {"input": {"sessionId": others[0]["id"]}}, stranger
    ).json()["data"]["revokeSession"]
    revoked = [
        _post(served, "RevokeSession", {"input": {"sessionId": s["id"]}}, keeping).json()
        for s in others
    ]
    ended = _post(served, "ViewerSessions", token=ending)
    kept = _post(served, "ViewerSessions", token=keeping).json()["data"]["viewer"]["sessions"]

    assert current["kind"] == "WEB" and current["createdAt"] and current["lastSeenAt"]
    assert refused == {
        "errors": [{"code": "NOT_FOUND", "message": "No such session.", "field": None}]
    }
    assert revoked == [{"data": {"revokeSession": {"errors": []}}}] * len(others)
    assert ended.status_code == 401
    assert [s["id"] for s in kept] == [current["id"]]


def test_api6_contract_create_personal_access_token_served(served: ServedGateway) -> None:
    """The secret works as a Bearer token within its scopes only; the token cannot mint another."""
    session = _sign_in(served, "marc.admin@demo.example")
    organisation_id = _organisation_id(served, session)
    variables = {"input": {"label": "Directory sync", "scopes": ["members:read"]}}

    created = _post(served, "CreatePersonalAccessToken", variables, session).json()
    payload = created["data"]["createPersonalAccessToken"]
    secret = payload["secret"]
    members = _post(served, "OrganisationMembers", {"id": organisation_id, "first": 10}, secret)
    activity = _post(served, "OrganisationActivity", {"id": organisation_id, "first": 5}, secret)
    minted = _post(served, "CreatePersonalAccessToken", variables, secret)

    assert payload["errors"] == []
    assert secret.startswith("gdn_pat_")
    assert (payload["token"]["label"], payload["token"]["scopes"]) == (
        "Directory sync",
        ["members:read"],
    )
    assert payload["token"]["lastUsedAt"] is None
    expires_at = datetime.fromisoformat(payload["token"]["expiresAt"])
    assert timedelta(days=89) < expires_at - datetime.now(UTC) <= timedelta(days=90)
    assert members.json()["data"]["organisation"]["members"]["totalCount"] == 4
    assert activity.json()["data"] == {"organisation": None}
    assert [e["extensions"]["code"] for e in activity.json()["errors"]] == ["INSUFFICIENT_SCOPE"]
    assert minted.json()["data"] is None
    assert [e["extensions"]["code"] for e in minted.json()["errors"]] == ["INSUFFICIENT_SCOPE"]
