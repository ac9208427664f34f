"""API-4 against the served gateway: the fragment-doubling query that once stopped the server is
refused at once, and the server keeps answering others."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ServedGateway, start_gateway
from tests.e2e.test_contract import _organisation_id, _sign_in
from tests.gardien.graphql.test_limits import ATTACKS

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


# --- the limits hold on the served gateway, not only in-process -------------------------------

MERGED_FLOOD = "{ " + f"viewer {{ {'id ' * 100}}} " * 7 + "}"


def _post(url: str, query: str, **options: Any) -> httpx.Response:
    return httpx.post(
        f"{url}/graphql",
        json={"query": query, **options},
        headers={"accept": "application/graphql-response+json"},
        timeout=10,
    )


def _codes(response: httpx.Response) -> list[str]:
    return [e["extensions"]["code"] for e in response.json()["errors"]]


def test_api4_merged_same_named_fields_are_refused_quickly_served(served: ServedGateway) -> None:
    """The 2 KB anonymous document whose 7 × 100 `id` graphql-core would compare pairwise."""
    assert len(MERGED_FLOOD.encode()) < 2200

    started = time.monotonic()
    refused = _post(served.url, MERGED_FLOOD)
    elapsed = time.monotonic() - started

    assert (refused.status_code, _codes(refused)) == (400, ["QUERY_TOO_COSTLY"])
    assert "data" not in refused.json()
    assert elapsed < 0.5, elapsed  # HTTP and parsing included, on a shared test machine


@pytest.mark.parametrize(("query", "code"), ATTACKS)
def test_api4_hostile_document_is_refused_with_its_code_served(
    served: ServedGateway, query: str, code: str
) -> None:
    refused = _post(served.url, query, operationName="Flood")
    assert (refused.status_code, _codes(refused)) == (400, [code])
    assert "data" not in refused.json()


def test_api4_body_of_500_kb_is_413_served(served: ServedGateway) -> None:
    refused = _post(served.url, "{ viewer { id } }" + " " * 500_000)

    assert (refused.status_code, _codes(refused)) == (413, ["REQUEST_TOO_LARGE"])


@pytest.fixture(scope="module")
def production(
    gateway_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedGateway]:
    """A second gateway as production runs it: introspection off."""
    env = {
        **gateway_env,
        "GARDIEN_VAR_DIR": str(tmp_path_factory.mktemp("production")),
        "GARDIEN_INTROSPECTION": "off",
    }
    with start_gateway(env) as gateway:
        yield gateway


def test_api4_production_hides_suggestions_served(
    served: ServedGateway, production: ServedGateway
) -> None:
    """ASVS 4.0 V13.4.2: without introspection, no "Did you mean" reveals a field's name."""
    development = _post(served.url, "{ viewer { supportCod } }")
    hidden = _post(production.url, "{ viewer { supportCod } }")

    assert "Did you mean" in development.json()["errors"][0]["message"]
    assert (hidden.status_code, _codes(hidden)) == (400, ["GRAPHQL_VALIDATION_FAILED"])
    assert "Did you mean" not in hidden.text
    assert "supportCode" not in hidden.text
