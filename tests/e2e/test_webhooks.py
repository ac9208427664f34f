"""Webhooks against a served gateway: registered over GraphQL, delivered signed by the gateway's
own worker to a real receiver, listed with their last status; refusals typed (EVT-5)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ServedGateway, start_gateway
from tests.e2e.test_contract import _organisation_id, _sign_in
from tests.webhook_receiver import WebhookReceiver, new_receiver, serving

ENDPOINT_FIELDS = (
    "id url eventTypes enabled consecutiveFailures"
    " lastDelivery { eventType status attempts lastStatusCode deliveredAt }"
)
CREATE = (
    "mutation($input: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $input) {"
    f" endpoint {{ {ENDPOINT_FIELDS} }} secret errors {{ code field }} }} }}"
)
UPDATE = (
    "mutation($input: UpdateWebhookEndpointInput!) { updateWebhookEndpoint(input: $input) {"
    " endpoint { id } errors { code field } } }"
)
LIST = f"query($id: ID!) {{ organisation(id: $id) {{ webhookEndpoints {{ {ENDPOINT_FIELDS} }} }} }}"


def _graphql(
    gateway: ServedGateway, query: str, variables: dict[str, Any], token: str
) -> dict[str, Any]:
    response = httpx.post(
        f"{gateway.url}/graphql",
        json={"query": query, "variables": variables},
        headers={"authorization": f"Bearer {token}", "accept": "application/json"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    receiver = new_receiver(lambda: int(time.time()))
    with serving(receiver):
        yield receiver


@pytest.fixture(scope="module")
def hooked_gateway(
    tmp_path_factory: pytest.TempPathFactory, gateway_env: dict[str, str]
) -> Iterator[ServedGateway]:
    """A gateway of its own, in development mode with webhooks to the loopback address allowed."""
    var_dir: Path = tmp_path_factory.mktemp("served-webhooks")
    env = {
        **gateway_env,
        "GARDIEN_VAR_DIR": str(var_dir),
        "GARDIEN_SECRET_KEY": secrets.token_urlsafe(48),
        "GARDIEN_WEBHOOK_ALLOW_PRIVATE": "1",
    }
    with start_gateway(env) as gateway:
        yield gateway


def test_evt5_register_deliver_signed_and_list_last_status_served(
    hooked_gateway: ServedGateway, receiver: WebhookReceiver
) -> None:
    served = hooked_gateway
    legal = _sign_in(served, "anna.legal@demo.example")
    organisation_id = _organisation_id(served, legal)

    created = _graphql(
        served,
        CREATE,
        {
            "input": {
                "organisationId": organisation_id,
                "url": receiver.url,
                "eventTypes": ["webhook.endpoint_updated"],
            }
        },
        legal,
    )["data"]["createWebhookEndpoint"]
    receiver.secret = created["secret"]
    endpoint = created["endpoint"]
    updated = _graphql(
        served,
        UPDATE,
        {"input": {"endpointId": endpoint["id"], "eventTypes": ["webhook.endpoint_updated"]}},
        legal,
    )["data"]["updateWebhookEndpoint"]
    # The gateway's worker polls every few seconds.
    deadline = time.monotonic() + 30
    while not receiver.accepted() and time.monotonic() < deadline:
        time.sleep(0.1)
    listed = _graphql(served, LIST, {"id": organisation_id}, legal)["data"]["organisation"]

    assert created["errors"] == [] and updated["errors"] == []
    assert created["secret"].startswith("whsec_")
    assert (endpoint["url"], endpoint["eventTypes"], endpoint["enabled"]) == (
        receiver.url,
        ["webhook.endpoint_updated"],
        True,
    )
    assert endpoint["lastDelivery"] is None
    (accepted,) = receiver.accepted()
    assert accepted.body["type"] == "webhook.endpoint_updated"
    assert accepted.body["data"]["url"] == receiver.url
    assert [r.signature_valid for r in receiver.requests] == [True]
    (listed_endpoint,) = listed["webhookEndpoints"]
    assert "secret" not in listed_endpoint
    last = listed_endpoint["lastDelivery"]
    assert (last["eventType"], last["status"], last["attempts"], last["lastStatusCode"]) == (
        "webhook.endpoint_updated",
        "SENT",
        1,
        204,
    )
    assert last["deliveredAt"] is not None


def test_evt5_bad_input_typed_served(hooked_gateway: ServedGateway) -> None:
    served = hooked_gateway
    legal = _sign_in(served, "anna.legal@demo.example")
    collaborator = _sign_in(served, "lea.collab@demo.example")
    organisation_id = _organisation_id(served, legal)

    def create(token: str, url: str, types: list[str]) -> dict[str, Any]:
        variables = {"input": {"organisationId": organisation_id, "url": url, "eventTypes": types}}
        payload: dict[str, Any] = _graphql(served, CREATE, variables, token)["data"][
            "createWebhookEndpoint"
        ]
        return payload

    unknown = create(legal, "http://127.0.0.1:9/hook", ["sign_in.failed"])
    bad_scheme = create(legal, "ftp://127.0.0.1/hook", ["member.left"])
    by_collaborator = create(collaborator, "http://127.0.0.1:9/hook", ["member.left"])
    listed = _graphql(served, LIST, {"id": organisation_id}, collaborator)

    assert unknown == {
        "endpoint": None,
        "secret": None,
        "errors": [{"code": "UNKNOWN_EVENT_TYPE", "field": "eventTypes"}],
    }
    assert bad_scheme["errors"] == [{"code": "UNSAFE_WEBHOOK_URL", "field": "url"}]
    assert by_collaborator["errors"] == [{"code": "FORBIDDEN", "field": None}]
    assert listed["data"] == {"organisation": None}  # the list is non-null: the error bubbles
    assert [e["extensions"]["code"] for e in listed["errors"]] == ["FORBIDDEN"]
