"""Sign-in through GraphQL: throttled answers and the device cookie, over HTTP on the real app."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from gardien.resolvers.services import Services
from tests import factories
from tests.conftest import GraphQLClient

pytestmark = pytest.mark.usefixtures("database")

SIGN_IN = (
    "mutation($i: SignInInput!) { signIn(input: $i) {"
    " session { token } secondFactor { challengeId }"
    " errors { code message field retryAfterSeconds } } }"
)


def _input(login: str, password: str) -> dict[str, Any]:
    return {"i": {"login": login, "password": password}}


async def test_api4_throttled_unknown_and_known_logins_get_the_same_answer(
    services: Services, gql: GraphQLClient
) -> None:
    """Never revealing whether the login exists: same codes for the budget, same refusal body."""
    await factories.sign_up(services, email="uma@example.test")
    refusals = []
    for login in ("uma@example.test", "nobody@example.test"):
        failures = [await gql(SIGN_IN, _input(login, "guess!")) for _ in range(10)]
        assert {f["data"]["signIn"]["errors"][0]["code"] for f in failures} == {
            "INVALID_CREDENTIALS"
        }
        refusals.append(await gql(SIGN_IN, _input(login, "guess!")))

    assert (
        refusals[0]
        == refusals[1]
        == {
            "data": {
                "signIn": {
                    "session": None,
                    "secondFactor": None,
                    "errors": [
                        {
                            "code": "TOO_MANY_ATTEMPTS",
                            "message": "Too many attempts. Wait 15 minutes before trying again.",
                            "field": None,
                            "retryAfterSeconds": 900,
                        }
                    ],
                }
            }
        }
    )


async def test_api4_invalid_credentials_carry_no_retry_hint(gql: GraphQLClient) -> None:
    body = await gql(SIGN_IN, _input("nobody@example.test", "guess!"))

    assert body["data"]["signIn"]["errors"] == [
        {
            "code": "INVALID_CREDENTIALS",
            "message": "The login or password is incorrect.",
            "field": None,
            "retryAfterSeconds": None,
        }
    ]


async def test_api4_browser_known_by_its_device_cookie_is_not_locked_out(
    services: Services, app: Starlette
) -> None:
    await factories.sign_up(services, email="vic@example.test")

    def browser(peer: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(peer, 50000))
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")

    async def sign_in(http: httpx.AsyncClient, password: str) -> dict[str, Any]:
        response = await http.post(
            "/graphql",
            json={"query": SIGN_IN, "variables": _input("vic@example.test", password)},
        )
        body: dict[str, Any] = response.json()["data"]["signIn"]
        return body

    async with browser("203.0.113.7") as owner, browser("198.51.100.66") as attacker:
        first = await sign_in(owner, factories.PASSWORD)
        assert first["errors"] == [] and owner.cookies.get("gardien_device")
        for _ in range(12):
            await sign_in(attacker, "guess!")

        again = await sign_in(owner, factories.PASSWORD)
        owner.cookies.delete("gardien_device")
        without_cookie = await sign_in(owner, factories.PASSWORD)

    assert again["errors"] == [] and again["session"]["token"]
    assert [(e["code"], e["retryAfterSeconds"]) for e in without_cookie["errors"]] == [
        ("TOO_MANY_ATTEMPTS", 900)
    ]


async def test_api4_no_device_cookie_while_a_second_factor_is_owed(
    services: Services, client: httpx.AsyncClient
) -> None:
    """OWASP device cookies are issued after a successful authentication: the password step of a
    user with a second factor opens no session, so the browser earns no cookie yet (MFA-7)."""
    signed_up = await factories.sign_up(services, email="wes@example.test")
    await factories.confirm_totp(services, signed_up.user)

    response = await client.post(
        "/graphql",
        json={"query": SIGN_IN, "variables": _input("wes@example.test", factories.PASSWORD)},
    )

    answer = response.json()["data"]["signIn"]
    assert answer["errors"] == [] and answer["secondFactor"]["challengeId"]
    assert [c for c in response.headers.get_list("set-cookie") if "_device=" in c] == []
