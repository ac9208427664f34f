"""OPS-5: structured logs carry the request ID that the response header also carries."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from gardien.observability import JsonFormatter

pytestmark = pytest.mark.usefixtures("database")


@contextmanager
def json_log(logger_name: str) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(logger_name)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


async def test_ops5_access_log_is_json_with_the_request_id(client: httpx.AsyncClient) -> None:
    with json_log("gardien.access") as stream:
        response = await client.get("/healthz", headers={"x-request-id": "req-abcdef123456"})

    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert response.headers["x-request-id"] == "req-abcdef123456"
    assert [(e["level"], e["request_id"], e["message"]) for e in entries] == [
        ("INFO", "req-abcdef123456", entries[0]["message"])
    ]
    assert entries[0]["message"].startswith("GET /healthz 200 ")


async def test_ops5_unexpected_error_logged_with_traceback_and_request_id(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_: object, **__: object) -> None:
        raise RuntimeError("database on fire")

    monkeypatch.setattr("gardien.schema.UserNode.from_model", explode)
    with json_log("gardien.graphql") as stream:
        response = await client.post(
            "/graphql",
            json={
                "query": 'mutation { signUp(input: {email: "z@example.test", '
                'password: "walnut behind the door", displayName: "Z"}) { user { id } } }'
            },
            headers={"x-request-id": "req-5566778899"},
        )

    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert response.json()["errors"][0]["extensions"]["requestId"] == "req-5566778899"
    assert [e["request_id"] for e in entries] == ["req-5566778899"]
    assert "RuntimeError: database on fire" in entries[0]["exception"]
    assert "database on fire" not in response.text
