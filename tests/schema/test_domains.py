"""Domains through GraphQL: who sees them, the mutations' payloads, the lookup, node()."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from gardien.models.activity import ActivityEvent
from gardien.models.domains import Domain
from gardien.models.enums import DomainStatus, ProductKind, Role
from gardien.models.organisations import Organisation
from gardien.models.products import Product, ProductGrant
from gardien.resolvers import accounts
from gardien.resolvers.services import RequestMeta, Services
from gardien.schema.relay import encode_id
from tests import factories
from tests.conftest import GraphQLClient

pytestmark = pytest.mark.usefixtures("database")

DOMAINS = """
query OrganisationDomains($id: ID!, $first: Int, $after: String, $status: DomainStatus) {
  organisation(id: $id) {
    domains(first: $first, after: $after, status: $status) {
      totalCount
      pageInfo { hasNextPage endCursor }
      edges { node { id name status expiresAt redemptionEndsAt restoreFee { amount currency }
                     renewalWarranty } }
    }
  }
}"""
RENEW = """
mutation RenewDomain($input: RenewDomainInput!) {
  renewDomain(input: $input) { domain { id status expiresAt } errors { code message field } }
}"""
RESTORE = """
mutation RestoreDomain($input: RestoreDomainInput!) {
  restoreDomain(input: $input) {
    domain { id status expiresAt } charge { amount currency } errors { code message field }
  }
}"""
WARRANTY = """
mutation SetDomainRenewalWarranty($input: SetDomainRenewalWarrantyInput!) {
  setDomainRenewalWarranty(input: $input) {
    domain { id renewalWarranty } errors { code message field }
  }
}"""
LOOKUP = """
query DomainLookup($name: String!) {
  domainLookup(name: $name) { name answer organisation { id name } domain { id status } }
}"""


async def _token(services: Services, email: str | None) -> str:
    assert email is not None
    result = await accounts.sign_in(
        services, RequestMeta(ip="198.51.100.1"), login=email, password=factories.PASSWORD
    )
    assert result.session is not None
    return result.session.token


async def _demo_like(services: Services) -> tuple[Organisation, str, dict[str, Domain]]:
    owner = await factories.sign_up(services)
    organisation = owner.organisation
    made = {
        "a.ch": await factories.add_domain(
            services, organisation, "a.ch", expires_in=timedelta(days=100)
        ),
        "b.com": await factories.add_domain(
            services,
            organisation,
            "b.com",
            expires_in=-timedelta(days=5),
            status=DomainStatus.REDEMPTION,
            redemption_ends_in=timedelta(days=25),
        ),
        "c.be": await factories.add_domain(
            services,
            organisation,
            "c.be",
            expires_in=-timedelta(days=90),
            status=DomainStatus.RELEASED,
        ),
    }
    return organisation, await _token(services, owner.user.email), made


def _codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


async def test_dom3_managers_list_domains_with_status_expiry_and_restore_fee(
    services: Services, gql: GraphQLClient
) -> None:
    organisation, gql.token, made = await _demo_like(services)

    body = await gql(DOMAINS, {"id": encode_id("Organisation", organisation.id)})

    listed = body["data"]["organisation"]["domains"]
    assert listed["totalCount"] == 3
    assert [
        (n["node"]["name"], n["node"]["status"], n["node"]["restoreFee"]) for n in listed["edges"]
    ] == [
        ("a.ch", "ACTIVE", {"amount": "120.00", "currency": "CHF"}),
        ("b.com", "REDEMPTION", {"amount": "80.00", "currency": "USD"}),
        ("c.be", "RELEASED", {"amount": "70.00", "currency": "EUR"}),
    ]
    redemption = listed["edges"][1]["node"]
    assert redemption["id"] == encode_id("Domain", made["b.com"].id)
    assert redemption["redemptionEndsAt"] == made["b.com"].redemption_ends_at.isoformat()  # type: ignore[union-attr]
    assert redemption["expiresAt"] == made["b.com"].expires_at.isoformat()
    assert redemption["renewalWarranty"] is False


async def test_dom3_domains_filtered_by_status_and_paged(
    services: Services, gql: GraphQLClient
) -> None:
    organisation, gql.token, _ = await _demo_like(services)
    org_id = encode_id("Organisation", organisation.id)

    active = await gql(DOMAINS, {"id": org_id, "status": "ACTIVE"})
    first = await gql(DOMAINS, {"id": org_id, "first": 2})
    cursor = first["data"]["organisation"]["domains"]["pageInfo"]["endCursor"]
    rest = await gql(DOMAINS, {"id": org_id, "first": 2, "after": cursor})

    active_page = active["data"]["organisation"]["domains"]
    assert (active_page["totalCount"], [e["node"]["name"] for e in active_page["edges"]]) == (
        1,
        ["a.ch"],
    )
    page_one = first["data"]["organisation"]["domains"]
    page_two = rest["data"]["organisation"]["domains"]
    assert [e["node"]["name"] for e in page_one["edges"]] == ["a.ch", "b.com"]
    assert page_one["pageInfo"]["hasNextPage"] is True
    assert [e["node"]["name"] for e in page_two["edges"]] == ["c.be"]
    assert page_two["pageInfo"]["hasNextPage"] is False


@pytest.mark.parametrize(
    ("role", "granted", "sees"),
    [
        (Role.ADMINISTRATOR, False, True),
        (Role.COLLABORATOR, False, False),
        (Role.COLLABORATOR, True, True),
        (Role.EXTERNAL, False, False),
        (Role.EXTERNAL, True, True),
    ],
)
async def test_dom1_domains_visible_to_managers_and_members_granted_the_domain_product(
    services: Services, gql: GraphQLClient, role: Role, granted: bool, sees: bool
) -> None:
    organisation, _, _ = await _demo_like(services)
    member = await factories.add_member(services, organisation, role)
    # A grant to another product kind gives nothing.
    mail = await Product.create(
        organisation=organisation,
        kind=ProductKind.MAIL_SERVICE,
        name="Mail",
        created_at=services.clock.now(),
    )
    await ProductGrant.create(membership=member.membership, product=mail)
    if granted:
        product = await Product.create(
            organisation=organisation,
            kind=ProductKind.DOMAIN,
            name="Domains",
            created_at=services.clock.now(),
        )
        await ProductGrant.create(membership=member.membership, product=product)
    gql.token = await _token(services, member.user.email)

    body = await gql(DOMAINS, {"id": encode_id("Organisation", organisation.id)})

    if sees:
        assert body["data"]["organisation"]["domains"]["totalCount"] == 3
        assert "errors" not in body
    else:
        assert body["data"] == {"organisation": None}
        assert _codes(body) == ["FORBIDDEN"]


async def test_dom1_non_members_do_not_see_the_organisation_nor_its_domains(
    services: Services, gql: GraphQLClient
) -> None:
    organisation, _, made = await _demo_like(services)
    stranger = await factories.sign_up(services)
    gql.token = await _token(services, stranger.user.email)

    listed = await gql(DOMAINS, {"id": encode_id("Organisation", organisation.id)})
    node = await gql(
        "query($id: ID!) { node(id: $id) { id } }", {"id": encode_id("Domain", made["a.ch"].id)}
    )

    assert listed["data"] == {"organisation": None} and _codes(listed) == ["NOT_FOUND"]
    assert node == {"data": {"node": None}}


async def test_api1_domain_node_for_managers_only(services: Services, gql: GraphQLClient) -> None:
    organisation, manager_token, made = await _demo_like(services)
    collaborator = await factories.add_member(services, organisation, Role.COLLABORATOR)
    domain_id = encode_id("Domain", made["a.ch"].id)
    query = "query($id: ID!) { node(id: $id) { id ... on Domain { name status } } }"

    gql.token = manager_token
    seen = await gql(query, {"id": domain_id})
    gql.token = await _token(services, collaborator.user.email)
    hidden = await gql(query, {"id": domain_id})

    assert seen == {"data": {"node": {"id": domain_id, "name": "a.ch", "status": "ACTIVE"}}}
    assert hidden == {"data": {"node": None}}


async def test_dom2_renew_domain_payload(services: Services, gql: GraphQLClient) -> None:
    _, gql.token, made = await _demo_like(services)
    domain = made["a.ch"]

    body = await gql(RENEW, {"input": {"domainId": encode_id("Domain", domain.id), "years": 3}})

    expires = domain.expires_at.replace(year=domain.expires_at.year + 3)
    assert body == {
        "data": {
            "renewDomain": {
                "domain": {
                    "id": encode_id("Domain", domain.id),
                    "status": "ACTIVE",
                    "expiresAt": expires.isoformat(),
                },
                "errors": [],
            }
        }
    }


async def test_dom2_renew_domain_errors_are_typed_payload_errors(
    services: Services, gql: GraphQLClient
) -> None:
    organisation, manager_token, made = await _demo_like(services)
    collaborator = await factories.add_member(services, organisation, Role.COLLABORATOR)
    collaborator_token = await _token(services, collaborator.user.email)
    active_id = encode_id("Domain", made["a.ch"].id)
    before = await Domain.get(id=made["a.ch"].id)

    gql.token = manager_token
    zero = await gql(RENEW, {"input": {"domainId": active_id, "years": 0}})
    released = await gql(
        RENEW, {"input": {"domainId": encode_id("Domain", made["c.be"].id), "years": 1}}
    )
    wrong_type = await gql(
        RENEW, {"input": {"domainId": encode_id("Organisation", organisation.id), "years": 1}}
    )
    garbage = await gql(RENEW, {"input": {"domainId": "not-an-id", "years": 1}})
    gql.token = collaborator_token
    forbidden = await gql(RENEW, {"input": {"domainId": active_id, "years": 1}})

    def payload(code: str, message: str) -> dict[str, Any]:
        return {
            "data": {
                "renewDomain": {
                    "domain": None,
                    "errors": [{"code": code, "message": message, "field": "domainId"}],
                }
            }
        }

    assert zero == {
        "data": {
            "renewDomain": {
                "domain": None,
                "errors": [
                    {
                        "code": "INVALID_INPUT",
                        "message": "A renewal is for 1 to 10 years.",
                        "field": "years",
                    }
                ],
            }
        }
    }
    assert released == payload(
        "DOMAIN_RELEASED", "This domain was released; it can only be registered again."
    )
    assert wrong_type == payload("NOT_FOUND", "No such domain.")
    assert garbage == payload("INVALID_ID", "This is not a valid ID.")
    assert forbidden == {
        "data": {
            "renewDomain": {
                "domain": None,
                "errors": [
                    {
                        "code": "FORBIDDEN",
                        "message": "Only administrators and legal representatives manage domains.",
                        "field": None,
                    }
                ],
            }
        }
    }
    assert (await Domain.get(id=made["a.ch"].id)).expires_at == before.expires_at
    assert not await ActivityEvent.filter(type__startswith="domain.").exists()


async def test_dom3_restore_domain_payload_carries_the_charge(
    services: Services, gql: GraphQLClient
) -> None:
    _, gql.token, made = await _demo_like(services)
    now = services.clock.now()

    restored = await gql(RESTORE, {"input": {"domainId": encode_id("Domain", made["b.com"].id)}})
    active = await gql(RESTORE, {"input": {"domainId": encode_id("Domain", made["a.ch"].id)}})

    assert restored == {
        "data": {
            "restoreDomain": {
                "domain": {
                    "id": encode_id("Domain", made["b.com"].id),
                    "status": "ACTIVE",
                    "expiresAt": now.replace(year=now.year + 1).isoformat(),
                },
                "charge": {"amount": "80.00", "currency": "USD"},
                "errors": [],
            }
        }
    }
    assert active == {
        "data": {
            "restoreDomain": {
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
        }
    }


async def test_dom4_set_renewal_warranty_payload(services: Services, gql: GraphQLClient) -> None:
    _, gql.token, made = await _demo_like(services)
    domain_id = encode_id("Domain", made["a.ch"].id)

    body = await gql(WARRANTY, {"input": {"domainId": domain_id, "enabled": True}})

    assert body == {
        "data": {
            "setDomainRenewalWarranty": {
                "domain": {"id": domain_id, "renewalWarranty": True},
                "errors": [],
            }
        }
    }
    assert (await Domain.get(id=made["a.ch"].id)).renewal_warranty is True


async def test_dom5_domain_lookup_query(services: Services, gql: GraphQLClient) -> None:
    organisation, gql.token, made = await _demo_like(services)
    stranger = await factories.sign_up(services)
    await factories.add_domain(
        services, stranger.organisation, "stranger.ch", expires_in=timedelta(days=9)
    )
    org = {"id": encode_id("Organisation", organisation.id), "name": organisation.name}

    ours = await gql(LOOKUP, {"name": "A.CH."})
    released = await gql(LOOKUP, {"name": "c.be"})
    theirs = await gql(LOOKUP, {"name": "stranger.ch"})
    nobody = await gql(LOOKUP, {"name": "free.ch"})
    invalid = await gql(LOOKUP, {"name": "not a name"})

    assert ours == {
        "data": {
            "domainLookup": {
                "name": "a.ch",
                "answer": "IN_YOUR_ORGANISATION",
                "organisation": org,
                "domain": {"id": encode_id("Domain", made["a.ch"].id), "status": "ACTIVE"},
            }
        }
    }
    assert released["data"]["domainLookup"] == {
        "name": "c.be",
        "answer": "RELEASED",
        "organisation": org,
        "domain": None,
    }
    unreachable = {"answer": "NOT_REACHABLE", "organisation": None, "domain": None}
    assert theirs["data"]["domainLookup"] == {"name": "stranger.ch", **unreachable}
    assert nobody["data"]["domainLookup"] == {"name": "free.ch", **unreachable}
    assert invalid["data"] == {"domainLookup": None} and _codes(invalid) == ["INVALID_INPUT"]
