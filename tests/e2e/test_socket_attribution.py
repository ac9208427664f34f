"""What a token does over the WebSocket is recorded as the token's (API-6), as over HTTP."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ServedGateway, fresh_gateway_env, start_gateway
from tests.e2e.test_contract import _organisation_id, _post, _sign_in
from tests.e2e.wsclient import GraphQLWebSocketClient

INVITE = """
mutation Invite($input: InviteMemberInput!) {
  inviteMember(input: $input) { invitation { id } errors { code } }
}"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    """A gateway of this module's own: its test invites someone into the demo organisation."""
    with start_gateway(fresh_gateway_env(tmp_path_factory.mktemp("attribution"))) as served:
        yield served


def _rows(gateway: ServedGateway, statement: str, *values: Any) -> list[Any]:
    path = Path(gateway.env["GARDIEN_VAR_DIR"]) / "gardien.sqlite3"
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
        return connection.execute(statement, values).fetchall()


async def test_api6_mutation_over_the_socket_with_a_token_names_the_token(
    gateway: ServedGateway,
) -> None:
    legal = _sign_in(gateway, "anna.legal@demo.example")
    organisation_id = _organisation_id(gateway, legal)
    created = _post(
        gateway,
        "CreatePersonalAccessToken",
        {"input": {"label": "provisioning", "scopes": ["members:write"]}},
        legal,
    ).json()["data"]["createPersonalAccessToken"]
    client = await GraphQLWebSocketClient.initialised(gateway.url, created["secret"])

    await client.subscribe(
        "invite",
        INVITE,
        {
            "input": {
                "organisationId": organisation_id,
                "email": "new.colleague@example.test",
                "role": "COLLABORATOR",
            }
        },
    )
    result = await client.receive()
    completed = await client.receive()
    await client.close()

    assert result["type"] == "next", result
    assert result["payload"]["data"]["inviteMember"]["errors"] == []
    assert completed == {"id": "invite", "type": "complete"}
    ((data,),) = _rows(gateway, "SELECT data FROM activity_event WHERE type = 'invitation.sent'")
    ((token_id,),) = _rows(gateway, "SELECT id FROM api_token WHERE name = 'provisioning'")
    assert json.loads(data)["via_token"] == {"id": token_id, "kind": "personal"}
