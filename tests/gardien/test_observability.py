"""OPS-5: structured logs carry the request ID that the response header also carries."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from gardien.observability import SQL_LOGGERS, JsonFormatter, configure_logging

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

    monkeypatch.setattr("gardien.resolvers.sign_ups.request_sign_up", explode)
    with json_log("gardien.graphql") as stream:
        response = await client.post(
            "/graphql",
            json={
                "query": 'mutation { signUp(input: {email: "z@example.test", '
                'password: "walnut behind the door", displayName: "Z"}) { errors { code } } }'
            },
            headers={"x-request-id": "req-5566778899"},
        )

    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert response.json()["errors"][0]["extensions"]["requestId"] == "req-5566778899"
    assert [e["request_id"] for e in entries] == ["req-5566778899"]
    assert "RuntimeError: database on fire" in entries[0]["exception"]
    assert "database on fire" not in response.text


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def every_log_record(level: str) -> Iterator[list[logging.LogRecord]]:
    """Logging configured as `gardien serve` does it, every record of every logger captured."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    saved_sql = {name: logging.getLogger(name).level for name in SQL_LOGGERS}
    configure_logging(level)
    capture = _Records()
    root.addHandler(capture)
    try:
        yield capture.records
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        for name, previous in saved_sql.items():
            logging.getLogger(name).setLevel(previous)


def _rendered(record: logging.LogRecord) -> str:
    return JsonFormatter().format(record) + repr(record.__dict__)


async def test_ops5_no_query_string_nor_body_in_any_log_even_at_debug(
    client: httpx.AsyncClient,
) -> None:
    """ASVS 4 V7.1.1 / V7.1.2: no credentials, session tokens or sensitive data in logs."""
    secret = "hunter2-never-in-a-log"
    with every_log_record("DEBUG") as records:
        got = await client.get(
            "/graphql",
            params={
                "query": "{ viewer { id } }",
                "variables": json.dumps({"password": secret}),
            },
            headers={"accept": "application/graphql-response+json"},
        )
        posted = await client.post(
            "/graphql",
            json={
                "query": "mutation($input: SignInInput!) { signIn(input: $input) { errors { code } } }",
                "variables": {"input": {"login": "nobody@example.test", "password": secret}},
            },
        )

    # The test's own HTTP client logs the URLs it requests; it is not the gateway.
    records = [r for r in records if not r.name.startswith(("httpx", "httpcore"))]
    access = [r for r in records if r.name == "gardien.access"]
    assert got.status_code == 200 and posted.status_code == 200
    assert [r.getMessage().split(" ")[:3] for r in access] == [
        ["GET", "/graphql", "200"],
        ["POST", "/graphql", "200"],
    ]
    assert records, "nothing was logged: the test would prove nothing"
    assert not [r for r in records if secret in _rendered(r)]
    assert not [r for r in records if "nobody@example.test" in _rendered(r)]
    assert not [r for r in records if "query=" in _rendered(r)]


def test_ops5_sql_loggers_stay_at_info_when_the_log_level_is_debug() -> None:
    with every_log_record("DEBUG"):
        levels = {name: logging.getLogger(name).isEnabledFor(logging.DEBUG) for name in SQL_LOGGERS}
        gardien_debug = logging.getLogger("gardien.graphql").isEnabledFor(logging.DEBUG)

    assert levels == dict.fromkeys(SQL_LOGGERS, False)
    assert "tortoise.db_client" in SQL_LOGGERS and "asyncpg" in SQL_LOGGERS
    assert gardien_debug  # the rest of the application does log at DEBUG


def test_ops5_uvicorn_writes_no_access_line_of_its_own() -> None:
    """uvicorn logs each request line, query string included, whenever its access logger has a
    handler (its own or an ancestor's): configure_logging leaves it none, at every level."""
    with every_log_record("INFO"):
        access = logging.getLogger("uvicorn.access")
        has_handlers, propagates = access.hasHandlers(), access.propagate

    assert (has_handlers, propagates) == (False, False)
