"""The app served in-process on a real socket, as `gardien serve` runs it (websockets-sansio, no
per-message deflate), for tests that need a real WebSocket or HTTP client and the test's clock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette

from tests.ports import free_port

HOST = "127.0.0.1"


@contextlib.asynccontextmanager
async def served_in_process(app: Starlette) -> AsyncIterator[str]:
    """Yields the base URL (http://host:port). The lifespan is off: a test that needs the live
    event hub starts it itself."""
    port = free_port(HOST)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=HOST,
            port=port,
            ws="websockets-sansio",
            ws_per_message_deflate=False,
            lifespan="off",
            log_level="warning",
        )
    )
    task = asyncio.create_task(server.serve())
    for _ in range(1000):  # uvicorn offers no event to wait on
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        await task
