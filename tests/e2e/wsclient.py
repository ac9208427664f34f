"""A graphql-transport-ws client speaking the protocol exactly, on the `websockets` library."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

SUBPROTOCOL = "graphql-transport-ws"


def ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://", 1) + "/graphql"


class GraphQLWebSocketClient:
    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket

    @classmethod
    async def open(
        cls,
        http_url: str,
        *,
        subprotocols: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> GraphQLWebSocketClient:
        offered = [SUBPROTOCOL] if subprotocols is None else subprotocols
        socket = await connect(
            ws_url(http_url),
            # An empty list would send an empty header: no header at all instead.
            subprotocols=[Subprotocol(p) for p in offered] or None,
            additional_headers=headers,
            compression=None,
            open_timeout=10,
        )
        return cls(socket)

    @classmethod
    async def initialised(cls, http_url: str, token: str) -> GraphQLWebSocketClient:
        client = await cls.open(http_url)
        await client.send(
            {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        )
        ack = await client.receive()
        assert ack == {"type": "connection_ack"}, ack
        return client

    async def send(self, message: dict[str, Any]) -> None:
        await self.socket.send(json.dumps(message))

    async def send_raw(self, text: str) -> None:
        await self.socket.send(text)

    async def subscribe(
        self, subscription_id: str, query: str, variables: dict[str, Any] | None = None
    ) -> None:
        await self.send(
            {
                "id": subscription_id,
                "type": "subscribe",
                "payload": {"query": query, "variables": variables or {}},
            }
        )

    async def receive(self, seconds: float = 10) -> dict[str, Any]:
        """The next message, pongs and server pings answered and skipped."""
        while True:
            raw = await asyncio.wait_for(self.socket.recv(), seconds)
            message: dict[str, Any] = json.loads(raw)
            if message.get("type") == "ping":
                await self.send({"type": "pong"})
                continue
            return message

    async def closed_with(self, seconds: float = 10) -> tuple[int, str]:
        """Read until the server closes; its close code and reason ((1006, "") without one)."""
        try:
            while True:
                await asyncio.wait_for(self.socket.recv(), seconds)
        except ConnectionClosed as closed:
            if closed.rcvd is None:
                return 1006, ""
            return closed.rcvd.code, closed.rcvd.reason

    async def quiet_for(self, seconds: float) -> list[dict[str, Any]]:
        """Messages (other than pings) arriving within `seconds`: expected to be none."""
        seen: list[dict[str, Any]] = []
        try:
            while True:
                seen.append(await self.receive(seconds))
        except TimeoutError:
            return seen

    async def close(self) -> None:
        await self.socket.close()
