"""API-4 against the served gateway: the fragment-doubling query that once stopped the server is
refused at once, and the server keeps answering others."""

from __future__ import annotations

import time

import httpx

from tests.e2e.conftest import ServedGateway
from tests.e2e.test_contract import _organisation_id, _sign_in

LEVELS = 8


def fragment_doubling() -> str:
    """Each fragment spreads the next twice through members → node.organisation → members."""
    fragments = [
        f"fragment F{i} on Organisation {{"
        f" members {{ edges {{ node {{ organisation {{ ...F{i + 1} }} }} }} }}"
        f" more: members {{ edges {{ node {{ organisation {{ ...F{i + 1} }} }} }} }} }}"
        for i in range(LEVELS)
    ]
    fragments.append(f"fragment F{LEVELS} on Organisation {{ id name }}")
    return "query Doubling($id: ID!) { organisation(id: $id) { ...F0 } }\n" + "\n".join(fragments)


def test_api4_fragment_doubling_is_refused_in_well_under_a_second_served(
    served: ServedGateway,
) -> None:
    token = _sign_in(served, "marc.admin@demo.example")
    organisation_id = _organisation_id(served, token)
    headers = {"accept": "application/graphql-response+json", "authorization": f"Bearer {token}"}
    query = fragment_doubling()
    assert len(query.encode()) < 2048  # the 2 KB query of the issue

    started = time.monotonic()
    refused = httpx.post(
        f"{served.url}/graphql",
        json={"query": query, "variables": {"id": organisation_id}},
        headers=headers,
        timeout=10,
    )
    elapsed = time.monotonic() - started
    following = httpx.post(
        f"{served.url}/graphql",
        json={"query": "{ viewer { email } }"},
        headers=headers,
        timeout=2,
    )

    assert elapsed < 1, elapsed
    assert refused.status_code == 400
    codes = {e["extensions"]["code"] for e in refused.json()["errors"]}
    assert codes & {"QUERY_TOO_DEEP", "QUERY_TOO_COSTLY"}, refused.text
    assert "data" not in refused.json()
    assert following.json() == {"data": {"viewer": {"email": "marc.admin@demo.example"}}}
